"""How often each language pair is drawn in multi-pair training, and the epoch it gives.

The probability of drawing pair i (corpus size n_i, N = sum n_i) is, by strategy:

    proportional   p_i = n_i / N
    uniform        p_i = 1 / k
    weights        p_i = w_i / sum w
    temperature    p_i = (n_i / N)^(1/T) / sum_j (n_j / N)^(1/T)

Temperature follows fairseq's multilingual convention: T = 1 is proportional, T -> inf is
uniform, T = 5 is the usual setting that up-samples low-resource pairs.

One (virtual) epoch of `epoch_size` examples:

    rng = Generator(seed, epoch, SELECT)
    counts = rng.multinomial(epoch_size, p)            # examples of each pair this epoch
    for pair i:                                        # without repeats until a pair is used up,
        picks_i = concat(rng.permutation(n_i), ...)[:counts[i]]   # then another full pass
    batches = bucketed_batches(lengths of all picks, seed, epoch)  # batches mix pairs

Everything depends only on (seed, epoch), so a resumed run replays the same data order.
With a single pair the epoch is every example once, exactly `bucketed_batches` over the
corpus, as in a single-pair run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from mtadapt.data.batching import BatchOrder, bucketed_batches
from mtadapt.data.validation import DataError

SamplingStrategy = Literal["temperature", "proportional", "uniform", "weights"]
_SELECT_STREAM = 1  # a third SeedSequence word: the pick stream never equals the batch order's


def pair_probabilities(
    sizes: Sequence[int],
    strategy: SamplingStrategy = "temperature",
    temperature: float = 1.0,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Sampling probability of each pair (see the module table).

    Args:
        sizes: training examples of each pair (n_i >= 1).
        strategy: temperature, proportional, uniform or weights.
        temperature: T of temperature sampling (> 0).
        weights: one positive weight per pair, for 'weights'.

    Raises:
        DataError: empty or non-positive sizes, T <= 0, missing or non-positive weights.
    """
    n = np.asarray(sizes, dtype=np.float64)
    if n.size == 0 or (n <= 0).any():
        raise DataError(f"every trained pair needs at least one example; sizes {list(sizes)}")
    if strategy == "proportional" or (strategy == "temperature" and temperature == 1.0):
        p = n / n.sum()
    elif strategy == "uniform":
        p = np.full(n.size, 1.0 / n.size)
    elif strategy == "temperature":
        if temperature <= 0:
            raise DataError(f"sampling temperature must be > 0, got {temperature}")
        # in log space: (n_i/N)^(1/T) underflows for tiny shares and small T
        logits = np.log(n / n.sum()) / temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
    elif strategy == "weights":
        w = np.asarray(weights if weights is not None else [], dtype=np.float64)
        if w.shape != n.shape or (w <= 0).any():
            raise DataError(f"'weights' sampling needs one positive weight per pair; got {weights} for {n.size} pairs")
        p = w / w.sum()
    else:
        raise DataError(f"unknown sampling strategy {strategy!r}; valid: temperature, proportional, uniform, weights")
    return p


def epoch_picks(sizes: Sequence[int], probabilities: np.ndarray, epoch_size: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    """Local example indices of each pair drawn for `epoch` (see the module docstring).

    Returns:
        One int64 array per pair; their lengths sum to `epoch_size` (a single pair: its
        whole corpus, each example once).
    """
    if seed < 0 or epoch < 0:
        raise DataError(f"`seed` and `epoch` must be >= 0, got seed={seed}, epoch={epoch}")
    if len(sizes) == 1:
        return [np.arange(sizes[0])]
    rng = np.random.default_rng([seed, epoch, _SELECT_STREAM])
    counts = rng.multinomial(epoch_size, probabilities)
    picks = []
    for n_i, c_i in zip(sizes, counts.tolist()):
        passes = [rng.permutation(n_i) for _ in range(-(-c_i // n_i))]  # ceil(c_i / n_i) passes
        picks.append(np.concatenate(passes)[:c_i] if passes else np.zeros(0, dtype=np.int64))
    return picks


def sampled_batches(
    src_lengths: Sequence[Sequence[int]],
    tgt_lengths: Sequence[Sequence[int]],
    probabilities: np.ndarray,
    epoch_size: int,
    max_tokens: int,
    *,
    seed: int,
    epoch: int,
    max_sentences: int | None = None,
    sort_window: int = 100,
    batch_order: BatchOrder = "shuffled",
    sort_window_share: float = 1.0,
) -> list[list[int]]:
    """Token-budget batches of one epoch over several pairs, as global example indices.

    Pair i's example j has global index `offset_i + j`, offsets the running sum of sizes
    (the order `TaskData` concatenates the corpora). Batches mix pairs.

    Args:
        src_lengths: per pair, the source length of each example.
        tgt_lengths: per pair, the target length of each example.
        probabilities: from `pair_probabilities`.
        epoch_size: examples per epoch (ignored with one pair).
        max_tokens: batch budget, as in `bucketed_batches`.
        max_sentences: examples per batch at most, as in `bucketed_batches`.
        sort_window: `bucketed_batches`' bucket_size_multiplier (batches per sorted window).
        batch_order: as in `bucketed_batches`.
        sort_window_share: `bucketed_batches`' max_window_share (share of the epoch's batches).
    """
    sizes = [len(s) for s in src_lengths]
    offsets = np.cumsum([0, *sizes[:-1]])
    picks = epoch_picks(sizes, probabilities, epoch_size, seed=seed, epoch=epoch)
    glob = np.concatenate([o + p for o, p in zip(offsets, picks)])  # (epoch_size,) global ids
    flat_src = np.concatenate([np.asarray(s, dtype=np.int64) for s in src_lengths])
    flat_tgt = np.concatenate([np.asarray(t, dtype=np.int64) for t in tgt_lengths])
    batches = bucketed_batches(flat_src[glob], flat_tgt[glob], max_tokens, seed=seed, epoch=epoch, max_sentences=max_sentences,
                               bucket_size_multiplier=sort_window, batch_order=batch_order,
                               max_window_share=sort_window_share)
    return [glob[b].tolist() for b in batches]
