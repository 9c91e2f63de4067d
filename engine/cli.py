"""Command line: `python main.py` serves; `python main.py run WORKFLOW.json` runs one workflow headless."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from engine import folders
from engine.cache import OutputCache
from engine.folders import Folders


def add_folder_and_cache_flags(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """Flags shared by the server and `run`; a subcommand suppresses its defaults so that flags given
    before the subcommand are not overwritten."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--output-directory", type=Path, default=default(None), help="SaveImage's folder")
    parser.add_argument("--input-directory", type=Path, default=default(None), help="LoadImage's folder")
    parser.add_argument("--temp-directory", type=Path, default=default(None), help="PreviewImage's folder")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py", description="Loom: node-graph workflows for Stable Diffusion"
    )
    add_folder_and_cache_flags(parser)
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
    from engine.executor import Executor
    from engine.graph import describe_errors, validate_prompt
    from nodes import builtin_registry

    try:
        prompt = json.loads(args.workflow.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.workflow}: {exc}", file=sys.stderr)
        return 2
    output_folders = configure_folders(args)
    registry = builtin_registry()
    checked = validate_prompt(registry, prompt)
    if checked.node_errors or not checked.ok:
        print(describe_errors(checked), file=sys.stderr)
    if not checked.ok:
        return 2

    def show(event: str, data: dict[str, Any]) -> None:
        if event == "executing" and data["node"] is not None:
            print(f"running #{data['node']} ({checked.prompt[data['node']]['class_type']})", file=sys.stderr)

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_workflow(args)
    build_parser().print_help()
    return 0
