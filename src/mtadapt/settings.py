"""Settings dataclasses that the run configuration (`mtadapt.config`) and the CLI share with
the code that uses them: how to decode (`GenerationConfig`) and how to noise text
(`NoiseConfig`). A torch-free leaf: `import mtadapt.config` (and the CLI) loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

NoiseSide = Literal["source", "target", "both"]
NoiseUnit = Literal["auto", "word", "grapheme"]
InsertionSource = Literal["vocabulary", "filler"]


@dataclass
class NoiseConfig:
    """What noise to add, where and how much.

    Attributes:
        word_dropout: Probability of deleting each unit.
        word_shuffle_distance: k of the local shuffle: unit i gets key i + U(0, k) and units
            are sorted by key, so none moves k or more places (0 or 1 = no shuffle).
        insertion_prob: Probability of inserting a word in each gap between units.
        insertion_source: Inserted words: "vocabulary" draws from the corpus's words by
            frequency (the corpus being noised), "filler" inserts `filler_token`.
        filler_token: Text inserted with `insertion_source="filler"`.
        blank_prob: Probability of replacing each unit by `blank_token`.
        blank_token: Placeholder text for blanked units (tokenized like any text unless your
            tokenizer has it as a token).
        side: Which side of a pair to noise (files noised with `augment noise` are one side).
        unit: "auto" (words; graphemes for sentences in scripts without spaces), "word" or
            "grapheme"; see the module docstring.
        fraction: Share of sentences that get noise at all (chosen per sentence).
        seed: Seed of the per-sentence generators (mixed with the epoch and sentence index).

    Raises:
        ValueError: every invalid setting, named, in one message.
    """

    word_dropout: float = 0.1
    word_shuffle_distance: float = 3.0
    insertion_prob: float = 0.0
    insertion_source: InsertionSource = "vocabulary"
    filler_token: str = "<filler>"
    blank_prob: float = 0.0
    blank_token: str = "<blank>"
    side: NoiseSide = "source"
    unit: NoiseUnit = "auto"
    fraction: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("word_dropout", "insertion_prob", "blank_prob", "fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                problems.append(f"{name} must be a probability in [0, 1], got {value!r}")
        if self.word_dropout == 1:
            problems.append("word_dropout must be < 1 (1 would delete every word)")
        if not isinstance(self.word_shuffle_distance, (int, float)) or self.word_shuffle_distance < 0:
            problems.append(f"word_shuffle_distance must be >= 0 (0 = no shuffle), got {self.word_shuffle_distance!r}")
        for name, tp in (("insertion_source", InsertionSource), ("side", NoiseSide), ("unit", NoiseUnit)):
            if getattr(self, name) not in get_args(tp):
                problems.append(f"{name}: {getattr(self, name)!r} is not one of {', '.join(map(repr, get_args(tp)))}")
        for name in ("filler_token", "blank_token"):
            token = getattr(self, name)
            if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
                problems.append(f"{name} must be a non-empty token without spaces, got {token!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed must be an integer >= 0, got {self.seed!r}")
        if problems:
            raise ValueError("; ".join(problems))



@dataclass
class GenerationConfig:
    """How to decode.

    Attributes:
        num_beams: 1 = greedy (or sampling when `do_sample`), >1 = beam search.
        batch_size: Sentences per generation batch.
        max_length_factor: Generated length limit = ceil(factor * source length) + 5.
        do_sample: Sample instead of searching (back-translation).
        sampling_temperature: Softmax temperature when sampling.
        top_k: Keep the k most likely tokens when sampling (0 = off).
        top_p: Nucleus sampling mass (1.0 = off).
        num_return_sequences: Outputs per source (<= num_beams for beam search).
        length_penalty: Beam-score length normalisation exponent.
    """

    num_beams: int = 1
    batch_size: int = 32
    max_length_factor: float = 2.0
    do_sample: bool = False
    sampling_temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_return_sequences: int = 1
    length_penalty: float = 1.0
