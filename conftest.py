"""Loom's pytest plugin for custom node packs (the `loom_pack` fixture), for every test in the repo."""

pytest_plugins = ["engine.testing"]
