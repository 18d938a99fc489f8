"""Checks on raw parallel text, the error type, and the report that counts every drop.

Every pair that the data layer removes is counted here under a reason, so a run can show
exactly what happened to its corpus (`DataReport.summary()`); problems that the policy says
are fatal raise `DataError` with the file and line.

Drop reasons used by mtadapt.data:
    empty_src, empty_tgt      one side empty or whitespace only (policy `empty`)
    control_char              a C0/C1 control character on either side (policy `control_chars`)
    blank_line                a blank line in a JSONL file
    missing_language          a TMX <tu> without one of the two languages (policy `empty`)
    too_short, too_long       token length filters (filters.py)
    length_ratio              long/short token length ratio filter (filters.py)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from mtadapt.errors import DataError

Policy = Literal["drop", "error"]
POLICIES: tuple[str, ...] = ("drop", "error")

# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; C1 controls (0x80-0x9F)
# in decoded text are usually mojibake from a Latin-1/UTF-8 mix-up, so they count too.
_CONTROL_CHAR = re.compile("[\x00-\x1f\x7f-\x9f]")

# How many example origins to keep per reason: enough to find the lines, bounded memory.
_ORIGINS_KEPT_PER_REASON = 3


@dataclass
class DataReport:
    """Counts of pairs read and dropped, per reason.

    Attributes:
        read: pairs (or JSONL lines) read from the corpus.
        dropped: reason -> number of pairs dropped for it.
        drop_origins: reason -> up to 3 `path:line` origins, to find examples quickly.
    """

    read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    drop_origins: dict[str, list[str]] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return self.read - sum(self.dropped.values())

    def record_drop(self, reason: str, origin: str | None = None, count: int = 1) -> None:
        """Counts `count` dropped pairs under `reason`, remembering the first few origins."""
        self.dropped[reason] += count
        if origin is not None:
            origins = self.drop_origins.setdefault(reason, [])
            if len(origins) < _ORIGINS_KEPT_PER_REASON:
                origins.append(origin)

    def merge(self, other: DataReport) -> None:
        """Adds the counts of `other` (e.g. another corpus of the same run) into this one."""
        self.read += other.read
        self.dropped.update(other.dropped)
        for reason, origins in other.drop_origins.items():
            mine = self.drop_origins.setdefault(reason, [])
            mine.extend(origins[: _ORIGINS_KEPT_PER_REASON - len(mine)])

    def summary(self) -> str:
        """One line, e.g. `read 1000 pairs, kept 990 (99.0%); dropped 10: empty_tgt 4 (e.g. a.en:3)`."""
        share = 100.0 * self.kept / self.read if self.read else 0.0
        text = f"read {self.read} pairs, kept {self.kept} ({share:.1f}%)"
        total_dropped = sum(self.dropped.values())
        if not total_dropped:
            return text + "; dropped 0"
        parts = []
        for reason, count in sorted(self.dropped.items(), key=lambda item: (-item[1], item[0])):
            origins = self.drop_origins.get(reason)
            parts.append(f"{reason} {count}" + (f" (e.g. {', '.join(origins)})" if origins else ""))
        return f"{text}; dropped {total_dropped}: " + ", ".join(parts)


def check_policy(name: str, value: str) -> str | None:
    """Returns an error message if `value` is not a valid drop/error policy, else None."""
    if value not in POLICIES:
        return f"`{name}` must be one of {', '.join(map(repr, POLICIES))}, got {value!r}"
    return None


def check_pair(
    src: str,
    tgt: str,
    origin: str,
    *,
    empty: Policy,
    control_chars: Policy,
    report: DataReport,
    tgt_origin: str | None = None,
) -> bool:
    """Applies the empty-side and control-character policies to one pair.

    Args:
        src: source text.
        tgt: target text.
        origin: `path:line` of the pair (of the source file for Moses pairs).
        empty: "drop" counts and skips pairs with an empty side; "error" raises.
        control_chars: "drop" counts and skips pairs with a control character; "error" raises.
        report: where drops are counted.
        tgt_origin: `path:line` of the target side when it lives in another file.

    Returns:
        True if the pair is kept.

    Raises:
        DataError: a problem whose policy is "error"; the message names file:line.
    """
    tgt_origin = tgt_origin or origin
    for side, text, where in (("src", src, origin), ("tgt", tgt, tgt_origin)):
        if not text.strip():
            if empty == "error":
                raise DataError(
                    f"{where}: empty {side} side; set `empty: drop` to skip and count such pairs"
                )
            report.record_drop(f"empty_{side}", where)  # the file holding the empty side
            return False
    for side, text, where in (("src", src, origin), ("tgt", tgt, tgt_origin)):
        match = _CONTROL_CHAR.search(text)
        if match is not None:
            if control_chars == "error":
                raise DataError(
                    f"{where}: control character U+{ord(match.group()):04X} in the {side} side at "
                    f"character {match.start()}; set `control_chars: drop` to skip and count such pairs"
                )
            report.record_drop("control_char", where)
            return False
    return True
