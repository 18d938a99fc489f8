"""Feedback while long work runs, in one of two forms: a progress bar (a terminal), or, with
`--no-progress` or when stderr is not a terminal (CI, `make run > log 2>&1`, nohup: a bar
there would be `\r`-joined fragments), a plain line every `interval` seconds and at the end, so
that silence never has to be read as "stuck". Library callers pass `off` (the default of
their `progress` arguments) and get neither.

    with Progress(len(lines), "translate", unit="sent", mode="log") as progress:
        for chunk in batches:
            ...
            progress.update(len(chunk))
    # stderr: translate: 3,200/6,379 sent (50%), 45.1 sent/s, elapsed 1m11s, ETA 1m10s

Both forms write to stderr, so a translation written to stdout stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import Literal, TextIO

ProgressMode = Literal["bar", "log", "off"]
PROGRESS_MODES = ("bar", "log", "off")
LOG_INTERVAL_S = 10.0
"""Seconds between two log lines of the same work."""


def progress_mode(progress: bool | str | None) -> ProgressMode:
    """True -> "bar", False/None -> "off", or a mode by name.

    Raises:
        ValueError: another value (the valid ones named).
    """
    if progress is True:
        return "bar"
    if progress is False or progress is None:
        return "off"
    if progress in PROGRESS_MODES:
        return progress  # type: ignore[return-value]
    raise ValueError(f"progress {progress!r} is not one of True, False, {', '.join(PROGRESS_MODES)}")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default: stderr, where both forms go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def cli_progress(no_progress: bool, stream: TextIO | None = None) -> ProgressMode:
    """The CLI's form: a bar when `stream` (default: stderr) is a terminal, else log lines, as
    with `--no-progress` (never silence)."""
    return "bar" if is_terminal(stream) and not no_progress else "log"


def format_duration(seconds: float) -> str:
    """12s, 3m05s, 2h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Time left at the rate so far (None before the first unit is done)."""
    if done <= 0 or elapsed <= 0:
        return None
    return (total - done) * elapsed / done


class Progress:
    """A tqdm bar ("bar"), a line every `interval` seconds ("log"), or nothing ("off").

    Args:
        total: Units of work (sentences, steps).
        desc: What is running, the start of every line ("translate", "backtranslate").
        unit: The unit's name in lines ("sent", "step").
        mode: A `ProgressMode`, or a bool (`progress_mode`).
        initial: Units already done (a resumed job); rates count only this run's.
        interval: Seconds between log lines.
        stream: Where log lines go (default: stderr, read at write time).
    """

    def __init__(self, total: int, desc: str, unit: str = "it", mode: ProgressMode | bool = "bar",
                 initial: int = 0, interval: float = LOG_INTERVAL_S, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.mode = progress_mode(mode)
        self.n = self.initial = initial
        self.interval = interval
        self.stream = stream
        self.start = self.last_line = time.perf_counter()
        self._logged_at = -1  # units done at the last log line
        from tqdm.auto import tqdm  # here: `import mtadapt.cli` stays light

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=self.mode != "bar")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        self.bar.update(n)
        if self.mode == "log" and (time.perf_counter() - self.last_line >= self.interval or self.n >= self.total):
            self.log_line()

    def set_postfix(self, **values: object) -> None:
        """Figures shown at the end of the bar (log lines are written by their owner)."""
        self.bar.set_postfix(**values)

    def line(self) -> str:
        """`desc: n/total unit (pct), rate unit/s, elapsed, ETA` for the work so far."""
        elapsed = time.perf_counter() - self.start
        done = self.n - self.initial
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {done / elapsed:,.1f} {self.unit}/s" if elapsed > 0 and done > 0 else ""
        eta = eta_seconds(done, self.total - self.initial, elapsed)
        left = f", ETA {format_duration(eta)}" if eta is not None and self.n < self.total else ""
        return f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}{pct}{rate}, elapsed {format_duration(elapsed)}{left}"

    def log_line(self) -> None:
        """Write `line()` in "log" mode, unless the last line already gave this count."""
        if self.mode == "log" and self._logged_at != self.n:
            self.write(self.line())
            self._logged_at = self.n
            self.last_line = time.perf_counter()

    def write(self, message: str, file: TextIO | None = None) -> None:
        """Print a line (in every mode) without breaking the bar; default: the log stream."""
        file = file or self.stream or sys.stderr
        if self.mode == "bar":
            self.bar.write(message, file=file)
        else:
            print(message, file=file, flush=True)

    def close(self) -> None:
        if self.mode == "log" and self.n > self.initial:
            self.log_line()  # the final count, unless the last line already said it
        self.bar.close()
