"""The headless runner as a user calls it: `python main.py run WORKFLOW.json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def loom(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_example_workflow_writes_pngs(tmp_path: Path) -> None:
    done = loom(
        "run",
        ROOT / "workflows" / "invert_checker.json",
        "--output-directory",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    written = [Path(line) for line in done.stdout.split()]
    assert len(written) == 2 and all(p.is_file() for p in written)
    assert Image.open(written[0]).size == (256, 256)
    assert "ImageBlend" in Image.open(written[0]).text["prompt"]


def test_invalid_workflow_prints_node_errors_and_fails(tmp_path: Path) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(workflow))
    done = loom("run", path, cwd=tmp_path)
    assert done.returncode == 2
    assert "node #1 (EmptyImage)" in done.stderr and "Value 0 smaller than min of 1: width" in done.stderr
    assert not (tmp_path / "output").exists()


def test_unreadable_workflow_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    done = loom("run", tmp_path / "broken.json", cwd=tmp_path)
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_threads_flag_is_honoured(tmp_path: Path) -> None:
    """`--threads N` (before or after `run`) fixes the count the policy gives sampling and VAE work."""
    import torch

    from engine import cli, threads

    before = torch.get_num_threads()
    workflow = ROOT / "workflows" / "invert_checker.json"
    try:
        for argv in (["--threads", "3", "run", str(workflow)], ["run", str(workflow), "--threads", "2"]):
            argv += ["--output-directory", str(tmp_path / "out")]
            assert cli.main(argv) == 0
            expected = int(argv[argv.index("--threads") + 1])
            assert threads.policy().override == expected
            with threads.limited(1e18) as chosen:
                assert chosen == expected == torch.get_num_threads()
        assert cli.main(["run", str(workflow), "--output-directory", str(tmp_path / "out")]) == 0
        assert threads.policy().override is None
    finally:
        threads.configure(None)
        torch.set_num_threads(before)


def test_threads_flag_rejects_zero(tmp_path: Path) -> None:
    done = loom("--threads", "0", "run", ROOT / "workflows" / "invert_checker.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "--threads" in done.stderr and "at least 1" in done.stderr
