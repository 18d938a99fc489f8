"""Token-budget batching, bucketing, padding fraction and collate, against plain references."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mtadapt.data import DataError, bucketed_batches, collate, padding_fraction, random_batches


def spread_lengths(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Log-normal sentence lengths (median ~20, tail past 100), target correlated with source."""
    rng = np.random.default_rng(seed)
    src = np.clip(rng.lognormal(np.log(20), 0.6, n), 1, 150).astype(int)
    tgt = np.clip(src * rng.lognormal(0, 0.15, n), 1, 160).astype(int)
    return src.tolist(), tgt.tolist()


def reference_cut(order: list[int], src: list[int], tgt: list[int], max_tokens: int) -> list[list[int]]:
    """The plain definition: extend the batch while its padded cost fits, recomputing the max."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        candidate = batch + [i]
        cost = len(candidate) * max(max(src[j], tgt[j]) for j in candidate)
        if batch and cost > max_tokens:
            batches.append(batch)
            candidate = [i]
        batch = candidate
    if batch:
        batches.append(batch)
    return batches


def cost(batch: list[int], src: list[int], tgt: list[int]) -> int:
    return len(batch) * max(max(src[i], tgt[i]) for i in batch)


@pytest.mark.parametrize("batcher", ["bucketed", "random"])
def test_every_index_once_and_budget_respected(batcher: str) -> None:
    src, tgt = spread_lengths(3000)
    src[7], tgt[7] = 900, 10  # alone over budget: must form its own batch, not vanish
    max_tokens = 512
    if batcher == "bucketed":
        batches = bucketed_batches(src, tgt, max_tokens, seed=1, epoch=0, bucket_size_multiplier=5)
    else:
        batches = random_batches(src, tgt, max_tokens, seed=1, epoch=0)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(3000))
    assert [7] in batches
    assert all(cost(b, src, tgt) <= max_tokens for b in batches if b != [7])


def test_bucketed_matches_reference_definition() -> None:
    """Rebuilds the bucketed order with a plain loop from the same RNG draws and compares."""
    src, tgt = spread_lengths(1000, seed=3)
    max_tokens, multiplier, seed, epoch = 400, 2, 5, 2
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(1000).tolist()
    mean_width = sum(max(s, t) for s, t in zip(src, tgt)) / 1000
    bucket_size = multiplier * max(1, max_tokens // max(1, round(mean_width)))
    expected: list[list[int]] = []
    for start in range(0, 1000, bucket_size):
        bucket = sorted(order[start : start + bucket_size], key=lambda i: (max(src[i], tgt[i]), src[i]))
        expected += reference_cut(bucket, src, tgt, max_tokens)
    expected = [expected[i] for i in rng.permutation(len(expected)).tolist()]
    got = bucketed_batches(src, tgt, max_tokens, seed=seed, epoch=epoch, bucket_size_multiplier=multiplier)
    assert got == expected


def test_max_sentences_matches_reference_definition() -> None:
    """max_sentences: sorted buckets cut into N-example batches (and never over the budget)."""
    src, tgt = spread_lengths(1000, seed=6)
    seed, epoch, n = 2, 1, 16
    for max_tokens in (1 << 20, 600):  # sentences only; both limits
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(1000).tolist()
        mean_width = sum(max(s, t) for s, t in zip(src, tgt)) / 1000
        bucket_size = 3 * min(n, max(1, max_tokens // max(1, round(mean_width))))
        expected: list[list[int]] = []
        for start in range(0, 1000, bucket_size):
            bucket = sorted(order[start : start + bucket_size], key=lambda i: (max(src[i], tgt[i]), src[i]))
            for batch in reference_cut(bucket, src, tgt, max_tokens):  # the budget, then at most n each
                expected += [batch[j : j + n] for j in range(0, len(batch), n)] if len(batch) > n else [batch]
        expected = [expected[i] for i in rng.permutation(len(expected)).tolist()]
        got = bucketed_batches(src, tgt, max_tokens, seed=seed, epoch=epoch, bucket_size_multiplier=3, max_sentences=n)
        if max_tokens == 1 << 20:
            assert got == expected
            assert sum(len(b) == n for b in got) >= len(got) - 1000 // bucket_size - 1  # only buckets' last batches short
        assert sorted(i for b in got for i in b) == list(range(1000))
        assert max(len(b) for b in got) == n and all(cost(b, src, tgt) <= max_tokens for b in got)
    order = np.random.default_rng([9, 1]).permutation(1000).tolist()
    assert random_batches(src, tgt, 1 << 20, seed=9, epoch=1, max_sentences=5) == [order[i : i + 5] for i in range(0, 1000, 5)]


def test_random_matches_reference_definition() -> None:
    src, tgt = spread_lengths(500, seed=4)
    order = np.random.default_rng([9, 1]).permutation(500).tolist()
    assert random_batches(src, tgt, 300, seed=9, epoch=1) == reference_cut(order, src, tgt, 300)


def test_deterministic_by_seed_and_epoch() -> None:
    src, tgt = spread_lengths(2000)
    run = lambda seed, epoch: bucketed_batches(src, tgt, 1024, seed=seed, epoch=epoch, bucket_size_multiplier=10)  # noqa: E731
    assert run(0, 3) == run(0, 3)
    assert run(0, 3) != run(0, 4)
    assert run(0, 3) != run(1, 3)
    assert run(1, 0) != run(0, 1)  # (seed, epoch) is not collapsed into seed + epoch


def test_no_shuffle_keeps_corpus_order_within_buckets() -> None:
    src = [5, 1, 3, 2, 4, 6]
    batches = bucketed_batches(src, src, 6, seed=0, epoch=0, bucket_size_multiplier=1, shuffle=False)
    # mean width 3.5 -> round 4 -> 1 example per batch estimate -> buckets of 1: corpus order
    assert batches == [[0], [1], [2], [3], [4], [5]]
    batches = bucketed_batches(src, src, 6, seed=0, epoch=0, bucket_size_multiplier=6, shuffle=False)
    assert batches == [[1, 3], [2], [4], [0], [5]]  # one bucket, sorted: 1,2 | 3 | 4 | 5 | 6


def test_bucketing_pads_less_than_random() -> None:
    src, tgt = spread_lengths(5000)
    bucketed = padding_fraction(bucketed_batches(src, tgt, 2048, seed=0, epoch=0), src, tgt)
    baseline = padding_fraction(random_batches(src, tgt, 2048, seed=0, epoch=0), src, tgt)
    assert bucketed < 0.15
    assert baseline > 0.4
    assert bucketed < baseline / 3


def test_padding_fraction_matches_loop_by_hand() -> None:
    src, tgt = [3, 1, 4], [2, 2, 5]
    # batch [0, 1]: src padded 2*3=6 (real 4), tgt 2*2=4 (real 4); batch [2]: 4+5, no pad
    assert padding_fraction([[0, 1], [2]], src, tgt) == pytest.approx(2 / 19)
    assert padding_fraction([], src, tgt) == 0.0


def test_invalid_inputs_raise_on_max_sentences() -> None:
    with pytest.raises(DataError, match="max_sentences"):
        bucketed_batches([3, 4], [3, 4], 100, seed=0, epoch=0, max_sentences=0)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(DataError, match="3 source lengths but 2 target lengths"):
        bucketed_batches([1, 2, 3], [1, 2], 10, seed=0, epoch=0)
    with pytest.raises(DataError, match="`max_tokens` must be >= 1"):
        random_batches([1], [1], 0, seed=0, epoch=0)
    assert bucketed_batches([], [], 10, seed=0, epoch=0) == []


def test_collate_matches_plain_padding() -> None:
    pairs = [([5, 6, 7], [8]), ([9], [10, 11, 12, 13])]
    out = collate(pairs, pad_id=1)
    assert out["input_ids"].tolist() == [[5, 6, 7], [9, 1, 1]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["labels"].tolist() == [[8, -100, -100, -100], [10, 11, 12, 13]]
    assert all(t.dtype == torch.long for t in out.values())
    rng = random.Random(0)
    pairs = [([rng.randrange(2, 99) for _ in range(rng.randrange(1, 9))],
              [rng.randrange(2, 99) for _ in range(rng.randrange(1, 9))]) for _ in range(6)]
    out = collate(pairs, pad_id=0)
    for row, (s, t) in enumerate(pairs):
        width, tgt_width = out["input_ids"].shape[1], out["labels"].shape[1]
        assert out["input_ids"][row].tolist() == s + [0] * (width - len(s))
        assert out["labels"][row].tolist() == t + [-100] * (tgt_width - len(t))
        assert out["attention_mask"][row].sum().item() == len(s)
