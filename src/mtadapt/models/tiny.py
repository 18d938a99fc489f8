"""Tiny models of every family, built from configs, with real SentencePiece tokenizers.

Each builder trains a small BPE SentencePiece model on the shipped toy corpus
(`mtadapt/resources/toy`), wraps it in the family's own HF tokenizer class through
`from_pretrained(folder)` (the constructor path tokenizes every word as <unk> in
transformers 5.x), builds a randomly initialised model sized to that vocabulary, and writes
both with `save_pretrained`, so everything downstream loads them through the same
`load_model(folder)` path a user's real model takes. No network.

    build_tiny("mbart50", out_dir) -> out_dir/           # then load_model(str(out_dir))
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from mtadapt.toy import toy_corpus_dir
from mtadapt.models.families import T5_LANGUAGE_NAMES

# Language codes of the toy pair (German-like -> English) in each family's spelling.
TOY_LANGUAGES: dict[str, tuple[str | None, str | None]] = {
    "mbart50": ("de_DE", "en_XX"),
    "m2m100": ("de", "en"),
    "nllb": ("deu_Latn", "eng_Latn"),
    "marian": (None, None),
    "t5": ("de", "en"),
}

TINY_DIMS = dict(d_model=64, layers=2, heads=4, ffn=128, max_positions=128)


def train_sentencepiece(out_file: Path, vocab_size: int = 400, t5_ids: bool = False) -> None:
    """Train a BPE SentencePiece model on both sides of the toy training set.

    ids: <s>=0 <pad>=1 </s>=2 <unk>=3 (fairseq order, which mBART/NLLB/M2M100/Marian expect);
    with `t5_ids`: <pad>=0 </s>=1 <unk>=2 and no <s>, as T5's tokenizer assumes.
    The T5 task prefixes are part of the training text so that their capitals are in the
    vocabulary.
    """
    import sentencepiece as spm

    corpus = toy_corpus_dir()
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "text.txt"
        text.write_text(
            (corpus / "train.de").read_text(encoding="utf-8")
            + (corpus / "train.en").read_text(encoding="utf-8")
            + "".join(f"translate {a} to {b}:\n" for a in T5_LANGUAGE_NAMES.values() for b in T5_LANGUAGE_NAMES.values()),
            encoding="utf-8",
        )
        ids = dict(bos_id=-1, pad_id=0, eos_id=1, unk_id=2) if t5_ids else dict(bos_id=0, pad_id=1, eos_id=2, unk_id=3)
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(Path(tmp) / "sp"), vocab_size=vocab_size, model_type="bpe",
            character_coverage=1.0, num_threads=1, **ids,
            minloglevel=2, hard_vocab_limit=False,
        )
        shutil.copy(Path(tmp) / "sp.model", out_file)


def _vocab_json(sp_model: Path, out_file: Path) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    out_file.write_text(json.dumps({sp.id_to_piece(i): i for i in range(sp.get_piece_size())}), encoding="utf-8")


def build_tokenizer(family: str, folder: Path):
    """Write the family's tokenizer files into `folder` and load them the way users do."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    sp_file = folder / "sp.model"
    train_sentencepiece(sp_file, t5_ids=family == "t5")
    if family == "mbart50":
        sp_file.rename(folder / "sentencepiece.bpe.model")
        return transformers.MBart50Tokenizer.from_pretrained(folder, src_lang="de_DE", tgt_lang="en_XX")
    if family == "nllb":
        from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

        sp_file.rename(folder / "sentencepiece.bpe.model")
        # from_pretrained does not add the default codes in transformers 5.x: pass them.
        return transformers.NllbTokenizer.from_pretrained(
            folder, extra_special_tokens=list(FAIRSEQ_LANGUAGE_CODES), src_lang="deu_Latn", tgt_lang="eng_Latn"
        )
    if family == "m2m100":
        sp_file.rename(folder / "sentencepiece.bpe.model")
        _vocab_json(folder / "sentencepiece.bpe.model", folder / "vocab.json")
        return transformers.M2M100Tokenizer.from_pretrained(folder, src_lang="de", tgt_lang="en")
    if family == "marian":
        _vocab_json(sp_file, folder / "vocab.json")
        shutil.copy(sp_file, folder / "source.spm")
        sp_file.rename(folder / "target.spm")
        return transformers.MarianTokenizer.from_pretrained(folder)
    if family == "t5":
        sp_file.rename(folder / "spiece.model")
        return transformers.T5Tokenizer.from_pretrained(folder)
    raise ValueError(f"no tiny builder for family {family!r}; valid: {', '.join(TOY_LANGUAGES)}")


def _vocab_size(tokenizer) -> int:
    ids = list(tokenizer.get_vocab().values()) + list(getattr(tokenizer, "lang_token_to_id", {}).values())
    return max(len(tokenizer), max(ids) + 1)


def build_tiny_model(family: str, tokenizer, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised tiny model of `family` sized to `tokenizer`."""
    import transformers

    torch.manual_seed(seed)
    d = TINY_DIMS
    ids = dict(
        vocab_size=_vocab_size(tokenizer), pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    bart_like = dict(
        d_model=d["d_model"], encoder_layers=d["layers"], decoder_layers=d["layers"],
        encoder_attention_heads=d["heads"], decoder_attention_heads=d["heads"],
        encoder_ffn_dim=d["ffn"], decoder_ffn_dim=d["ffn"], max_position_embeddings=d["max_positions"],
        dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, scale_embedding=True,
        # The default 0.02 leaves scaled token embeddings (0.02 * sqrt(64)) far below the
        # positional signal; a tiny model then learns the target LM long before it learns
        # to read the source (loss with shuffled sources equals the real loss for ~400 steps).
        init_std=0.1, **ids,
    )
    if family == "mbart50":
        config = transformers.MBartConfig(**bart_like, bos_token_id=0, decoder_start_token_id=tokenizer.eos_token_id)
        return transformers.MBartForConditionalGeneration(config)
    if family in ("m2m100", "nllb"):
        # LayerDrop off: with 2 layers a batch could skip every layer (and every adapter).
        config = transformers.M2M100Config(
            **bart_like, bos_token_id=0, decoder_start_token_id=tokenizer.eos_token_id,
            encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        )
        return transformers.M2M100ForConditionalGeneration(config)
    if family == "marian":
        config = transformers.MarianConfig(
            **bart_like, decoder_start_token_id=tokenizer.pad_token_id,
            decoder_vocab_size=ids["vocab_size"], share_encoder_decoder_embeddings=True,
        )
        return transformers.MarianMTModel(config)
    if family == "t5":
        config = transformers.T5Config(
            d_model=d["d_model"], d_kv=d["d_model"] // d["heads"], d_ff=d["ffn"], num_layers=d["layers"],
            num_decoder_layers=d["layers"], num_heads=d["heads"], dropout_rate=0.1,
            decoder_start_token_id=tokenizer.pad_token_id, **ids,
        )
        return transformers.T5ForConditionalGeneration(config)
    raise ValueError(f"no tiny builder for family {family!r}; valid: {', '.join(TOY_LANGUAGES)}")


def build_tiny(family: str, out_dir: Path | str, seed: int = 0) -> Path:
    """Build and save a tiny model + tokenizer of `family` into `out_dir`; return it."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(family, Path(tmp) / "tok")
        model = build_tiny_model(family, tokenizer, seed)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return out_dir
