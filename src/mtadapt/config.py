"""Typed run configuration: dataclasses, YAML recipes as overrides, validation.

A recipe is YAML mapped onto `RunConfig` by `mtadapt.config_io` (line-tracked YAML, the one
builder that serve and compare configs use too); `key.path=value` overrides from the command
line are applied on top. Every problem is collected and reported together, each naming the
recipe file and line (or the override) and what would be valid:

    recipes/toy.yaml:12: train.schedule: 'cosine' is not one of 'linear', 'inverse_sqrt', 'constant'
    recipes/toy.yaml:7: data.max_tokns: unknown key; did you mean 'max_tokens'?
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtadapt.config_io import Builder, load_yaml, parse_override, read_yaml_mapping, set_path, yaml_lines
from mtadapt.errors import ConfigError  # also mtadapt.config.ConfigError, as before
from mtadapt.methods.registry import METHOD_NAMES
from mtadapt.models.families import FamilyName
from mtadapt.settings import GenerationConfig, NoiseConfig

# the trackers Accelerate knows (train.report_to); mtadapt.train.tracking wires them
Tracker = Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"]

MethodName = Literal[METHOD_NAMES]  # type: ignore[valid-type]  # the registry's names


@dataclass
class ModelConfig:
    """Which pretrained model to adapt.

    Attributes:
        name_or_path: HF hub name, local folder, `bergamot:pt-en`, a Marian `.bin`/`.npz`,
            or `tiny:<family>` (a tiny random model of that family built offline, for tests
            and the toy task).
        family: Force the family; inferred from the model's config when None.
        tokenizer: Tokenizer name or path when it differs from the model's.
        trust_remote_code: Let transformers run code shipped with the model.
        shortlist: Bergamot models: decode with the model's lexical shortlist (as the
            Bergamot engine does). Set false when training sources in other languages
            (es/fr/it into a pt->en model): the shortlist picks output words by the
            source words of the model's own source language.
    """

    name_or_path: str = "tiny:mbart50"
    family: FamilyName | None = None
    tokenizer: str | None = None
    trust_remote_code: bool = False
    shortlist: bool = True


@dataclass
class CorpusConfig:
    """One parallel corpus (see `mtadapt.data.CorpusSpec`).

    Attributes:
        paths: Moses `[src_file, tgt_file]` or a prefix (`data/train` -> train.de + train.en),
            or one TSV / JSONL / TMX file. Relative paths are resolved against the recipe's
            folder; `toy:` refers to the shipped toy corpus (`toy:train`).
        format: moses, tsv, jsonl or tmx; inferred from the paths when None.
        src_key: JSONL source key.
        tgt_key: JSONL target key.
        limit: Use at most this many pairs (the first ones).
    """

    paths: list[str] = field(default_factory=list)
    format: Literal["moses", "tsv", "jsonl", "tmx"] | None = None
    src_key: str = "src"
    tgt_key: str = "tgt"
    limit: int | None = None


@dataclass
class PairCorpus:
    """One translation direction of a multi-pair run (`data.pairs`).

    Attributes:
        src_lang: Source language code in the family's spelling (de_DE, de, deu_Latn).
        tgt_lang: Target language code.
        corpus_src_lang: File suffix / TMX code of the source side when it differs from
            `src_lang` (see `DataConfig`).
        corpus_tgt_lang: Same for the target.
        train: Training corpus; null makes the direction *held out*: evaluated on `dev`
            during training (to measure forgetting or zero-shot quality), never trained.
        dev: Dev corpus of this direction (BLEU/chrF per direction during training).
        weight: Sampling weight, used when `data.sampling` is 'weights'.
        name: Name in logs and metrics; default `<src_lang>-<tgt_lang>`.
    """

    src_lang: str | None = None
    tgt_lang: str | None = None
    corpus_src_lang: str | None = None
    corpus_tgt_lang: str | None = None
    train: CorpusConfig | None = None
    dev: CorpusConfig | None = None
    weight: float | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or f"{self.src_lang}-{self.tgt_lang}"


@dataclass
class DataConfig:
    """Training and evaluation data.

    Attributes:
        src_lang: Source language code in the family's spelling (de_DE, de, deu_Latn).
        tgt_lang: Target language code.
        corpus_src_lang: Language suffix/TMX code of the source files when it differs from
            `src_lang` (e.g. files `train.de` for src_lang `de_DE`); defaults to the part
            before `_`.
        corpus_tgt_lang: Same for the target.
        train: Training corpus.
        dev: Dev corpus for evaluation during training (BLEU/chrF by generation).
        test: Test corpus for `mtadapt evaluate` after training.
        max_tokens: Token budget per batch (examples * longest side).
        max_sentences: At most this many examples per batch (None: the token budget only).
            A batch closes at whichever limit it reaches first. With a large `max_tokens`,
            batches of exactly N length-sorted examples, as a `batch_size` run would draw them
            (short sentences' tokens then weigh more; see `mtadapt.data.batching`).
        sort_window: Examples are sorted by length within windows of this many typical
            batches, the batches cut and then shuffled (fairseq's and `group_by_length`'s
            megabatches). 1: about random batches; a window as large as the epoch: fully
            sorted, least padding, but the same batch-mates every epoch, which learned less
            per epoch (docs/time-to-quality.md).
        sort_window_share: A window holds at most this share of an epoch's typical batches
            (at least one), so a small corpus is not sorted whole: 2,000 pairs in 125 batches
            get windows of 16, a corpus of 2,500 batches windows of `sort_window`. 1.0: no cap.
        batch_order: The order of an epoch's batches: 'shuffled', or by their longest
            example, 'ascending' (short first) or 'descending'.
        max_source_tokens: Drop pairs with a longer side (counted).
        max_length_ratio: Drop pairs whose long/short token ratio exceeds this (counted).
        empty: Empty side: drop (counted) or error.
        noise: Noise on the fly (`mtadapt.augment.noise`): fresh noise each epoch on
            `noise.side` of a `noise.fraction` of the training pairs; null = none.
        max_dev_sentences: Evaluate on at most this many dev sentences during training
            (per direction in a multi-pair run).
        pairs: Several directions trained by one model (multi-task). When given, each entry
            names its own languages and corpora, and the single-pair fields above
            (`src_lang`, `tgt_lang`, `corpus_*_lang`, `train`, `dev`) are not used;
            `test` still is. Empty: the single pair above.
        sampling: How often each trained direction is drawn (`mtadapt.data.sampling`):
            'temperature' p_i ~ (n_i/N)^(1/T), 'proportional' (T=1), 'uniform' (T=inf),
            'weights' (each pair's `weight`).
        sampling_temperature: T of 'temperature' sampling (1 = proportional, large = uniform).
        epoch_size: Examples drawn per (virtual) epoch of a multi-pair run; default the sum
            of the trained corpora's sizes.
    """

    src_lang: str | None = "de_DE"
    tgt_lang: str | None = "en_XX"
    corpus_src_lang: str | None = None
    corpus_tgt_lang: str | None = None
    train: CorpusConfig = field(default_factory=lambda: CorpusConfig(paths=["toy:train"]))
    dev: CorpusConfig | None = field(default_factory=lambda: CorpusConfig(paths=["toy:dev"]))
    test: CorpusConfig | None = field(default_factory=lambda: CorpusConfig(paths=["toy:test"]))
    max_tokens: int = 1024
    max_sentences: int | None = None
    sort_window: int = 100
    sort_window_share: float = 0.125
    batch_order: Literal["shuffled", "ascending", "descending"] = "shuffled"
    max_source_tokens: int = 256
    max_length_ratio: float = 3.0
    empty: Literal["drop", "error"] = "drop"
    max_dev_sentences: int = 500
    noise: NoiseConfig | None = None
    pairs: list[PairCorpus] = field(default_factory=list)
    sampling: Literal["temperature", "proportional", "uniform", "weights"] = "temperature"
    sampling_temperature: float = 1.0
    epoch_size: int | None = None

    def pair_corpora(self) -> list[PairCorpus]:
        """The directions of the run: `pairs`, or the single pair as one entry."""
        if self.pairs:
            return list(self.pairs)
        return [PairCorpus(self.src_lang, self.tgt_lang, self.corpus_src_lang, self.corpus_tgt_lang, self.train, self.dev)]


@dataclass
class MethodSelection:
    """The fine-tuning method and its settings.

    Attributes:
        name: full, bitfit, lora, houlsby, pfeiffer, prefix or prompt.
        settings: The method's own settings (e.g. `rank`, `alpha` for LoRA); validated
            against that method's config dataclass.
        adapters: 'shared': one adapter for every direction. 'per_language': one adapter
            per language, chosen per example: encoder layers use the source language's
            adapter, decoder layers the target language's
            (`mtadapt.methods.language_adapters`). 'shared+per_language' (LoRA): both, one
            shared adapter on every row plus the rows' language adapters, summed.
    """

    name: MethodName = "full"
    settings: dict[str, Any] = field(default_factory=dict)
    adapters: Literal["shared", "per_language", "shared+per_language"] = "shared"


@dataclass
class TrainConfig:
    """The optimisation loop.

    Attributes:
        output_dir: Run folder: checkpoints, metrics.jsonl, the final adapter or model.
        max_steps: Optimizer steps.
        learning_rate: Peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps.
        schedule: Decay after warm-up.
        grad_accumulation: Micro-batches per optimizer step.
        max_grad_norm: Clip the gradient norm (0 = off).
        loss_normalization: How a batch's token losses become its loss: 'tokens' (their
            mean: every batch counts the same, whatever its size), 'sentences' (the mean of
            each sentence's mean: every sentence weighs the same), 'fixed' (their sum over
            the mean target tokens of the epoch's batches: every token weighs the same,
            larger batches take larger steps).
        lr_scaling: 'batch_tokens' multiplies each step's learning rate by the step's
            target tokens over the mean target tokens of the epoch's batches; 'none' keeps
            the schedule's.
        label_smoothing: Label smoothing of the cross-entropy. Off by default: the models
            mtadapt adapts are trained already, and a distilled student (the Bergamot
            models) is so peaked that smoothing 0.1 adds about 2.4 nats to its loss; the
            first steps then flatten the output distribution over the whole vocabulary
            and greedy outputs ramble and repeat (dev BLEU 32.2 -> 9.9 after 10 LoRA
            steps, 26.7 without smoothing; benchmarks/dev_curve_start.py, docs/results.md).
        mixed_precision: "bf16" autocast where the hardware supports it, else "no".
        seed: Seeds model init of new parameters, data order and dropout.
        log_every: Steps between metrics rows (and, with --no-progress, log lines).
        eval_every: Steps between dev evaluations (0 = only at the end).
        eval_at_start: Score the dev set before the first step too (the base, or the method
            at its initialisation): every dev curve starts at step 0. Not a candidate for
            the best adapter. Skipped on resume.
        save_every: Steps between checkpoints (0 = only at the end).
        early_stopping_patience: Stop after this many evaluations without improvement (0 = off).
        metric: Dev metric for early stopping and the best checkpoint.
        keep_checkpoints: How many step checkpoints to keep (the best is kept apart).
        report_to: Experiment trackers that get metrics.jsonl's scalars and the resolved
            config, through Accelerate (`tensorboard`, `wandb`, `mlflow`, ...; each needs its
            package). Offline by default: files in the run folder (`<run>/tracking`).
    """

    output_dir: str = "runs/toy"
    max_steps: int = 500
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 30
    schedule: Literal["linear", "inverse_sqrt", "constant"] = "linear"
    grad_accumulation: int = 1
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0
    loss_normalization: Literal["tokens", "sentences", "fixed"] = "tokens"
    lr_scaling: Literal["none", "batch_tokens"] = "none"
    mixed_precision: Literal["no", "bf16"] = "no"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    eval_at_start: bool = True
    save_every: int = 100
    early_stopping_patience: int = 0
    metric: Literal["bleu", "chrf", "loss"] = "bleu"
    keep_checkpoints: int = 2
    report_to: list[Tracker] = field(default_factory=list)


@dataclass
class RunConfig:
    """A whole fine-tuning run: what a recipe describes."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodSelection = field(default_factory=MethodSelection)
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)


# ---------------------------------------------------------------------------------------
# Building dataclasses from plain dicts with every error collected.


def config_from_dict(
    data: dict, source: str = "<dict>", lines: dict[str, int] | None = None, cls: type = RunConfig,
    rename: Callable[[str], str] | None = None,
) -> Any:
    """Build and validate a config dataclass; raises ConfigError listing every problem.

    Args:
        lines: key path -> line in `source` (`yaml_lines`; 0 = a command-line override).
        rename: see `Builder` (compare names a cell's keys as its recipe has them).
    """
    config, errors = config_problems(data, source, lines, cls, rename)
    if errors:
        raise ConfigError(f"{len(errors)} problem(s) in {source}:\n  " + "\n  ".join(errors))
    return config


def config_problems(
    data: dict, source: str = "<dict>", lines: dict[str, int] | None = None, cls: type = RunConfig,
    rename: Callable[[str], str] | None = None,
) -> tuple[Any, list[str]]:
    """`config_from_dict` without raising: the config (defaults where a value was wrong) and
    every problem, each `source[:LINE]: path ...`."""
    builder = Builder(source, lines or {}, rename)
    config = builder.build(cls, data, "")
    if cls is RunConfig:
        builder.errors.extend(validate_run(config, source, builder, given=_given_paths(data)))
    return config, builder.errors


def _given_paths(data: Any, prefix: str = "") -> set[str]:
    """The key paths set in `data` (the rest keep their defaults)."""
    paths: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths |= {path} | _given_paths(value, path)
    return paths


def validate_run(config: RunConfig, source: str, builder: Builder | None = None, given: set[str] | None = None) -> list[str]:
    """Cross-field checks and method settings (validated against the method's dataclass).

    A value that already failed its type check (reported by the builder) is skipped here.

    Args:
        builder: gives each problem its line (and the path as the reader wrote it).
        given: the key paths the recipe set; a problem caused by a default says so (all
            given when None).
    """
    builder = builder or Builder(source, {})
    t, d, g = config.train, config.data, config.generation
    checks = [
        ("train.max_steps", lambda: t.max_steps >= 1, f"must be >= 1, got {t.max_steps!r}"),
        ("train.grad_accumulation", lambda: t.grad_accumulation >= 1, f"must be >= 1, got {t.grad_accumulation!r}"),
        ("train.learning_rate", lambda: t.learning_rate > 0, f"must be > 0, got {t.learning_rate!r}"),
        ("train.warmup_steps", lambda: 0 <= t.warmup_steps <= t.max_steps,
         f"must be between 0 and train.max_steps ({t.max_steps!r}), got {t.warmup_steps!r}"),
        ("train.label_smoothing", lambda: 0 <= t.label_smoothing < 1, f"must be in [0, 1), got {t.label_smoothing!r}"),
        ("data.max_tokens", lambda: d.max_tokens >= 8, f"must be >= 8, got {d.max_tokens!r}"),
        ("data.max_sentences", lambda: d.max_sentences is None or d.max_sentences >= 1,
         f"must be >= 1 or null, got {d.max_sentences!r}"),
        ("data.sort_window", lambda: d.sort_window >= 1, f"must be >= 1 (batches per sorted window), got {d.sort_window!r}"),
        ("data.sort_window_share", lambda: 0.0 < d.sort_window_share <= 1.0,
         f"must be in (0, 1] (the largest share of an epoch's batches in one window), got {d.sort_window_share!r}"),
        ("data.train.paths", lambda: bool(d.pairs) or bool(d.train.paths), "is empty; give the training corpus"),
        ("generation.num_beams", lambda: g.num_beams >= 1 and g.batch_size >= 1, "and generation.batch_size must be >= 1"),
        ("generation.max_length_factor", lambda: g.max_length_factor > 0, f"must be > 0, got {g.max_length_factor!r}"),
        ("train.log_every", lambda: t.log_every >= 1, f"must be >= 1, got {t.log_every!r}"),
        ("train.eval_every", lambda: t.eval_every >= 0, f"must be >= 0 (0 = only at the end), got {t.eval_every!r}"),
        ("train.save_every", lambda: t.save_every >= 0, f"must be >= 0 (0 = only at the end), got {t.save_every!r}"),
        ("train.keep_checkpoints", lambda: t.keep_checkpoints >= 0, f"must be >= 0 (0 = keep all), got {t.keep_checkpoints!r}"),
        ("train.early_stopping_patience", lambda: t.early_stopping_patience >= 0,
         f"must be >= 0 (0 = off), got {t.early_stopping_patience!r}"),
        ("train.weight_decay", lambda: t.weight_decay >= 0, f"must be >= 0, got {t.weight_decay!r}"),
        ("train.max_grad_norm", lambda: t.max_grad_norm >= 0, f"must be >= 0 (0 = off), got {t.max_grad_norm!r}"),
        ("data.max_source_tokens", lambda: d.max_source_tokens >= 1, f"must be >= 1, got {d.max_source_tokens!r}"),
        ("data.max_length_ratio", lambda: d.max_length_ratio >= 1, f"must be >= 1 (long/short), got {d.max_length_ratio!r}"),
        ("data.max_dev_sentences", lambda: d.max_dev_sentences >= 1, f"must be >= 1, got {d.max_dev_sentences!r}"),
    ]
    problems: list[tuple[str, str]] = []  # (key path, the rest of the message)
    for path, ok, message in checks:
        try:
            if not ok():
                problems.append((path, " " + message))
        except TypeError:
            pass  # wrong type: already reported with its file:line
    warmup = next((p for p in problems if p[0] == "train.warmup_steps"), None)
    if warmup is not None and given is not None and "train.warmup_steps" not in given:
        # the user set max_steps, not the warm-up: say where the number came from and what to set
        default = TrainConfig.warmup_steps
        problems[problems.index(warmup)] = (
            "train.max_steps", f" is {t.max_steps!r}, below train.warmup_steps, which is {default} by default (not set "
            f"here): set train.warmup_steps between 0 and {t.max_steps!r} (e.g. train.warmup_steps={t.max_steps // 10})")
    try:
        problems.extend(_validate_pairs(config))
    except TypeError:
        pass
    problems.extend(_corpus_limit_errors(config))
    problems.extend((f"method.settings.{key}", f": must be a finite number, got {value!r}")
                    for key, value in config.method.settings.items()
                    if isinstance(value, float) and not math.isfinite(value))
    if config.method.name != "full" or config.method.settings:
        try:
            from mtadapt.methods.registry import config_from_dict as method_config

            method_config(config.method.name, dict(config.method.settings))
        except (ValueError, TypeError, ImportError) as err:
            problems.append(("method.settings", f": {err}"))
    return [f"{builder.where(path)}: {builder.rename(path)}{rest}" for path, rest in problems]


def _corpus_limit_errors(config: RunConfig) -> list[tuple[str, str]]:
    """`limit` of every corpus: >= 1, or null for all (0 pairs would leave nothing to train on)."""
    d = config.data
    corpora = [(f"data.{split}", getattr(d, split)) for split in ("train", "dev", "test")]
    corpora += [(f"data.pairs[{i}].{split}", getattr(p, split)) for i, p in enumerate(d.pairs) for split in ("train", "dev")]
    return [
        (f"{where}.limit", f" must be >= 1 (or null: the whole corpus), got {corpus.limit!r}")
        for where, corpus in corpora
        if isinstance(corpus, CorpusConfig) and isinstance(corpus.limit, int) and corpus.limit < 1
    ]


def _validate_pairs(config: RunConfig) -> list[tuple[str, str]]:
    """Checks of `data.pairs`, the sampling settings and per-language adapters: (key path, the
    rest of the message)."""
    d, errors = config.data, []
    seen: dict[str, int] = {}
    for i, pair in enumerate(d.pairs):
        where = f"data.pairs[{i}]"
        if pair.label in seen:
            errors.append((where, f": direction {pair.label!r} repeats data.pairs[{seen[pair.label]}]; give each entry its own `name`"))
        seen.setdefault(pair.label, i)
        if pair.train is None and pair.dev is None:
            errors.append((where, ": give `train` (a trained direction) or `dev` (a held-out direction evaluated only)"))
        for split in ("train", "dev"):
            corpus = getattr(pair, split)
            if corpus is not None and not corpus.paths:
                errors.append((f"{where}.{split}.paths", " is empty"))
        if pair.weight is not None and pair.weight <= 0:
            errors.append((f"{where}.weight", f" must be > 0, got {pair.weight}"))
        if d.sampling == "weights" and pair.train is not None and pair.weight is None:
            errors.append((f"{where}.weight", " is missing; data.sampling 'weights' needs a weight on every trained pair"))
    if d.pairs and all(p.train is None for p in d.pairs):
        errors.append(("data.pairs", " has no trained direction (every entry lacks `train`)"))
    if d.sampling_temperature <= 0:
        errors.append(("data.sampling_temperature", f" must be > 0, got {d.sampling_temperature}"))
    if d.epoch_size is not None and d.epoch_size < 1:
        errors.append(("data.epoch_size", f" must be >= 1, got {d.epoch_size}"))
    per_language = config.method.adapters in ("per_language", "shared+per_language")
    if config.method.adapters == "per_language" and _whole_model_method(config.method.name):
        errors.append(("method.adapters", f" 'per_language' needs an adapter method (lora, houlsby, pfeiffer, prefix, prompt), not {config.method.name!r}"))
    if config.method.adapters == "shared+per_language" and config.method.name != "lora":
        errors.append(("method.adapters", f" 'shared+per_language' is built for lora, not {config.method.name!r}"))
    if per_language and not d.pairs:
        errors.append(("method.adapters", f" {config.method.adapters!r} needs data.pairs (the directions whose languages get adapters)"))
    if d.pairs and getattr(d, "noise", None) is not None:
        errors.append(("data.noise", " is not supported with data.pairs yet (noised rows would be re-tokenized with one pair's codec)"))
    return errors


def _whole_model_method(name: str) -> bool:
    from mtadapt.methods.registry import get_method  # loads the method's module (torch)

    return get_method(name).config_class.whole_model


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML recipe (or the defaults when `path` is None) and apply overrides.

    Relative corpus paths are resolved against the recipe's folder.

    Raises:
        ConfigError: every invalid key and value, with file:line.
        FileNotFoundError: the recipe does not exist.
    """
    data: dict = {}
    lines: dict[str, int] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        data, text = read_yaml_mapping(path, "a mapping of sections (model, data, method, train, generation)")
        lines = yaml_lines(text)
        source = str(path)
        data = resolve_corpus_paths(data, path.parent)
    for item in overrides:
        key, value = parse_override(item)
        set_path(data, key, value)
        lines[key] = 0
    builder_source = source if not overrides else f"{source} (+ overrides)"
    return config_from_dict(data, builder_source, lines, RunConfig)  # an override's line 0: no line


def resolve_corpus_paths(data: dict, base: Path) -> dict:
    corpora = (data.get("data") or {}) if isinstance(data.get("data"), dict) else {}
    pairs = corpora.get("pairs") if isinstance(corpora.get("pairs"), list) else []
    for holder in [corpora, *(p for p in pairs if isinstance(p, dict))]:
        for split in ("train", "dev", "test"):
            corpus = holder.get(split)
            if isinstance(corpus, dict) and isinstance(corpus.get("paths"), list):
                corpus["paths"] = [
                    p if not isinstance(p, str) or ":" in p or Path(p).is_absolute() else str(base / p)
                    for p in corpus["paths"]
                ]
    return data


def config_to_dict(config: Any) -> dict:
    """Plain dict (for run folders and reports)."""
    return dataclasses.asdict(config)
