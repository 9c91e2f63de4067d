"""What the server is started with: address, folders, database, cache, limits, token."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.folders import Folders
from engine.registry import NodeRegistry
from engine.scaleout.config import RayConfig

CacheMode = Literal["classic", "lru", "none"]
PreviewMethod = Literal["none", "auto", "latent2rgb", "taesd"]
PREVIEW_METHODS: tuple[PreviewMethod, ...] = ("none", "auto", "latent2rgb", "taesd")
MiB = 1 << 20


@dataclass
class ServerConfig:
    folders: Folders
    database: Path
    listen: str = "127.0.0.1"
    port: int = 8188
    token: str | None = None
    cpu: bool = False
    cache_mode: CacheMode = "classic"
    cache_lru: int = 0
    extra_model_paths: list[Path] = field(default_factory=list)
    disable_custom_nodes: bool = False
    # None: the built-in nodes, built when the app starts (tests pass their own).
    registry: NodeRegistry | None = None
    max_upload_bytes: int = 50 * MiB
    max_json_bytes: int = 20 * MiB
    # A single literal input longer than this is refused at submit time: nothing reasonable needs it,
    # and a node handed one (as a file name, say) would fail late and obscurely.
    max_string_input: int = 1 * MiB
    max_image_pixels: int = 64 * MiB
    # Nodes in one prompt: validation is linear, but unbounded graphs would still tie up a thread.
    max_prompt_nodes: int = 50_000
    # extra_data (extra_pnginfo with the UI workflow, client_id...) is stored and served back by
    # /queue and /history with every prompt.
    max_extra_data_bytes: int = 4 * MiB
    clear_temp_on_start: bool = True
    # Settings, saved workflows and other per-user files (ComfyUI's user/<user>/); None: database's folder.
    user_directory: Path | None = None
    multi_user: bool = False
    max_user_file_bytes: int = 50 * MiB
    # The page served at `/`: None is Loom's canvas; a folder holds another front end's index.html.
    front_end_root: Path | None = None
    # Latent previews while sampling, unless a prompt's extra_data names its own (ComfyUI's default: none).
    preview_method: PreviewMethod = "none"
    # Console level: INFO prints "got prompt" and timings (ComfyUI's default); --quiet is WARNING.
    log_level: str = "INFO"
    # Scale-out (--ray, --ray-address): prompts run on Ray actors instead of this process.
    ray: RayConfig | None = None

    @property
    def user_root(self) -> Path:
        return self.user_directory or self.database.parent

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.listen)

    def require_token(self) -> str | None:
        """Listening beyond loopback needs a token: the configured one or a fresh random one. An empty
        one (what `--token "$VAR"` gives when the variable is unset) is refused there, not taken as
        'no authentication'; on loopback it means no token."""
        if self.token is not None and not self.token.strip():
            if not self.loopback_only:
                raise ServerConfigError(
                    f"--token is empty but --listen {self.listen} reaches beyond loopback; give a token,"
                    " or omit --token to have one generated"
                )
            self.token = None
        if self.token is None and not self.loopback_only:
            self.token = secrets.token_urlsafe(24)
        return self.token

    def listen_hosts(self) -> list[str]:
        """The --listen addresses to bind; a specific address that a wildcard of its family already
        covers is skipped (binding both would fail with 'address in use')."""
        hosts = list(dict.fromkeys(h.strip() for h in self.listen.split(",") if h.strip()))
        if not hosts:
            raise ServerConfigError("--listen names no address")
        wildcards = {"0.0.0.0": 4, "::": 6}
        covered = {wildcards[h] for h in hosts if h in wildcards}
        return [h for h in hosts if h in wildcards or _family(h) not in covered]


class ServerConfigError(ValueError):
    """The server cannot start as configured; the message says which flag to change."""


def _family(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host.strip("[]")).version
    except ValueError:
        return 4 if host == "localhost" else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return all(ipaddress.ip_address(part.strip("[]")).is_loopback for part in host.split(","))
    except ValueError:
        return False
