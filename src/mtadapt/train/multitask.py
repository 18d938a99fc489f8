"""Multi-task training data: several language pairs, one model.

    data.pairs --load_task_data--> TaskData
        pairs[i]      one direction: its PairCodec (codes / prefixes / tags), train and dev
        train         the trained pairs' examples concatenated (pair i at offsets[i]:...)
        epoch_batches (seed, epoch) -> mixed-pair batches drawn by `data.sampling`
        routing(rows) per-language adapters for exactly those rows (or nothing)
        evaluate      BLEU/chrF/loss per direction, macro average over trained directions

Each example is tokenized by its own pair's codec, so a mixed batch carries every row's own
source code / task prefix and its own target code as the first label; generation gives each
row its own decoder prompt (`translate_rows`). The loop (`train.loop`) uses `TaskData` when
`data.pairs` is set; a recipe without `data.pairs` runs the single-pair path unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from mtadapt.config import CorpusConfig, PairCorpus, RunConfig
from mtadapt.data.filters import LengthFilterConfig
from mtadapt.data.prepare import TokenizedPairs, corpus_spec, file_language, read_texts, tokenize_pairs
from mtadapt.data.sampling import pair_probabilities, sampled_batches
from mtadapt.data.validation import DataReport
from mtadapt.evaluate.generation import GenerationConfig, translate_ids
from mtadapt.methods.base import freeze_base
from mtadapt.methods.language_adapters import add_shared_adapter, add_language_adapters, language_routing
from mtadapt.methods.registry import config_from_dict as method_config_from_dict
from mtadapt.models.languages import PairCodec, reserve_language_tags
from mtadapt.models.loading import LoadedModel


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
    """Every direction of a multi-pair run, and the sampled epochs over the trained ones.

    Attributes:
        pairs: all directions (trained and held out), in recipe order.
        train: the trained directions' examples concatenated, in `trained` order.
        offsets: start of each trained direction in `train` (plus the total at the end).
        probabilities: sampling probability of each trained direction.
        epoch_size: examples per epoch.
        per_language: route rows through per-language adapters.
        language_tags: target language -> tag id prepended to sources (models without
            language codes and several target languages; `reserve_language_tags`).
    """

    pairs: list[PairData]
    train: TokenizedPairs
    offsets: list[int]
    probabilities: np.ndarray
    epoch_size: int
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
        )
        if world > 1 and len(batches) % world:
            batches += batches[: world - len(batches) % world]
        return batches[rank::world]

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

    def evaluate(self, model: nn.Module, config: RunConfig) -> dict[str, float]:
        """Dev scores per direction (`<name>/bleu`, ...) and their macro average over the
        trained directions (`bleu`, `chrf`, `loss`: what early stopping reads). Held-out
        directions are scored under their names but left out of the average."""
        from mtadapt.train.loop import evaluate_dev  # the single-pair evaluation, per direction

        scores: dict[str, float] = {}
        trained_scores: list[dict[str, float]] = []
        for pair in self.pairs:
            if pair.dev is None or not len(pair.dev):
                continue
            with language_routing(model, [pair.codec.src_lang], [pair.codec.tgt_lang]) if self.per_language else nullcontext():
                one = evaluate_dev(model, pair.codec, pair.dev, config)
            scores.update({f"{pair.name}/{k}": v for k, v in one.items()})
            if not pair.held_out:
                trained_scores.append(one)
        for key in trained_scores[0] if trained_scores else []:
            scores[key] = float(np.mean([s[key] for s in trained_scores]))
        return scores

    @property
    def has_dev(self) -> bool:
        return any(p.dev is not None and len(p.dev) for p in self.trained)


def _read(corpus: CorpusConfig, pair: PairCorpus, config: RunConfig, codec: PairCodec,
          filters: LengthFilterConfig | None) -> TokenizedPairs:
    spec = corpus_spec(
        corpus.paths, pair.corpus_src_lang or file_language(pair.src_lang), pair.corpus_tgt_lang or file_language(pair.tgt_lang),
        corpus.format, corpus.src_key, corpus.tgt_key, config.data.empty,
    )
    return tokenize_pairs(read_texts(spec, corpus.limit), codec, filters)


def _concat(parts: list[TokenizedPairs]) -> TokenizedPairs:
    report = DataReport()
    for p in parts:
        report.merge(p.report)
    return TokenizedPairs(
        src_ids=[x for p in parts for x in p.src_ids], tgt_ids=[x for p in parts for x in p.tgt_ids],
        src=[x for p in parts for x in p.src], tgt=[x for p in parts for x in p.tgt],
        origins=[x for p in parts for x in p.origins], report=report,
    )


def load_task_data(config: RunConfig, loaded: LoadedModel, filters: LengthFilterConfig | None) -> TaskData:
    """Read and tokenize every direction of `config.data.pairs` with its own codec.

    Raises:
        ValueError: a trained direction has no pair left after filtering (names it and the
            data report), or a language code the tokenizer does not know.
    """
    pairs = []
    corpora = config.data.pair_corpora()
    targets = sorted({c.tgt_lang for c in corpora if c.tgt_lang is not None})
    tags: dict[str, int] = {}
    if loaded.family.language_style == "none" and len(targets) > 1:  # no codes: tag the target
        tags = reserve_language_tags(loaded.tokenizer, targets)
    for corpus in corpora:
        codec = PairCodec(loaded.family, loaded.tokenizer, corpus.src_lang, corpus.tgt_lang, loaded.decoder_start_token_id,
                          target_tag_id=tags.get(corpus.tgt_lang))
        train = None if corpus.train is None else _read(corpus.train, corpus, config, codec, filters)
        if train is not None and not train:
            raise ValueError(f"data.pairs {corpus.label}: no training pairs left in {corpus.train.paths}: {train.report.summary()}")
        dev = None if corpus.dev is None else _read(corpus.dev, corpus, config, codec, None)
        pairs.append(PairData(corpus.label, corpus, codec, train, dev))
    trained = [p for p in pairs if not p.held_out]
    sizes = [len(p.train) for p in trained]
    d = config.data
    probabilities = pair_probabilities(sizes, d.sampling, d.sampling_temperature, [p.corpus.weight for p in trained])
    return TaskData(
        pairs=pairs, train=_concat([p.train for p in trained]), offsets=[0, *np.cumsum(sizes).tolist()],
        probabilities=probabilities, epoch_size=d.epoch_size or sum(sizes),
        per_language=config.method.adapters in ("per_language", "shared+per_language"), language_tags=tags,
    )


def apply_language_adapters(loaded: LoadedModel, config: RunConfig, task: TaskData) -> list[str]:
    """`method.adapters: per_language`: one adapter of `config.method` per language of the
    run, the base frozen; `shared+per_language` adds one shared adapter (`SHARED_ADAPTER`) on
    every row. Returns the adapter names."""
    method_config = method_config_from_dict(config.method.name, dict(config.method.settings))
    names = add_language_adapters(loaded.model, method_config, loaded.family.targets, task.languages())
    if config.method.adapters == "shared+per_language":
        names.append(add_shared_adapter(loaded.model, method_config, loaded.family.targets))
    freeze_base(loaded.model)
    return names


def translate_rows(
    model: nn.Module,
    codecs: Sequence[PairCodec],
    texts: Sequence[str],
    config: GenerationConfig,
    per_language: bool = False,
) -> list[str]:
    """Translate a mixed list: `texts[i]` in the direction of `codecs[i]`, batched together
    (rows sorted by length across directions; each row with its own source marking,
    decoder prompt and, with `per_language`, its own language adapters).
    """
    src_ids: list[list[int]] = [[] for _ in texts]
    groups: dict[int, list[int]] = {}
    for i, codec in enumerate(codecs):
        groups.setdefault(id(codec), []).append(i)
    for rows in groups.values():  # one tokenizer call per direction
        for i, ids in zip(rows, codecs[rows[0]].encode_sources([texts[i] for i in rows])):
            src_ids[i] = ids
    prompts = [c.decoder_prompt() for c in codecs]

    def context(chunk: list[int]) -> AbstractContextManager:
        if not per_language:
            return nullcontext()
        return language_routing(model, [codecs[i].src_lang for i in chunk], [codecs[i].tgt_lang for i in chunk])

    outputs = translate_ids(model, codecs[0], src_ids, config, decoder_prompts=prompts, batch_context=context)
    texts_out: list[str] = [""] * len(texts)
    for rows in groups.values():  # each direction decodes its rows (strips its own target code)
        for i, text in zip(rows, codecs[rows[0]].decode([outputs[i][0] for i in rows])):
            texts_out[i] = text
    return texts_out


def sampling_summary(task: TaskData) -> dict[str, Any]:
    """What the run logs at its start: examples and sampling probability per direction."""
    return {
        "sampling_p": task.distribution(),
        "train_examples": {p.name: len(p.train) for p in task.trained},
        "held_out": [p.name for p in task.pairs if p.held_out],
        "epoch_size": task.epoch_size,
        **({"language_tags": task.language_tags} if task.language_tags else {}),
    }
