"""Token-budget batching, bucketing, padding fraction and collate, against plain references."""

from __future__ import annotations

import math

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


def within_batch_length_share(batches: list[list[int]], widths: list[int]) -> float:
    """The share of the variance of example widths that lies between batches (ANOVA R²):
    1 when every batch holds one length, ~0 for random batches."""
    w = np.asarray(widths, dtype=np.float64)
    total = ((w - w.mean()) ** 2).sum()
    between = sum(len(b) * (w[b].mean() - w.mean()) ** 2 for b in batches)
    return float(between / total)


def reference_windowed(src: list[int], tgt: list[int], max_tokens: int, window: int, seed: int, epoch: int) -> list[list[int]]:
    """The plain megabatch definition, loop by loop: a permutation, windows of `window` typical
    batches each sorted by (width, source length), cut by the budget, the batches shuffled."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(src)).tolist()
    widths = [max(s, t) for s, t in zip(src, tgt)]
    per_batch = max(1, max_tokens // max(1, int(round(sum(widths) / len(widths)))))
    batches: list[list[int]] = []
    for start in range(0, len(order), window * per_batch):
        chunk = sorted(order[start : start + window * per_batch], key=lambda i: (widths[i], src[i]))
        batches += reference_cut(chunk, src, tgt, max_tokens)
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]


def reference_window(n: int, src: list[int], tgt: list[int], max_tokens: int, sort_window: int, share: float) -> int:
    """The window the defaults give, counted plainly: sort_window batches, but at most `share`
    of the epoch's batches at the typical size (at least one)."""
    widths = [max(s, t) for s, t in zip(src, tgt)]
    per_batch = max(1, max_tokens // max(1, int(round(sum(widths) / len(widths)))))
    typical_batches = math.ceil(n / per_batch)
    return min(sort_window, max(1, round(share * typical_batches)))


def test_window_share_caps_the_window_on_small_corpora_only() -> None:
    from mtadapt.config import DataConfig

    assert (DataConfig.sort_window, DataConfig.sort_window_share) == (100, 0.125)
    small, big = spread_lengths(2000, seed=4), spread_lengths(40_000, seed=4)
    for (src, tgt), capped in ((small, True), (big, False)):
        window = reference_window(len(src), src, tgt, 360, 100, 0.125)
        assert (window < 100) == capped  # 2,000 pairs: ~144 batches -> windows of 18; 40,000: ~2,900 -> 100
        for epoch in (0, 2):
            got = bucketed_batches(src, tgt, 360, seed=1, epoch=epoch, bucket_size_multiplier=100, max_window_share=0.125)
            assert got == reference_windowed(src, tgt, 360, window, seed=1, epoch=epoch)
            assert sorted(i for b in got for i in b) == list(range(len(src)))
    uncapped = bucketed_batches(*small, 360, seed=1, epoch=0, bucket_size_multiplier=100)
    assert uncapped == reference_windowed(*small, 360, 100, seed=1, epoch=0)  # 1.0: the whole corpus sorted
    tiny = bucketed_batches(*small, 360, seed=1, epoch=0, bucket_size_multiplier=100, max_window_share=1e-6)
    assert tiny == reference_windowed(*small, 360, 1, seed=1, epoch=0)  # never below one batch
    for share in (0.0, 1.5):
        with pytest.raises(DataError, match=r"max_window_share` must be in \(0, 1\]"):
            bucketed_batches(*small, 360, seed=1, epoch=0, max_window_share=share)


def test_default_sort_window_statistics_between_random_and_fully_sorted() -> None:
    """The default window (DataConfig.sort_window, capped by sort_window_share) against plain
    references: every example exactly once per epoch, the same batches as the loop-by-loop
    definition, and padding and within-batch length correlation between random batches and
    whole-corpus sorting."""
    from mtadapt.config import DataConfig

    src, tgt = spread_lengths(4000, seed=3)
    widths = [max(s, t) for s, t in zip(src, tgt)]
    window = reference_window(4000, src, tgt, 1024, DataConfig.sort_window, DataConfig.sort_window_share)
    defaults = {"bucket_size_multiplier": DataConfig.sort_window, "max_window_share": DataConfig.sort_window_share}
    for epoch in (0, 1):
        got = bucketed_batches(src, tgt, 1024, seed=5, epoch=epoch, **defaults)
        assert sorted(i for b in got for i in b) == list(range(4000))
        assert got == reference_windowed(src, tgt, 1024, window, seed=5, epoch=epoch)
    default = bucketed_batches(src, tgt, 1024, seed=5, epoch=0, **defaults)
    sorted_all = bucketed_batches(src, tgt, 1024, seed=5, epoch=0, bucket_size_multiplier=10_000)
    random = random_batches(src, tgt, 1024, seed=5, epoch=0)
    pads = [padding_fraction(b, src, tgt) for b in (sorted_all, default, random)]
    shares = [within_batch_length_share(b, widths) for b in (sorted_all, default, random)]
    assert pads[0] < pads[1] < pads[2]
    assert shares[2] < shares[1] < shares[0]
    assert shares[0] > 0.99 and shares[2] < 0.2  # the references: sorted, and about random
    # the default keeps most of sorting's padding saving while batches mix lengths more
    assert pads[1] < 0.5 * pads[2]
    assert shares[1] < 0.99


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_batch_order_sorts_batches_by_their_widest_example(order: str) -> None:
    src, tgt = spread_lengths(1500)
    widths = [max(s, t) for s, t in zip(src, tgt)]
    shuffled = bucketed_batches(src, tgt, 512, seed=2, epoch=0, bucket_size_multiplier=8)
    got = bucketed_batches(src, tgt, 512, seed=2, epoch=0, bucket_size_multiplier=8, batch_order=order)
    assert sorted(map(sorted, got)) == sorted(map(sorted, shuffled))  # the same batches, reordered
    widest = [max(widths[i] for i in b) for b in got]
    assert widest == sorted(widest, reverse=order == "descending")
    with pytest.raises(DataError, match="batch_order.*'shuffled', 'ascending' or 'descending', got 'random'"):
        bucketed_batches(src, tgt, 512, seed=2, epoch=0, batch_order="random")  # type: ignore[arg-type]
