"""Back-translation and forward translation: synthetic parallel data from monolingual text.

    back:    target-side text --reverse model--> synthetic sources; pairs (synthetic, original)
    forward: source-side text --forward model--> synthetic targets; pairs (original, synthetic)

Generation goes through `inference.sharded` (streamed windows, resumable shards, one process
or many under torchrun) and an engine's `translate_ids` (`inference.engine`: PyTorch or
CTranslate2; batched, length-sorted):

    for window in windows(input, window_lines):                # one window in memory
        ids = encode(window); order = argsort(len(ids), descending)
        for k, shard in chunks(order, shard_size):             # skipped when already done;
            outs = engine.translate_ids(ids[shard])            # under torchrun: rank k's share
            write work_dir/shard-k.jsonl atomically; update work_dir/manifest.json
    rows = each window's shards sorted by (line, output)       # input order, streamed
    rows -> filters (empty, length ratio, copy, duplicate; each counted) -> noise -> tag -> file

A killed run resumes from its shard files: finished shards are kept, interrupted ones are
generated again, so no line is lost or duplicated, with any number of processes. Sampling
is seeded per shard, so a resumed or multi-process run writes what an uninterrupted single
process would. The manifest records the model, the input (a hash of its lines), the window
and the generation settings; resuming with other ones is refused.

Modes: "greedy"; "beam" (n-best with `outputs_per_sentence` <= `num_beams`); "sample"
(`outputs_per_sentence` independent samples with temperature, top-k, top-p); "noised_beam"
(beam, then noise on the source side of each produced pair: Edunov et al. 2018 drop words
with p=0.1, replace words with a filler with p=0.1 and shuffle within k=3, the defaults of
`EDUNOV_NOISE`). Noise and the tag always go on the source side: the synthetic source in
back-translation, the original source in forward translation (noisy self-training).

Tagged back-translation (Caswell et al. 2019) prepends `tag` (e.g. "[BT]") to each source.
The tag is plain text and the vocabulary is not changed: SentencePiece splits it into pieces
the model already has (Bergamot en/pt: "[BT]" -> `▁[`, `BT`, `]`), a prefix the model learns
to read as one marker. Pick a tag whose characters the vocabulary knows: in the Bergamot
vocabularies `<`, `#`, `@`, `{` and `«` are `<unk>`, so "<BT>" would start with an unknown
piece. That works unchanged with frozen embeddings (LoRA, adapters) and with
Marian-native models whose vocabulary is fixed. `tag_pieces` shows the split and
`check_tag` refuses a tag that would become `<unk>`. (Adding a new special token would need
`tokenizer.add_special_tokens` + `model.resize_token_embeddings` and full fine-tuning of the
embedding row; mtadapt does not do that.)
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from mtadapt.augment.noise import NoiseConfig, Noiser, WordVocabulary
from mtadapt.errors import DataError
from mtadapt.inference import sharded
from mtadapt.inference.engine import Engine, engine_id
from mtadapt.inference.generation import GenerationConfig
from mtadapt.inference.sharded import Ranks
from mtadapt.io import atomic_write_json, atomic_writer
from mtadapt.models.languages import PairCodec
from mtadapt.progress import Progress, ProgressMode
from mtadapt.settings import EDUNOV_NOISE, BacktranslationConfig, Direction, Mode

MANIFEST = sharded.MANIFEST


@dataclass
class SyntheticRow:
    """One generated output: line `index` of the input, output number `output`."""

    index: int
    output: int
    original: str
    synthetic: str


@dataclass
class FilterReport:
    """Counts of one back-translation run, each drop counted under the first filter it fails."""

    input_lines: int = 0
    empty_inputs: int = 0
    generated: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"empty": 0, "length_ratio": 0, "copy": 0, "duplicate": 0})
    kept: int = 0

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in self.dropped.items())
        return (f"{self.input_lines} input lines ({self.empty_inputs} empty, skipped), {self.generated} outputs, "
                f"dropped: {drops}; kept {self.kept}")


# ---------------------------------------------------------------------------------------
# Generation in resumable shards (inference.sharded: windows, shards, ranks).


def _settings(config: BacktranslationConfig, model_id: dict[str, Any]) -> dict[str, Any]:
    generation = asdict(config.generation_config())
    # The batch size may change on resume (say, after running out of memory); it only moves
    # the length limit of outputs that never reach </s> (the limit follows the batch width).
    generation.pop("batch_size")
    return {"model": model_id, "generation": generation, "seed": config.seed, "shard_size": config.shard_size}


def generate_shards(
    engine: Engine,
    lines: Sequence[str] | str | Path,
    work_dir: str | Path,
    config: BacktranslationConfig,
    model_id: dict[str, Any] | None = None,
    progress: bool | ProgressMode = False,
    ranks: Ranks | None = None,
) -> int:
    """Translate `lines` (a list, or a file read as a stream) into shard files under
    `work_dir`, skipping finished shards; under a launcher, this rank's share of them.

    Empty lines are not translated (they get no rows).

    Args:
        engine: What translates (`inference.engine.PyTorchEngine(model, codec)`, or CTranslate2).
        model_id: What identifies the model in the manifest (name, adapters); the engine's
            name and precision are added.
        ranks: This process among the run's processes (default: the only one).

    Returns:
        The number of shards generated by this call (0 when all were already done).

    Raises:
        ValueError: `work_dir` holds a run of another input, model or settings.
    """
    made, _ = sharded.generate_shards(
        engine, sharded.line_source(lines), work_dir, _settings(config, {**(model_id or {}), **engine_id(engine)}),
        config.generation_config(),
        window_lines=config.window_lines, shard_size=config.shard_size, seed=config.seed, skip_empty=True, ranks=ranks,
        progress=progress, desc="back-translate" if config.direction == "back" else "forward-translate",
    )
    return made


def iter_shard_rows(work_dir: str | Path, lines: Sequence[str] | str | Path) -> Iterator[SyntheticRow]:
    """The rows of a finished run in input order (line, then output number), one window
    in memory at a time.

    Raises:
        ValueError: the run is unfinished, or a line is missing or appears twice (a corrupt folder).
    """
    for index, output, original, text in sharded.iter_rows(work_dir, sharded.line_source(lines), skip_empty=True):
        yield SyntheticRow(index, output, original, " ".join(text.split()))


def read_shards(work_dir: str | Path, lines: Sequence[str] | str | Path) -> list[SyntheticRow]:
    """All rows of a finished run, in input order (line, then output number).

    Raises:
        ValueError: the run is unfinished, or a line appears twice (a corrupt folder).
    """
    return list(iter_shard_rows(work_dir, lines))


# ---------------------------------------------------------------------------------------
# Filters, noise, tag, output.


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def _pair_key(row: SyntheticRow) -> int:
    """64 bits of blake2b of the pair: the duplicate filter keeps this, not the texts (a
    collision among 10^8 pairs: p < 3e-4)."""
    digest = hashlib.blake2b(f"{row.synthetic}\t{row.original}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SeenPairs:
    """An exact set of 64-bit keys at ~8 bytes a key: a sorted uint64 array, plus a Python
    set of the latest keys that is merged into it every `merge_every` additions (a Python
    set of ints costs ~70 bytes a key; 10^7 kept pairs: ~80 MB here, ~700 MB there).

        key in seen  =  key in recent or sorted[searchsorted(sorted, key)] == key
    """

    def __init__(self, merge_every: int = 1 << 16):
        self.sorted = np.empty(0, dtype=np.uint64)
        self.recent: set[int] = set()
        self.merge_every = merge_every

    def __contains__(self, key: int) -> bool:
        if key in self.recent:
            return True
        i = int(np.searchsorted(self.sorted, np.uint64(key)))
        return i < len(self.sorted) and int(self.sorted[i]) == key

    def add(self, key: int) -> None:
        if key in self:
            return
        self.recent.add(key)
        if len(self.recent) >= self.merge_every:
            self.sorted = np.union1d(self.sorted, np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent)))
            self.recent.clear()

    def __len__(self) -> int:
        return len(self.sorted) + len(self.recent)


def iter_filtered(rows: Iterable[SyntheticRow], config: BacktranslationConfig, report: FilterReport) -> Iterator[SyntheticRow]:
    """Drop empty outputs, length-ratio outliers (characters), copies of the input and
    duplicate pairs, in that order, counting each in `report.dropped` (and the rows seen in
    `report.generated`, the kept ones in `report.kept`) as the rows stream by."""
    seen = SeenPairs()
    for row in rows:
        report.generated += 1
        a, b = len(row.synthetic.strip()), len(row.original.strip())
        if config.drop_empty and a == 0:
            reason = "empty"
        elif config.max_length_ratio and max(a, b) > config.max_length_ratio * max(min(a, b), 1):
            reason = "length_ratio"
        elif config.drop_copies and _normalized(row.synthetic) == _normalized(row.original):
            reason = "copy"
        elif config.drop_duplicates and (key := _pair_key(row)) in seen:
            reason = "duplicate"
        else:
            if config.drop_duplicates:
                seen.add(key)
            report.kept += 1
            yield row
            continue
        report.dropped[reason] += 1


def filter_rows(rows: Sequence[SyntheticRow], config: BacktranslationConfig, report: FilterReport) -> list[SyntheticRow]:
    """`iter_filtered` as a list (counts drops and kept rows in `report`)."""
    generated = report.generated
    kept = list(iter_filtered(rows, config, report))
    report.generated = generated  # the caller counts what was generated
    return kept


def tag_source(text: str, tag: str | None) -> str:
    """`"<BT> " + text`, or `text` when `tag` is None."""
    return text if tag is None else f"{tag} {text}"


def tag_pieces(codec: PairCodec, tag: str) -> list[int]:
    """The token ids the tag becomes at the start of a source: the ids of `tag` alone
    without what an empty source also has (language codes, T5 prefix, `</s>`)."""
    with_tag = codec.encode_sources([tag])[0]
    empty = codec.encode_sources([""])[0]
    start = 0
    while start < min(len(with_tag), len(empty)) and with_tag[start] == empty[start]:
        start += 1
    end = 0
    while end < min(len(with_tag), len(empty)) - start and with_tag[-1 - end] == empty[-1 - end]:
        end += 1
    return with_tag[start : len(with_tag) - end]


def check_tag(codec: PairCodec, tag: str) -> list[int]:
    """`tag_pieces`, refusing a tag that the tokenizer turns into unknown tokens.

    Raises:
        ValueError: the tag tokenizes to `<unk>`.
    """
    ids = tag_pieces(codec, tag)
    tok = codec.tokenizer
    if codec.family.native:  # mtadapt's Marian port: a SentencePiece tokenizer
        unknown = tok.unk_id in ids
    else:  # HF: by id and by text (tiny mBART-50 has two <unk> ids)
        unknown = tok.unk_token_id in ids or tok.unk_token in tok.convert_ids_to_tokens(ids)
    if unknown:
        raise ValueError(f"tag {tag!r} becomes <unk> with this tokenizer (ids {ids}); choose a tag made of characters it knows, e.g. '[BT]'")
    return ids


def iter_synthetic_pairs(rows: Iterable[SyntheticRow], config: BacktranslationConfig,
                         vocabulary: WordVocabulary | None = None) -> Iterator[tuple[str, str]]:
    """(source, target) pairs: noise (noised_beam) and tag on the source side.

    `vocabulary`: the words insertion noise draws from (`insertion_source="vocabulary"`), built
    from all synthetic sources (`synthetic_pairs` builds it; a stream needs a first pass).
    """
    noise = config.source_noise()
    noiser = None if noise is None else Noiser(noise, vocabulary)
    for r in rows:
        s, t = (r.synthetic, r.original) if config.direction == "back" else (r.original, r.synthetic)
        if noiser is not None:
            s = noiser(s, r.index * config.outputs_per_sentence + r.output)  # per pair: any order gives the same noise
        yield tag_source(s, config.tag), t


def _needs_vocabulary(config: BacktranslationConfig) -> bool:
    noise = config.source_noise()
    return noise is not None and noise.insertion_prob > 0 and noise.insertion_source == "vocabulary"


def _sources(rows: Iterable[SyntheticRow], config: BacktranslationConfig) -> Iterator[str]:
    return (r.synthetic if config.direction == "back" else r.original for r in rows)


def synthetic_pairs(rows: Sequence[SyntheticRow], config: BacktranslationConfig) -> list[tuple[str, str]]:
    """(source, target) pairs: noise (noised_beam) and tag on the source side."""
    vocabulary = WordVocabulary.from_texts(_sources(rows, config), config.source_noise().unit) if _needs_vocabulary(config) else None
    return list(iter_synthetic_pairs(rows, config, vocabulary))


def write_pairs(pairs: Iterable[tuple[str, str]], output_src: str | Path, output_tgt: str | Path | None = None) -> int:
    """Write a Moses pair (`output_src`, `output_tgt`) or, without `output_tgt`, a TSV file,
    as the pairs stream by (each file atomically); returns the number of pairs."""
    n = 0
    with atomic_writer(output_src) as src, (atomic_writer(output_tgt) if output_tgt is not None else nullcontext()) as tgt:
        for s, t in pairs:
            s, t = " ".join(s.split()), " ".join(t.split())  # no tabs or newlines inside
            if tgt is None:
                src.write(f"{s}\t{t}\n")
            else:
                src.write(s + "\n")
                tgt.write(t + "\n")
            n += 1
    return n


def _pairs_of_run(work_dir: Path, lines: Sequence[str] | str | Path, config: BacktranslationConfig,
                  report: FilterReport) -> Iterator[tuple[str, str]]:
    """The finished run's rows, filtered, noised and tagged, streamed (a first pass builds
    the insertion vocabulary when the noise needs one)."""
    vocabulary = None
    if _needs_vocabulary(config):
        first = iter_filtered(iter_shard_rows(work_dir, lines), config, FilterReport())
        vocabulary = WordVocabulary.from_texts(_sources(first, config), config.source_noise().unit)
    return iter_synthetic_pairs(iter_filtered(iter_shard_rows(work_dir, lines), config, report), config, vocabulary)


def backtranslate(
    engine: Engine,
    lines: Sequence[str],
    work_dir: str | Path,
    config: BacktranslationConfig,
    model_id: dict[str, Any] | None = None,
    progress: bool | ProgressMode = False,
) -> tuple[list[tuple[str, str]], FilterReport]:
    """Generate (resuming in `work_dir`), filter, noise and tag: the synthetic pairs.

    Args:
        engine: The reverse model for back-translation (target -> source), the forward model
            for forward translation, as an engine (`runs.open_engine`); its codec's source
            language is the input's language.
        lines: Monolingual text, one sentence per line (in memory; `backtranslate_file`
            streams a file of any size).
        work_dir: Shards and the manifest; reuse it to resume.

    Returns:
        (source, target) pairs in input order, and the counts.
    """
    generate_shards(engine, lines, work_dir, config, model_id, progress)
    report = FilterReport(input_lines=len(lines), empty_inputs=sum(1 for line in lines if not line.strip()))
    return list(_pairs_of_run(Path(work_dir), lines, config, report)), report


# ---------------------------------------------------------------------------------------
# Mixing real and synthetic data.


def mix_corpora(
    real: Sequence[tuple[str, str]],
    synthetic: Sequence[tuple[str, str]],
    real_upsample: float = 1.0,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """Real pairs repeated `real_upsample` times, then the synthetic pairs.

        mixed = real * floor(r) + sample(real, round(frac(r) * len(real))) + synthetic

    A ratio such as 2.5 repeats every real pair twice and half of them (chosen with `seed`)
    a third time. The trainer shuffles batches, so the order here does not matter.

    Raises:
        ValueError: `real_upsample` < 1.
    """
    if real_upsample < 1:
        raise ValueError(f"real_upsample must be >= 1 (times each real pair is used), got {real_upsample}")
    whole = math.floor(real_upsample)
    extra = round((real_upsample - whole) * len(real))
    picked = sorted(np.random.default_rng(seed).choice(len(real), size=extra, replace=False).tolist()) if extra else []
    return list(real) * whole + [real[i] for i in picked] + list(synthetic)


def read_pairs(paths: Sequence[str | Path], report: Any | None = None) -> list[tuple[str, str]]:
    """Pairs of a Moses pair `(src_file, tgt_file)` or one TSV file, checked by the data
    readers; pairs with an empty side or a control character are dropped and counted in
    `report` (a `mtadapt.data.DataReport`) under their reason, with file:line examples."""
    from mtadapt.data.prepare import read_texts
    from mtadapt.data.readers import CorpusSpec

    texts = read_texts(CorpusSpec(paths=tuple(Path(p) for p in paths), src_lang="src", tgt_lang="tgt"))
    if report is not None:
        report.merge(texts.report)
    return list(zip(texts.src, texts.tgt))


def write_mixed_corpus(
    real_paths: Sequence[str | Path],
    synthetic_paths: Sequence[str | Path],
    output_src: str | Path,
    output_tgt: str | Path | None = None,
    real_upsample: float = 1.0,
    seed: int = 0,
) -> dict[str, int]:
    """Read real and synthetic corpora (Moses pairs or TSV), mix them (`mix_corpora`) and
    write the result (Moses pair, or TSV without `output_tgt`).

    Returns:
        The counts: "real", "synthetic" and "mixed" pairs, and "real_report" /
        "synthetic_report", the readers' summaries (pairs read, kept, dropped per reason).

    Raises:
        DataError: a corpus with no usable pair (its summary says why).
    """
    from mtadapt.data.validation import DataReport

    reports = {"real": DataReport(), "synthetic": DataReport()}
    real, synthetic = read_pairs(real_paths, reports["real"]), read_pairs(synthetic_paths, reports["synthetic"])
    for side, pairs, paths in (("real", real, real_paths), ("synthetic", synthetic, synthetic_paths)):
        if not pairs:
            raise DataError(f"{side} corpus {' '.join(map(str, paths))} has no usable pair: {reports[side].summary()}")
    mixed = mix_corpora(real, synthetic, real_upsample, seed)
    write_pairs(mixed, output_src, output_tgt)
    return {"real": len(real), "synthetic": len(synthetic), "mixed": len(mixed),
            "real_report": reports["real"].summary(), "synthetic_report": reports["synthetic"].summary()}


def backtranslate_file(
    input_path: str | Path,
    output_src: str | Path,
    output_tgt: str | Path | None,
    config: BacktranslationConfig,
    *,
    run: str | None = None,
    model: str | None = None,
    adapters: list[str] | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    work_dir: str | Path | None = None,
    progress: bool | ProgressMode = False,
    shortlist: bool | None = None,
    dtype: str | None = None,
    engine: str = "pytorch",
    compute_type: str | None = None,
) -> FilterReport | None:
    """`backtranslate` a text file, streamed, with a model opened by `open_for_inference`;
    writes the pairs and `report.json` in the work folder (default: `<output_src>.shards`).

    Under torchrun / accelerate launch each process makes its share of the shards (on its
    own GPU when there are GPUs) and rank 0 merges; the others return None.

    `src_lang`/`tgt_lang` are the model's direction: for back-translation into a pt->en
    training set, a en->pt model with src_lang en, tgt_lang pt. `shortlist`: see
    `open_for_inference`. `engine`, `compute_type`, `dtype`: see `runs.open_engine`; the
    engine and its precision are part of the resume fingerprint, so a run never mixes them.
    """
    from mtadapt.runs import open_engine

    source = sharded.line_source(input_path)
    ranks = sharded.current_ranks()
    # generation only: nothing is trained or saved
    translator = open_engine(engine=engine, run=run, model=model, adapters=adapters, src_lang=src_lang, tgt_lang=tgt_lang,
                             shortlist=shortlist, dtype=dtype, compute_type=compute_type, device=ranks.device, ranks=ranks)
    codec = translator.codec
    if config.tag is not None and ranks.main:
        try:
            check_tag(codec, config.tag)
        except ValueError as err:  # a warning: the model to be trained may have another vocabulary
            warnings.warn(f"{err} (checked with the tokenizer of {translator.model_name})", stacklevel=2)
    work_dir = Path(work_dir) if work_dir else Path(f"{output_src}.shards")
    model_id = {"model": translator.model_name, "run": run, "adapters": sorted(adapters or []), **engine_id(translator)}
    with sharded.hold_work_folder(work_dir, ranks):  # from the first shard to the merge
        made, layout = sharded.generate_shards(
            translator, source, work_dir, _settings(config, model_id), config.generation_config(),
            window_lines=config.window_lines, shard_size=config.shard_size, seed=config.seed, skip_empty=True, ranks=ranks,
            progress=progress, desc="back-translate" if config.direction == "back" else "forward-translate",
        )
        if not ranks.main:
            return None
        report = FilterReport(input_lines=layout.input_lines, empty_inputs=layout.input_lines - sum(layout.kept_per_window))
        write_pairs(_pairs_of_run(work_dir, input_path, config, report), output_src, output_tgt)
        atomic_write_json(work_dir / "report.json", asdict(report))
    return report
