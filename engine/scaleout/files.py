"""Files between the server and workers that share no file system.

Input files go with the job: every literal string input of the prompt that names a file in the
server's input folder (or, annotated `name [output]` / `name [temp]`, in those folders) is sent as
bytes and written into the worker's own folder under the same relative name. Output files come back
with the `executed` event that names them and are written into the server's folders before the event
reaches any client, so `/view` answers as soon as a client hears of the file. Files a node writes
without naming them in its UI output (CheckpointSave, SaveLatent into a subfolder...) come back with
the prompt's final event. Two workers may both
have written `ComfyUI_00001_.png`: a name already taken on the server gets the next free counter.
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Any

from engine.folders import Folders, UnsafePathError, safe_join
from engine.scaleout.interface import FileBlob

ANNOTATION = re.compile(r"^(?P<name>.*?) \[(?P<folder>input|output|temp)\]$")
# UI output keys whose entries are files ({filename, subfolder, type}).
FILE_KEYS = ("images", "gifs", "audio", "animated", "video", "3d")
# Inputs larger than this are not shipped with a job (the worker must have them already).
MAX_INPUT_BYTES = 256 << 20
# Prompts finishing on several workers at once place their files one at a time: choosing a free name
# and writing it must not interleave.
_PLACING = threading.Lock()
COUNTER = re.compile(r"^(?P<stem>.*_)(?P<n>\d{5,})(?P<tail>_?\.[^.]+)$")


def job_inputs(prompt: dict[str, Any], folders: Folders) -> list[tuple[str, str, bytes]]:
    """(folder type, relative path, bytes) of every file the prompt's literal inputs name."""
    found: dict[tuple[str, str], bytes] = {}
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for value in inputs.values():
            if not isinstance(value, str) or not value or len(value) > 1024:
                continue
            match = ANNOTATION.match(value)
            kind, name = (match["folder"], match["name"]) if match else ("input", value)
            if (kind, name) in found:
                continue
            try:
                path = safe_join(folders.by_type(kind), name)
                if path.is_file() and path.stat().st_size <= MAX_INPUT_BYTES:
                    found[(kind, name)] = path.read_bytes()
            except (UnsafePathError, OSError, ValueError):
                continue
    return [(kind, name, data) for (kind, name), data in found.items()]


def write_inputs(inputs: list[tuple[str, str, bytes]], folders: Folders) -> None:
    """On the worker: put the job's files where its nodes look for them."""
    for kind, name, data in inputs:
        path = safe_join(folders.by_type(kind), name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)


def output_files(output: dict[str, Any], folders: Folders) -> list[FileBlob]:
    """On the worker: the bytes of every output or temp file an `executed` UI output names."""
    blobs: list[FileBlob] = []
    for entry in _file_entries(output):
        kind = entry.get("type", "output")
        if kind not in ("output", "temp"):
            continue
        subfolder, name = str(entry.get("subfolder") or ""), str(entry["filename"])
        try:
            blobs.append(
                (kind, subfolder, name, safe_join(folders.by_type(kind), subfolder, name).read_bytes())
            )
        except (UnsafePathError, OSError):
            continue
    return blobs


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime) of every file under `folder`, to find what a prompt writes."""
    found: dict[str, tuple[int, int]] = {}
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.name.endswith(".part"):
                stat = path.stat()
                found[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def written_since(before: dict[str, tuple[int, int]], folders: Folders, sent: set[str]) -> list[FileBlob]:
    """On the worker: the output files new or changed since `before` that no event carried yet
    (`sent`: their relative paths)."""
    blobs: list[FileBlob] = []
    for relative, state in snapshot(folders.output).items():
        if before.get(relative) == state or relative in sent:
            continue
        subfolder, _, name = relative.rpartition("/")
        with contextlib.suppress(OSError):
            blobs.append(("output", subfolder, name, (folders.output / relative).read_bytes()))
    return blobs


def place_files(blobs: list[FileBlob], output: dict[str, Any], folders: Folders) -> None:
    """On the server: write the files and rename, in `output`, any whose name was taken."""
    with _PLACING:
        renamed = _place(blobs, folders)
    for entry in _file_entries(output):
        key = (entry.get("type", "output"), str(entry.get("subfolder") or ""), str(entry["filename"]))
        if key in renamed:
            entry["filename"] = renamed[key]


def _place(blobs: list[FileBlob], folders: Folders) -> dict[tuple[str, str, str], str]:
    renamed: dict[tuple[str, str, str], str] = {}
    for kind, subfolder, name, data in blobs:
        folder = safe_join(folders.by_type(kind), subfolder) if subfolder else folders.by_type(kind)
        folder.mkdir(parents=True, exist_ok=True)
        target = safe_join(folder, name)
        while target.exists() and target.read_bytes() != data:
            target = safe_join(folder, _next_name(target.name))
        if not target.exists():
            _write_new(target, data)
        if target.name != name:
            renamed[(kind, subfolder, name)] = target.name
    return renamed


def _write_new(target: Path, data: bytes) -> None:
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)


def _next_name(name: str) -> str:
    """ComfyUI_00001_.png → ComfyUI_00002_.png; other names get a numbered suffix."""
    match = COUNTER.match(name)
    if match:
        width = len(match["n"])
        return f"{match['stem']}{int(match['n']) + 1:0{width}d}{match['tail']}"
    stem, dot, ext = name.rpartition(".")
    stem, ext = (stem, dot + ext) if dot else (name, "")
    base, _, number = stem.rpartition("-w")
    if base and number.isdigit():
        return f"{base}-w{int(number) + 1}{ext}"
    return f"{stem}-w1{ext}"


def _file_entries(output: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for key in FILE_KEYS:
        values = output.get(key)
        if isinstance(values, list):
            entries += [v for v in values if isinstance(v, dict) and isinstance(v.get("filename"), str)]
    return entries
