"""Tables of exercise cells that were run one at a time into one compare folder.

The seed exercises (recipes/exercise-*.yaml) share their base, so they were run into one
compare folder (the `baseline` and `full` cells trained once, reused by fingerprint) with
`cells=[baseline, full, <one cell>]` per call. results.jsonl then holds only the last call's
cells; every cell's own row is in `cells/<name>/cell_result.json`. This script gathers those
rows, reruns the paired bootstrap against `baseline` and `full`, writes report.md/html and the
plots into --out, and prints a Markdown table per exercise.

    python scripts/exercise_tables.py runs/exercise-lora-vs-full-s0 --out docs/exercises-s0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GROUPS = {  # exercise -> cell-name prefixes shown in its table (baseline and full in every one)
    "LoRA vs full": ("lora-r8-all",),
    "LoRA ranks (all-linear) and q,v": ("lora-r4", "lora-r8-all", "lora-r16", "lora-r32", "lora-r8-qv"),
    "adapter sizes": ("houlsby-", "pfeiffer-"),
    "prefix and prompt lengths": ("prefix-", "prompt-"),
}


def main(argv: list[str] | None = None) -> int:
    from mtadapt.compare.report import verdict, write_report
    from mtadapt.compare.runner import add_comparisons

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="the shared compare folder (with cells/*/cell_result.json)")
    parser.add_argument("--out", required=True, help="folder for report.md/html and the plots")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("cells/*/cell_result.json"))]
    rows = [r for r in rows if r.get("status") == "done"]
    order = {"none": 0, "full": 1}
    rows.sort(key=lambda r: (order.get(r["method"], 2), r["name"]))
    add_comparisons(rows, folder, args.n_bootstrap)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    write_report(rows, out, title="Seed exercises (reduced budget)", source=str(folder))
    for title, prefixes in GROUPS.items():
        mine = [r for r in rows if r["method"] in ("none", "full") or r["name"].startswith(prefixes)]
        if len(mine) <= 2:
            print(f"\n### {title}: not run\n")
            continue
        print(f"\n### {title}\n")
        print("| cell | trainable | test BLEU [95% CI] | chrF | ΔBLEU vs untuned (p) | ΔBLEU vs full (p) | dev BLEU at 50 / 100 | verdict |")
        print("|---|---|---|---|---|---|---|---|")
        for r in mine:
            b = r["scores"]["BLEU"]
            vb, vf = r.get("vs_baseline"), r.get("vs_full")
            delta = lambda v: f"{v['BLEU']['delta']:+.2f} (p={v['BLEU']['p_value']:.3f})" if v else "-"  # noqa: E731
            dev = " / ".join(f"{h['bleu']:.2f}" for h in r.get("dev_history", []) if h["step"] > 0) or "-"
            print(f"| {r['name']} | {r['trainable']:,} | {b['score']:.2f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}] | "
                  f"{r['scores']['chrF']['score']:.2f} | {delta(vb)} | {delta(vf)} | {dev} | {verdict(r)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
