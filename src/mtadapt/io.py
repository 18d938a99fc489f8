"""Atomic writes and the one line reader: every file mtadapt writes or reads as lines goes here.

Lines are split on "\\n" only, and a "\\r" right before it is dropped ("\\r\\n" files):

    split_lines("a\\u2028b\\nc\\r\\n")  == ["a\\u2028b", "c"]
    "a\\u2028b\\nc\\r\\n".splitlines() == ["a", "b", "c"]      # never use this on data

`str.splitlines()` (and text-mode files) also split on U+2028, U+2029, \\x0b, \\x0c,
\\x1c-\\x1e, \\x85 and a lone \\r: a sentence holding one of them becomes two lines, and one
side of a parallel corpus, or a hypothesis file against its references, silently shifts.

Writes go to a temporary file in the target's folder, are flushed to disk (fsync), then moved
over the target with `os.replace`: a reader, or a run killed at any instant, sees the old
file or the new one, never half of one.

    atomic_write_text(path, join_lines(lines))
    atomic_write_json(path, {"step": 3})
    atomic_write_with(path, lambda tmp: save_file(tensors, tmp))   # any writer taking a path
    replace_folder(folder, lambda tmp: build_into(tmp))             # a whole folder at once

Torch-free, and it imports only `mtadapt.errors`: every layer may use it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mtadapt.errors import DataError


# ---------------------------------------------------------------------------------------
# Lines.


def split_lines(text: str) -> list[str]:
    """The lines of `text`, split on "\\n" only; a trailing "\\r" of each line is dropped.

    A final line without "\\n" counts; a final "\\n" does not start another line:
    `"a\\nb"` and `"a\\nb\\n"` are both `["a", "b"]`, `""` is `[]`, `"\\n"` is `[""]`.
    """
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def join_lines(lines: Iterable[str]) -> str:
    """The text of `lines`, each ended by "\\n" (the inverse of `split_lines`)."""
    return "".join(line + "\n" for line in lines)


def strip_line_ending(raw: bytes) -> bytes:
    """`raw` without its b"\\n" or b"\\r\\n" ending (a lone b"\\r" mid-line is kept)."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    return raw


def decode_line(raw: bytes, path: str, line_no: int, line_start: int) -> str:
    """Decodes one raw line (its "\\n" or "\\r\\n" ending removed) as strict UTF-8.

    Args:
        raw: the line's bytes, as read from a binary file.
        path: file name, for the error message.
        line_no: 1-based line number, for the error message.
        line_start: byte offset of the line in the file, to report the absolute offset.

    Raises:
        DataError: `path:line: invalid UTF-8 at byte offset N ...`.
    """
    raw = strip_line_ending(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.start + 4]
        raise DataError(
            f"{path}:{line_no}: invalid UTF-8 at byte offset {line_start + err.start} of the file "
            f"(byte {err.start} of the line): {err.reason}, bytes {bad!r}; "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    # A byte-order mark is an encoding artifact, not text; editors on Windows add it.
    if line_no == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text


def decoded_lines(stream: IO[bytes], path: str) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, decoded line) of a binary stream, split on b"\\n" only."""
    offset = 0
    for line_no, raw in enumerate(stream, start=1):  # binary iteration splits on b"\n" only
        yield line_no, decode_line(raw, path, line_no, offset)
        offset += len(raw)


def lines_of_bytes(data: bytes, name: str) -> list[str]:
    """The decoded lines of `data` (e.g. all of stdin); `name` is used in error messages."""
    lines, offset = [], 0
    raws = data.split(b"\n")
    if raws and raws[-1] == b"":
        raws.pop()
    for line_no, raw in enumerate(raws, start=1):
        lines.append(decode_line(raw, name, line_no, offset))
        offset += len(raw) + 1
    return lines


def check_input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """`path` as a Path, if it is a readable file.

    Raises:
        DataError: no such file, or a folder (names `what`, e.g. "reference", and the path).
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} file {path} is a folder; give a file, one sentence a line")
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    return path


def read_lines(path: str | os.PathLike, what: str = "input") -> list[str]:
    """All lines of a UTF-8 text file, split on "\\n" only (see the module docstring).

    Raises:
        DataError: no such file, a folder, or invalid UTF-8 (file:line and byte offset).
    """
    path = check_input_file(path, what)
    with path.open("rb") as stream:
        return [line for _, line in decoded_lines(stream, str(path))]


def iter_lines(path: str | os.PathLike) -> Iterator[str]:
    """The lines of a UTF-8 file, one at a time (streamed, for files too big to hold), split
    on "\\n" only, as `read_lines`.

    Raises:
        DataError: no such file, a folder, or invalid UTF-8 (file:line and byte offset).
    """
    path = check_input_file(path)
    with path.open("rb") as stream:
        for _, line in decoded_lines(stream, str(path)):
            yield line


def iter_stream_lines(stream: IO[str]) -> Iterator[str]:
    """The lines of an open text stream (stdin), split on "\\n" only, as `iter_lines`."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:  # bytes: no universal newlines, strict UTF-8 with line numbers
        for _, line in decoded_lines(buffer, "<stdin>"):
            yield line
        return
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(newline="\n")  # no universal newlines: a lone "\r" stays in its line
    for line in stream:
        line = line[:-1] if line.endswith("\n") else line
        yield line[:-1] if line.endswith("\r") else line


# ---------------------------------------------------------------------------------------
# Atomic writes.


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[str]]:
    """Write a UTF-8 text file atomically, streamed: `with atomic_writer(p) as f: f.write(...)`.

    The text goes to a unique temporary file beside `path` (fsynced), renamed onto `path` when
    the block ends without an error; on an error the temporary file is removed.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """`path` as a Path, if a file can be written there: call before the work, not after.

    Raises:
        DataError: its folder does not exist or is not writable, or `path` is a folder.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise DataError(f"{what} {path}: folder {folder} does not exist; create it first (mkdir -p {folder})")
    if not os.access(folder, os.W_OK):
        raise DataError(f"{what} {path}: folder {folder} is not writable")
    return path


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform/filesystem.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Atomically create or replace `path` with what `write(tmp_path)` writes to `tmp_path`.

    `write` may be any function writing a file at a path (e.g. `safetensors.save_file`). The
    temporary file is unique (`.<name>.<random>.tmp` in the same folder) and removed on error.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically create or replace `path` with `data`."""
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically create or replace `path` with `text` (UTF-8, no newline translation)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_lines(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Atomically write `lines`, each ended by "\\n"."""
    return atomic_write_text(path, join_lines(lines))


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = 1, **dumps: Any) -> Path:
    """Atomically write `data` as JSON (ended by "\\n")."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps) + "\n")


def append_line(path: str | os.PathLike, line: str, fsync: bool = False) -> None:
    """Append one line ("\\n" added) to a log such as metrics.jsonl or results.jsonl.

    An append is not atomic: a run killed mid-write can leave a torn last line, which the
    readers of such logs skip (`read_jsonl_rows`). `fsync` makes the row durable at once.
    """
    if "\n" in line:
        raise ValueError(f"append_line writes one line; got {line.count(chr(10)) + 1}")
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def read_jsonl_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a log written by `append_line` (none when it does not exist).

    Only a torn last line (a write cut off by a kill) is skipped; a malformed line before it
    means the file was damaged otherwise.

    Raises:
        DataError: a malformed line that is not the last one (names file:line).
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = read_lines(path, "log")
    rows = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if line_no == len(lines):
                break  # torn by a kill mid-append
            raise DataError(f"{path}:{line_no}: malformed JSON at column {err.colno}: {err.msg}") from None
    return rows


def replace_folder(folder: str | os.PathLike, build: Callable[[Path], Any]) -> Path:
    """Build a folder with `build(tmp_folder)`, then put it in place of `folder`.

    The temporary folder (`.<name>.<random>.tmp` beside `folder`) is unique, so concurrent
    builders do not collide. The swap is two renames (`folder` -> `.<name>.<random>.old`,
    tmp -> `folder`): a kill between them leaves both complete, never a half-built `folder`.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".old"))
        os.replace(folder, old)  # onto the empty folder mkdtemp made
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_folder(folder.parent)
    return folder
