"""What the server is started with: address, folders, database, cache, limits, token."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.folders import Folders
from engine.registry import NodeRegistry

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

    @property
    def user_root(self) -> Path:
        return self.user_directory or self.database.parent

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.listen)

    def require_token(self) -> str | None:
        """Listening beyond loopback needs a token: the configured one or a fresh random one."""
        if self.token is None and not self.loopback_only:
            self.token = secrets.token_urlsafe(24)
        return self.token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return all(ipaddress.ip_address(part.strip("[]")).is_loopback for part in host.split(","))
    except ValueError:
        return False
