"""Back-translation and forward translation: synthetic parallel data from monolingual text.

    back:    target-side text --reverse model--> synthetic sources; pairs (synthetic, original)
    forward: source-side text --forward model--> synthetic targets; pairs (original, synthetic)

Generation goes through `evaluate.generation.translate_ids` (batched, length-sorted), in
shards over the length-sorted input:

    ids   = encode(lines); order = argsort(len(ids), descending)
    for k, shard in enumerate(chunks(order, shard_size)):   # skipped when already done
        outs = translate_ids(model, ids[shard])             # N outputs per line
        write work_dir/shard-k.jsonl atomically; add k to work_dir/manifest.json atomically
    rows = all shards sorted by (line, output)              # input order
    rows -> filters (empty, length ratio, copy, duplicate; each counted) -> noise -> tag

A killed run resumes from the manifest: finished shards are kept, the interrupted one is
generated again, so no line is lost or duplicated. Sampling is seeded per shard, so a resumed
run writes what an uninterrupted one would. The manifest records the model, the input
(a hash of its lines) and the generation settings; resuming with other ones is refused.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from mtadapt.augment.noise import NoiseConfig, Noiser, WordVocabulary
from mtadapt.evaluate.generation import GenerationConfig, translate_ids
from mtadapt.models.languages import PairCodec
from mtadapt.progress import Progress, ProgressMode
from mtadapt.settings import EDUNOV_NOISE, BacktranslationConfig, Direction, Mode
from mtadapt.train.checkpoint import atomic_write_text

MANIFEST = "manifest.json"


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
# Generation in resumable shards.


def _fingerprint(lines: Sequence[str], config: BacktranslationConfig, model_id: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha1("\n".join(lines).encode("utf-8")).hexdigest()
    generation = asdict(config.generation_config())
    # The batch size may change on resume (say, after running out of memory); it only moves
    # the length limit of outputs that never reach </s> (the limit follows the batch width).
    generation.pop("batch_size")
    return {"model": model_id, "input_lines": len(lines), "input_sha1": digest, "generation": generation,
            "seed": config.seed, "shard_size": config.shard_size}


def _read_manifest(work_dir: Path, fingerprint: dict[str, Any]) -> list[int]:
    path = work_dir / MANIFEST
    if not path.exists():
        return []
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest["fingerprint"] != fingerprint:
        changed = [k for k in fingerprint if manifest["fingerprint"].get(k) != fingerprint[k]]
        raise ValueError(
            f"{work_dir} holds a run with other settings (differs in: {', '.join(changed)}); "
            "use another work folder, or delete this one to start over"
        )
    return [k for k in manifest["done_shards"] if (work_dir / _shard_name(k)).exists()]


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.jsonl"


def generate_shards(
    model: nn.Module,
    codec: PairCodec,
    lines: Sequence[str],
    work_dir: str | Path,
    config: BacktranslationConfig,
    model_id: dict[str, Any] | None = None,
    progress: bool | ProgressMode = False,
) -> int:
    """Translate `lines` into shard files under `work_dir`, skipping finished shards.

    Empty lines are not translated (they get no rows).

    Args:
        model_id: What identifies the model in the manifest (name, adapters).

    Returns:
        The number of shards generated by this call (0 when all were already done).

    Raises:
        ValueError: `work_dir` holds a run of another input, model or settings.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(lines, config, model_id or {})
    done = _read_manifest(work_dir, fingerprint)
    kept = [i for i, line in enumerate(lines) if line.strip()]
    ids = codec.encode_sources([lines[i] for i in kept])
    # Shards over the length-sorted input: each shard's batches hold similar lengths.
    order = sorted(range(len(kept)), key=lambda j: len(ids[j]), reverse=True)
    shards = [order[s : s + config.shard_size] for s in range(0, len(order), config.shard_size)]
    generation = config.generation_config()
    n = generation.num_return_sequences
    device = next(model.parameters()).device
    made = 0
    bar = Progress(len(kept), "back-translate" if config.direction == "back" else "forward-translate", unit="sent",
                   mode=progress, initial=sum(len(shards[k]) for k in done if k < len(shards)))
    for k, shard in enumerate(shards):
        if k in done:
            continue
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed * 1_000_003 + k)  # sampling: same draws after a resume
            outputs = translate_ids(model, codec, [ids[j] for j in shard], generation)
        texts = codec.decode([o for per_line in outputs for o in per_line])
        rows = []
        for position, j in enumerate(shard):
            for r in range(n):
                text = texts[position * n + r] if r < len(outputs[position]) else ""
                rows.append(json.dumps({"index": kept[j], "output": r, "synthetic": " ".join(text.split())}, ensure_ascii=False))
        atomic_write_text(work_dir / _shard_name(k), "".join(row + "\n" for row in rows))
        done.append(k)
        atomic_write_text(work_dir / MANIFEST, json.dumps(
            {"fingerprint": fingerprint, "num_shards": len(shards), "done_shards": sorted(done)}, indent=1))
        made += 1
        bar.update(len(shard))
    bar.close()
    return made


def read_shards(work_dir: str | Path, lines: Sequence[str]) -> list[SyntheticRow]:
    """All rows of a finished run, in input order (line, then output number).

    Raises:
        ValueError: the run is unfinished, or a line appears twice (a corrupt folder).
    """
    work_dir = Path(work_dir)
    manifest = json.loads((work_dir / MANIFEST).read_text(encoding="utf-8"))
    missing = sorted(set(range(manifest["num_shards"])) - set(manifest["done_shards"]))
    if missing:
        raise ValueError(f"{work_dir}: shards {missing[:5]}{'...' if len(missing) > 5 else ''} are not done; run again to resume")
    rows: list[SyntheticRow] = []
    for k in range(manifest["num_shards"]):
        for line in (work_dir / _shard_name(k)).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            rows.append(SyntheticRow(row["index"], row["output"], lines[row["index"]], row["synthetic"]))
    rows.sort(key=lambda r: (r.index, r.output))
    keys = [(r.index, r.output) for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{work_dir}: some lines appear in two shards; delete the folder and start over")
    return rows


# ---------------------------------------------------------------------------------------
# Filters, noise, tag, output.


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def filter_rows(rows: Sequence[SyntheticRow], config: BacktranslationConfig, report: FilterReport) -> list[SyntheticRow]:
    """Drop empty outputs, length-ratio outliers (characters), copies of the input and
    duplicate pairs, in that order, counting each in `report.dropped`."""
    kept, seen = [], set()
    for row in rows:
        a, b = len(row.synthetic.strip()), len(row.original.strip())
        if config.drop_empty and a == 0:
            reason = "empty"
        elif config.max_length_ratio and max(a, b) > config.max_length_ratio * max(min(a, b), 1):
            reason = "length_ratio"
        elif config.drop_copies and _normalized(row.synthetic) == _normalized(row.original):
            reason = "copy"
        elif config.drop_duplicates and (row.synthetic, row.original) in seen:
            reason = "duplicate"
        else:
            seen.add((row.synthetic, row.original))
            kept.append(row)
            continue
        report.dropped[reason] += 1
    report.kept = len(kept)
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


def synthetic_pairs(rows: Sequence[SyntheticRow], config: BacktranslationConfig) -> list[tuple[str, str]]:
    """(source, target) pairs: noise (noised_beam) and tag on the source side."""
    pairs = [(r.synthetic, r.original) if config.direction == "back" else (r.original, r.synthetic) for r in rows]
    noise = config.source_noise()
    if noise is not None:
        vocabulary = None
        if noise.insertion_prob > 0 and noise.insertion_source == "vocabulary":
            vocabulary = WordVocabulary.from_texts([s for s, _ in pairs], noise.unit)
        noiser = Noiser(noise, vocabulary)
        pairs = [(noiser(s, r.index * config.outputs_per_sentence + r.output), t) for (s, t), r in zip(pairs, rows)]
    return [(tag_source(s, config.tag), t) for s, t in pairs]


def write_pairs(pairs: Sequence[tuple[str, str]], output_src: str | Path, output_tgt: str | Path | None = None) -> None:
    """Write a Moses pair (`output_src`, `output_tgt`) or, without `output_tgt`, a TSV file."""
    clean = [(" ".join(s.split()), " ".join(t.split())) for s, t in pairs]  # no tabs or newlines inside
    if output_tgt is None:
        atomic_write_text(Path(output_src), "".join(f"{s}\t{t}\n" for s, t in clean))
        return
    atomic_write_text(Path(output_src), "".join(s + "\n" for s, _ in clean))
    atomic_write_text(Path(output_tgt), "".join(t + "\n" for _, t in clean))


def backtranslate(
    model: nn.Module,
    codec: PairCodec,
    lines: Sequence[str],
    work_dir: str | Path,
    config: BacktranslationConfig,
    model_id: dict[str, Any] | None = None,
    progress: bool | ProgressMode = False,
) -> tuple[list[tuple[str, str]], FilterReport]:
    """Generate (resuming in `work_dir`), filter, noise and tag: the synthetic pairs.

    Args:
        model: The reverse model for back-translation (target -> source), the forward model
            for forward translation; any model `open_for_inference` gives.
        codec: Its codec (its source language is the input's language).
        lines: Monolingual text, one sentence per line.
        work_dir: Shards and the manifest; reuse it to resume.

    Returns:
        (source, target) pairs in input order, and the counts.
    """
    generate_shards(model, codec, lines, work_dir, config, model_id, progress)
    rows = read_shards(work_dir, lines)
    report = FilterReport(input_lines=len(lines), empty_inputs=sum(1 for line in lines if not line.strip()), generated=len(rows))
    return synthetic_pairs(filter_rows(rows, config, report), config), report


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


def read_pairs(paths: Sequence[str | Path]) -> list[tuple[str, str]]:
    """Pairs of a Moses pair `(src_file, tgt_file)` or one TSV file, checked and with empty
    pairs dropped by the data readers."""
    from mtadapt.data.prepare import read_texts
    from mtadapt.data.readers import CorpusSpec

    texts = read_texts(CorpusSpec(paths=tuple(Path(p) for p in paths), src_lang="src", tgt_lang="tgt"))
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
    write the result (Moses pair, or TSV without `output_tgt`); returns the counts."""
    real, synthetic = read_pairs(real_paths), read_pairs(synthetic_paths)
    mixed = mix_corpora(real, synthetic, real_upsample, seed)
    write_pairs(mixed, output_src, output_tgt)
    return {"real": len(real), "synthetic": len(synthetic), "mixed": len(mixed)}


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
) -> FilterReport:
    """`backtranslate` a text file with a model opened by `open_for_inference`; writes the
    pairs and `report.json` in the work folder (default: `<output_src>.shards`).

    `src_lang`/`tgt_lang` are the model's direction: for back-translation into a pt->en
    training set, a en->pt model with src_lang en, tgt_lang pt. `shortlist`: see
    `open_for_inference`. `dtype`: see `place_for_inference`; the precision is part of the
    resume fingerprint, so a run never mixes precisions.
    """
    from mtadapt.runs import open_for_inference, place_for_inference

    lines = Path(input_path).read_text(encoding="utf-8").splitlines()
    loaded, codec = open_for_inference(run=run, model=model, adapters=adapters, src_lang=src_lang, tgt_lang=tgt_lang,
                                       shortlist=shortlist)
    precision = place_for_inference(loaded.model, dtype)  # generation only: nothing is trained or saved
    if config.tag is not None:
        try:
            check_tag(codec, config.tag)
        except ValueError as err:  # a warning: the model to be trained may have another vocabulary
            warnings.warn(f"{err} (checked with the tokenizer of {loaded.name_or_path})", stacklevel=2)
    work_dir = Path(work_dir) if work_dir else Path(f"{output_src}.shards")
    model_id = {"model": loaded.name_or_path, "run": run, "adapters": sorted(adapters or [])}
    if precision != "float32":  # float32 work folders keep the fingerprint they had before --dtype
        model_id["dtype"] = precision
    pairs, report = backtranslate(loaded.model, codec, lines, work_dir, config, model_id, progress)
    write_pairs(pairs, output_src, output_tgt)
    atomic_write_text(work_dir / "report.json", json.dumps(asdict(report), indent=1))
    return report
