"""Language handling: turn text into the token ids a family expects for a language pair.

`PairCodec` is built once per (family, tokenizer, source language, target language) and is
the only place that knows where language codes, tags or task prefixes go. Training
(`encode_sources`/`encode_targets`) and generation (`decoder_prompt`) both use it, so the
forced first target token is the same in both: generation starts from

    decoder_input_ids = [decoder_start_token_id, tgt_code]      (mbart50, m2m100, nllb)
    decoder_input_ids = [decoder_start_token_id]                 (marian, t5)

given explicitly per example, rather than through `generation_config.forced_bos_token_id`,
which silently does nothing when a saved generation config lacks it (transformers #41492).

Models without language codes (Marian-native Bergamot students) get a target-language tag
for multi-target training: `reserve_language_tags` gives each target language the id of one
of the rarest whole-word pieces of the vocabulary, and the codec prepends it to the source
(`[tag] X </s>`, like multilingual Marian's `>>tgt<<`). Reusing a piece keeps the tied
embedding and output layer unchanged (no resizing of `Wemb` or the output bias, and the model
still saves as plain Marian); the cost is that the piece's old meaning is overwritten,
which is why the rarest pieces are taken. Extending the vocabulary with a fresh row instead
would need resizing the tied embedding and output bias of the Marian-native model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtadapt.errors import ConfigError
from mtadapt.models.families import Family

def known_language_codes(family: Family, tokenizer: Any) -> list[str]:
    """The language codes this tokenizer can mark, in the family's own spelling."""
    return family.language_codes(tokenizer)


def check_language(family: Family, tokenizer: Any, code: str | None, role: str) -> None:
    """Raise a ConfigError (a ValueError) listing the valid codes when `code` is unknown to the tokenizer.

    Args:
        role: "source" or "target", for the message (e.g. `data.src_lang`).
    """
    codes = known_language_codes(family, tokenizer)
    if family.language_style == "codes" and code is None:
        raise ConfigError(f"{family.name} needs a {role} language code; valid codes: {', '.join(codes)}")
    if code is None or not codes:
        return
    if role == "source" and not family.source_code_checked:
        return
    if code not in codes and code not in family.code_aliases:
        raise ConfigError(
            f"unknown {role} language code {code!r} for this {family.name} tokenizer; "
            f"it knows: {', '.join(codes)}"
        )


@dataclass
class PairCodec:
    """Tokenize one translation direction the way the family was trained.

    Attributes:
        family: The model family.
        tokenizer: A HF tokenizer, or the Marian-native SentencePiece tokenizer.
        src_lang: Source language code in the family's spelling (`de_DE`, `de`, `deu_Latn`...).
        tgt_lang: Target language code.
        decoder_start_token_id: First decoder input (HF `config.decoder_start_token_id`).
        target_tag_id: Marian-native only: a token id prepended to every source to name the
            target language (see `reserve_language_tags`); None = no tag.
    """

    family: Family
    tokenizer: Any
    src_lang: str | None
    tgt_lang: str | None
    decoder_start_token_id: int | None = None
    target_tag_id: int | None = None

    def __post_init__(self) -> None:
        check_language(self.family, self.tokenizer, self.src_lang, "source")
        check_language(self.family, self.tokenizer, self.tgt_lang, "target")
        if self.family.language_style == "codes":
            self.tokenizer.src_lang = self.src_lang
            self.tokenizer.tgt_lang = self.tgt_lang

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def _source_texts(self, texts: list[str]) -> list[str]:
        return [self.family.mark_source(t, self.src_lang, self.tgt_lang, self.tokenizer) for t in texts]

    def encode_sources(self, texts: list[str]) -> list[list[int]]:
        """Source token ids, each ending in </s> (and starting with the source code if any)."""
        if not texts:  # HF fast tokenizers raise IndexError on an empty batch
            return []
        if self.family.native:
            ids = self.tokenizer.encode(texts)
            return ids if self.target_tag_id is None else [[self.target_tag_id, *row] for row in ids]
        if self.family.language_style == "codes":
            self.tokenizer.src_lang = self.src_lang  # the tokenizer is shared: set it every time
        return self.tokenizer(self._source_texts(texts), add_special_tokens=True)["input_ids"]

    def encode_targets(self, texts: list[str]) -> list[list[int]]:
        """Label ids: `[tgt_code] Y </s>` for code families, `Y </s>` otherwise."""
        if not texts:
            return []
        if self.family.native:
            return self.tokenizer.encode(texts)
        if self.family.language_style == "codes":
            self.tokenizer.tgt_lang = self.tgt_lang
        return self.tokenizer(text_target=texts, add_special_tokens=True)["input_ids"]

    def forced_bos_token_id(self) -> int | None:
        """The token generation must start with (the target code), or None."""
        if self.family.language_style != "codes":
            return None
        token = self.family.code_token(self.tokenizer, self.tgt_lang)
        return int(self.tokenizer.convert_tokens_to_ids(token))

    def decoder_prompt(self) -> list[int]:
        """Decoder ids generation starts from; stripped from outputs before decoding."""
        if self.family.native:
            return []
        start = [] if self.decoder_start_token_id is None else [self.decoder_start_token_id]
        bos = self.forced_bos_token_id()
        return start + ([] if bos is None else [bos])

    def decode(self, batch: list[list[int]]) -> list[str]:
        """Text of generated ids; special tokens and language codes removed (M2M100's
        tokenizer keeps `__en__` under skip_special_tokens)."""
        if not batch:
            return []
        if self.family.native:
            return self.tokenizer.decode(batch)
        bos = self.forced_bos_token_id()
        batch = [[i for i in ids if i != bos] for ids in batch]
        return [t.strip() for t in self.tokenizer.batch_decode(batch, skip_special_tokens=True)]


def reserve_language_tags(tokenizer: Any, languages: list[str]) -> dict[str, int]:
    """Target-language tag ids for a Marian-native SentencePiece vocabulary: the i-th
    language of `sorted(languages)` gets the i-th rarest whole-word piece (`▁word`, counted
    from the end of the vocabulary, where SentencePiece keeps its lowest-scored pieces).

    Sorting makes the assignment depend only on the set of languages, so the same recipe
    gives the same tags at training and inference time.

    Raises:
        ValueError: the tokenizer is not a SentencePiece vocabulary (`.sp`).
    """
    sp = getattr(tokenizer, "sp", None)
    if sp is None:
        raise ValueError(f"language tags need a Marian-native SentencePiece tokenizer, got {type(tokenizer).__name__}")
    wanted = sorted(set(languages))
    tags: dict[str, int] = {}
    piece_id = sp.get_piece_size() - 1
    while len(tags) < len(wanted) and piece_id >= 0:
        piece = sp.id_to_piece(piece_id)
        if not (sp.is_control(piece_id) or sp.is_unknown(piece_id)) and piece.startswith("\u2581") and len(piece) > 2:
            tags[wanted[len(tags)]] = piece_id
        piece_id -= 1
    return tags
