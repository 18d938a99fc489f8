"""Filters over tokenized lengths; each counts the pairs it removes in a `DataReport`.

Inputs are token ids from the model family's tokenizer (special tokens included, as the model
will see them): `src_ids[i]`, `tgt_ids[i]` are the lists of pair i. Each filter takes the
indices still alive and returns those it keeps, in order:

    keep = [i for i in indices if predicate(len(src_ids[i]), len(tgt_ids[i]))]
    report.dropped[reason] += len(indices) - len(keep)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mtadapt.data.validation import DataError, DataReport

TokenIds = Sequence[Sequence[int]]


@dataclass(frozen=True)
class LengthFilterConfig:
    """Token-length limits applied per pair; None disables a limit.

    Attributes:
        min_tokens: drop a pair if either side has fewer tokens (reason `too_short`).
        max_tokens: drop a pair if either side has more tokens (reason `too_long`).
        max_length_ratio: drop a pair if long side / short side > this (reason
            `length_ratio`); a sign of misalignment. A side with 0 tokens has ratio inf.
    """

    min_tokens: int | None = 1
    max_tokens: int | None = 256
    max_length_ratio: float | None = 3.0

    def __post_init__(self) -> None:
        problems = []
        if self.min_tokens is not None and self.min_tokens < 0:
            problems.append(f"`min_tokens` must be >= 0, got {self.min_tokens}")
        if self.max_tokens is not None and self.max_tokens < 1:
            problems.append(f"`max_tokens` must be >= 1, got {self.max_tokens}")
        if (
            self.min_tokens is not None
            and self.max_tokens is not None
            and self.min_tokens > self.max_tokens
        ):
            problems.append(f"`min_tokens` ({self.min_tokens}) > `max_tokens` ({self.max_tokens})")
        if self.max_length_ratio is not None and self.max_length_ratio < 1.0:
            problems.append(f"`max_length_ratio` must be >= 1.0 (long/short), got {self.max_length_ratio}")
        if problems:
            raise DataError("invalid LengthFilterConfig:\n  " + "\n  ".join(problems))


def _all_indices(src_ids: TokenIds, tgt_ids: TokenIds, indices: Sequence[int] | None) -> Sequence[int]:
    if len(src_ids) != len(tgt_ids):
        raise DataError(f"{len(src_ids)} source sequences but {len(tgt_ids)} target sequences")
    return range(len(src_ids)) if indices is None else indices


def _origin(origins: Sequence[str] | None, index: int) -> str | None:
    return origins[index] if origins is not None else None


def filter_min_tokens(
    src_ids: TokenIds,
    tgt_ids: TokenIds,
    min_tokens: int,
    report: DataReport,
    indices: Sequence[int] | None = None,
    origins: Sequence[str] | None = None,
) -> list[int]:
    """Keeps i if both sides have >= `min_tokens` tokens; counts the rest as `too_short`."""
    kept = []
    for i in _all_indices(src_ids, tgt_ids, indices):
        if min(len(src_ids[i]), len(tgt_ids[i])) >= min_tokens:
            kept.append(i)
        else:
            report.record_drop("too_short", _origin(origins, i))
    return kept


def filter_max_tokens(
    src_ids: TokenIds,
    tgt_ids: TokenIds,
    max_tokens: int,
    report: DataReport,
    indices: Sequence[int] | None = None,
    origins: Sequence[str] | None = None,
) -> list[int]:
    """Keeps i if both sides have <= `max_tokens` tokens; counts the rest as `too_long`."""
    kept = []
    for i in _all_indices(src_ids, tgt_ids, indices):
        if max(len(src_ids[i]), len(tgt_ids[i])) <= max_tokens:
            kept.append(i)
        else:
            report.record_drop("too_long", _origin(origins, i))
    return kept


def filter_length_ratio(
    src_ids: TokenIds,
    tgt_ids: TokenIds,
    max_length_ratio: float,
    report: DataReport,
    indices: Sequence[int] | None = None,
    origins: Sequence[str] | None = None,
) -> list[int]:
    """Keeps i if max(len)/min(len) <= `max_length_ratio`; counts the rest as `length_ratio`."""
    kept = []
    for i in _all_indices(src_ids, tgt_ids, indices):
        short, long = sorted((len(src_ids[i]), len(tgt_ids[i])))
        # Compare long <= ratio * short instead of dividing: no special case for short == 0.
        if long <= max_length_ratio * short:
            kept.append(i)
        else:
            report.record_drop("length_ratio", _origin(origins, i))
    return kept


def filter_by_length(
    src_ids: TokenIds,
    tgt_ids: TokenIds,
    config: LengthFilterConfig,
    report: DataReport,
    origins: Sequence[str] | None = None,
) -> list[int]:
    """Applies min tokens, then max tokens, then the ratio; a pair counts under its first failure.

    Args:
        src_ids: token ids of each source sentence.
        tgt_ids: token ids of each target sentence.
        config: the limits.
        report: removed pairs are counted here, per reason.
        origins: optional `path:line` per pair, to show examples in `report.summary()`.

    Returns:
        Indices of the kept pairs, ascending.
    """
    kept: Sequence[int] = _all_indices(src_ids, tgt_ids, None)
    if config.min_tokens is not None:
        kept = filter_min_tokens(src_ids, tgt_ids, config.min_tokens, report, kept, origins)
    if config.max_tokens is not None:
        kept = filter_max_tokens(src_ids, tgt_ids, config.max_tokens, report, kept, origins)
    if config.max_length_ratio is not None:
        kept = filter_length_ratio(src_ids, tgt_ids, config.max_length_ratio, report, kept, origins)
    return list(kept)
