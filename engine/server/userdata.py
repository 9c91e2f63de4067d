"""Per-user files (settings, saved workflows, templates a user keeps) under `<user dir>/<user>/`,
as ComfyUI's user manager keeps them.

Every path a client names is resolved inside the user's folder: absolute paths, `..`, NUL bytes and
symlinks that lead out are refused. Writes go to a temporary file in the same folder and are renamed
over the target, so a crash or a full disk never leaves half a settings file behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

DEFAULT_USER = "default"
SETTINGS_FILE = "comfy.settings.json"
USERS_FILE = "users.json"


class UserDataError(Exception):
    """A request the user store refuses; `status` is the HTTP answer ComfyUI gives for it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class UserStore:
    def __init__(self, root: Path, multi_user: bool = False, max_file_bytes: int = 50 << 20) -> None:
        self.root = root
        self.multi_user = multi_user
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self.users: dict[str, str] = {DEFAULT_USER: DEFAULT_USER}
        if multi_user:
            self.users = _read_json(root / USERS_FILE, {})

    # -- users ----------------------------------------------------------------------------------

    def user_id(self, header: str | None) -> str:
        """The `comfy-user` header names the user with --multi-user; otherwise everyone is default."""
        user = header if self.multi_user and header else DEFAULT_USER
        if user not in self.users:
            raise UserDataError(f"Unknown user: {user[:100]}", 403)
        return user

    def add_user(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise UserDataError("username not provided", 400)
        if name in self.users.values():
            raise UserDataError("Duplicate username.", 400)
        user_id = f"{re.sub('[^a-zA-Z0-9-_]+', '-', name)}_{uuid.uuid4()}"
        with self._lock:
            self.users[user_id] = name
            atomic_write(self.root / USERS_FILE, json.dumps(self.users).encode())
        return user_id

    # -- paths ----------------------------------------------------------------------------------

    def user_folder(self, user: str) -> Path:
        folder = (self.root / user).resolve()
        if folder.parent != self.root.resolve():
            raise UserDataError("Invalid user", 403)
        return folder

    def resolve(self, user: str, relative: str) -> Path:
        """`relative` (URL-encoded or not) inside the user's folder; 403 for anything that leaves it."""
        if "%" in relative:
            relative = unquote(relative)
        if not relative or "\x00" in relative or relative.startswith(("/", "\\")) or ":" in relative[:3]:
            raise UserDataError(f"Invalid path {relative[:100]!r}", 403)
        base = self.user_folder(user)
        path = (base / relative).resolve()
        if path != base and base not in path.parents:
            raise UserDataError(f"Invalid path {relative[:100]!r}", 403)
        return path

    # -- files ----------------------------------------------------------------------------------

    def write(self, path: Path, data: bytes, overwrite: bool = True) -> None:
        if len(data) > self.max_file_bytes:
            raise UserDataError(f"file is larger than {self.max_file_bytes} bytes", 413)
        if path.is_dir():
            raise UserDataError("a folder has that name", 409)
        if not overwrite and path.exists():
            raise UserDataError("File already exists", 409)
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise UserDataError(f"cannot save {path.name[:100]!r}: {exc.strerror}", 400) from None

    def move(self, source: Path, dest: Path, overwrite: bool = True) -> None:
        if not source.is_file():
            raise UserDataError("File not found", 404)
        if not overwrite and dest.exists():
            raise UserDataError("File already exists", 409)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, dest)
        except OSError as exc:
            raise UserDataError(f"cannot move to {dest.name[:100]!r}: {exc.strerror}", 400) from None

    def file_info(self, path: Path, relative_to: Path) -> dict[str, Any]:
        stat = path.stat()
        return {
            "path": path.relative_to(relative_to).as_posix(),
            "size": stat.st_size,
            "modified": stat.st_mtime,
            "created": stat.st_ctime,
        }

    def list_files(self, folder: Path, recurse: bool) -> list[Path]:
        found = folder.rglob("*") if recurse else folder.glob("*")
        return sorted(p for p in found if p.is_file() and not _temporary(p))

    def tree(self, user: str, folder: Path) -> list[dict[str, Any]]:
        """ComfyUI's /v2/userdata: every folder and file below `folder`, folders first, by name."""
        base = self.user_folder(user)
        entries: list[dict[str, Any]] = []
        for root, dirs, files in os.walk(folder):
            for name in dirs:
                path = Path(root, name)
                entries.append({"name": name, "path": path.relative_to(base).as_posix(), "type": "directory"})
            for name in files:
                path = Path(root, name)
                if _temporary(path):
                    continue
                entry: dict[str, Any] = {
                    "name": name,
                    "path": path.relative_to(base).as_posix(),
                    "type": "file",
                }
                try:
                    stat = path.stat()
                    entry |= {"size": stat.st_size, "modified": stat.st_mtime}
                except OSError:
                    pass
                entries.append(entry)
        entries.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
        return entries

    # -- settings -------------------------------------------------------------------------------

    def settings(self, user: str) -> dict[str, Any]:
        return _read_json(self.user_folder(user) / SETTINGS_FILE, {})

    def update_settings(self, user: str, changes: dict[str, Any]) -> None:
        with self._lock:
            merged = {**self.settings(user), **changes}
            path = self.user_folder(user) / SETTINGS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(merged, indent=4).encode())


TEMP_PREFIX = ".loom-partial-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temporary(path: Path) -> bool:
    return path.name.startswith(TEMP_PREFIX)


def atomic_write(path: Path, data: bytes) -> None:
    """Write beside the target, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a saved file gets the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    """A missing or corrupted file reads as `default` (ComfyUI logs and carries on, too)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return dict(default)
    return value if isinstance(value, dict) else dict(default)
