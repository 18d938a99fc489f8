"""`mtadapt export --format ctranslate2`: an adapted HF model as a CTranslate2 folder that plain
`ctranslate2.Translator(folder)` plus `AutoTokenizer.from_pretrained(folder)` run, with no
mtadapt code.

    export_ctranslate2_folder("exported/", run="runs/bible-lora", quantization="int8")

Steps: open the model with its adapter; refuse Marian-native models (CTranslate2 has no SSRU
decoder: `--format bergamot`) and adapters that do not merge into weights; merge LoRA (full
fine-tuning and BitFit changed the weights already); convert the in-memory model with
CTranslate2's own converter and loaders; copy the tokenizer files; write `mtadapt.json`
(languages, base fingerprint, adapter).

The conversion itself (CTranslate2's converter through loaders that close the gaps with
transformers 5.x, the vocabulary aligned with the embeddings) is `inference.ctranslate2`'s;
`mtadapt translate/evaluate --engine ctranslate2` converts a run the same way into a cache.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Literal

from mtadapt.errors import ConfigError
from mtadapt.inference.ctranslate2 import QUANTIZATIONS, check_convertible, convert_folder, require_ctranslate2
from mtadapt.io import fill_folder
from mtadapt.methods import storage
from mtadapt.methods.base import adapter_names
from mtadapt.methods.merge import merged_model
from mtadapt.runs import open_for_inference, read_run_config

Quantization = Literal["int8", "int8_float32", "int16", "float32", "float16", "bfloat16"]


def export_ctranslate2_folder(
    out: str | Path,
    *,
    run: str | Path | None = None,
    model: str | None = None,
    adapters: list[str] | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    quantization: Quantization = "float32",
) -> Path:
    """Merge the adapter of a run (or `model` + `adapters`) and write a CTranslate2 folder.

    Raises:
        ConfigError: ctranslate2 not installed; an unknown quantization; a Marian-native model
            (use `--format bergamot`); a family CTranslate2 cannot take; adapters that do not
            merge into weights (with the reason).
    """
    require_ctranslate2("--format ctranslate2")
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization {quantization!r}; valid: {', '.join(QUANTIZATIONS)}")
    loaded, _ = open_for_inference(run=run, model=model, adapters=adapters, src_lang=src_lang, tgt_lang=tgt_lang,
                                   with_codec=False)
    family = loaded.family.name
    check_convertible(loaded)
    whole = getattr(loaded.model, "mtadapt_whole_model_method", None)
    base_fingerprint = storage.fingerprint(loaded.model, whole)
    names = adapter_names(loaded.model)
    configs = getattr(loaded.model, "mtadapt_adapter_configs", {})
    merged = merged_model(loaded.model, copy_model=False) if names else loaded.model
    description = {
        "format": "ctranslate2", "base": loaded.name_or_path,
        "base_fingerprint": _jsonable(base_fingerprint), "run": None if run is None else str(run),
        "adapters": [str(a) for a in adapters or []],
        "methods": sorted({configs[n].method for n in names if n in configs} | ({whole.method} if whole else set())),
        "languages": _languages(run, src_lang, tgt_lang),
    }
    return fill_folder(out, lambda tmp: convert_folder(tmp, merged, loaded.tokenizer, family, quantization, description))


def _jsonable(fp: Any) -> Any:
    if is_dataclass(fp):
        return asdict(fp)
    return fp if isinstance(fp, (str, dict, list)) else str(fp)


def _languages(run: str | Path | None, src_lang: str | None, tgt_lang: str | None) -> list[dict[str, str | None]]:
    """The directions (source and target codes in the family's spelling) the export serves."""
    if run is not None:
        pairs = [(p.src_lang, p.tgt_lang) for p in read_run_config(run).data.pair_corpora()]
        pairs = [(s, t) for s, t in pairs if (src_lang in (None, s)) and (tgt_lang in (None, t))] or pairs
        return [{"src_lang": s, "tgt_lang": t} for s, t in dict.fromkeys(pairs)]
    return [{"src_lang": src_lang, "tgt_lang": tgt_lang}] if src_lang or tgt_lang else []
