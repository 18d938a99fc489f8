"""Why does a dev curve first fall? Short runs of one compare cell with one setting toggled.

    for variant in variants:                       # e.g. label_smoothing=0, learning_rate=3e-5
        train(cell config + variant, max_steps=N, eval_every=E)
        print dev loss (teacher-forced CE, no smoothing), BLEU, chrF at steps 0, E, 2E, ...

Step 0 is the untuned model, evaluated once. The dev loss is a far less noisy signal than
BLEU on a small dev set, so a fall that shows in the loss is real.

    OMP_NUM_THREADS=1 python benchmarks/dev_curve_start.py recipes/quickstart.yaml full \
        --steps 30 --every 10 --variant base --variant train.label_smoothing=0.0

Prints one line per evaluation and the machine (CPU flags, threads, load average).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mtadapt.inference.precision import describe_machine


def machine() -> str:
    return describe_machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", help="a compare recipe (recipes/quickstart.yaml)")
    parser.add_argument("cell", help="cell name in the recipe (full, lora-r8, ...)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--dev", type=int, default=100, help="dev sentences evaluated")
    parser.add_argument("--variant", action="append", default=[],
                        help="'base', or comma-separated key=value overrides of the cell's run config")
    parser.add_argument("--step0", action="store_true", help="also evaluate the untuned model (step 0)")
    parser.add_argument("--json", help="append result rows to this JSONL file")
    args = parser.parse_args(argv)

    from mtadapt.compare.grid import load_compare_recipe
    from mtadapt.config import config_from_dict, config_to_dict
    from mtadapt.config_io import parse_override, set_path
    from mtadapt.data.tasks import load_corpus
    from mtadapt.evaluate.dev import evaluate_dev
    from mtadapt.runs import load_base
    from mtadapt.train.loop import train

    _, cells = load_compare_recipe(args.recipe)
    cell = next((c for c in cells if c.name == args.cell), None)
    if cell is None:
        raise SystemExit(f"{args.recipe}: no cell {args.cell!r}; cells: {', '.join(c.name for c in cells)}")
    print(f"machine: {machine()}", flush=True)
    rows = []
    if args.step0:
        config = cell.config
        config.data.max_dev_sentences = args.dev
        loaded = load_base(config)
        codec = loaded.codec(config.data.src_lang, config.data.tgt_lang)
        scores = evaluate_dev(loaded.model.eval(), codec, load_corpus(config, "dev", codec, None), config)
        rows.append({"cell": args.cell, "variant": "untuned", "step": 0, **scores})
        print(json.dumps(rows[-1]), flush=True)
    for variant in args.variant or ["base"]:
        tree = config_to_dict(cell.config)
        if variant != "base":
            for item in variant.split(","):
                key, value = parse_override(item)
                set_path(tree, key, value)
        tree["train"].update(max_steps=args.steps, eval_every=args.every, save_every=args.steps, log_every=args.every,
                             warmup_steps=min(tree["train"]["warmup_steps"], args.steps))
        tree["data"]["max_dev_sentences"] = args.dev
        run_dir = Path(tempfile.mkdtemp(prefix="devcurve-"))
        tree["train"]["output_dir"] = str(run_dir)
        config = config_from_dict(tree, f"{args.cell} {variant}")
        start = time.perf_counter()
        result = train(config, progress=False)
        for h in result.dev_history:
            rows.append({"cell": args.cell, "variant": variant, **h})
            print(json.dumps(rows[-1]), flush=True)
        losses = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().split("\n") if r]
        train_loss = [round(r["loss"], 3) for r in losses if "loss" in r]
        print(f"{args.cell} {variant}: train loss {train_loss}; {time.perf_counter() - start:.0f}s", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    print(f"machine at end: {machine()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
