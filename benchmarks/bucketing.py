"""Length-bucketed vs random token-budget batching: padding fraction and training throughput.

Both batchers get the same synthetic corpus (log-normal sentence lengths, mean ~25 tokens,
tail to 150; target length correlated with source) and the same token budget. Throughput is
real (non-pad) source+target tokens per second of forward+backward through a tiny Marian
seq2seq model built from a config, on CPU; batches of the two methods are interleaved so
both see the same machine state.

    .venv/bin/python benchmarks/bucketing.py [--examples 1200] [--corpus-pairs 1000000] [--threads N] [--max-tokens 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from transformers import MarianConfig, MarianMTModel

from mtadapt.data import bucketed_batches, collate, padding_fraction, random_batches

VOCAB_SIZE = 8000
PAD_ID = 0


def synthetic_lengths(n: int, seed: int) -> tuple[list[int], list[int]]:
    """Source lengths ~ LogNormal(median 21, sigma 0.6) -> mean ~25; target = source * LogNormal(0, 0.15)."""
    rng = np.random.default_rng(seed)
    src = np.clip(np.rint(rng.lognormal(np.log(21.0), 0.6, n)), 1, 150).astype(int)
    tgt = np.clip(np.rint(src * rng.lognormal(0.0, 0.15, n)), 1, 150).astype(int)
    return src.tolist(), tgt.tolist()


def tiny_marian() -> MarianMTModel:
    config = MarianConfig(
        vocab_size=VOCAB_SIZE, d_model=128, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=512,
        decoder_ffn_dim=512, max_position_embeddings=256, pad_token_id=PAD_ID,
        decoder_start_token_id=PAD_ID, eos_token_id=1,
    )
    torch.manual_seed(0)
    return MarianMTModel(config).train()


def step(model: MarianMTModel, batch: list[int], src: list[int], tgt: list[int], rng: np.random.Generator) -> float:
    """One forward+backward on random ids of the given lengths; returns seconds."""
    pairs = [(rng.integers(2, VOCAB_SIZE, src[i]).tolist(), rng.integers(2, VOCAB_SIZE, tgt[i]).tolist()) for i in batch]
    inputs = collate(pairs, PAD_ID)
    start = time.perf_counter()
    loss = model(**inputs).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1200, help="pairs of the throughput part")
    parser.add_argument("--corpus-pairs", type=int, default=1_000_000, help="pairs of the batch construction part (no model)")
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    # torch's default (the physical cores) unless told; on a small shared machine pass
    # --threads 1: several threads per process oversubscribe the cores and step times swing
    # by 2x, drowning the comparison.
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"cpus={os.cpu_count()} torch_threads={torch.get_num_threads()} | python {platform.python_version()} "
          f"| torch {torch.__version__}")

    # 1. Batch construction cost and padding at corpus scale (no model).
    big_src, big_tgt = synthetic_lengths(args.corpus_pairs, args.seed)
    print(f"\ncorpus: {args.corpus_pairs:,} pairs, src mean {np.mean(big_src):.1f} / p50 {np.median(big_src):.0f} / "
          f"p99 {np.percentile(big_src, 99):.0f} / max {max(big_src)} tokens; budget {args.max_tokens} tokens/batch")
    print(f"{'batcher':<10} {'batches':>9} {'padding':>8} {'build s':>8}")
    for name, batcher in (("random", random_batches), ("bucketed", bucketed_batches)):
        start = time.perf_counter()
        batches = batcher(big_src, big_tgt, args.max_tokens, seed=args.seed, epoch=0)
        elapsed = time.perf_counter() - start
        print(f"{name:<10} {len(batches):>9,} {padding_fraction(batches, big_src, big_tgt):>8.1%} {elapsed:>8.2f}")

    # 2. Throughput of forward+backward on the same examples, batches interleaved.
    src, tgt = synthetic_lengths(args.examples, args.seed + 1)
    plans = {
        "random": random_batches(src, tgt, args.max_tokens, seed=args.seed, epoch=0),
        "bucketed": bucketed_batches(src, tgt, args.max_tokens, seed=args.seed, epoch=0),
    }
    model = tiny_marian()
    rng = np.random.default_rng(args.seed)
    for batch in plans["random"][:3] + plans["bucketed"][:3]:  # warm-up: allocator, kernels
        step(model, batch, src, tgt, rng)
    seconds = {name: 0.0 for name in plans}
    longest = max(len(batches) for batches in plans.values())
    for k in range(longest):
        for name, batches in plans.items():
            if k < len(batches):
                seconds[name] += step(model, batches[k], src, tgt, rng)

    real_tokens = sum(src) + sum(tgt)  # both plans cover every example exactly once
    print(f"\nthroughput: {args.examples} pairs ({real_tokens:,} real src+tgt tokens), tiny Marian "
          f"d_model=128 2+2 layers, forward+backward, CPU")
    print(f"{'batcher':<10} {'batches':>8} {'padding':>8} {'seconds':>8} {'real tok/s':>11}")
    rates = {}
    for name, batches in plans.items():
        rates[name] = real_tokens / seconds[name]
        print(f"{name:<10} {len(batches):>8} {padding_fraction(batches, src, tgt):>8.1%} "
              f"{seconds[name]:>8.2f} {rates[name]:>11,.0f}")
    pad_random = padding_fraction(plans["random"], src, tgt)
    pad_bucketed = padding_fraction(plans["bucketed"], src, tgt)
    print(f"\nratio bucketed/random: tokens/s x{rates['bucketed'] / rates['random']:.2f}, "
          f"padding x{pad_bucketed / pad_random:.2f}, batches x{len(plans['bucketed']) / len(plans['random']):.2f}")


if __name__ == "__main__":
    main()
