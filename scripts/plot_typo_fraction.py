"""Clean and typo-test BLEU against the share of back-translated sources that carry typos and
casing noise (issue 27, item 4): one line per test set and seed, from the UI-strings runs.

    python scripts/plot_typo_fraction.py --runs runs/ui --data data/ui-pt-en \\
        --out docs/bt/bleu_vs_typo_fraction.png

Points: `bt-beam[-sN]` at 0 (no typos), `bt-typo10`, `bt-typo` and `bt-typo30` (each `-sN` for
seed N) at 0.1, 0.2 and 0.3 (scripts/ui_bt_experiment.sh noise-data). Each run holds
`test.hyp` (clean test sources) and, once `typo-test` has scored it, `test-typo.hyp` (the
typo-noised copy); the data folder holds `test.en`. Scores are recomputed with sacreBLEU.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mtadapt.evaluate.metrics import corpus_scores
from mtadapt.io import read_lines

FRACTIONS = {"beam": 0.0, "typo10": 0.1, "typo": 0.2, "typo30": 0.3}


def points(runs: Path, data: Path) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(test set, seed label) -> [(typo share of the synthetic sources, test BLEU)], sorted."""
    refs = read_lines(data / "test.en")
    lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for run in sorted(runs.glob("bt-*")):
        match = re.fullmatch(r"bt-(beam|typo|typo10|typo30)(?:-s(\d+))?", run.name)
        if match is None:
            continue
        for test, label in (("test", "clean test"), ("test-typo", "typo test")):
            if (run / f"{test}.hyp").is_file():
                bleu = corpus_scores(read_lines(run / f"{test}.hyp"), refs)["BLEU"].score
                lines.setdefault((label, f"seed {match.group(2) or 0}"), []).append((FRACTIONS[match.group(1)], bleu))
    return {key: sorted(pts) for key, pts in sorted(lines.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="folder of the bt-beam / bt-typo* runs")
    parser.add_argument("--data", type=Path, required=True, help="folder holding test.en")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    for flag, path in (("--runs", args.runs), ("--data", args.data / "test.en")):
        if not path.exists():
            parser.error(f"{flag}: {path}: no such file or folder")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for (test, seed), pts in points(args.runs, args.data).items():
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", linestyle="-" if test == "clean test" else "--",
                label=f"{test}, {seed}")
        for x, y in pts:
            print(f"{test}\t{seed}\t{x:.1f}\t{y:.2f}")
    ax.set_xlabel("share of back-translated sources with typos and casing")
    ax.set_ylabel("test BLEU")
    ax.set_xticks(sorted(FRACTIONS.values()))
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
