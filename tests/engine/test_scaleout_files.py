"""Files between server and workers that share no file system: inputs go with the job, outputs come
back with their event, and a name two workers both chose gets the next free counter."""

from __future__ import annotations

from pathlib import Path

from engine.folders import Folders
from engine.scaleout.files import job_inputs, output_files, place_files, write_inputs


def folders(root: Path) -> Folders:
    made = Folders.under(root)
    for path in (made.output, made.input, made.temp):
        path.mkdir(parents=True)
    return made


def test_inputs_named_by_the_prompt_travel_and_nothing_else(tmp_path: Path) -> None:
    server, worker = folders(tmp_path / "server"), folders(tmp_path / "worker")
    (server.input / "sub").mkdir()
    (server.input / "sub" / "a.png").write_bytes(b"A")
    (server.output / "b.png").write_bytes(b"B")
    (tmp_path / "secret").write_bytes(b"S")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "sub/a.png"}},
        "2": {"class_type": "LoadImageOutput", "inputs": {"image": "b.png [output]"}},
        "3": {"class_type": "X", "inputs": {"text": "../../secret", "other": "missing.png", "n": 3}},
    }
    inputs = job_inputs(prompt, server)
    assert sorted((kind, name) for kind, name, _ in inputs) == [("input", "sub/a.png"), ("output", "b.png")]
    write_inputs(inputs, worker)
    assert (worker.input / "sub" / "a.png").read_bytes() == b"A"
    assert (worker.output / "b.png").read_bytes() == b"B"


def test_outputs_come_back_and_taken_names_are_renamed(tmp_path: Path) -> None:
    server, worker = folders(tmp_path / "server"), folders(tmp_path / "worker")
    (server.output / "t_00001_.png").write_bytes(b"from another worker")
    (worker.output / "t_00001_.png").write_bytes(b"mine")
    (worker.temp / "p.png").write_bytes(b"preview")
    output = {
        "images": [
            {"filename": "t_00001_.png", "subfolder": "", "type": "output"},
            {"filename": "p.png", "subfolder": "", "type": "temp"},
        ]
    }
    blobs = output_files(output, worker)
    assert len(blobs) == 2
    place_files(blobs, output, server)
    assert output["images"][0]["filename"] == "t_00002_.png"
    assert (server.output / "t_00002_.png").read_bytes() == b"mine"
    assert (server.output / "t_00001_.png").read_bytes() == b"from another worker"
    assert (server.temp / "p.png").read_bytes() == b"preview"
