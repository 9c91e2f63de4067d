"""Command line: `python main.py` serves; `python main.py run WORKFLOW.json` runs one workflow headless.

The server's modules are imported only when serving, so `run` and `--help` stay quick."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import folders, threads
from engine.cache import OutputCache
from engine.folders import Folders

PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")

if TYPE_CHECKING:
    from engine.scaleout.config import RayConfig
    from engine.server.config import ServerConfig


def add_folder_and_cache_flags(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """Flags shared by the server and `run`; a subcommand suppresses its defaults so that flags given
    before the subcommand are not overwritten."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--output-directory", type=Path, default=default(None), help="SaveImage's folder")
    parser.add_argument("--input-directory", type=Path, default=default(None), help="LoadImage's folder")
    parser.add_argument("--temp-directory", type=Path, default=default(None), help="PreviewImage's folder")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=default(None),
        metavar="N",
        help="CPU threads for sampling and VAE work (default: chosen from the work's size and free cores)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=default(False),
        help="run the UNet through torch.compile (slow first step; for long GPU sessions; off by default)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-lru", type=int, default=default(0), metavar="N", help="keep the N most recent node outputs"
    )
    cache.add_argument(
        "--cache-none",
        action="store_true",
        default=default(False),
        help="keep no node outputs between prompts",
    )


def _configure_compile(args: argparse.Namespace) -> None:
    from engine.diffusion import devices

    devices.manager().compile_unet = bool(getattr(args, "compile", False))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """ComfyUI's names for the flags both servers have, plus Loom's --database and --token."""
    parser.add_argument(
        "--listen",
        nargs="?",
        const="0.0.0.0,::",
        default="127.0.0.1",
        metavar="IP",
        help="address(es) to listen on, comma-separated; without a value, all (then a token is required)",
    )
    parser.add_argument("--port", type=int, default=8188, help="port to listen on")
    parser.add_argument("--cpu", action="store_true", help="run everything on the CPU")
    parser.add_argument(
        "--extra-model-paths-config",
        type=Path,
        nargs="+",
        action="append",
        default=[],
        metavar="PATH",
        help="YAML file(s) with more model folders",
    )
    parser.add_argument(
        "--disable-all-custom-nodes", action="store_true", help="do not load any custom node pack"
    )
    parser.add_argument("--max-upload-size", type=float, default=50, metavar="MB", help="largest upload")
    parser.add_argument(
        "--database",
        type=Path,
        default=None,
        metavar="PATH",
        help="queue and history database: a .db file, or a folder to hold loom.db (default: user/loom.db)",
    )
    parser.add_argument(
        "--token", default=None, help="access token; required beyond loopback (one is generated if absent)"
    )
    add_front_end_flags(parser)
    add_scale_out_flags(parser)


def add_scale_out_flags(parser: argparse.ArgumentParser) -> None:
    """Run prompts on Ray actors (docs/scale-out.md); needs `pip install -r requirements-ray.txt`."""
    ray = parser.add_mutually_exclusive_group()
    ray.add_argument("--ray", action="store_true", help="run prompts on workers in a local Ray instance")
    ray.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="run prompts on a Ray cluster (e.g. 10.0.0.5:6379)",
    )
    parser.add_argument(
        "--ray-workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="Ray workers (one device each; default: one per GPU of the cluster, else 1)",
    )
    parser.add_argument(
        "--worker-labels",
        default="",
        metavar="SPEC",
        help="labels per Ray worker, e.g. '0=sdxl,fast;1=sd15;*=any' (a prompt's extra_data.worker pins it)",
    )
    parser.add_argument(
        "--ray-routing",
        choices=("affinity", "round-robin"),
        default="affinity",
        help="how prompts pick a Ray worker: where their models are loaded (default), or in turn "
        "(for comparison)",
    )


def ray_config(args: argparse.Namespace) -> RayConfig | None:
    from engine.scaleout.config import RayConfig, parse_labels

    if not (args.ray or args.ray_address):
        if args.ray_workers or args.worker_labels:
            raise ScaleOutFlagError("--ray-workers and --worker-labels need --ray or --ray-address")
        return None
    if importlib.util.find_spec("ray") is None:
        raise ScaleOutFlagError("--ray needs Ray: pip install -r requirements-ray.txt")
    try:
        labels = parse_labels(args.worker_labels)
    except ValueError as exc:
        raise ScaleOutFlagError(str(exc)) from None
    return RayConfig(args.ray_address, args.ray_workers, labels, routing=args.ray_routing)


class ScaleOutFlagError(ValueError):
    """Scale-out flags that cannot work together, or Ray not installed."""


def add_front_end_flags(parser: argparse.ArgumentParser) -> None:
    """The page at `/`, user data, previews and console output (ComfyUI's flag names)."""
    page = parser.add_mutually_exclusive_group()
    page.add_argument(
        "--front-end",
        choices=("loom", "comfy"),
        default="loom",
        help="page served at /: Loom's canvas, or ComfyUI's official front end (comfyui-frontend-package)",
    )
    page.add_argument(
        "--front-end-root", type=Path, default=None, metavar="PATH", help="serve this front end"
    )
    parser.add_argument(
        "--user-directory", type=Path, default=None, metavar="PATH", help="settings and saved workflows"
    )
    parser.add_argument("--multi-user", action="store_true", help="one user folder per comfy-user header")
    parser.add_argument(
        "--preview-method",
        choices=PREVIEW_METHODS,
        default="none",
        help="latent previews while sampling (taesd needs its decoder in vae_approx, else latent2rgb); "
        "a prompt may ask for its own",
    )
    console = parser.add_mutually_exclusive_group()
    console.add_argument(
        "--verbose",
        nargs="?",
        const="DEBUG",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="console log level (default INFO; without a value, DEBUG)",
    )
    console.add_argument("--quiet", action="store_true", help="print only warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py", description="Loom: node-graph workflows for Stable Diffusion"
    )
    add_folder_and_cache_flags(parser)
    add_server_flags(parser)
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run an API-format workflow without a server")
    run.add_argument("workflow", type=Path, help="API-format workflow JSON")
    add_folder_and_cache_flags(run, suppress=True)
    return parser


def configure_folders(args: argparse.Namespace) -> Folders:
    configured = Folders.under(Path.cwd(), models_base=folders.PROJECT_ROOT / "models")
    configured.output = args.output_directory or configured.output
    configured.input = args.input_directory or configured.input
    configured.temp = args.temp_directory or configured.temp
    folders.configure(configured)
    return configured


def make_cache(args: argparse.Namespace) -> OutputCache:
    if args.cache_none:
        return OutputCache("none")
    if args.cache_lru:
        return OutputCache("lru", lru_size=args.cache_lru)
    return OutputCache()


def run_workflow(args: argparse.Namespace) -> int:
    from engine.custom_nodes import load_custom_nodes
    from engine.executor import Executor
    from engine.graph import describe_errors, validate_prompt
    from nodes import builtin_registry

    try:
        prompt = json.loads(args.workflow.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.workflow}: {exc}", file=sys.stderr)
        return 2
    output_folders = configure_folders(args)
    threads.configure(args.threads)
    _configure_compile(args)
    registry = builtin_registry()
    load_custom_nodes(registry, disable_all=args.disable_all_custom_nodes)
    checked = validate_prompt(registry, prompt)
    if checked.node_errors or not checked.ok:
        print(describe_errors(checked), file=sys.stderr)
    if not checked.ok:
        return 2

    def show(event: str, data: dict[str, Any]) -> None:
        if event == "executing" and data["node"] is not None:
            shown = data["display_node"]  # nodes made by expansion show as the node that made them
            print(f"running #{shown} ({checked.prompt[shown]['class_type']})", file=sys.stderr)

    executor = Executor(registry, make_cache(args))
    result = executor.execute(checked.prompt, str(uuid.uuid4()), checked.outputs, listener=show)
    if result.status != "success":
        error = result.error or {}
        print(
            f"{result.status}: node #{error.get('node_id')} ({error.get('node_type')}): "
            f"{error.get('exception_message', 'interrupted')}",
            file=sys.stderr,
        )
        return 1
    for ui in result.outputs.values():
        for image in ui.get("images", []):
            root = output_folders.by_type(image["type"])
            print(root / image["subfolder"] / image["filename"])
    return 0


def database_path(given: Path | None) -> Path:
    if given is None:
        return Path.cwd() / "user" / "loom.db"
    if given.is_dir() or not given.suffix:
        return given / "loom.db"
    return given


def server_config(args: argparse.Namespace) -> ServerConfig:
    from engine.diffusion import devices
    from engine.server.config import ServerConfig

    cache = make_cache(args)
    devices.configure(force_cpu=args.cpu)
    threads.configure(args.threads)
    _configure_compile(args)
    configured = configure_folders(args)
    extra_paths = [path for group in args.extra_model_paths_config for path in group]
    for path in extra_paths:
        configured.add_extra_paths(path)
    return ServerConfig(
        folders=configured,
        database=database_path(args.database),
        listen=args.listen,
        port=args.port,
        token=args.token,
        cpu=args.cpu,
        cache_mode=cache.mode,
        cache_lru=cache.lru_size,
        extra_model_paths=extra_paths,
        disable_custom_nodes=args.disable_all_custom_nodes,
        max_upload_bytes=int(args.max_upload_size * (1 << 20)),
        user_directory=args.user_directory or Path.cwd() / "user",
        multi_user=args.multi_user,
        front_end_root=front_end_root(args),
        preview_method=args.preview_method,
        log_level="WARNING" if args.quiet else args.verbose,
        ray=ray_config(args),
    )


class FrontEndError(ValueError):
    """--front-end comfy without the package, or a --front-end-root with no index.html."""


def front_end_root(args: argparse.Namespace) -> Path | None:
    if args.front_end_root is not None:
        root = args.front_end_root.resolve()
        if not (root / "index.html").is_file():
            raise FrontEndError(f"--front-end-root {root}: no index.html there")
        return root
    if args.front_end == "comfy":
        from engine.server.routes_frontend import comfy_front_end

        found = comfy_front_end()
        if found is None:
            raise FrontEndError(
                "--front-end comfy needs the comfyui-frontend-package: pip install -r requirements.txt"
            )
        return found
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_workflow(args)
    from engine.folders import ExtraPathsError
    from engine.server import serve
    from engine.server.config import ServerConfigError
    from engine.store_check import StoreError, check_database

    try:
        config = server_config(args)
    except ExtraPathsError as exc:
        print(f"--extra-model-paths-config: {exc}", file=sys.stderr)
        return 2
    except (FrontEndError, ScaleOutFlagError) as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        config.require_token()
        config.listen_hosts()
        check_database(config.database)  # before packs load: a bad file is reported at once
        serve(config)
    except (ServerConfigError, StoreError) as exc:
        print(f"Loom cannot start: {exc}", file=sys.stderr)
        return 2
    return 0
