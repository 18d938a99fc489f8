"""Synthetic noise on sentences: word dropout, local shuffle, random insertion, blanking.

Used on the source side of real or back-translated pairs (Lample et al. 2018; Edunov et al.
2018, "noised beam"), either on files (`mtadapt augment noise`) or on the fly during
training (`data.noise`, fresh noise each epoch). Per sentence, in this order:

    units = split(text)                                   # words, or graphemes (below)
    units = [u for u in units if rng.random() >= word_dropout] or [random unit]   # never empty
    units = [blank_token if rng.random() < blank_prob else u for u in units]
    keys  = [i + rng.uniform(0, k) for i in range(len(units))]; units = sorted by keys
    for each gap (len(units) + 1 of them): insert a word with probability insertion_prob
    text  = join(units)

Shuffle bound: unit j > i lands before unit i only if j - i < u_i - u_j < k, so no unit
moves k or more positions (k = word_shuffle_distance; k <= 1 keeps the order, as fairseq's
`max_shuffle_distance`). The bound holds over the units left after dropout and blanking;
inserted words come after the shuffle.

Reproducibility: each sentence draws from its own generator seeded by (seed, epoch, index),
so the noise of sentence 7 in epoch 2 is the same whatever batch it lands in, and every
epoch gets different noise.

Units. Text is noised on whitespace words, not SentencePiece pieces. Scripts written without
spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar, Tibetan) would make a whole sentence
one "word"; with `unit="auto"` a sentence containing any character of those scripts is
noised per grapheme instead: a base character with its following combining marks (Unicode
category M*) and zero-width joiners, an approximation of UAX #29 extended grapheme clusters
that keeps Thai tone marks and vowel signs on their consonant. In such a sentence every
cluster, a Latin letter or a space included, is one unit, and units are joined without
separators. `unit="word"` or `unit="grapheme"` forces one behaviour for all sentences.

An empty (or all-space) input sentence is returned unchanged; any other input keeps at
least one unit, so noise never empties a sentence.
"""

from __future__ import annotations

import bisect
import itertools
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from mtadapt.errors import DataError
from mtadapt.settings import InsertionSource, NoiseConfig, NoiseSide, NoiseUnit

# Scripts written without spaces between words (code point ranges).
_NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x0F00, 0x0FFF),    # Tibetan
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x31F0, 0x31FF),    # Katakana phonetic extensions
    (0x3400, 0x4DBF),    # CJK extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
)
_ZWJ = "\u200d"


def _no_space_script(char: str) -> bool:
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _NO_SPACE_RANGES)


def graphemes(text: str) -> list[str]:
    """Approximate grapheme clusters: a base character plus following combining marks and
    zero-width-joined characters (`"กิ่ง"` -> `["กิ่", "ง"]`)."""
    clusters: list[str] = []
    for char in text:
        joined = clusters and (clusters[-1].endswith(_ZWJ) or char == _ZWJ or unicodedata.category(char).startswith("M"))
        if joined:
            clusters[-1] += char
        else:
            clusters.append(char)
    return clusters


def split_units(text: str, unit: NoiseUnit = "auto") -> tuple[list[str], str]:
    """Units of `text` and the separator that joins them back ("" for graphemes)."""
    if unit == "grapheme" or (unit == "auto" and any(_no_space_script(c) for c in text)):
        return graphemes(text.strip()), ""
    return text.split(), " "


@dataclass
class WordVocabulary:
    """Words of a corpus with their frequencies, for frequency-weighted insertion."""

    words: list[str]
    cumulative: list[int]  # cumulative[i] = count(words[0]) + ... + count(words[i])

    @classmethod
    def from_texts(cls, texts: Iterable[str], unit: NoiseUnit = "auto") -> WordVocabulary:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(u for u in split_units(text, unit)[0] if not u.isspace())
        words = sorted(counts)  # sorted: the same vocabulary whatever the corpus order
        return cls(words, list(itertools.accumulate(counts[w] for w in words)))

    def __len__(self) -> int:
        return len(self.words)

    def sample(self, rng: np.random.Generator) -> str:
        """One word, drawn with probability proportional to its corpus frequency."""
        draw = int(rng.integers(self.cumulative[-1]))
        return self.words[bisect.bisect_right(self.cumulative, draw)]


def sentence_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sentence `index` in `epoch`; independent of batching."""
    # SeedSequence mixes the three numbers; (1, 0, 5) and (0, 1, 5) give unrelated streams.
    return np.random.default_rng([seed, epoch, index])


def noise_units(units: Sequence[str], config: NoiseConfig, rng: np.random.Generator,
                vocabulary: WordVocabulary | None = None) -> list[str]:
    """Apply dropout, blanking, shuffle and insertion (in that order) to one unit list."""
    units = list(units)
    if not units:
        return units
    if config.word_dropout > 0:
        kept = [u for u in units if rng.random() >= config.word_dropout]
        units = kept or [units[int(rng.integers(len(units)))]]  # never empty
    if config.blank_prob > 0:
        units = [config.blank_token if rng.random() < config.blank_prob else u for u in units]
    if config.word_shuffle_distance > 1 and len(units) > 1:
        keys = np.arange(len(units)) + rng.uniform(0, config.word_shuffle_distance, size=len(units))
        units = [units[i] for i in np.argsort(keys, kind="stable")]
    if config.insertion_prob > 0:
        out: list[str] = []
        for position in range(len(units) + 1):  # a gap before each unit and one at the end
            if rng.random() < config.insertion_prob:
                out.append(config.filler_token if vocabulary is None else vocabulary.sample(rng))
            if position < len(units):
                out.append(units[position])
        units = out
    return units


class Noiser:
    """Noise sentences reproducibly: `noiser(text, index, epoch)`.

    Args:
        config: The noise settings.
        vocabulary: Words to insert from, required when `config.insertion_prob > 0` and
            `config.insertion_source == "vocabulary"` (build it with
            `WordVocabulary.from_texts(corpus)`).

    Raises:
        ValueError: vocabulary insertion without a vocabulary (or an empty one).
    """

    def __init__(self, config: NoiseConfig, vocabulary: WordVocabulary | None = None):
        self.config = config
        self.vocabulary = vocabulary if config.insertion_source == "vocabulary" else None
        if config.insertion_prob > 0 and config.insertion_source == "vocabulary" and not vocabulary:
            raise ValueError(
                "noise.insertion_source='vocabulary' needs a non-empty corpus vocabulary; "
                "build one with WordVocabulary.from_texts(...) or set noise.insertion_source='filler'"
            )

    def __call__(self, text: str, index: int, epoch: int = 0) -> str:
        """The noised `text`; sentence `index` of the corpus, in `epoch`."""
        units, separator = split_units(text, self.config.unit)
        if not any(not u.isspace() for u in units):
            return text  # nothing to noise (an empty line stays empty)
        rng = sentence_rng(self.config.seed, epoch, index)
        if rng.random() >= self.config.fraction:
            return text
        out = noise_units(units, self.config, rng, self.vocabulary)
        noised = separator.join(out).strip()
        # A grapheme sentence whose only kept unit was a space: keep one real unit instead.
        return noised or next(u for u in units if not u.isspace())

    def noise_texts(self, texts: Sequence[str], indices: Sequence[int] | None = None, epoch: int = 0) -> list[str]:
        """Noise `texts[j]` as corpus sentence `indices[j]` (default: j)."""
        indices = range(len(texts)) if indices is None else indices
        return [self(t, i, epoch) for t, i in zip(texts, indices, strict=True)]

    def tokenized_pairs(self, pairs: Any, indices: Sequence[int], epoch: int, codec: Any) -> list[tuple[list[int], list[int]]]:
        """(src_ids, tgt_ids) of `pairs[indices]` with the configured side(s) noised and
        re-tokenized; the training loop calls this per batch (`data.noise`).

        Args:
            pairs: `TokenizedPairs` (texts `src`/`tgt` and ids `src_ids`/`tgt_ids`).
            codec: The `PairCodec` that tokenized them.
        """
        src_ids = [pairs.src_ids[i] for i in indices]
        tgt_ids = [pairs.tgt_ids[i] for i in indices]
        if self.config.side in ("source", "both"):
            src_ids = codec.encode_sources(self.noise_texts([pairs.src[i] for i in indices], indices, epoch))
        if self.config.side in ("target", "both"):
            # Another stream than the source's: index offset by the corpus size.
            offset = len(pairs.src)
            noised = self.noise_texts([pairs.tgt[i] for i in indices], [offset + i for i in indices], epoch)
            tgt_ids = codec.encode_targets(noised)
        return list(zip(src_ids, tgt_ids))


def noise_lines(lines: Sequence[str], config: NoiseConfig, epoch: int = 0, first_index: int = 0) -> list[str]:
    """Noise a list of sentences (one side of a corpus); insertion draws from their words.

    Args:
        first_index: Index of `lines[0]` for the per-sentence generators.
    """
    vocabulary = None
    if config.insertion_prob > 0 and config.insertion_source == "vocabulary":
        vocabulary = WordVocabulary.from_texts(lines, config.unit)
    return Noiser(config, vocabulary).noise_texts(lines, range(first_index, first_index + len(lines)), epoch)


def noise_tsv_lines(lines: Sequence[str], config: NoiseConfig, epoch: int = 0, source: str = "input") -> list[str]:
    """Noise `source<TAB>target` lines on `config.side`; other columns are kept.

    Args:
        source: the file the lines came from, for the message.

    Raises:
        DataError: a line without a tab, as `source:LINE`.
    """
    columns = []
    for number, line in enumerate(lines, 1):
        if "\t" not in line:
            raise DataError(f"{source}:{number}: expected source<TAB>target, found no tab "
                            "(a .tsv file, or --tsv, is read as source<TAB>target; plain text needs neither)")
        columns.append(line.split("\t"))
    for col, side in ((0, "source"), (1, "target")):
        if config.side in (side, "both"):
            # the target side draws from other generators than the source (index offset)
            noised = noise_lines([c[col] for c in columns], config, epoch, first_index=col * len(columns))
            for c, text in zip(columns, noised):
                c[col] = text
    return ["\t".join(c) for c in columns]


def training_noiser(data_config: Any, train_pairs: Any) -> Noiser | None:
    """The noiser of `data.noise` for the training loop (None when unset); vocabulary
    insertion draws from the training corpus's side being noised.

    Raises:
        ValueError: `data.noise` with `data.pairs` (noised rows would be re-tokenized with one
            direction's codec, so multi-pair runs are not noised).
    """
    config = data_config.noise
    if config is None:
        return None
    if getattr(data_config, "pairs", None):
        raise ValueError("data.noise applies to single-pair runs; remove it or data.pairs (multi-pair noise is not implemented)")
    vocabulary = None
    if config.insertion_prob > 0 and config.insertion_source == "vocabulary":
        # side "both": one vocabulary of both sides' words
        texts = {"source": train_pairs.src, "target": train_pairs.tgt, "both": [*train_pairs.src, *train_pairs.tgt]}[config.side]
        vocabulary = WordVocabulary.from_texts(texts, config.unit)
    return Noiser(config, vocabulary)
