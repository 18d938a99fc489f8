"""A run's training data: one or several translation directions, one model.

    config.data --load_task_data--> TaskData
        pairs[i]      one direction: its PairCodec (codes / prefixes / tags), train and dev
        train         the trained directions' examples concatenated (pair i at offsets[i]:...)
        epoch_batches (seed, epoch) -> this rank's batches, drawn by `data.sampling`
        routing(rows) per-language adapters for exactly those rows (or nothing)

Every run goes through here: a recipe without `data.pairs` is a task of one direction
(`DataConfig.pair_corpora()`), whose epoch is its corpus once, in `bucketed_batches` order.
Each example is tokenized by its own direction's codec, so a mixed batch carries every row's
own source code / task prefix and its own target code as the first label.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from torch import nn

from mtadapt.config import CorpusConfig, PairCorpus, RunConfig
from mtadapt.data.filters import LengthFilterConfig
from mtadapt.models.codes import corpus_suffix
from mtadapt.data.prepare import TokenizedPairs, corpus_spec, read_texts, tokenize_pairs
from mtadapt.data.sampling import pair_probabilities, sampled_batches
from mtadapt.data.validation import DataError, DataReport
from mtadapt.errors import MtadaptWarning
from mtadapt.methods.language_adapters import language_routing
from mtadapt.models.languages import PairCodec, reserve_language_tags
from mtadapt.models.loading import LoadedModel

T = TypeVar("T")


def rank_share(batches: list[T], rank: int, world: int) -> list[T]:
    """This rank's share of an epoch's batches under DDP: every rank gets the same number
    (the list is padded by wrapping around), so no example is dropped and ranks stay in step.

        batches += batches[: (-len(batches)) % world]; return batches[rank::world]
    """
    if world > 1 and len(batches) % world:
        batches = batches + batches[: world - len(batches) % world]
    return batches[rank::world]


@dataclass
class PairData:
    """One direction of the run."""

    name: str
    corpus: PairCorpus
    codec: PairCodec
    train: TokenizedPairs | None
    dev: TokenizedPairs | None

    @property
    def held_out(self) -> bool:
        return self.train is None


@dataclass
class TaskData:
    """Every direction of a run, and the sampled epochs over the trained ones.

    Attributes:
        pairs: all directions (trained and held out), in recipe order.
        train: the trained directions' examples concatenated, in `trained` order.
        offsets: start of each trained direction in `train` (plus the total at the end).
        probabilities: sampling probability of each trained direction.
        epoch_size: examples per epoch.
        multi_pair: the recipe lists `data.pairs` (dev scores per direction, sampling logged).
        per_language: route rows through per-language adapters.
        language_tags: target language -> tag id prepended to sources (models without
            language codes and several target languages; `reserve_language_tags`).
    """

    pairs: list[PairData]
    train: TokenizedPairs
    offsets: list[int]
    probabilities: np.ndarray
    epoch_size: int
    multi_pair: bool = False
    per_language: bool = False
    language_tags: dict[str, int] = field(default_factory=dict)
    _pair_of: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sizes = np.diff(self.offsets)
        self._pair_of = np.repeat(np.arange(len(sizes)), sizes)  # (n_train,) trained-pair index

    @property
    def trained(self) -> list[PairData]:
        return [p for p in self.pairs if not p.held_out]

    @property
    def codec(self) -> PairCodec:
        """A codec for what all directions share (pad and EOS ids)."""
        return self.trained[0].codec

    @property
    def has_dev(self) -> bool:
        return any(p.dev is not None and len(p.dev) for p in self.trained)

    def distribution(self) -> dict[str, float]:
        return {p.name: float(q) for p, q in zip(self.trained, self.probabilities)}

    def languages(self) -> list[str]:
        """Every language of the run (sources and targets, held-out ones included), in order."""
        langs = [lang for p in self.pairs for lang in (p.codec.src_lang, p.codec.tgt_lang)]
        return [lang for lang in dict.fromkeys(langs) if lang is not None]

    def epoch_batches(self, config: RunConfig, epoch: int, rank: int, world: int) -> list[list[int]]:
        """This rank's micro-batches of `epoch` (indices into `train`); mixed pairs."""
        trained = self.trained
        batches = sampled_batches(
            [[len(s) for s in p.train.src_ids] for p in trained], [[len(t) for t in p.train.tgt_ids] for p in trained],
            self.probabilities, self.epoch_size, config.data.max_tokens, seed=config.train.seed, epoch=epoch,
            max_sentences=config.data.max_sentences, sort_window=config.data.sort_window,
            batch_order=config.data.batch_order, sort_window_share=config.data.sort_window_share,
        )
        return rank_share(batches, rank, world)

    def row_pairs(self, rows: Sequence[int]) -> list[PairData]:
        trained = self.trained
        return [trained[i] for i in self._pair_of[list(rows)].tolist()]

    def count(self, rows: Sequence[int], seen: dict[str, int]) -> None:
        """Add the examples of `rows` to `seen` (direction name -> examples)."""
        for name, n in Counter(p.name for p in self.row_pairs(rows)).items():
            seen[name] = seen.get(name, 0) + n

    def routing(self, model: nn.Module, rows: Sequence[int]) -> AbstractContextManager:
        """Per-language adapter routing for the training rows `rows` (else a no-op)."""
        if not self.per_language:
            return nullcontext()
        pairs = self.row_pairs(rows)
        return language_routing(model, [p.codec.src_lang for p in pairs], [p.codec.tgt_lang for p in pairs])

    def pair_routing(self, model: nn.Module, pair: PairData) -> AbstractContextManager:
        """Per-language adapter routing for every row of one direction (else a no-op)."""
        if not self.per_language:
            return nullcontext()
        return language_routing(model, [pair.codec.src_lang], [pair.codec.tgt_lang])

    def summary(self) -> dict[str, Any]:
        """What the run logs at its start: examples and sampling probability per direction."""
        return {
            "sampling_p": self.distribution(),
            "train_examples": {p.name: len(p.train) for p in self.trained},
            "held_out": [p.name for p in self.pairs if p.held_out],
            "epoch_size": self.epoch_size,
            **({"language_tags": self.language_tags} if self.language_tags else {}),
        }


def read_pair_corpus(corpus: CorpusConfig, pair: PairCorpus, empty: str, codec: PairCodec,
                     filters: LengthFilterConfig | None) -> TokenizedPairs:
    """Read, validate and tokenize one corpus of direction `pair` (drops counted in its report)."""
    spec = corpus_spec(
        corpus.paths, pair.corpus_src_lang or corpus_suffix(pair.src_lang), pair.corpus_tgt_lang or corpus_suffix(pair.tgt_lang),
        corpus.format, corpus.src_key, corpus.tgt_key, empty,
    )
    return tokenize_pairs(read_texts(spec, corpus.limit), codec, filters)


def load_corpus(config: RunConfig, split: str, codec: PairCodec, filters: LengthFilterConfig | None) -> TokenizedPairs | None:
    """`data.<split>` (train, dev or test) of a single-pair run, tokenized by `codec`; None when unset.

    Raises:
        DataError: the corpus has no pair left (names its files and the data report).
    """
    corpus = getattr(config.data, split)
    if corpus is None:
        return None
    pairs = read_pair_corpus(corpus, config.data.pair_corpora()[0], config.data.empty, codec, filters)
    if not pairs:
        raise DataError(f"data.{split}: no pairs in {corpus.paths}: {pairs.report.summary()}")
    return pairs


def concat_pairs(parts: list[TokenizedPairs]) -> TokenizedPairs:
    """The examples of `parts`, one after the other, with their reports merged."""
    report = DataReport()
    for p in parts:
        report.merge(p.report)
    return TokenizedPairs(
        src_ids=[x for p in parts for x in p.src_ids], tgt_ids=[x for p in parts for x in p.tgt_ids],
        src=[x for p in parts for x in p.src], tgt=[x for p in parts for x in p.tgt],
        origins=[x for p in parts for x in p.origins], report=report,
    )


def _warn_over_budget(corpora: list[TokenizedPairs], max_tokens: int) -> None:
    """One warning when training pairs are longer than the batch budget `data.max_tokens`:
    each such pair is a batch of its own, over the budget (`data.batching` never drops one),
    so the budget no longer bounds memory and those steps see one pair each."""
    widths = [max(len(s), len(t)) for c in corpora for s, t in zip(c.src_ids, c.tgt_ids)]
    over = sum(w > max_tokens for w in widths)
    if over:
        warnings.warn(f"data.max_tokens {max_tokens} is below the length of {over:,} of {len(widths):,} training pairs "
                      f"(up to {max(widths)} tokens): each is a batch of its own, over the budget, {over:,} such batches "
                      f"per pass over the data; raise data.max_tokens above {max(widths)} to batch them", MtadaptWarning,
                      stacklevel=3)


def load_task_data(config: RunConfig, loaded: LoadedModel, filters: LengthFilterConfig | None) -> TaskData:
    """Read and tokenize every direction of the run (`data.pairs`, or the single pair) with
    its own codec.

    Raises:
        DataError: a trained direction has no pair left after filtering, or a dev corpus has
            none (names its files and the data report).
        ValueError: a language code the tokenizer does not know.
    """
    pairs = []
    corpora = config.data.pair_corpora()
    multi_pair = bool(config.data.pairs)
    targets = sorted({c.tgt_lang for c in corpora if c.tgt_lang is not None})
    tags: dict[str, int] = {}
    if loaded.family.language_style == "none" and len(targets) > 1:  # no codes: tag the target
        tags = reserve_language_tags(loaded.tokenizer, targets)
    for corpus in corpora:
        codec = loaded.codec(corpus.src_lang, corpus.tgt_lang, target_tag_id=tags.get(corpus.tgt_lang))
        train = None if corpus.train is None else read_pair_corpus(corpus.train, corpus, config.data.empty, codec, filters)
        if train is not None and not train:
            where = f"data.pairs {corpus.label}: " if multi_pair else ""
            raise DataError(f"{where}no training pairs left in {corpus.train.paths}: {train.report.summary()}")
        dev = None if corpus.dev is None else read_pair_corpus(corpus.dev, corpus, config.data.empty, codec, None)
        if dev is not None and not dev:  # else the run would train without a dev score, silently
            where = f"data.pairs {corpus.label}: " if multi_pair else ""
            raise DataError(f"{where}no dev pairs in {corpus.dev.paths}: {dev.report.summary()}; "
                            "fix the dev file or set data.dev: null")
        pairs.append(PairData(corpus.label, corpus, codec, train, dev))
    trained = [p for p in pairs if not p.held_out]
    sizes = [len(p.train) for p in trained]
    d = config.data
    _warn_over_budget([p.train for p in trained], d.max_tokens)
    probabilities = pair_probabilities(sizes, d.sampling, d.sampling_temperature, [p.corpus.weight for p in trained])
    return TaskData(
        pairs=pairs, train=concat_pairs([p.train for p in trained]), offsets=[0, *np.cumsum(sizes).tolist()],
        probabilities=probabilities, epoch_size=d.epoch_size or sum(sizes), multi_pair=multi_pair,
        per_language=config.method.adapters in ("per_language", "shared+per_language"), language_tags=tags,
    )
