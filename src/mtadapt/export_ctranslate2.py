"""`mtadapt export --format ctranslate2`: an adapted HF model as a CTranslate2 folder that plain
`ctranslate2.Translator(folder)` plus `AutoTokenizer.from_pretrained(folder)` run, with no
mtadapt code.

    export_ctranslate2_folder("exported/", run="runs/bible-lora", quantization="int8")

Steps: open the model with its adapter; refuse Marian-native models (CTranslate2 has no SSRU
decoder: `--format bergamot`) and adapters that do not merge into weights; merge LoRA (full
fine-tuning and BitFit changed the weights already); convert the in-memory model with
CTranslate2's own converter and loaders; copy the tokenizer files; write `mtadapt.json`
(languages, base fingerprint, adapter).

CTranslate2's loaders (4.8) read the model as older transformers wrote it; three gaps with
transformers 5.x are closed here, through subclasses of its public loader classes:

    mbart50  MBartConfig has no `normalize_before`   -> set it (mBART is pre-norm, with a
                                                        layernorm on the embeddings); the
             MBart50Tokenizer has no bos_token        -> bos and decoder start named from the
                                                        config's ids
    m2m100,  get_vocab() lacks the 100 language codes -> the vocabulary is every id's token,
    mbart50  (m2m100: ids 400..499), and names 2 ids     in id order, up to the embedding rows
             `<unk>` (mbart50)                           (`aligned_vocabulary`)
    marian   the loader drops the last embedding row  -> only when <pad> is that row (as in
             as <pad>; mtadapt's <pad> is id 1           opus-mt); else every row is kept
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from mtadapt.errors import ConfigError
from mtadapt.io import fill_folder
from mtadapt.methods import storage
from mtadapt.methods.base import adapter_names
from mtadapt.methods.merge import merge_refusal, merged_model
from mtadapt.runs import open_for_inference, read_run_config

Quantization = Literal["int8", "int8_float32", "int16", "float32", "float16", "bfloat16"]
QUANTIZATIONS = ("int8", "int8_float32", "int16", "float32", "float16", "bfloat16")
CONVERTIBLE_FAMILIES = ("marian", "mbart50", "m2m100", "nllb", "t5")
EXPORTABLE_METHODS = "lora, full, bitfit"


def aligned_vocabulary(model: nn.Module, tokenizer: Any) -> list[str]:
    """Token of every embedding row, in id order: `tokens[i]` is id i's token.

    Each name is used once, by its first id (the MBart50 tokenizer names ids 3 and 4 both
    `<unk>`; text encodes to 3); later duplicates and ids with no token (rows added to round
    the vocabulary up) get `madeupword<i>`, as fairseq names them, so the vocabulary matches
    the weights row for row.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    tokens: list[str] = []
    seen: set[str] = set()
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(rows)))):
        if token is None or token in seen:
            token = f"madeupword{i}"
        seen.add(token)
        tokens.append(token)
    return tokens


def _loader(family: str):
    """A CTranslate2 loader instance for `family` with the transformers-5 gaps closed."""
    from ctranslate2.converters.transformers import BartLoader, M2M100Loader, MarianMTLoader, MBartLoader, T5Loader

    class MBart50Loader(MBartLoader):
        def get_model_spec(self, model):
            model.config.normalize_before = True  # pre-norm layers, as MBartEncoderLayer runs them
            model.config.normalize_embedding = True  # layernorm_embedding
            return super().get_model_spec(model)

        def set_config(self, config, model, tokenizer):
            super().set_config(config, model, tokenizer)
            # MBart50Tokenizer has no bos_token attribute in 5.x, and a config without
            # tokenizer_class reads as mBART-25 (no start token): name both from the config's ids.
            config.bos_token = tokenizer.bos_token or tokenizer.convert_ids_to_tokens(model.config.bos_token_id)
            config.decoder_start_token = tokenizer.convert_ids_to_tokens(model.config.decoder_start_token_id)

        def get_vocabulary(self, model, tokenizer):
            return aligned_vocabulary(model, tokenizer)

    class M2M100AlignedLoader(M2M100Loader):  # M2M100 and NLLB
        def get_vocabulary(self, model, tokenizer):
            return aligned_vocabulary(model, tokenizer)

    class MarianLoader(MarianMTLoader):
        def get_model_spec(self, model):
            if model.config.pad_token_id == model.get_input_embeddings().weight.shape[0] - 1:
                return super().get_model_spec(model)  # opus-mt layout: <pad> is the last row, dropped
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return BartLoader.get_model_spec(self, model)  # every row kept

        def get_vocabulary(self, model, tokenizer):
            tokens = aligned_vocabulary(model, tokenizer)
            if model.config.pad_token_id == len(tokens) - 1:
                tokens.pop()
            return tokens

    loaders = {"mbart50": MBart50Loader, "m2m100": M2M100AlignedLoader, "nllb": M2M100AlignedLoader,
               "marian": MarianLoader, "t5": T5Loader}
    return loaders[family]()


def convert_to_ctranslate2(model: nn.Module, tokenizer: Any, family: str, out: str | Path,
                           quantization: str | None = None) -> Path:
    """Convert an in-memory plain (merged) HF model with CTranslate2's converter into `out` (new)."""
    from ctranslate2.converters import TransformersConverter

    loader = _loader(family)

    class InMemoryConverter(TransformersConverter):
        def _load(self):
            return loader(model, tokenizer)

    InMemoryConverter(str(getattr(model, "name_or_path", "in-memory"))).convert(str(out), quantization=quantization)
    return Path(out)


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
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        raise ConfigError("--format ctranslate2 needs the ctranslate2 package: pip install 'mtadapt[ctranslate2]'") from None
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization {quantization!r}; valid: {', '.join(QUANTIZATIONS)}")
    loaded, _ = open_for_inference(run=run, model=model, adapters=adapters, src_lang=src_lang, tgt_lang=tgt_lang,
                                   with_codec=False)
    family = loaded.family.name
    if loaded.family.native:
        raise ConfigError(f"{loaded.name_or_path} is a Marian-native (Bergamot) model, whose SSRU decoder CTranslate2 "
                          "cannot run: use --format bergamot")
    if family not in CONVERTIBLE_FAMILIES:
        raise ConfigError(f"--format ctranslate2 converts the families {', '.join(CONVERTIBLE_FAMILIES)}; "
                          f"{loaded.name_or_path} is {family}")
    refusal = merge_refusal(loaded.model)
    if refusal is not None:
        raise ConfigError(f"--format ctranslate2 exports adapters merged into the weights ({EXPORTABLE_METHODS}); "
                          f"{refusal}")
    whole = getattr(loaded.model, "mtadapt_whole_model_method", None)
    base_fingerprint = storage.fingerprint(loaded.model, whole)
    names = adapter_names(loaded.model)
    configs = getattr(loaded.model, "mtadapt_adapter_configs", {})
    merged = merged_model(loaded.model, copy_model=False) if names else loaded.model
    merged = merged.float()  # CTranslate2 quantizes from the float32 weights
    description = {
        "format": "ctranslate2", "family": family, "base": loaded.name_or_path,
        "base_fingerprint": _jsonable(base_fingerprint), "run": None if run is None else str(run),
        "adapters": [str(a) for a in adapters or []],
        "methods": sorted({configs[n].method for n in names if n in configs} | ({whole.method} if whole else set())),
        "languages": _languages(run, src_lang, tgt_lang), "quantization": quantization,
    }

    def build(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(dir=tmp.parent) as work:
            converted = convert_to_ctranslate2(merged, loaded.tokenizer, family, Path(work) / "model", quantization)
            loaded.tokenizer.save_pretrained(tmp)  # before CTranslate2's config.json, which must win
            for path in converted.iterdir():
                path.replace(tmp / path.name)
        (tmp / "mtadapt.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")

    return fill_folder(out, build)


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
