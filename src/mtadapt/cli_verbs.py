"""The options of each `mtadapt` verb, one dataclass per verb: its fields are the verb's flags.

`mtadapt.cli_options` builds each verb's flags from its class (name, type, default, range, the
help from `Attributes:`), and `mtadapt.cli` maps each verb to (its options class, a function
taking an instance). A check that needs no file or model is in the class's `__post_init__`,
raising `ConfigError` naming the flag, so it fails before any work starts.

Torch-free: `mtadapt --help` and argument errors load no model library.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from mtadapt.cli_options import Number, option
from mtadapt.errors import ConfigError
from mtadapt.settings import (
    COMPUTE_TYPES,
    DEFAULT_WINDOW_LINES,
    ENGINES,
    INFERENCE_DTYPES,
    BacktranslationConfig,
    GenerationConfig,
    NoiseConfig,
)

# The valid values of every numeric flag, in one place (`Number`: finite, in range). An upper
# bound is given where the value is held in memory at once (beams, resamples, copies).
BEAMS = Number(int, 1, 64)  # beam search holds batch x beams hypotheses and their logits
BATCH_SIZE = Number(int, 1, 4096)
MAX_LENGTH_FACTOR = Number(float, 0, 10, low_open=True)  # as the server's limit
LINES = Number(int, 1)  # window and shard sizes: bounded by the input itself
SEED = Number(int, 0)
N_BOOTSTRAP = Number(int, 0, 10_000)  # sacreBLEU holds resamples x lines x statistics floats
REAL_UPSAMPLE = Number(float, 1, 1000)  # the mixed corpus holds real pairs x this in memory
PROBABILITY = Number(float, 0, 1)
NOISE_RANGES = {
    "word_dropout": Number(float, 0, 1, high_open=True), "word_shuffle_distance": Number(float, 0),
    "insertion_prob": PROBABILITY, "blank_prob": PROBABILITY, "fraction": PROBABILITY, "seed": SEED,
}
BACKTRANSLATION_RANGES = {
    "num_beams": BEAMS, "outputs_per_sentence": BEAMS, "sampling_temperature": Number(float, 0, low_open=True),
    "top_k": Number(int, 0), "top_p": Number(float, 0, 1, low_open=True), "batch_size": BATCH_SIZE,
    "max_length_factor": MAX_LENGTH_FACTOR, "max_length_ratio": Number(float, 1, off=0), "shard_size": LINES,
    "window_lines": LINES, "seed": SEED,
}

# Flags that predate the options being built from the dataclasses keep their names.
NOISE_FLAGS = {"word_shuffle_distance": "--shuffle-distance"}
BACKTRANSLATION_FLAGS = {
    "num_beams": "--beam", "sampling_temperature": "--temperature", "drop_empty": "--keep-empty",
    "drop_copies": "--keep-copies", "drop_duplicates": "--keep-duplicates",
}
BACKTRANSLATION_HELPS = {  # these switches turn the drops off
    "drop_empty": "keep empty outputs (dropped by default)",
    "drop_copies": "keep outputs equal to their input, case and spacing ignored (dropped by default)",
    "drop_duplicates": "keep repeated (source, target) pairs (dropped by default)",
}


@dataclass(kw_only=True)
class ModelOptions:
    """The model a verb loads: a run folder, or a base model with adapters.

    Attributes:
        run: Run folder written by `mtadapt train` (model, languages, best adapter).
        model: Base model: HF name or folder, bergamot:pt-en, tiny:<family>.
        adapter: Adapter folder, or a run folder (its best adapter); repeatable.
        src_lang: Source language code (de_DE, de, deu_Latn...).
        tgt_lang: Target language code.
        no_shortlist: Bergamot models: decode without the lexical shortlist (sources not in the
            model's source language).
    """

    run: str | None = None
    model: str | None = None
    adapter: list[str] = option(default_factory=list)
    src_lang: str | None = None
    tgt_lang: str | None = None
    no_shortlist: bool = False


@dataclass(kw_only=True)
class EngineOptions(ModelOptions):
    """The model, and what runs it.

    Attributes:
        dtype: Precision while generating (default: bfloat16 where the device has it natively,
            else float32; a precision the device would emulate draws a warning). int8:
            Marian-native models with their shipped int8 weights, on the CPU.
        engine: pytorch: mtadapt's model, every family and method (default); ctranslate2: the
            model with its adapter merged, converted once into $MTADAPT_CACHE/ctranslate2 (or
            --model an exported CTranslate2 folder), run by CTranslate2 (HF families; LoRA, full, BitFit).
        compute_type: --engine ctranslate2: what it computes in (default int8 on CPU,
            int8_float16 on CUDA; CPUs run int8, int8_float32, int16, float32).
    """

    dtype: str | None = option(None, choices=INFERENCE_DTYPES)
    engine: str = option("pytorch", choices=ENGINES)
    compute_type: str | None = option(None, choices=COMPUTE_TYPES)


@dataclass(kw_only=True)
class GenerationOptions(EngineOptions):
    """The model, what runs it, and how it generates.

    Attributes:
        beam: Beam size (1 = greedy).
        batch_size: Sentences per generation batch.
        max_length_factor: Max output length / input length.
        no_progress: Plain log lines instead of progress bars (the common --no-progress).
    """

    beam: int = option(1, range=BEAMS)
    batch_size: int = option(32, range=BATCH_SIZE)
    max_length_factor: float = option(2.0, range=MAX_LENGTH_FACTOR)
    no_progress: bool = False

    def generation(self) -> GenerationConfig:
        return GenerationConfig(num_beams=self.beam, batch_size=self.batch_size, max_length_factor=self.max_length_factor)


@dataclass(kw_only=True)
class TranslateOptions(GenerationOptions):
    """`mtadapt translate`: translate a file or stdin (batched, length-sorted).

    Attributes:
        input: Input file (default: stdin).
        output: Output file (default: stdout).
        format: lines: one sentence a line (default); po: a gettext catalog, its untranslated
            entries filled and marked fuzzy, placeholders protected.
        no_placeholder_protection: --format po: translate placeholders (%s, {name}, <b>, &amp;)
            like any text instead of masking them.
        work_dir: Shards and progress manifest; rerun to resume (file to file; removed when done)
            (default OUTPUT.shards).
        window_lines: Input lines read and length-sorted at a time (memory holds one window).
        shard_size: Lines per shard (the unit of resumption and of work per process).
    """

    input: str | None = option(None, flags=("-i", "--input"))
    output: str | None = option(None, flags=("-o", "--output"))
    format: Literal["lines", "po"] = "lines"
    no_placeholder_protection: bool = False
    work_dir: str | None = None
    window_lines: int = option(DEFAULT_WINDOW_LINES, range=LINES)
    shard_size: int = option(500, range=LINES)

    def __post_init__(self) -> None:
        if self.no_placeholder_protection and self.format != "po":
            raise ConfigError("--no-placeholder-protection goes with --format po (plain lines are translated as they are)")


@dataclass(kw_only=True)
class EvaluateOptions(GenerationOptions):
    """`mtadapt evaluate`: sacreBLEU BLEU/chrF/chrF++ against local references, paired bootstrap.

    Attributes:
        ref: Reference file, one sentence a line.
        hyp: Hypothesis file (else translate --src).
        src: Source file to translate first.
        save_hyp: Write the translations here.
        baseline: Baseline hypotheses: paired bootstrap significance.
        n_bootstrap: Bootstrap resamples, for the 95% intervals and the --baseline test (0 = no intervals).
        json: Print JSON.
    """

    ref: str
    hyp: str | None = None
    src: str | None = None
    save_hyp: str | None = None
    baseline: str | None = None
    n_bootstrap: int = option(1000, range=N_BOOTSTRAP)
    json: bool = False

    def __post_init__(self) -> None:
        if self.baseline and self.n_bootstrap == 0:
            from mtadapt.evaluate.metrics import MIN_SIGNIFICANT_RESAMPLES

            raise ConfigError("--baseline runs a paired bootstrap, which needs resamples: --n-bootstrap 0 turns them off; "
                              f"give --n-bootstrap N (from N = {MIN_SIGNIFICANT_RESAMPLES} a difference can reach p < 0.05; default 1000)")
        if self.hyp:
            self._refuse_translation_flags()
        elif not self.src:
            raise ConfigError("give --hyp FILE, or --src FILE with --run/--model to translate it first")

    def _refuse_translation_flags(self) -> None:
        """`--hyp` scores translations already made: flags that would translate first are
        refused rather than ignored."""
        given = [flag for flag, value in (
            ("--src", self.src), ("--run", self.run), ("--model", self.model), ("--adapter", self.adapter),
            ("--save-hyp", self.save_hyp), ("--src-lang", self.src_lang), ("--tgt-lang", self.tgt_lang),
            ("--dtype", self.dtype), ("--no-shortlist", self.no_shortlist), ("--compute-type", self.compute_type),
            ("--engine", self.engine != "pytorch"),
        ) if value]
        defaults = {f.name: f.default for f in fields(GenerationOptions)}
        given += [f"--{name.replace('_', '-')}" for name in ("beam", "batch_size", "max_length_factor")
                  if getattr(self, name) != defaults[name]]
        if given:
            raise ConfigError(f"--hyp scores translations already made, so {', '.join(given)} would be ignored: drop "
                              f"{'it' if len(given) == 1 else 'them'}, or drop --hyp to translate --src with --run/--model first")


@dataclass(kw_only=True)
class BacktranslateOptions(EngineOptions):
    """`mtadapt augment backtranslate`: synthetic pairs from monolingual text (back- or forward translation), resumable.

    Attributes:
        input: Monolingual text, one sentence a line (target side for --direction back).
        output: Output TSV (source<TAB>target).
        output_src: Output Moses source file (with --output-tgt).
        output_tgt: Output Moses target file.
        work_dir: Shards and progress manifest; rerun to resume (default OUTPUT.shards).
        backtranslation: How to generate and filter (its fields are flags).
        json: Print the counts as JSON.
        no_progress: Plain log lines instead of progress bars (the common --no-progress).
    """

    input: str
    output: str | None = None
    output_src: str | None = None
    output_tgt: str | None = None
    work_dir: str | None = None
    backtranslation: BacktranslationConfig = option(
        default_factory=BacktranslationConfig, group=True, flags=BACKTRANSLATION_FLAGS, ranges=BACKTRANSLATION_RANGES,
        helps=BACKTRANSLATION_HELPS)
    json: bool = False
    no_progress: bool = False

    def __post_init__(self) -> None:
        if bool(self.output) == bool(self.output_src):
            raise ConfigError("give --output FILE.tsv, or --output-src FILE --output-tgt FILE (a Moses pair)")
        if self.output_src and not self.output_tgt:
            raise ConfigError("--output-src needs --output-tgt")


@dataclass(kw_only=True)
class TrainOptions:
    """`mtadapt train`: fine-tune with a YAML recipe.

    Attributes:
        recipe: YAML recipe (defaults: the toy task on tiny:mbart50).
        overrides: key.path=value overrides, e.g. train.max_steps=100.
        resume: Continue the run in train.output_dir from its last checkpoint.
        no_progress: Plain log lines instead of progress bars (the common --no-progress).
    """

    recipe: str | None = option(None, positional=True)
    overrides: list[str] = option(default_factory=list, positional=True)
    resume: bool = False
    no_progress: bool = False


@dataclass(kw_only=True)
class CompareOptions:
    """`mtadapt compare`: run a grid of methods on one budget; results.jsonl, report.md/html.

    Attributes:
        recipe: Compare recipe (base run + cells), e.g. recipes/quickstart.yaml.
        overrides: key.path=value overrides, e.g. output_dir=/tmp/q base.train.max_steps=10.
        no_progress: Plain log lines instead of progress bars (the common --no-progress).
        debug: A failed cell's traceback (the common --debug).
    """

    recipe: str = option(positional=True)
    overrides: list[str] = option(default_factory=list, positional=True)
    no_progress: bool = False
    debug: bool = False


@dataclass(kw_only=True)
class ServeOptions:
    """`mtadapt serve`: HTTP server: one base model, many adapters, LibreTranslate-compatible.

    Flags become top-level settings on top of the YAML config (`mtadapt.serve.config`).

    Attributes:
        config: Serve YAML (model, adapters, pairs, keys, limits); flags override it.
        model: Base model: HF name or folder, bergamot:pt-en, tiny:<family>.
        run: Run folder: its model, languages and best adapter.
        adapter: NAME=DIR: an adapter, run or PEFT LoRA folder (repeatable).
        adapter_root: Folder POST /v1/adapters may load from (repeatable).
        src_lang: Served source language (model spelling, e.g. de_DE).
        tgt_lang: Served target language.
        default_adapter: Adapter used when a request names none (with --src-lang/--tgt-lang).
        host: Bind address (default 127.0.0.1).
        port: Port (default 8080; 0 = any free port, printed).
        max_loaded: Most adapters in memory; least recently used evicted (0 = no cap).
        admin_key: Key of POST/DELETE /v1/adapters (default: admin endpoints disabled).
        no_shortlist: Bergamot models: decode without the lexical shortlist.
        engine: pytorch (default) or ctranslate2: the base and every adapter whose entry names
            none, merged and converted (cached), run by CTranslate2.
        compute_type: CTranslate2's compute type (default int8; int8_float32, int16, float32 on CPU).
        dtype: Precision while generating (default: bfloat16 where the device has it natively,
            else float32; a precision the device would emulate draws a warning). int8:
            Marian-native models with their shipped int8 weights, on the CPU.
    """

    config: str | None = option(None, positional=True)
    model: str | None = None
    run: str | None = None
    adapter: list[str] = option(default_factory=list)
    adapter_root: list[str] = option(default_factory=list)
    src_lang: str | None = None
    tgt_lang: str | None = None
    default_adapter: str | None = None
    host: str | None = None
    port: int | None = option(None, range=Number(int, 0, 65535))
    max_loaded: int | None = option(None, range=Number(int, 0))
    admin_key: str | None = None
    no_shortlist: bool = False
    engine: str | None = None
    compute_type: str | None = None
    dtype: str | None = option(None, choices=INFERENCE_DTYPES)

    def __post_init__(self) -> None:
        for item in self.adapter:
            if "=" not in item:
                raise ConfigError(f"--adapter {item!r}: expected NAME=DIR, e.g. --adapter bible=runs/bible-lora")
        if bool(self.src_lang) != bool(self.tgt_lang):
            raise ConfigError("give both --src-lang and --tgt-lang")


@dataclass(kw_only=True)
class ParamsOptions:
    """`mtadapt params`: trainable / total parameters and adapter size per method.

    Attributes:
        arch: Named architecture on the meta device (no weights), e.g. facebook/mbart-large-50, t5-base.
        model: A model to load instead.
        method: Method (repeatable; default lora).
        settings: Method setting key=value, e.g. rank=8 (repeatable; applies to every --method).
    """

    arch: str | None = None
    model: str | None = None
    method: list[str] = option(default_factory=list)
    settings: list[str] = option(default_factory=list, flags=("--set",))

    def __post_init__(self) -> None:
        if not self.arch and not self.model:
            from mtadapt.methods.params import architecture_names

            raise ConfigError(f"give --arch NAME ({', '.join(architecture_names())}) or --model M")


@dataclass(kw_only=True)
class MergeOptions(ModelOptions):
    """`mtadapt merge`: LoRA merged into a standalone model folder.

    Attributes:
        out: Folder for the merged model (created if missing).
    """

    out: str


EXPORT_FORMATS = Literal["peft", "npz", "bergamot", "ctranslate2"]
CT2_QUANTIZATIONS = Literal["int8", "int8_float32", "int16", "float32", "float16", "bfloat16"]


@dataclass(kw_only=True)
class ExportOptions(ModelOptions):
    """`mtadapt export`: an adapter to HF PEFT, a merged HF model to a CTranslate2 folder, or a
    Marian-native model to .npz or a Bergamot int8 folder.

    Attributes:
        format: What to write.
        out: A new folder (peft, bergamot, ctranslate2) or a new .npz file (npz); export never
            overwrites: an existing file or a non-empty folder is refused. Missing parent folders
            are created.
        calibration_text: bergamot: source sentences to calibrate the int8 activation
            multipliers on (default: the run's training sources).
        calibration_lines: bergamot: sentences sampled for calibration.
        calibration: bergamot: relative = the base's shipped multipliers corrected by the
            adaptation's change (auto when the base ships them); absolute = measured afresh, as
            Marian's calibration.
        quantization: ctranslate2: the weights' type in the folder (CPU runs int8, int8_float32,
            float32; CUDA also float16, bfloat16).
    """

    format: EXPORT_FORMATS
    out: str
    calibration_text: str | None = None
    calibration_lines: int = option(200, range=LINES)
    calibration: Literal["auto", "relative", "absolute"] = "auto"
    quantization: CT2_QUANTIZATIONS = "float32"


@dataclass(kw_only=True)
class NoiseOptions:
    """`mtadapt augment noise`: noise a text (or source<TAB>target) file.

    Attributes:
        input: One sentence a line, or a .tsv file (see --tsv).
        output: Noised file ('-' = stdout).
        tsv: Input is source<TAB>target: noise the --side column(s).
        noise: What noise to add (its fields are flags).
        epoch: Another epoch gives other noise.
    """

    input: str
    output: str
    tsv: bool = False
    noise: NoiseConfig = option(default_factory=NoiseConfig, group=True, flags=NOISE_FLAGS, ranges=NOISE_RANGES)
    epoch: int = option(0, range=Number(int, 0))


@dataclass(kw_only=True)
class MixOptions:
    """`mtadapt augment mix`: real pairs (upsampled) and synthetic pairs into one corpus.

    Attributes:
        real: Real corpus: SRC TGT (Moses) or one .tsv.
        synthetic: Synthetic corpus: SRC TGT (Moses) or one .tsv.
        output_src: Output source file (or the TSV without --output-tgt).
        output_tgt: Output target file.
        real_upsample: Times each real pair is used (e.g. 2, 2.5).
        seed: Seed of the shuffle.
    """

    real: list[str] = option(nargs="+")
    synthetic: list[str] = option(nargs="+")
    output_src: str
    output_tgt: str | None = None
    real_upsample: float = option(1.0, range=REAL_UPSAMPLE)
    seed: int = option(0, range=SEED)

    def __post_init__(self) -> None:
        for flag, paths in (("--real", self.real), ("--synthetic", self.synthetic)):
            _check_corpus_paths(flag, paths)


def _check_corpus_paths(flag: str, paths: list[str]) -> None:
    """`augment mix --real/--synthetic`: SRC TGT (a Moses pair) or one .tsv file."""
    from mtadapt.data.readers import CorpusSpec

    shown = " ".join(paths)
    if len(paths) > 2:
        raise ConfigError(f"{flag} {shown}: {len(paths)} paths; give SRC TGT (a Moses pair) or one .tsv file")
    if len(paths) == 1 and CorpusSpec(paths=(Path(paths[0]),), src_lang="src", tgt_lang="tgt").resolved_format() == "moses":
        raise ConfigError(f"{flag} {shown}: one path must be a .tsv file (source<TAB>target; .jsonl and .tmx work too); "
                          f"give a Moses pair as two files: {flag} SRC TGT")
