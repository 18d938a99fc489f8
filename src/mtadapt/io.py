"""Atomic writes and the one line reader: every file mtadapt writes or reads as lines goes here.

Lines are split on "\\n" only, and a "\\r" right before it is dropped ("\\r\\n" files):

    split_lines("a\\u2028b\\nc\\r\\n")  == ["a\\u2028b", "c"]
    "a\\u2028b\\nc\\r\\n".splitlines() == ["a", "b", "c"]      # never use this on data

`str.splitlines()` (and text-mode files) also split on U+2028, U+2029, \\x0b, \\x0c,
\\x1c-\\x1e, \\x85 and a lone \\r: a sentence holding one of them becomes two lines, and one
side of a parallel corpus, or a hypothesis file against its references, silently shifts.

Writes go to a temporary file in the target's folder, are flushed to disk (fsync), then moved
over the target with `os.replace`: a reader, or a run killed at any instant, sees the old
file or the new one, never half of one. The file gets the mode a plain `open(path, "w")`
would give it: a new file 0666 & ~umask (0644 under umask 022), a replaced one keeps its
mode; a new folder 0777 & ~umask. A target that is a symlink is written through (its target
is replaced, the link stays).

    atomic_write_text(path, join_lines(lines))
    atomic_write_json(path, {"step": 3})
    atomic_write_with(path, lambda tmp: save_file(tensors, tmp))   # any writer taking a path
    replace_folder(folder, lambda tmp: build_into(tmp))             # a whole folder at once

Before writing, a verb checks that no output is one of its inputs (`check_outputs_apart`),
and holds the folder it fills (`folder_lock`) so that a second process is refused:

    check_outputs_apart({"--output": out}, {"--input": inp})  # ConfigError: the same file
    with folder_lock(run_dir):                                # FolderInUseError: PID named
        ...

Torch-free, and it imports only `mtadapt.errors` (and `filelock`, for the locks): every layer
may use it.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mtadapt.errors import ConfigError, DataError, FolderInUseError


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
    path = _through_symlink(path)
    fd, tmp, _ = _new_temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)


def _through_symlink(path: str | os.PathLike) -> Path:
    """`path`, or the file a symlink at `path` points to: replacing the link itself with a
    file would cut it off from its target (a plain write goes through it)."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _new_temp_file(path: Path) -> tuple[int, Path, int]:
    """A new, uniquely named file `.<name>.<random>.tmp` beside `path`, open for writing, and
    its mode.

    Created with mode 0o666 as `open()` creates files, so the umask (and a default ACL) apply;
    `tempfile.mkstemp` would make it 0600, and that mode would survive the rename. When `path`
    exists, its mode is kept, as a plain overwrite keeps it.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass  # a new file: the mode open() gave it
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp, stat.S_IMODE(os.fstat(fd).st_mode)
    raise FileExistsError(f"no free temporary name beside {path}")


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
        raise DataError(f"{what} {path}: folder {folder} does not exist; create it first (mkdir -p {shlex.quote(str(folder))})")
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
    path = _through_symlink(path)
    fd, tmp, mode = _new_temp_file(path)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer may replace the file (safetensors writes its own 0600 one and renames it)
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
    folder = _through_symlink(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_folder(folder)
    try:
        build(tmp)
        _plain_modes(tmp)
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


def fill_folder(folder: str | os.PathLike, build: Callable[[Path], Any]) -> Path:
    """Build files with `build(tmp_folder)`, then move each one into `folder` (created if absent):
    a file of the same name is replaced, other files there stay. For writers that fill a folder
    (`save_pretrained`): each file appears whole or not at all, with the mode a plain write
    gives it (`replace_folder` swaps the whole folder instead).
    """
    folder = _through_symlink(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_folder(folder / "build")  # .build.<random>.tmp inside: the moves stay on one filesystem
    try:
        build(tmp)
        _plain_modes(tmp)
        for path in sorted(tmp.rglob("*")):
            target = folder / path.relative_to(tmp)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(path, _through_symlink(target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync_folder(folder)
    return folder


def _plain_modes(tmp: Path) -> None:
    """Give what a builder wrote in the new folder `tmp` the modes plain writes give: some
    writers make their files 0600 (safetensors writes a temporary file and renames it). `tmp`
    was made by `mkdir` (0o777 & ~umask), so its mode carries the umask."""
    folder_mode = stat.S_IMODE(tmp.stat().st_mode) & 0o777
    for path in tmp.rglob("*"):
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            os.chmod(path, folder_mode)
        else:  # an executable stays one
            os.chmod(path, folder_mode & (0o777 if mode & 0o111 else 0o666))


def _new_temp_folder(folder: Path) -> Path:
    """A new, uniquely named folder `.<name>.<random>.tmp` beside `folder`, with the mode
    `mkdir` gives (0o777 & ~umask; `tempfile.mkdtemp` would make it 0700)."""
    for _ in range(100):
        tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.mkdir(0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {folder}")


# ---------------------------------------------------------------------------------------
# Outputs that would destroy inputs.


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` are one file or folder: through symlinks and hard links when both
    exist, else by their resolved paths (an output not written yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs_apart(
    outputs: dict[str, str | os.PathLike | None],
    inputs: dict[str, str | os.PathLike | list[str | os.PathLike] | None],
) -> None:
    """Refuse outputs that are one of the inputs (or one another): writing them would destroy
    what is being read, or one output would overwrite the other. Call it while checking the
    arguments, before any model loads.

    Args:
        outputs: flag -> file or folder written (None and "-", stdout, are skipped).
        inputs: flag -> file or folder read, or a list of them (e.g. `--real SRC TGT`).

    Raises:
        ConfigError: every clash, each naming both flags and the file.
    """
    def paths(items: dict[str, Any]) -> list[tuple[str, str | os.PathLike]]:
        found = []
        for flag, value in items.items():
            for path in value if isinstance(value, (list, tuple)) else [value]:
                if path is not None and str(path) not in ("", "-"):
                    found.append((flag, path))
        return found

    problems = []
    written = paths(outputs)
    for k, (flag, path) in enumerate(written):
        for other_flag, other in paths(inputs):
            if _same_path(path, other):
                which = f"also {other_flag}" if str(path) == str(other) else f"{other_flag} {other} (the same file)"
                problems.append(f"{flag} {path} is {which}: writing it would destroy the input; give another output")
        for other_flag, other in written[:k]:
            if _same_path(path, other):
                problems.append(f"{flag} {path} is also {other_flag}: one output would overwrite the other")
    if problems:
        raise ConfigError("; ".join(problems))


# ---------------------------------------------------------------------------------------
# Folder locks.

LOCK_FILE = ".mtadapt.lock"
"""The lock of a folder, inside it: an OS lock (filelock), released when its process ends, however it ends."""
LOCK_HOLDER_FILE = ".mtadapt.lock.pid"
"""The PID of the process holding the folder, for the message of the one refused."""
LOCK_FILES = (LOCK_FILE, LOCK_HOLDER_FILE)

_held: dict[tuple[int, str], int] = {}  # (thread, folder) -> holds: a thread may nest holds of one folder


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold `folder` (created if absent) while the block runs: another process asking for it
    is refused at once, with this process's PID.

    The lock is `filelock`'s OS lock on `folder/.mtadapt.lock` (flock on Unix): the OS releases
    it when the holder dies, so a killed run leaves no stale lock behind. The holder writes its
    PID to `.mtadapt.lock.pid` beside it. Holds of one folder by one thread may nest.

    Args:
        what: how to name the folder in the message, e.g. "run folder".

    Raises:
        FolderInUseError: another process holds it (its PID named).
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = (threading.get_ident(), os.path.realpath(folder))
    if key in _held:
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    lock = FileLock(str(folder / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderInUseError(
            f"{what} {folder} is in use by another mtadapt process ({_lock_holder(folder)}); wait for it to end or "
            f"stop it (its lock goes with it), or use another {what}"
        ) from None
    holder = folder / LOCK_HOLDER_FILE
    try:
        atomic_write_text(holder, f"{os.getpid()}\n")
        _held[key] = 1
        yield folder
    finally:
        _held.pop(key, None)
        holder.unlink(missing_ok=True)  # before the lock goes: the next holder writes its own
        lock.release()


def _lock_holder(folder: Path) -> str:
    try:
        pid = (folder / LOCK_HOLDER_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "its PID is not recorded yet"
