"""The served model: one base, one codec per language pair, generation of a batch of jobs.

`Engine.generate(jobs)` is what the worker runs for one batch. Every job of a batch has the
same pair, beam size, length factor and n-best size (the worker groups them so); its rows may name
different adapters:

    rows = [(src_ids, adapter) for job in jobs for src_ids in job.src_ids]
    ensure_loaded({adapter of every row})
    out = translate_ids(model, codec, [ids for ids, _ in rows], generation,   # n-best: num_return
                        batch_context=lambda chunk: routing(model, [adapter of row i for i in chunk]))
    out[i][k] = out[i][k][: ceil(factor * len(src_ids of row i)) + 5]    # its own length limit
    (beam search: rows grouped by source length first; see `_generate_rows`)

`translate_ids` is the one generation path (`mtadapt translate` uses it too) and per-row
routing is the methods' own (`mtadapt.methods.base.routing`, beam-safe), so each output equals
what `mtadapt translate` with that adapter gives for that sentence alone.

An adapter served by CTranslate2 (`engine: ctranslate2`) is a merged, converted translator
(`inference.ctranslate2.CTranslate2Engine`, its folder from the run-level cache keyed by the
adapter's fingerprint and compute type), opened on first use under the same `max_loaded` LRU.
It holds one adapter, so its requests form batches of their own (`batch_group`); the rows go
through the same `_generate_rows` (own length limits, beam rows grouped by length), with the
translator in place of `translate_ids`. With `engine: ctranslate2` for the whole server the
base model (requests naming no adapter) is a translator too, opened at start.

With `merge_single_lora`, a batch whose rows all use one LoRA adapter runs with that adapter
merged into the base weights (W + s B A) and no routing; the original weights are kept and
copied back, bit for bit, before any other batch. Merged outputs equal the unmerged ones up
to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from mtadapt.inference.generation import GenerationConfig, translate_ids
from mtadapt.methods import base
from mtadapt.methods.merge import MergedAdapter, merge_in_place
from mtadapt.models.codes import public_code
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import LoadedModel, load_model
from mtadapt.serve.config import BASE_ADAPTER, AdapterEntry, PairEntry, ServeConfig
from mtadapt.serve.languages import every_direction
from mtadapt.serve.registry import AdapterRecord, AdapterRegistry
from mtadapt.serve.translators import ComputeTypeError, FolderOf, NotConvertibleError, Translators, ctranslate2_folder_of
from mtadapt.serve.worker import Job


def default_pairs(config: ServeConfig, model_name: str, run_langs: list[tuple[str | None, str | None]],
                  loaded: LoadedModel) -> list[PairEntry]:
    """The configured pairs, else the run's directions, else a `bergamot:<src>-<tgt>` model's,
    else every direction the model family knows (`serve.languages.every_direction`).

    Raises:
        ConfigError: nothing says which direction to serve.
    """
    if config.pairs:
        return list(config.pairs)
    trained = list(dict.fromkeys((s, t) for s, t in run_langs if s and t))  # a run's directions, in order, once
    if trained:
        return [PairEntry(public_code(s), public_code(t), s, t) for s, t in trained]
    if model_name.startswith("bergamot:") and "-" in model_name:
        src, tgt = model_name[len("bergamot:"):].split("-", 1)
        return [PairEntry(src, tgt)]
    return every_direction(model_name, loaded)


class Engine:
    """Base model + codecs + adapter registry; `generate` runs on the worker thread only.

    `engine`, `compute_type`: what serves the base and the adapters whose entries name none
    (`serve.translators`; `folder_of`: where converted folders come from, default the
    run-level cache, converted from `load_base()`, the base as stored). Raises
    NotConvertibleError / ComputeTypeError at start when CTranslate2 cannot run the base or
    the device lacks the compute type.
    """

    def __init__(self, loaded: LoadedModel, pairs: list[PairEntry], max_loaded: int = 0,
                 max_batch_sentences: int = 32, merge_single_lora: bool = False, precision: str = "float32",
                 engine: str = "pytorch", compute_type: str = "int8", folder_of: FolderOf | None = None,
                 load_base: Callable[[], LoadedModel] | None = None) -> None:
        self.loaded = loaded
        self.registry = AdapterRegistry(loaded, max_loaded)
        self.pairs: dict[tuple[str, str], PairEntry] = {}
        self.codecs: dict[tuple[str, str], PairCodec] = {}
        native = loaded.family.name == "marian_native"
        for pair in pairs:
            src = None if native else (pair.src_lang or pair.source)
            tgt = None if native else (pair.tgt_lang or pair.target)
            key = (pair.source, pair.target)
            self.pairs[key] = pair
            self.codecs[key] = PairCodec(loaded.family, loaded.tokenizer, src, tgt, loaded.decoder_start_token_id)
        self.max_batch_sentences = max_batch_sentences
        self.merge_single_lora = merge_single_lora
        self._merged: MergedAdapter | None = None  # the LoRA adapter merged into the base now, if any
        self.translators = Translators(loaded, next(iter(self.codecs.values())), engine, compute_type, precision,
                                       folder_of or ctranslate2_folder_of(loaded, load_base))
        self.registry.translators = self.translators
        self.precision = self.translators.base_precision  # what the base generates in ("float32", "int8", ...)

    def encode(self, pair: tuple[str, str], texts: list[str]) -> list[list[int]]:
        """Token ids of `texts` (event-loop thread: the tokenizer is not shared with the worker)."""
        return self.codecs[pair].encode_sources(texts)

    def decode(self, pair: tuple[str, str], ids: list[list[int]]) -> list[str]:
        return self.codecs[pair].decode(ids)

    def register_adapters(self, entries: Sequence[AdapterEntry]) -> None:
        """Describe, register and (with `preload`, up to `max_loaded`) load the configured adapters.

        Raises:
            AdapterError: naming the adapter entry that failed.
        """
        from mtadapt.serve.registry import AdapterError

        for i, entry in enumerate(entries):
            cap = self.registry.max_loaded
            preload = entry.preload and (not cap or len(self.registry.loaded_names()) < cap)
            try:
                self.register(entry.name, entry.path, preload, entry.engine, entry.compute_type)
            except (NotConvertibleError, ComputeTypeError) as err:  # kept: one named error at start
                raise type(err)(f"adapters[{i}] ({entry.name}): {err}") from None
            except (AdapterError, OSError, ValueError) as err:
                raise AdapterError(f"adapters[{i}] ({entry.name}): {err}") from err

    def register(self, name: str, path: str | Path, preload: bool = True, engine: str | None = None,
                 compute_type: str | None = None) -> AdapterRecord:
        """Describe and register one adapter (start, `POST /v1/adapters`); a CTranslate2 one is
        converted here (or found in the cache), its translator opened on first use.

        Raises:
            AdapterError, NotConvertibleError, ComputeTypeError: naming the folder and why.
        """
        record = self.registry.describe(name, path)
        self.translators.prepare(record, engine, compute_type)
        self.registry.register(record, preload=preload)
        return record

    def batch_group(self, adapter: str | None, cross_adapter: bool) -> str:
        """The worker's grouping key of a request on `adapter` (None: the base): "routable" when
        its rows may share a batch with other adapters' (PyTorch, a method routed per row,
        `cross_adapter` on), else its own name (a CTranslate2 translator holds one adapter)."""
        if adapter is None:
            routable = self.translators.base is None
        else:
            record = self.registry.get(adapter)
            routable = record is None or record.routable
        return "routable" if routable and cross_adapter else (adapter or BASE_ADAPTER)

    def engines(self) -> list[tuple[str, str, str]]:
        """(adapter, engine, precision) of the base (BASE_ADAPTER) and of every registered adapter."""
        base_engine = "ctranslate2" if self.translators.base is not None else "pytorch"
        return [(BASE_ADAPTER, base_engine, self.precision)] + [(r.name, r.engine, r.precision) for r in self.registry.records()]

    def generate(self, jobs: Sequence[Job]) -> list[list[list[list[int]]]]:
        """Per job, per text, its `num_return` best outputs' ids, best first. Worker thread only.

        Raises:
            AdapterError: an adapter that cannot be loaded; anything generation raises.
        """
        first = jobs[0]
        key = (first.pair, first.num_beams, first.max_length_factor, first.num_return)
        assert all((j.pair, j.num_beams, j.max_length_factor, j.num_return) == key for j in jobs)
        codec = self.codecs[first.pair]
        ids = [s for job in jobs for s in job.src_ids]
        rows = [job.adapter or BASE_ADAPTER for job in jobs for _ in job.src_ids]
        names = sorted({r for r in rows if r != BASE_ADAPTER})
        single = names[0] if len(names) == 1 and BASE_ADAPTER not in rows else None
        record = self.registry.get(single) if single else None
        merged = self.merge_single_lora and record is not None and record.method == "lora" and record.engine == "pytorch"
        if self._merged is not None and (not merged or self._merged.name != single):
            self._unmerge()  # before any eviction: a merged adapter's delta sits in the base weights
        self.registry.ensure_loaded(names)
        for name in names:
            record = self.registry.get(name)
            if record is not None:
                record.requests_served += sum(1 for j in jobs if j.adapter == name)
                record.sentences_served += sum(1 for r in rows if r == name)
        generation = GenerationConfig(num_beams=first.num_beams, batch_size=self.max_batch_sentences,
                                      max_length_factor=first.max_length_factor, num_return_sequences=first.num_return)
        out = self._generate_rows(ids, rows, single if merged else None, codec, generation)
        result, start = [], 0
        for job in jobs:
            result.append(out[start : start + len(job.src_ids)])
            start += len(job.src_ids)
        return result

    def _generate_rows(self, ids: list[list[int]], rows: list[str], merged: str | None,
                       codec: PairCodec, generation: GenerationConfig) -> list[list[list[int]]]:
        """The n-best outputs of each row, each as if translated alone.

        `generate_batch` limits a batch's outputs to ceil(factor * padded width) + 5 tokens,
        so a short source batched with a long one may run longer than alone. Greedy search is
        prefix-consistent: cutting row i at its own limit (one less where the generation config
        forces EOS at the last step) gives exactly its output alone.
        Beam search is not (finished hypotheses depend on the limit), so beam rows are
        generated in groups of one source length, where the padded width is their own.
        """
        # a generation config with forced_eos_token_id (mBART) spends the last step on EOS
        forced_eos = getattr(getattr(self.loaded.model, "generation_config", None), "forced_eos_token_id", None) is not None
        limits = [math.ceil(generation.max_length_factor * len(s)) + 5 - int(forced_eos) for s in ids]
        if generation.num_beams == 1:
            groups = [list(range(len(ids)))]
        else:
            by_length: dict[int, list[int]] = {}
            for i, s in enumerate(ids):
                by_length.setdefault(len(s), []).append(i)
            groups = list(by_length.values())
        out: list[list[list[int]]] = [[] for _ in ids]
        for group in groups:
            for i, nbest in zip(group, self._translate([ids[i] for i in group], [rows[i] for i in group], merged, codec, generation)):
                out[i] = [o[: limits[i]] for o in nbest]
        return out

    def _translate(self, ids: list[list[int]], rows: list[str], merged: str | None, codec: PairCodec,
                   generation: GenerationConfig) -> list[list[list[int]]]:
        model = self.loaded.model
        translator = self.translators.of(rows[0])
        if translator is not None:  # one adapter per batch (`batch_group`); the pair's own prompt
            assert all(r == rows[0] for r in rows), "a CTranslate2 batch holds one adapter"
            out = translator.translate_ids(ids, generation, decoder_prompts=[codec.decoder_prompt()] * len(ids))
        elif merged is not None:
            self._merge(merged)
            base.set_active_adapters(model, [merged])  # merged: LoRA layers skip it, others have none
            try:
                out = translate_ids(model, codec, ids, generation)
            finally:
                base.set_active_adapters(model, [])
        else:
            out = translate_ids(model, codec, ids, generation,
                                batch_context=lambda chunk: base.routing(model, [rows[i] for i in chunk]))
        return out

    def _merge(self, name: str) -> None:
        if self._merged is not None and self._merged.name == name:
            return
        self._unmerge()
        self._merged = merge_in_place(self.loaded.model, name)

    def _unmerge(self) -> None:
        """Restore the exact base weights (`methods.merge`: copied back, not subtracted)."""
        if self._merged is not None:
            self._merged.restore()
            self._merged = None

    def before_unload(self, name: str) -> None:
        """Called before an adapter leaves memory: a merged adapter is unmerged first."""
        if self._merged is not None and self._merged.name == name:
            self._unmerge()


def load_engine(config: ServeConfig) -> Engine:
    """Load the base model (and a run folder's settings), build codecs, register adapters.

    Raises:
        ValueError / AdapterError / ConfigError: naming what failed.
    """
    from mtadapt.runs import place_for_inference, read_run_config, run_adapter

    model_name, family, tokenizer, shortlist = config.model, None, None, config.shortlist
    run_langs: list[tuple[str | None, str | None]] = []
    adapters = list(config.adapters)
    run_name = None  # a run's adapter: the default adapter of the directions it gives
    if config.run is not None:
        cfg = read_run_config(config.run)
        model_name = model_name or cfg.model.name_or_path
        family, tokenizer = cfg.model.family, cfg.model.tokenizer
        shortlist = shortlist and cfg.model.shortlist
        run_langs = [(d.src_lang, d.tgt_lang) for d in cfg.data.pair_corpora()]
        from pathlib import Path

        run_name = Path(config.run).resolve().name
        if not any(a.name == run_name for a in adapters):
            run_adapter(config.run)  # a clear error when the run has no finished adapter
            adapters.insert(0, AdapterEntry(name=run_name, path=str(config.run)))
    assert model_name is not None  # validated: model or run
    loaded = load_model(model_name, family=family, tokenizer=tokenizer, shortlist=shortlist)
    precision = place_for_inference(loaded.model, config.dtype)
    loaded.model.eval()
    pairs = list(config.pairs)
    if not pairs:
        pairs = [PairEntry(**{**vars(p), "adapter": p.adapter or run_name})
                 for p in default_pairs(config, model_name, run_langs, loaded)]
    engine = Engine(loaded, pairs, config.max_loaded, config.batching.max_batch_sentences,
                    config.batching.merge_single_lora, precision, config.engine, config.compute_type,
                    load_base=lambda: load_model(model_name, family=family, tokenizer=tokenizer, shortlist=shortlist))
    engine.register_adapters(adapters)
    return engine
