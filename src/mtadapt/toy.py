"""The shipped toy translation task: a word-for-word "German" -> English grammar.

A tiny model learns it in about a minute on a CPU, so tests can assert that fine-tuning
takes BLEU from ~0 to above 50. The files under `mtadapt/resources/toy/` were written by
`write_toy_corpus` (run `python -m mtadapt.toy`); they are regenerated identically
from the seed.

Sentence shape: DET [ADJ] NOUN VERB DET [ADJ] NOUN [ADVERB], e.g.
    de: der alte hund sieht eine kleine katze heute
    en: the old dog sees a small cat today
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

LEXICON: dict[str, dict[str, str]] = {
    "det": {"the": "der", "a": "ein", "this": "dieser", "every": "jeder"},
    "adj": {
        "red": "rote", "big": "grosse", "small": "kleine", "old": "alte", "young": "junge",
        "green": "gruene", "happy": "frohe", "tired": "muede", "quiet": "stille", "fast": "schnelle",
    },
    "noun": {
        "dog": "hund", "cat": "katze", "house": "haus", "tree": "baum", "man": "mann",
        "woman": "frau", "child": "kind", "bird": "vogel", "car": "auto", "book": "buch",
        "river": "fluss", "garden": "garten",
    },
    "verb": {
        "sees": "sieht", "likes": "mag", "finds": "findet", "has": "hat", "hears": "hoert",
        "takes": "nimmt", "paints": "malt", "follows": "folgt",
    },
    "adverb": {"today": "heute", "often": "oft", "again": "wieder", "never": "nie"},
}

SPLITS = {"train": 3000, "dev": 100, "test": 100}
SEED = 13


def _noun_phrase(rng: random.Random) -> list[tuple[str, str]]:
    words = [rng.choice(list(LEXICON["det"].items()))]
    if rng.random() < 0.6:
        words.append(rng.choice(list(LEXICON["adj"].items())))
    words.append(rng.choice(list(LEXICON["noun"].items())))
    return words


def sample_pair(rng: random.Random) -> tuple[str, str]:
    """One (German-like source, English target) pair from the grammar."""
    words = _noun_phrase(rng) + [rng.choice(list(LEXICON["verb"].items()))] + _noun_phrase(rng)
    if rng.random() < 0.4:
        words.append(rng.choice(list(LEXICON["adverb"].items())))
    english = " ".join(en for en, _ in words)
    german = " ".join(de for _, de in words)
    return german, english


def generate_toy_corpus(seed: int = SEED) -> dict[str, list[tuple[str, str]]]:
    """Disjoint train/dev/test splits (no test sentence appears in train)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, str]]] = {}
    for split, size in SPLITS.items():
        pairs = []
        while len(pairs) < size:
            de, en = sample_pair(rng)
            if de not in seen:
                seen.add(de)
                pairs.append((de, en))
        splits[split] = pairs
    return splits


def toy_corpus_dir() -> Path:
    """Folder with `{train,dev,test}.{de,en}` (Moses-style file pairs)."""
    return Path(str(resources.files("mtadapt") / "resources" / "toy"))


def write_toy_corpus(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, pairs in generate_toy_corpus().items():
        (out_dir / f"{split}.de").write_text("".join(de + "\n" for de, _ in pairs), encoding="utf-8")
        (out_dir / f"{split}.en").write_text("".join(en + "\n" for _, en in pairs), encoding="utf-8")


if __name__ == "__main__":
    write_toy_corpus(toy_corpus_dir())
