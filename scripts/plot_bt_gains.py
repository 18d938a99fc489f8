"""Test BLEU against the number of synthetic (back-translated) pairs in the training mixture, one
line per domain and seed (issue 27): the real-only run at 0, each back-translation run at its
mixture's synthetic count.

    python scripts/plot_bt_gains.py --out docs/bt/bleu_vs_synthetic.png \\
        --domain "Bible pt->en" runs/bt25k data/bible-bt-25k \\
        --domain "UI strings pt_BR->en" runs/ui data/ui-pt-en

Each domain is (label, runs folder, data folder). In the runs folder `bt-real[-sN]` and
`bt-beam[-sN]` hold `test.hyp`; the data folder holds `test.en`, `real.pt` and `bt-beam.pt`
(whose line count is the synthetic count). Scores are recomputed with sacreBLEU from the
hypotheses. Domains given the same label share a panel, one line per real-pair count and seed
(the real-subset settings: `--domain "UI strings" runs/ui-r500 data/ui-pt-en-r500`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mtadapt.evaluate.metrics import corpus_scores
from mtadapt.io import read_lines


def points(runs: Path, data: Path) -> dict[str, list[tuple[int, float]]]:
    """Seed label ("seed 0", ...) -> [(synthetic pairs, test BLEU)] for the real-only and beam runs."""
    refs = read_lines(data / "test.en")
    synthetic = len(read_lines(data / "bt-beam.pt"))
    by_seed: dict[str, list[tuple[int, float]]] = {}
    for run in sorted(runs.glob("bt-*")):
        match = re.fullmatch(r"bt-(real|beam)(?:-s(\d+))?", run.name)
        if match is None or not (run / "test.hyp").is_file():
            continue
        bleu = corpus_scores(read_lines(run / "test.hyp"), refs)["BLEU"].score
        seed = f"seed {match.group(2) or 0}"
        by_seed.setdefault(seed, []).append((0 if match.group(1) == "real" else synthetic, bleu))
    return {seed: sorted(p) for seed, p in sorted(by_seed.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", nargs=3, action="append", required=True, metavar=("LABEL", "RUNS", "DATA"))
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[tuple[Path, Path]]] = {}
    for label, runs, data in args.domain:
        panels.setdefault(label, []).append((Path(runs), Path(data)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (label, folders) in zip(axes[0], panels.items()):
        for runs, data in folders:
            # with several real-pair counts in a panel, each line says which
            real = f", {len(read_lines(data / 'real.pt')):,} real" if len(folders) > 1 else ""
            for seed, pts in points(runs, data).items():
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=seed + real)
                for x, y in pts:
                    print(f"{label}\t{seed}{real}\t{x}\t{y:.2f}")
        ax.set_title(label)
        ax.set_xlabel("synthetic (back-translated) pairs")
        ax.set_ylabel("test BLEU")
        ax.legend(fontsize="small")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
