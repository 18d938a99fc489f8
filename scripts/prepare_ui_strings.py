"""Data of the software-UI back-translation experiment (issue 27, item 2): Brazilian
Portuguese -> English user-interface strings from the gettext catalogs that PyPI packages ship.

Whole packages are held out, never strings:

    test   django-oscar                 (an e-commerce framework's UI)
    dev    django-allauth, django-filer (accounts; file management)
    train  django, django-cms, pretix, sphinx, wagtail, weblate

From the training packages' pt_BR catalogs (translated, not fuzzy, no plural entries, one line,
deduplicated by msgid; strings that occur in a held-out package are dropped), shuffled by
`--seed`:

    real.pt / real.en   the first --real pairs                  (the few translated strings)
    mono.en             every other English msgid of the training packages: the rest of the
                        pt_BR catalogs' msgids (their translations are not used) and the
                        msgids of the packages' other-language catalogs that pt_BR lacks
    dev.* / test.*      --dev / --test pairs of the held-out packages

    python scripts/prepare_ui_strings.py --wheels wheels/ --out-dir data/ui-pt-en --real 1000

`--wheels` is a folder of the packages' wheels (`pip download --no-deps django django-cms
pretix sphinx wagtail weblate django-oscar django-allauth django-filer -d wheels/`); the
catalogs are read from them at run time and never committed (each package's licence applies).
"""

from __future__ import annotations

import argparse
import random
import re
import zipfile
from pathlib import Path

import polib

from mtadapt.io import atomic_write_lines

SPLITS = {
    "test": ("django_oscar",),
    "dev": ("django_allauth", "django_filer"),
    "train": ("django", "django_cms", "pretix", "sphinx", "wagtail", "weblate"),
}
MAX_CHARS = 200


def _package(wheel: Path) -> str:
    return re.split(r"-\d", wheel.name, maxsplit=1)[0].lower().replace("-", "_")


def _usable(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text and "\t" not in text and len(text) <= MAX_CHARS


def read_catalogs(wheel: Path) -> tuple[dict[str, str], set[str]]:
    """(pt_BR msgid -> msgstr of usable translated entries, every usable msgid of any language)."""
    pairs: dict[str, str] = {}
    msgids: set[str] = set()
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not (name.endswith(".po") and "/LC_MESSAGES/" in name):
                continue
            catalog = polib.pofile(z.read(name).decode("utf-8", errors="replace"))
            for e in catalog:
                if e.obsolete or e.msgid_plural or not _usable(e.msgid):
                    continue
                msgids.add(e.msgid)
                if "/pt_BR/" in name and e.translated() and "fuzzy" not in e.flags and _usable(e.msgstr):
                    pairs.setdefault(e.msgid, e.msgstr)
    return pairs, msgids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, required=True, help="folder with the packages' wheels")
    parser.add_argument("--out-dir", type=Path, default=Path("data/ui-pt-en"))
    parser.add_argument("--real", type=int, default=1000, help="real translated pairs for training")
    parser.add_argument("--dev", type=int, default=300)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wheels = {_package(w): w for w in sorted(args.wheels.glob("*.whl"))}
    missing = [p for names in SPLITS.values() for p in names if p not in wheels]
    if missing:
        raise SystemExit(f"error: --wheels {args.wheels}: no wheel for {', '.join(missing)}; "
                         f"found {', '.join(sorted(wheels)) or 'none'}")
    catalogs = {p: read_catalogs(wheels[p]) for names in SPLITS.values() for p in names}
    held_out = {m for split in ("dev", "test") for p in SPLITS[split] for m in catalogs[p][1]}
    rng = random.Random(args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split in ("dev", "test"):
        pairs = sorted({m: s for p in SPLITS[split] for m, s in catalogs[p][0].items()}.items())
        rng.shuffle(pairs)
        n = args.dev if split == "dev" else args.test
        atomic_write_lines(args.out_dir / f"{split}.pt", [s for _, s in pairs[:n]])
        atomic_write_lines(args.out_dir / f"{split}.en", [m for m, _ in pairs[:n]])
    train_pairs = sorted({m: s for p in SPLITS["train"] for m, s in catalogs[p][0].items() if m not in held_out}.items())
    rng.shuffle(train_pairs)
    real = train_pairs[: args.real]
    real_ids = {m for m, _ in real}
    mono = sorted({m for p in SPLITS["train"] for m in catalogs[p][1]} - real_ids - held_out)
    rng.shuffle(mono)
    atomic_write_lines(args.out_dir / "real.pt", [s for _, s in real])
    atomic_write_lines(args.out_dir / "real.en", [m for m, _ in real])
    atomic_write_lines(args.out_dir / "mono.en", mono)
    print(f"{args.out_dir}: real {len(real)} of {len(train_pairs)} translated training pairs, mono {len(mono)} English msgids, "
          f"dev {min(args.dev, len(pairs))}, test {args.test}; {len(held_out)} held-out msgids kept out of training")


if __name__ == "__main__":
    main()
