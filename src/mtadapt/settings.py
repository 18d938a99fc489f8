"""Settings dataclasses that the run configuration (`mtadapt.config`) and the CLI share with
the code that uses them: how to decode (`GenerationConfig`), how to noise text (`NoiseConfig`)
and how to make synthetic pairs (`BacktranslationConfig`). A torch-free leaf: importing
`mtadapt.config` or building the CLI's parser (whose options come from these fields) loads no
torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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
        if not isinstance(self.word_shuffle_distance, (int, float)) or not 0 <= self.word_shuffle_distance < math.inf:
            problems.append(f"word_shuffle_distance must be finite and >= 0 (0 = no shuffle), got {self.word_shuffle_distance!r}")
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


DEFAULT_WINDOW_LINES = 100_000
"""Lines that streamed translation and back-translation read, sort and shard at a time."""

# precisions a model may run in for generation (runs.place_for_inference, the CLI's --dtype);
# int8: Marian-native models only, with their shipped int8 weights (models.marian_native.int8)
INFERENCE_DTYPES = ("float32", "bfloat16", "float16", "int8")

# engines that translate (inference.engine; the CLI's --engine), and CTranslate2's compute types
# (the CLI's --compute-type; which of them a device runs: ctranslate2.get_supported_compute_types)
ENGINES = ("pytorch", "ctranslate2")
COMPUTE_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float32", "float16", "bfloat16")

Direction = Literal["back", "forward"]
Mode = Literal["greedy", "beam", "sample", "noised_beam"]

# Edunov et al. 2018, "Understanding Back-Translation at Scale", section 3: delete words
# with probability 0.1, replace words by a filler token with probability 0.1, swap words
# (random permutation over a sliding window of 3).
EDUNOV_NOISE = NoiseConfig(word_dropout=0.1, blank_prob=0.1, blank_token="<blank>", word_shuffle_distance=3.0)


@dataclass
class BacktranslationConfig:
    """How to make synthetic pairs.

    Attributes:
        direction: "back" (input is target-side text; the model translates target -> source)
            or "forward" (input is source-side text; the model translates source -> target).
        mode: "greedy", "beam", "sample" or "noised_beam" (see the module docstring).
        num_beams: Beam size for "beam" and "noised_beam".
        outputs_per_sentence: Outputs kept per input line (n-best for beams, samples for
            "sample"; 1 for "greedy").
        sampling_temperature: Softmax temperature for "sample".
        top_k: Sample from the k most likely tokens (0 = all).
        top_p: Nucleus mass for sampling (1.0 = off).
        batch_size: Sentences per generation batch.
        max_length_factor: Output length limit relative to the input (see GenerationConfig).
        noise: Noise for "noised_beam" (default `EDUNOV_NOISE`); not used by other modes.
        tag: Text prepended to every source of the output (tagged BT), e.g. "[BT]".
        max_length_ratio: Drop pairs whose longer side has more than this many times the
            characters of the shorter (0 = off).
        drop_empty: Drop empty outputs.
        drop_copies: Drop outputs equal to their input (case and spacing ignored).
        drop_duplicates: Drop repeated (source, target) pairs.
        shard_size: Input lines per shard (the unit of resumption, and of work per process).
        window_lines: Input lines read, length-sorted and sharded at a time (memory holds one
            window, never the whole input).
        seed: Seeds sampling (per shard) and noise.

    Raises:
        ValueError: every invalid setting, in one message.
    """

    direction: Direction = "back"
    mode: Mode = "beam"
    num_beams: int = 5
    outputs_per_sentence: int = 1
    sampling_temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 32
    max_length_factor: float = 2.0
    noise: NoiseConfig | None = None
    tag: str | None = None
    max_length_ratio: float = 3.0
    drop_empty: bool = True
    drop_copies: bool = True
    drop_duplicates: bool = True
    shard_size: int = 500
    window_lines: int = DEFAULT_WINDOW_LINES
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.direction not in get_args(Direction):
            problems.append(f"direction: {self.direction!r} is not one of {', '.join(map(repr, get_args(Direction)))}")
        if self.mode not in get_args(Mode):
            problems.append(f"mode: {self.mode!r} is not one of {', '.join(map(repr, get_args(Mode)))}")
        for name in ("num_beams", "outputs_per_sentence", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mode == "greedy" and self.outputs_per_sentence > 1:
            problems.append("mode 'greedy' gives one output per sentence; use 'sample' or 'beam' for outputs_per_sentence > 1")
        if self.mode in ("beam", "noised_beam") and self.outputs_per_sentence > self.num_beams:
            problems.append(f"outputs_per_sentence ({self.outputs_per_sentence}) must be <= num_beams ({self.num_beams}) for beam search")
        if self.window_lines < self.shard_size:
            problems.append(f"window_lines ({self.window_lines}) must be >= shard_size ({self.shard_size})")
        if not 0 < self.sampling_temperature < math.inf:
            problems.append(f"sampling_temperature must be finite and > 0, got {self.sampling_temperature}")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            problems.append(f"top_k must be >= 0 and top_p in (0, 1], got top_k={self.top_k}, top_p={self.top_p}")
        if not (self.max_length_ratio == 0 or 1 <= self.max_length_ratio < math.inf):
            problems.append(f"max_length_ratio must be 0 (off) or >= 1, got {self.max_length_ratio}")
        if self.tag is not None and (not self.tag.strip() or any(c.isspace() for c in self.tag)):
            problems.append(f"tag must be a non-empty token without spaces, got {self.tag!r}")
        if problems:
            raise ValueError("invalid back-translation settings: " + "; ".join(problems))

    def generation_config(self) -> GenerationConfig:
        """The decoding settings `translate_ids` gets."""
        beams = self.num_beams if self.mode in ("beam", "noised_beam") else 1
        return GenerationConfig(
            num_beams=beams, batch_size=self.batch_size, max_length_factor=self.max_length_factor,
            do_sample=self.mode == "sample", sampling_temperature=self.sampling_temperature,
            top_k=self.top_k, top_p=self.top_p, num_return_sequences=self.outputs_per_sentence,
        )

    def source_noise(self) -> NoiseConfig | None:
        if self.mode != "noised_beam":
            return None
        return self.noise or replace(EDUNOV_NOISE, seed=self.seed)
