"""Token-budget batching with length bucketing, the random baseline, and collation.

A batch costs `len(batch) * max(max src length, max tgt length)` tokens: the padded size of
the larger of the two tensors the model sees. Both batchers cut greedily in a given order and
close a batch when the next example would push its cost over `max_tokens`, or its size over
`max_sentences` when that is given; an example that alone exceeds the budget gets a batch of
its own (never dropped).

The two limits weigh examples differently. The loss is the mean over a batch's target
tokens and every step counts the same, so under a token budget every token weighs about the
same, while batches of N sentences give the tokens of short sentences more weight (their
batches hold fewer tokens). That is what `batch_size` runs (Seq2SeqTrainer, the usual
scripts) do, and on a corpus of mixed lengths it learned more per step in
benchmarks/vs_hf_trainer.py; `max_sentences` gives those batches, still length-sorted.

Determinism: the order depends only on (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from mtadapt.data.validation import DataError
from mtadapt.models import LABEL_PAD_ID  # re-exported: mtadapt.data.LABEL_PAD_ID

BatchOrder = Literal["shuffled", "ascending", "descending"]
"""The order of an epoch's batches: shuffled, or by their longest side, short or long first."""


def _as_lengths(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], max_tokens: int, max_sentences: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    src = np.asarray(src_lengths, dtype=np.int64).reshape(-1)
    tgt = np.asarray(tgt_lengths, dtype=np.int64).reshape(-1)
    problems = []
    if src.shape != tgt.shape:
        problems.append(f"{src.size} source lengths but {tgt.size} target lengths")
    if src.size and min(src.min(), tgt.min() if tgt.size else 0) < 0:
        problems.append("lengths must be >= 0")
    if max_tokens < 1:
        problems.append(f"`max_tokens` must be >= 1, got {max_tokens}")
    if max_sentences is not None and max_sentences < 1:
        problems.append(f"`max_sentences` must be >= 1 or None, got {max_sentences}")
    if problems:
        raise DataError("; ".join(problems))
    return src, tgt


def _rng(seed: int, epoch: int) -> np.random.Generator:
    if seed < 0 or epoch < 0:
        raise DataError(f"`seed` and `epoch` must be >= 0, got seed={seed}, epoch={epoch}")
    # SeedSequence mixes both numbers: (seed, epoch) pairs give independent, reproducible
    # streams, unlike seed + epoch, where (1, 0) and (0, 1) would collide.
    return np.random.default_rng([seed, epoch])


def _cut_by_token_budget(
    order: Sequence[int], src: Sequence[int], tgt: Sequence[int], max_tokens: int, max_sentences: int | None = None
) -> list[list[int]]:
    """Greedy cut of `order` into batches whose cost stays <= max_tokens (and size <= max_sentences).

        for i in order:
            if batch and ((len(batch) + 1) * max(max_src, max_tgt, src[i], tgt[i]) > max_tokens
                          or len(batch) == max_sentences):
                emit(batch); batch = []
            batch.append(i)
    """
    batches: list[list[int]] = []
    batch: list[int] = []
    widest = 0  # max(src, tgt) length over the batch
    full = max_sentences if max_sentences is not None else len(order)  # no batch reaches len(order) before the end
    for i in order:
        width = max(widest, src[i], tgt[i])
        if batch and ((len(batch) + 1) * width > max_tokens or len(batch) == full):
            batches.append(batch)
            batch, width = [], max(src[i], tgt[i])
        batch.append(i)
        widest = width
    if batch:
        batches.append(batch)
    return batches


def bucketed_batches(
    src_lengths: Sequence[int],
    tgt_lengths: Sequence[int],
    max_tokens: int,
    *,
    seed: int,
    epoch: int,
    bucket_size_multiplier: int = 100,
    shuffle: bool = True,
    max_sentences: int | None = None,
    batch_order: BatchOrder = "shuffled",
    max_window_share: float = 1.0,
) -> list[list[int]]:
    """Token-budget batches of similar-length examples, in a (seed, epoch)-determined order.

        rng = Generator(seed, epoch)
        order = rng.permutation(n) if shuffle else range(n)
        per_batch = min(max(1, max_tokens // mean(max(src, tgt))), max_sentences or inf)
        window = min(bucket_size_multiplier, max(1, round(max_window_share * ceil(n / per_batch))))
        bucket_size = window * per_batch
        for bucket in chunks(order, bucket_size):            # ~multiplier batches per bucket
            bucket = sorted(bucket, key=(max(src, tgt), src))  # similar lengths side by side
            batches += cut_by_token_budget(bucket, max_tokens, max_sentences)
        batches = rng.permutation(batches) if shuffle else batches
        if batch_order != "shuffled":                          # stable: ties keep that order
            batches = sorted(batches, key=widest side, reverse=batch_order == "descending")

    Buckets keep randomness across epochs (a batch is never the same fixed set of the
    globally sorted order) while sorting within a bucket removes most padding. The
    multiplier is the window of fairseq's and Hugging Face's `group_by_length` megabatches:
    1 sorts only within about one batch (random batches, ~random padding), a multiplier of
    the epoch's batch count sorts the whole corpus (least padding, batches least alike
    the corpus: see docs/time-to-quality.md).

    Args:
        src_lengths: token count of each source sequence.
        tgt_lengths: token count of each target sequence.
        max_tokens: budget per batch, `len(batch) * max(max src len, max tgt len)`.
        seed: run seed.
        epoch: epoch number; a different epoch gives a different order.
        bucket_size_multiplier: bucket size in units of a typical batch's example count.
        max_window_share: a bucket holds at most this share of the epoch's typical batches
            (at least one batch). On a small corpus a window of `bucket_size_multiplier`
            batches can be the whole epoch; then the cut points fall at the same lengths every
            epoch and batches are nearly the same sets of examples each time, which learned
            less per epoch (docs/time-to-quality.md). 1.0: no cap.
        shuffle: False keeps corpus order in buckets and batch order (still sorted per bucket).
        max_sentences: at most this many examples per batch (None: the token budget only).
        batch_order: the epoch's batches shuffled, or by their widest example ascending
            (short batches first) or descending.

    Returns:
        Batches of example indices; every index appears exactly once.

    Raises:
        DataError: mismatched or negative lengths, max_tokens < 1, max_sentences < 1,
            negative seed/epoch, an unknown batch_order.
    """
    src, tgt = _as_lengths(src_lengths, tgt_lengths, max_tokens, max_sentences)
    if bucket_size_multiplier < 1:
        raise DataError(f"`bucket_size_multiplier` must be >= 1, got {bucket_size_multiplier}")
    if not 0.0 < max_window_share <= 1.0:
        raise DataError(f"`max_window_share` must be in (0, 1], got {max_window_share}")
    if batch_order not in ("shuffled", "ascending", "descending"):
        raise DataError(f"`batch_order` must be 'shuffled', 'ascending' or 'descending', got {batch_order!r}")
    rng = _rng(seed, epoch)
    n = src.size
    if n == 0:
        return []
    widths = np.maximum(src, tgt)
    order = rng.permutation(n) if shuffle else np.arange(n)
    examples_per_batch = max(1, max_tokens // max(1, int(round(widths.mean()))))
    if max_sentences is not None:
        examples_per_batch = min(examples_per_batch, max_sentences)
    typical_batches = -(-n // examples_per_batch)  # ceil: the epoch's batches at the typical size
    window = min(bucket_size_multiplier, max(1, round(max_window_share * typical_batches)))
    bucket_size = window * examples_per_batch
    src_list, tgt_list = src.tolist(), tgt.tolist()
    batches: list[list[int]] = []
    for start in range(0, n, bucket_size):
        bucket = order[start : start + bucket_size]
        # lexsort: last key is primary; stable, so ties keep the shuffled order.
        bucket = bucket[np.lexsort((src[bucket], widths[bucket]))]
        batches.extend(_cut_by_token_budget(bucket.tolist(), src_list, tgt_list, max_tokens, max_sentences))
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches)).tolist()]
    if batch_order != "shuffled":
        batches.sort(key=lambda b: int(widths[b].max()), reverse=batch_order == "descending")
    return batches


def random_batches(
    src_lengths: Sequence[int],
    tgt_lengths: Sequence[int],
    max_tokens: int,
    *,
    seed: int,
    epoch: int,
    max_sentences: int | None = None,
) -> list[list[int]]:
    """The baseline: same limits, random order, no sorting.

        order = Generator(seed, epoch).permutation(n)
        return cut_by_token_budget(order, max_tokens, max_sentences)
    """
    src, tgt = _as_lengths(src_lengths, tgt_lengths, max_tokens, max_sentences)
    order = _rng(seed, epoch).permutation(src.size)
    return _cut_by_token_budget(order.tolist(), src.tolist(), tgt.tolist(), max_tokens, max_sentences)


def padding_fraction(
    batches: Sequence[Sequence[int]], src_lengths: Sequence[int], tgt_lengths: Sequence[int]
) -> float:
    """Pad tokens / all tokens over both sides, each side padded to its batch maximum.

        total = sum(len(b) * (max(src[b]) + max(tgt[b])) for b in batches)
        real  = sum(sum(src[b]) + sum(tgt[b]) for b in batches)
        return (total - real) / total
    """
    total = real = 0
    for batch in batches:
        if not batch:
            continue
        batch_src = [src_lengths[i] for i in batch]
        batch_tgt = [tgt_lengths[i] for i in batch]
        total += len(batch) * (max(batch_src) + max(batch_tgt))
        real += sum(batch_src) + sum(batch_tgt)
    return (total - real) / total if total else 0.0


def collate(
    examples_ids: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-pads (src_ids, tgt_ids) pairs into model inputs.

        input_ids[b, :len(src_b)] = src_b;       rest pad_id          # [B, S]
        attention_mask[b, :len(src_b)] = 1;      rest 0               # [B, S]
        labels[b, :len(tgt_b)] = tgt_b;          rest LABEL_PAD_ID     # [B, T]

    Labels are padded with LABEL_PAD_ID (-100) so the loss ignores them; Hugging Face seq2seq models build
    `decoder_input_ids` from `labels` (shifting right, LABEL_PAD_ID -> pad).
    """
    if not examples_ids:
        raise DataError("collate got an empty batch")
    src_lengths = [len(src) for src, _ in examples_ids]
    src_len = max(src_lengths)
    tgt_len = max(len(tgt) for _, tgt in examples_ids)
    # One tensor built from padded lists, not a tensor and a slice copy per row: at these
    # batch sizes the ~5 tensor ops a row cost more than the data (16 rows: 0.8 -> 0.1 ms).
    input_ids = torch.tensor([[*src, *[pad_id] * (src_len - len(src))] for src, _ in examples_ids], dtype=torch.long)
    attention_mask = (torch.arange(src_len) < torch.tensor(src_lengths)[:, None]).long()  # [B, S]
    labels = torch.tensor([[*tgt, *[LABEL_PAD_ID] * (tgt_len - len(tgt))] for _, tgt in examples_ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
