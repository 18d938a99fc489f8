"""SentencePiece vocabulary of a Marian model: text <-> ids, as Marian's `.spm` vocab does it.

Marian uses the SentencePiece piece ids directly as its vocabulary ids and appends `</s>`
to every source sentence. The model has no separate pad symbol: Marian pads with `</s>`
(id 0 in the Bergamot vocabularies), so `pad_id == eos_id` and padding is told apart by
the attention mask (sources) or by LABEL_PAD_ID (-100) labels (targets).
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
import torch


class MarianSentencePieceTokenizer:
    """Encode and decode with a Marian `.spm` vocabulary.

    Args:
        vocab_path: the SentencePiece model file (`vocab.<pair>.spm`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the model has no `</s>` piece.
    """

    def __init__(self, vocab_path: str | Path):
        self.vocab_path = Path(vocab_path)
        if not self.vocab_path.is_file():
            raise FileNotFoundError(f"SentencePiece vocabulary not found: {self.vocab_path}")
        self.sp = spm.SentencePieceProcessor(model_file=str(self.vocab_path))
        self.eos_id = self.sp.piece_to_id("</s>")
        if self.sp.id_to_piece(self.eos_id) != "</s>":
            raise ValueError(f"{self.vocab_path}: vocabulary has no '</s>' piece")
        self.pad_id = self.eos_id
        self.unk_id = self.sp.unk_id()

    @property
    def eos_token_id(self) -> int:
        """Hugging Face spelling of `eos_id`, for code shared with HF tokenizers."""
        return self.eos_id

    @property
    def pad_token_id(self) -> int:
        """Hugging Face spelling of `pad_id`."""
        return self.pad_id

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str | list[str]) -> list[int] | list[list[int]]:
        """Ids of `text` followed by `</s>`; a list of texts gives a list of id lists."""
        if isinstance(text, str):
            return self.sp.encode(text) + [self.eos_id]
        return [ids + [self.eos_id] for ids in self.sp.encode(list(text))]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.encode(list(texts))

    def _decode_one(self, ids: list[int]) -> str:
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]  # everything after </s> is padding
        return self.sp.decode(ids)

    def decode(self, ids: list[int] | list[list[int]] | torch.Tensor) -> str | list[str]:
        """Text of `ids`, cut at the first `</s>`; a batch (list of lists or a 2-D tensor)
        gives a list of texts."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if ids and isinstance(ids[0], list):
            return [self._decode_one(row) for row in ids]
        return self._decode_one(list(ids))

    def decode_batch(self, batch: list[list[int]] | torch.Tensor) -> list[str]:
        if isinstance(batch, torch.Tensor):
            batch = batch.tolist()
        return [self._decode_one(row) for row in batch]

    def pad(self, sequences: list[list[int]], pad_value: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists into `(ids, mask)`, both (batch, max_len) LongTensors.

        Args:
            sequences: id lists, e.g. from `encode_batch`.
            pad_value: fill for padding; `pad_id` by default (use LABEL_PAD_ID for labels).
        """
        fill = self.pad_id if pad_value is None else pad_value
        width = max((len(s) for s in sequences), default=0)
        ids = torch.full((len(sequences), width), fill, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids, mask

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Batch of sources ready for the model: `input_ids` and `attention_mask`."""
        ids, mask = self.pad(self.encode_batch(texts))
        return {"input_ids": ids, "attention_mask": mask}
