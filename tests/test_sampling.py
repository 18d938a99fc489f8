"""Pair sampling for multi-pair training: the distribution formula, the drawn epochs, and
determinism by (seed, epoch)."""

from __future__ import annotations

import numpy as np
import pytest

from mtadapt.data.batching import bucketed_batches
from mtadapt.data.sampling import epoch_picks, pair_probabilities, sampled_batches
from mtadapt.data.validation import DataError

SIZES = [8000, 1500, 100]  # a high-, a mid- and a low-resource pair


def _formula(sizes, temperature):
    q = np.asarray(sizes, dtype=float) / sum(sizes)
    p = q ** (1.0 / temperature)
    return p / p.sum()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 5.0, 100.0])
def test_temperature_probabilities_follow_formula(temperature):
    p = pair_probabilities(SIZES, "temperature", temperature)
    np.testing.assert_allclose(p, _formula(SIZES, temperature), rtol=1e-12)
    assert p.sum() == pytest.approx(1.0)


def test_named_strategies_and_limits():
    q = np.asarray(SIZES) / sum(SIZES)
    np.testing.assert_allclose(pair_probabilities(SIZES, "proportional"), q)
    np.testing.assert_allclose(pair_probabilities(SIZES, "temperature", 1.0), q)
    np.testing.assert_allclose(pair_probabilities(SIZES, "uniform"), [1 / 3] * 3)
    # T -> inf approaches uniform; T = 5 up-samples the low-resource pair but keeps order
    assert np.abs(pair_probabilities(SIZES, "temperature", 1e6) - 1 / 3).max() < 1e-4
    p5 = pair_probabilities(SIZES, "temperature", 5.0)
    assert p5[2] > 10 * q[2] and p5[0] > p5[1] > p5[2]
    np.testing.assert_allclose(pair_probabilities(SIZES, "weights", weights=[1, 1, 2]), [0.25, 0.25, 0.5])


def test_bad_settings_raise():
    with pytest.raises(DataError, match="at least one example"):
        pair_probabilities([10, 0])
    with pytest.raises(DataError, match="temperature must be > 0"):
        pair_probabilities([10, 5], "temperature", 0.0)
    with pytest.raises(DataError, match="one positive weight per pair"):
        pair_probabilities([10, 5], "weights", weights=[1.0])


@pytest.mark.parametrize("temperature", [1.0, 5.0])
def test_drawn_epochs_match_distribution_within_sampling_error(temperature):
    p = pair_probabilities(SIZES, "temperature", temperature)
    epoch_size, epochs = 2000, 20
    counts = np.zeros(3)
    for epoch in range(epochs):
        picks = epoch_picks(SIZES, p, epoch_size, seed=3, epoch=epoch)
        assert sum(len(x) for x in picks) == epoch_size
        counts += [len(x) for x in picks]
    draws = epoch_size * epochs
    sigma = np.sqrt(draws * p * (1 - p))  # binomial standard deviation of each count
    assert np.all(np.abs(counts - draws * p) < 4 * sigma), (counts / draws, p)


def test_picks_use_a_pair_up_before_repeating():
    # the low-resource pair drawn ~4x its size: each full pass is a permutation
    p = np.array([0.5, 0.5])
    picks = epoch_picks([1000, 100], p, 800, seed=0, epoch=0)[1]
    assert len(picks) > 300
    for start in range(0, len(picks) - 100, 100):
        assert sorted(picks[start : start + 100].tolist()) == list(range(100))


def _lengths(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 30, n).tolist() for n in (300, 60)], [rng.integers(3, 30, n).tolist() for n in (300, 60)]


def test_batches_mix_pairs_stay_in_budget_and_are_deterministic():
    src, tgt = _lengths()
    p = pair_probabilities([300, 60], "temperature", 5.0)
    a = sampled_batches(src, tgt, p, 360, 200, seed=1, epoch=4)
    assert a == sampled_batches(src, tgt, p, 360, 200, seed=1, epoch=4)  # resume replays
    assert a != sampled_batches(src, tgt, p, 360, 200, seed=1, epoch=5)
    flat_src, flat_tgt = src[0] + src[1], tgt[0] + tgt[1]
    assert sum(len(b) for b in a) == 360
    for b in a:
        assert len(b) == 1 or len(b) * max(max(flat_src[i], flat_tgt[i]) for i in b) <= 200
    mixed = [b for b in a if any(i < 300 for i in b) and any(i >= 300 for i in b)]
    assert len(mixed) > len(a) // 4  # pairs share batches
    seen_low = sum(i >= 300 for b in a for i in b)
    assert 360 * p[1] - 4 * np.sqrt(360 * p[1]) < seen_low < 360 * p[1] + 4 * np.sqrt(360 * p[1])


def test_single_pair_epoch_is_the_single_pair_batching():
    src, tgt = _lengths()
    batches = sampled_batches(src[:1], tgt[:1], np.array([1.0]), 12345, 200, seed=2, epoch=3)
    assert batches == bucketed_batches(src[0], tgt[0], 200, seed=2, epoch=3)
