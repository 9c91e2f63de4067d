"""Loading packs: what loads, what is skipped, and how each failure is reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.custom_nodes import PackReport, load_custom_nodes
from engine.executor import Executor
from engine.graph import validate_prompt
from engine.registry import NodeRegistry
from nodes import builtin_registry

GOOD_NODE = """
class {name}:
    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"value": ("INT", {{"default": 1}})}}}}
    RETURN_TYPES = ("INT",)
    FUNCTION = "go"
    OUTPUT_NODE = True
    def go(self, value):
        {body}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def comfy_pack(
    folder: Path,
    name: str,
    node_ids: list[str],
    body: str = "return {'ui': {'v': [value]}, 'result': (value,)}",
) -> None:
    classes = "".join(GOOD_NODE.format(name=n, body=body) for n in node_ids)
    mapping = ", ".join(f"{n!r}: {n}" for n in node_ids)
    write(folder / name / "__init__.py", f"{classes}\nNODE_CLASS_MAPPINGS = {{{mapping}}}\n")


@pytest.fixture
def registry() -> NodeRegistry:
    return builtin_registry()


def load(registry: NodeRegistry, folder: Path) -> PackReport:
    return load_custom_nodes(registry, [folder])


def test_folder_and_single_file_packs_load(registry: NodeRegistry, tmp_path: Path) -> None:
    comfy_pack(tmp_path, "pack_a", ["PackANode"])
    write(
        tmp_path / "single_b.py",
        GOOD_NODE.format(name="SingleB", body="return (value,)")
        + "\nNODE_CLASS_MAPPINGS = {'SingleB': SingleB}\n",
    )
    write(tmp_path / "notes.txt", "not a pack")
    report = load(registry, tmp_path)
    assert [(p.name, p.status, p.nodes) for p in report.packs] == [
        ("pack_a", "loaded", ["PackANode"]),
        ("single_b", "loaded", ["SingleB"]),
    ]
    assert registry.get("PackANode").python_module == "custom_nodes.pack_a"  # type: ignore[union-attr]
    assert all(p.import_seconds >= 0 for p in report.packs)


def test_disabled_packs_and_the_disable_all_flag(registry: NodeRegistry, tmp_path: Path) -> None:
    comfy_pack(tmp_path, "off.disabled", ["OffNode"])
    write(tmp_path / "off_too.py.disabled", "raise SystemExit")
    assert load(registry, tmp_path).packs == []
    comfy_pack(tmp_path, "on_pack", ["OnNode"])
    assert load_custom_nodes(registry, [tmp_path], disable_all=True).packs == []
    assert "OnNode" not in registry


def test_native_nodes_in_a_pack(registry: NodeRegistry, tmp_path: Path) -> None:
    write(
        tmp_path / "native_pack" / "nodes.py",
        """
        from engine.native import Node

        class Doubler(Node):
            '''Doubles.'''
            def run(self, value: int = 1) -> int:
                return value * 2
    """,
    )
    write(tmp_path / "native_pack" / "__init__.py", "from .nodes import Doubler\nWEB_DIRECTORY = 'js'\n")
    (tmp_path / "native_pack" / "js").mkdir()
    pack = load(registry, tmp_path).packs[0]
    assert pack.status == "loaded" and pack.nodes == ["Doubler"]
    assert pack.web_directory == str((tmp_path / "native_pack" / "js").resolve())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def broken(:\n", "SyntaxError"),
        ("import loom_no_such_module\n", "ModuleNotFoundError: No module named 'loom_no_such_module'"),
        ("raise RuntimeError('no GPU found')\n", "RuntimeError: no GPU found"),
        ("import sys\nsys.exit(1)\n", "SystemExit"),
    ],
)
def test_pack_that_fails_to_import_is_reported_and_skipped(
    registry: NodeRegistry, tmp_path: Path, source: str, expected: str
) -> None:
    write(tmp_path / "bad_pack" / "__init__.py", source)
    comfy_pack(tmp_path, "good_pack", ["GoodNode"])
    report = load(registry, tmp_path)
    bad = report.get("bad_pack")
    assert bad is not None and bad.status == "failed" and expected in (bad.error or "")
    assert report.get("good_pack").status == "loaded" and "GoodNode" in registry  # type: ignore[union-attr]


def test_missing_dependency_points_at_requirements_without_installing(
    registry: NodeRegistry, tmp_path: Path
) -> None:
    write(tmp_path / "needs_deps" / "__init__.py", "import loom_missing_dependency\n")
    write(tmp_path / "needs_deps" / "requirements.txt", "loom_missing_dependency==1.0\n")
    error = load(registry, tmp_path).packs[0].error or ""
    assert "requirements.txt" in error and "does not install" in error


def test_node_without_function_registers_with_a_warning(registry: NodeRegistry, tmp_path: Path) -> None:
    comfy_pack(tmp_path, "half_bad", ["FineNode"])
    with (tmp_path / "half_bad" / "__init__.py").open("a") as init:
        init.write("class NoFunction:\n    @classmethod\n    def INPUT_TYPES(cls):\n        return {}\n")
        init.write("    RETURN_TYPES = ()\nNODE_CLASS_MAPPINGS['NoFunction'] = NoFunction\n")
    pack = load(registry, tmp_path).packs[0]
    assert pack.status == "loaded" and pack.nodes == ["FineNode", "NoFunction"]
    assert "FUNCTION" in pack.warnings["NoFunction"][0] and "FineNode" not in pack.warnings


def test_node_that_cannot_be_described_never_drops_its_pack(registry: NodeRegistry, tmp_path: Path) -> None:
    comfy_pack(tmp_path, "one_broken", ["StillFine"])
    with (tmp_path / "one_broken" / "__init__.py").open("a") as init:
        init.write(
            "class Broken:\n    @classmethod\n    def INPUT_TYPES(cls):\n        raise KeyError('x')\n"
        )
        init.write("    RETURN_TYPES = ()\n    FUNCTION = 'go'\nNODE_CLASS_MAPPINGS['Broken'] = Broken\n")
    pack = load(registry, tmp_path).packs[0]
    assert pack.status == "loaded" and pack.nodes == ["StillFine"] and "StillFine" in registry
    assert "INPUT_TYPES() raised KeyError" in pack.node_errors["Broken"] and "Broken" not in registry


@pytest.mark.parametrize(
    ("source", "missing"),
    [
        ("import comfy.loom_no_such_part\n", "ComfyUI's module 'comfy.loom_no_such_part'"),
        ("from nodes import LoomNoSuchNode\n", "'LoomNoSuchNode' from ComfyUI's module 'nodes'"),
    ],
)
def test_missing_comfy_module_is_called_a_loom_gap(
    registry: NodeRegistry, tmp_path: Path, source: str, missing: str
) -> None:
    write(tmp_path / "gap_pack" / "__init__.py", source)
    write(tmp_path / "gap_pack" / "requirements.txt", "numpy\n")
    error = load(registry, tmp_path).packs[0].error or ""
    assert missing in error and "gap in Loom's ComfyUI compatibility" in error
    assert "requirements.txt" not in error


def test_packs_cannot_replace_builtins_and_clashes_are_reported(
    registry: NodeRegistry, tmp_path: Path
) -> None:
    comfy_pack(tmp_path, "a_first", ["SharedNode", "EmptyImage"])
    comfy_pack(tmp_path, "b_second", ["SharedNode", "OwnNode"])
    report = load(registry, tmp_path)
    first, second = report.get("a_first"), report.get("b_second")
    assert first is not None and second is not None
    assert first.nodes == ["SharedNode"] and first.conflicts == ["EmptyImage"]
    assert second.nodes == ["OwnNode"] and second.conflicts == ["SharedNode"]
    assert registry.get("EmptyImage").python_module == "nodes.image.basic"  # type: ignore[union-attr]
    assert registry.get("SharedNode").python_module == "custom_nodes.a_first"  # type: ignore[union-attr]


def test_node_that_raises_fails_its_prompt_only(registry: NodeRegistry, tmp_path: Path) -> None:
    comfy_pack(tmp_path, "raising", ["RaisingNode"], body="raise ValueError(f'bad value {value}')")
    comfy_pack(tmp_path, "calm", ["CalmNode"])
    load(registry, tmp_path)
    executor = Executor(registry)

    def run(class_type: str) -> str:
        checked = validate_prompt(registry, {"1": {"class_type": class_type, "inputs": {"value": 3}}})
        result = executor.execute(checked.prompt, "p", checked.outputs)
        return result.error["exception_message"] if result.error else result.status

    assert run("RaisingNode") == "bad value 3"
    assert run("CalmNode") == "success"
