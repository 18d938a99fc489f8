"""Tables of the seed exercises, one compare folder per training seed.

The four exercises (recipes/exercise-*.yaml) share their base, so `scripts/run_exercises.sh`
runs them for one seed into one compare folder (the `baseline`, `full` and `lora-r8-all`
cells trained once, reused by fingerprint). results.jsonl then holds only the last recipe's
cells; every cell's own row is in `cells/<name>/cell_result.json`. This script gathers those
rows per folder, reruns the paired bootstrap against `baseline` and `full` within each seed,
writes report.md/html and the plots of each seed into --out/s<k>/, and prints a Markdown
table per exercise with one column group per seed:

    python scripts/exercise_tables.py runs/ex-s0 runs/ex-s1 --out docs/exercises
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

GROUPS = {  # exercise -> cell-name prefixes shown in its table (baseline and full in every one)
    "LoRA vs full": ("lora-r8-all",),
    "LoRA ranks (all-linear) and q,v": ("lora-r4", "lora-r8-all", "lora-r16", "lora-r32", "lora-r8-qv"),
    "adapter sizes": ("houlsby-", "pfeiffer-"),
    "prefix and prompt lengths": ("prefix-", "prompt-"),
}
ORDER = {"none": 0, "full": 1}


def gather(folder: Path, n_bootstrap: int) -> dict[str, dict[str, Any]]:
    """name -> finished row of every cell in `folder`, with its paired tests."""
    from mtadapt.compare.runner import add_comparisons

    rows = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("cells/*/cell_result.json"))]
    rows = [r for r in rows if r.get("status") == "done"]
    rows.sort(key=lambda r: (ORDER.get(r["method"], 2), _size_key(r["name"])))
    add_comparisons(rows, folder, n_bootstrap)
    return {r["name"]: r for r in rows}


def _size_key(name: str) -> tuple[str, int, str]:
    """prefix-5 before prefix-10: the number in the name sorts as a number."""
    head, _, tail = name.rpartition("-")
    digits = "".join(c for c in tail if c.isdigit())
    return (head, int(digits), tail) if digits and tail.lstrip("r").isdigit() else (name, 0, "")


def _delta(test: dict[str, Any] | None) -> str:
    return f"{test['BLEU']['delta']:+.2f} (p={test['BLEU']['p_value']:.3f})" if test else "-"


def summary(rows: list[dict[str, Any] | None], alpha: float) -> str:
    """One verdict over the seeds, from the per-seed paired tests (BLEU)."""
    done = [r for r in rows if r is not None]
    if not done:
        return "not run"
    if done[0]["method"] == "none":
        return "the untuned model: the reference"
    where = "in both seeds" if len(done) == 2 else f"in all {len(done)} seeds" if len(done) > 2 else "(1 seed)"

    def side(key: str, up: str, down: str, level: str) -> str | None:
        tests = [r.get(key) for r in done]
        if not all(tests):
            return None
        signs = {(t["BLEU"]["delta"] > 0) if t["BLEU"]["p_value"] < alpha else None for t in tests}
        if len(signs) > 1:
            return f"{key.replace('vs_', 'vs ')}: mixed over the seeds"
        return f"{ {True: up, False: down, None: level}[signs.pop()]} {where}"

    parts = [side("vs_baseline", "above untuned", "below untuned", "not significantly different from untuned")]
    if done[0]["method"] != "full":
        parts.append(side("vs_full", "above full", "below full", "level with full"))
    return "; ".join(p for p in parts if p)


def main(argv: list[str] | None = None) -> int:
    from mtadapt.compare.report import SIGNIFICANCE, write_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="one compare folder per seed (with cells/*/cell_result.json)")
    parser.add_argument("--out", required=True, help="folder for each seed's report.md/html and plots (s0/, s1/, ...)")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    seeds = [gather(Path(f), args.n_bootstrap) for f in args.folders]
    out = Path(args.out)
    for k, (folder, rows) in enumerate(zip(args.folders, seeds)):
        target = out / f"s{k}"
        target.mkdir(parents=True, exist_ok=True)
        (target / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows.values()), encoding="utf-8")
        write_report(list(rows.values()), target, title=f"Seed exercises, seed folder {k}", source=str(folder))
    names = list(dict.fromkeys(n for rows in seeds for n in rows))
    heads = " | ".join(f"BLEU s{k} | Δ untuned s{k} (p) | Δ full s{k} (p)" for k in range(len(seeds)))
    for title, prefixes in GROUPS.items():
        mine = [n for n in names if n in ("baseline", "full") or n.startswith(prefixes)]
        print(f"\n### {title}\n")
        print(f"| cell | trainable | {heads} | mean BLEU | verdict |")
        print("|---|---|" + "---|---|---|" * len(seeds) + "---|---|")
        for name in mine:
            rows = [s.get(name) for s in seeds]
            first = next(r for r in rows if r is not None)
            cells = []
            for r in rows:
                if r is None:
                    cells += ["not run", "-", "-"]
                else:
                    cells += [f"{r['scores']['BLEU']['score']:.2f}", _delta(r.get("vs_baseline")), _delta(r.get("vs_full"))]
            scores = [r["scores"]["BLEU"]["score"] for r in rows if r is not None]
            mean = f"{sum(scores) / len(scores):.2f}" + ("" if len(scores) == len(seeds) else f" ({len(scores)} seed)")
            print(f"| {name} | {first['trainable']:,} | {' | '.join(cells)} | {mean} | {summary(rows, SIGNIFICANCE)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
