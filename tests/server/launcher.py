"""`python -m tests.server.launcher [--without-models] [main.py flags]`: the real server with the test
nodes registered; `--without-models` hides every model folder (the canvas then opens its model-free
graph)."""

from __future__ import annotations

import sys

from engine.cli import build_parser, server_config
from engine.server import serve
from nodes import builtin_registry
from tests.engine import counting_nodes
from tests.server import ray_nodes, server_nodes

# What Ray workers register besides the built-in nodes: the same test nodes as this server.
TEST_NODE_MODULES = ["tests.engine.counting_nodes", "tests.server.server_nodes", "tests.server.ray_nodes"]


def main(argv: list[str]) -> None:
    without_models = "--without-models" in argv
    config = server_config(build_parser().parse_args([a for a in argv if a != "--without-models"]))
    if without_models:
        config.folders.models = {kind: [] for kind in config.folders.models}
    registry = builtin_registry()
    registry.register_module(counting_nodes)
    registry.register_module(server_nodes)
    if config.ray is not None:
        registry.register_module(ray_nodes)
        config.ray.node_modules = TEST_NODE_MODULES
    config.registry = registry
    serve(config)


if __name__ == "__main__":
    main(sys.argv[1:])
