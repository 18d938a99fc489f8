"""Parallel data: read (Moses, TSV, JSONL, TMX), validate, filter by length, batch by tokens."""

from mtadapt.data.batching import (
    LABEL_PAD_ID,
    bucketed_batches,
    collate,
    padding_fraction,
    random_batches,
)
from mtadapt.data.filters import (
    LengthFilterConfig,
    filter_by_length,
    filter_length_ratio,
    filter_max_tokens,
    filter_min_tokens,
)
from mtadapt.data.readers import (
    CorpusFormat,
    CorpusSpec,
    ParallelExample,
    read_jsonl,
    read_moses,
    read_parallel,
    read_tmx,
    read_tsv,
    scan_corpus,
)
from mtadapt.data.validation import DataError, DataReport, Policy

__all__ = [
    "LABEL_PAD_ID",
    "CorpusFormat",
    "CorpusSpec",
    "DataError",
    "DataReport",
    "LengthFilterConfig",
    "ParallelExample",
    "Policy",
    "bucketed_batches",
    "collate",
    "filter_by_length",
    "filter_length_ratio",
    "filter_max_tokens",
    "filter_min_tokens",
    "padding_fraction",
    "random_batches",
    "read_jsonl",
    "read_moses",
    "read_parallel",
    "read_tmx",
    "read_tsv",
    "scan_corpus",
]
