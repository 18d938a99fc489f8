"""Text files the way mtadapt reads and writes them: lines split on "\\n" only, written
atomically.

    iter_lines(path)       yields each line without its "\\n" (a "\\r\\n" file loses the "\\r" too);
                           U+2028, U+0085, "\\x0c" ... stay inside their line, unlike
                           str.splitlines(), so a line count matches `wc -l`
    atomic_writer(path)    a text file written to PATH.tmp and renamed onto PATH on success:
                           a run killed mid-write leaves the old PATH (or none), never half a file
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def iter_lines(path: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 file, one at a time, split on "\\n" only.

    Raises:
        ValueError: the file is not valid UTF-8 (names the file and the line).
    """
    # newline="\n": the reader splits on "\n" alone and leaves "\r" in place (universal
    # newlines would also split on a lone "\r"); U+2028 never splits a file line.
    with open(path, encoding="utf-8", newline="\n") as f:
        number = 0
        try:
            for number, line in enumerate(f, start=1):  # noqa: B007 - number names the bad line
                line = line[:-1] if line.endswith("\n") else line
                yield line[:-1] if line.endswith("\r") else line
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: invalid UTF-8 near line {number + 1} ({err.reason})") from err


def iter_stream_lines(stream: IO[str]) -> Iterator[str]:
    """The lines of an open text stream (stdin), split on "\n" only, as `iter_lines`."""
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(newline="\n")  # no universal newlines: a lone "\r" stays in its line
    for line in stream:
        line = line[:-1] if line.endswith("\n") else line
        yield line[:-1] if line.endswith("\r") else line


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[str]]:
    """Write a UTF-8 text file atomically: `with atomic_writer(p) as f: f.write(...)`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
