"""Translated files kept for download: `/translate_file` stores, `/download_file` serves.

    put(name, data) -> id                 folder/<id>/<name>, written atomically; id: 32 random
                                          hex digits (unguessable: a file is its uploader's)
    path(id, name)  -> Path | None        None when unknown or older than `expiry_s`
    every put and get first deletes the files older than `expiry_s`

The folder is `files.folder` from the config, else a fresh temporary folder removed when the
server stops. An upload is read whole, at most `files.max_file_bytes`.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path, PurePath
from typing import Any

from mtadapt.io import atomic_write_bytes
from mtadapt.serve.schemas import ApiError

CONTENT_TYPES = {".txt": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8",
                 ".htm": "text/html; charset=utf-8", ".po": "text/x-gettext-translation; charset=utf-8",
                 ".pot": "text/x-gettext-translation; charset=utf-8"}
_ID = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str) -> str:
    """A file name with no folder and only `A-Za-z0-9._-` (others become `_`), at most 100 chars."""
    name = _UNSAFE.sub("_", PurePath(filename.replace("\\", "/")).name).lstrip(".")[-100:]
    return name or "file.txt"


def translated_name(filename: str, target: str) -> str:
    """`app.po` -> `app.pt.po` (a template `app.pot` -> `app.pt.po`: it holds translations now)."""
    path = PurePath(safe_name(filename))
    suffix = ".po" if path.suffix.lower() == ".pot" else path.suffix
    return f"{path.stem}.{safe_name(target)}{suffix}"


class FileStore:
    """Files awaiting download, each in a folder of its own under one root."""

    def __init__(self, folder: str | None, expiry_s: float) -> None:
        self.owned = folder is None  # a temporary folder: removed by close()
        self.root = Path(tempfile.mkdtemp(prefix="mtadapt-files-")) if folder is None else Path(folder)
        self.root.mkdir(parents=True, exist_ok=True)
        self.expiry_s = expiry_s

    def purge(self) -> None:
        """Delete the files older than `expiry_s`."""
        cutoff = time.time() - self.expiry_s
        for entry in self.root.iterdir():
            if _ID.match(entry.name) and entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)

    def put(self, name: str, data: bytes) -> str:
        self.purge()
        file_id = secrets.token_hex(16)
        folder = self.root / file_id
        folder.mkdir()
        atomic_write_bytes(folder / name, data)
        return file_id

    def path(self, file_id: str, name: str) -> Path | None:
        self.purge()
        if not _ID.match(file_id) or safe_name(name) != name:
            return None
        path = self.root / file_id / name
        return path if path.is_file() else None

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)


async def uploaded_file(value: Any, max_file_bytes: int) -> tuple[str, bytes]:
    """(name, bytes) of the `file` parameter of a `/translate_file` request (`read_params`).

    Raises:
        ApiError: 400 when it is missing or not a file, 413 over `max_file_bytes`.
    """
    if value is None or isinstance(value, (str, list)):
        raise ApiError(400, "file", "file: missing; upload the file to translate as the multipart/form-data field `file`")
    data = await value.read()
    if len(data) > max_file_bytes:
        raise ApiError(413, "file", f"file: {len(data)} bytes exceeds the limit of {max_file_bytes} (files.max_file_bytes)")
    return value.filename or "file.txt", data
