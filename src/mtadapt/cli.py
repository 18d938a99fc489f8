"""The `mtadapt` command line: each verb maps to one plain function taking its options.

`VERBS` maps each verb to (its options dataclass in `mtadapt.cli_verbs`, its function); the
flags are built from the dataclass by `mtadapt.cli_options`, and `main` is the one place where
errors become messages and exit statuses.

    mtadapt train RECIPE.yaml [key.path=value ...] [--resume]
    mtadapt compare RECIPE.yaml [key.path=value ...]
    mtadapt translate (--run DIR | --model M [--adapter DIR]) [-i FILE] [-o FILE] [--format lines|po]
    mtadapt evaluate --ref FILE (--hyp FILE | --run DIR --src FILE) [--baseline FILE]
    mtadapt params (--arch NAME | --model M) --method lora --set rank=8
    mtadapt merge --model M --adapter DIR --out DIR
    mtadapt export --format peft|npz|bergamot|ctranslate2 (--run DIR | --model M --adapter DIR) --out DIR
    mtadapt augment noise --input F --output F [--word-dropout P ...]
    mtadapt augment backtranslate --model M --input F --output F.tsv [--mode sample ...]
    mtadapt augment mix --real S T --synthetic S T --output-src S --output-tgt T
    mtadapt serve [SERVE.yaml] [--model M] [--adapter NAME=DIR ...] [--port 8080]

Errors: a problem the user can fix (`mtadapt.errors.MtadaptError`, or a missing file) prints
one `error:` line naming the file, line, flag or value and what is valid, and exits 2. Anything
else is a bug: one `internal error:` line, exit 1; `--debug` (or MTADAPT_DEBUG=1) shows its
traceback instead. A reader of stdout that goes away (`mtadapt translate ... | head -n 1`)
stops the work at the next line written: no message, exit 141, as a shell reports any program
a closed pipe stopped (128 + SIGPIPE; `set -o pipefail` sees it, as it sees `seq 1e9 | head`).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn

from mtadapt.cli_options import add_dataclass_options, dataclass_from_args
from mtadapt.cli_verbs import (  # noqa: F401 (the *_FLAGS and *_HELPS re-exported: the flags users know)
    BACKTRANSLATION_FLAGS,
    BACKTRANSLATION_HELPS,
    NOISE_FLAGS,
    BacktranslateOptions,
    CompareOptions,
    EngineOptions,
    EvaluateOptions,
    ExportOptions,
    MergeOptions,
    MixOptions,
    NoiseOptions,
    ParamsOptions,
    ServeOptions,
    TrainOptions,
    TranslateOptions,
)
from mtadapt.config import parse_override
from mtadapt.errors import CheckpointError, ConfigError, DataError, MtadaptError, MtadaptWarning
from mtadapt.io import atomic_write_lines, atomic_writer, check_input_file, check_output_file, check_outputs_apart, join_lines, lines_of_bytes, read_lines, split_lines
from mtadapt.progress import cli_progress, is_terminal


def _read_lines(path: str | None, what: str, allow_empty: bool = False) -> list[str]:
    """The lines of `path` (stdin for None or "-"), split on "\\n" only (mtadapt.io).

    Raises:
        DataError: no such file, a folder, invalid UTF-8, or (unless `allow_empty`) no lines.
    """
    if path is None or path == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        lines = lines_of_bytes(buffer.read(), "<stdin>") if buffer is not None else split_lines(sys.stdin.read())
    else:
        lines = read_lines(path, f"{what}")
    if not lines and not allow_empty:
        raise DataError(f"{what} {'stdin' if path in (None, '-') else path} is empty: no lines to read")
    return lines


def _check_output(path: str | None, flag: str) -> None:
    """Fail before the work, not after it, when `path` cannot be written."""
    if path is not None and path != "-":
        check_output_file(path, flag)


def _check_output_folder(path: str | None, flag: str, what: str = "a folder") -> None:
    """Fail before the work, naming `flag`, when `path` cannot be a folder to write into (the
    OS would only say "File exists" or "Not a directory"): a file is there, a file stands
    where one of its parent folders would go, or the nearest existing folder is not writable.
    Missing folders are fine: they are created."""
    if path is None:
        return
    if Path(path).exists() and not Path(path).is_dir():
        raise DataError(f"{flag} {path} is a file; give {what} (created if missing)")
    _check_parent_folders(path, flag)


def _check_parent_folders(path: str, flag: str) -> None:
    """The folders above `path` can be made: no file stands where one would go, and the nearest
    existing one is writable (when `path` itself does not exist yet)."""
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"{flag} {path}: {parent} is a file, not a folder")
            if not Path(path).exists() and not os.access(parent, os.W_OK | os.X_OK):
                raise DataError(f"{flag} {path}: folder {parent} is not writable")
            return


def _write_lines(path: str | None, lines: list[str]) -> None:
    if path is None or path == "-":
        sys.stdout.write(join_lines(lines))
        return
    atomic_write_lines(Path(path), lines)


def _open_engine(options: EngineOptions, device: Any = None, ranks: Any = None) -> Any:
    """The engine the model flags name (`runs.open_engine`)."""
    from mtadapt.runs import open_engine

    return open_engine(engine=options.engine, run=options.run, model=options.model, adapters=options.adapter,
                       src_lang=options.src_lang, tgt_lang=options.tgt_lang,
                       shortlist=False if options.no_shortlist else None, dtype=options.dtype,
                       compute_type=options.compute_type, device=device, ranks=ranks)


def train(options: TrainOptions) -> int:
    """`mtadapt train`: a run from a recipe and its overrides; its summary on stdout."""
    from mtadapt.config import load_recipe
    from mtadapt.train.loop import train as run_training
    from mtadapt.train.summary import summary_lines

    config = load_recipe(options.recipe, options.overrides)
    if options.resume:
        _check_resumable(Path(config.train.output_dir))
    result = run_training(config, resume=options.resume, progress=cli_progress(options.no_progress))
    print("\n".join(summary_lines(result, config)))
    return 0


def _check_resumable(run_dir: Path) -> None:
    """`--resume` needs a run: refuse a folder holding none (a mistyped train.output_dir would
    otherwise start a new run there without a word); say so when no checkpoint exists yet."""
    from mtadapt.train.checkpoint import LATEST, latest_checkpoint
    from mtadapt.train.loop import RUN_MARKER

    if not (run_dir / RUN_MARKER).is_file():
        raise CheckpointError(f"--resume: {run_dir} holds no run to resume (no {RUN_MARKER}); "
                              "drop --resume to start a new run there, or set train.output_dir to the run's folder")
    if latest_checkpoint(run_dir) is None:  # raises CheckpointError for a damaged `latest`
        print(f"--resume: {run_dir} has no checkpoint yet (no checkpoints/{LATEST}): starting from step 0", file=sys.stderr)


def translate(options: TranslateOptions) -> int:
    """File to file: streamed, resumable shards, split over torchrun ranks; stdin/stdout: streamed."""
    from mtadapt.inference import sharded
    from mtadapt.inference.engine import engine_id

    ranks = sharded.current_ranks()
    if options.format == "po":
        return _translate_catalog(options, ranks.world)
    piped = options.input in (None, "-") or options.output in (None, "-")
    if piped and ranks.world > 1:
        raise ConfigError(f"translate over {ranks.world} processes needs -i FILE and -o FILE (on storage every rank sees)")
    _check_output(options.output, "--output")  # before the work, not after it
    _check_output_folder(options.work_dir, "--work-dir")
    check_outputs_apart({"--output": options.output, "--work-dir": options.work_dir}, {"--input": options.input})
    if not piped:
        sharded.check_work_folder(Path(options.work_dir or f"{options.output}.shards"))  # before the model loads
    if options.input not in (None, "-") and check_input_file(options.input, "input").stat().st_size == 0:
        raise DataError(f"input {options.input} is empty: no lines to read")
    engine = _open_engine(options, ranks.device, ranks)
    if piped:
        from mtadapt.io import iter_lines, iter_stream_lines

        lines = iter_lines(options.input) if options.input not in (None, "-") else iter_stream_lines(sys.stdin)
        out = sharded.translate_stream(engine, lines, options.generation(), options.window_lines, progress=cli_progress(options.no_progress))
        if options.output in (None, "-"):
            for text in out:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()  # a reader gets each line now; one that went away stops us here (main)
        else:  # streamed into a temporary file beside it, renamed onto it when every line is in
            with atomic_writer(options.output) as handle:
                for text in out:
                    handle.write(text + "\n")
        return 0
    model_id = {"model": engine.model_name, "run": options.run, "adapters": sorted(options.adapter), **engine_id(engine)}
    sharded.translate_file(engine, options.input, options.output, options.generation(), work_dir=options.work_dir,
                           model_id=model_id, window_lines=options.window_lines, shard_size=options.shard_size, ranks=ranks,
                           progress=cli_progress(options.no_progress))
    return 0


def _translate_catalog(options: TranslateOptions, world: int) -> int:
    """`--format po`: fill a gettext catalog's untranslated entries (`mtadapt.data.po_catalog`);
    one `warning:` line per placeholder problem, naming the entry's line."""
    from mtadapt.data.placeholders import usable_styles
    from mtadapt.data.po_catalog import read_catalog, translate_catalog
    from mtadapt.inference.engine import translate_texts
    from mtadapt.io import atomic_write_text

    if options.input in (None, "-") or options.output in (None, "-"):
        raise ConfigError("--format po needs -i FILE.po and -o FILE.po (a catalog is read and written whole)")
    if world > 1:
        raise ConfigError(f"--format po runs in one process, not {world}: start it without torchrun")
    _check_output(options.output, "--output")
    check_outputs_apart({"--output": options.output}, {"--input": options.input})
    check_input_file(options.input, "input")
    catalog = read_catalog(options.input)  # before the model loads: a broken catalog fails fast
    engine = _open_engine(options)
    codec = engine.codec
    styles = usable_styles(lambda text: codec.decode(codec.encode_targets([text]))[0])
    config, progress = options.generation(), cli_progress(options.no_progress)
    count, problems = translate_catalog(catalog, lambda texts: translate_texts(engine, texts, config, progress=progress),
                                        protect=not options.no_placeholder_protection, styles=styles)
    for p in problems:
        print(f"warning: {options.input}:{p.line}: {p.describe()}", file=sys.stderr)
    atomic_write_text(options.output, str(catalog))
    print(f"translated {count} entries (marked fuzzy for review) into {options.output}; "
          f"{len(problems)} placeholder warning{'s' if len(problems) != 1 else ''}", file=sys.stderr)
    return 0


def evaluate(options: EvaluateOptions) -> int:
    """`mtadapt evaluate`: the scores of --hyp, or of --src translated, against --ref."""
    from mtadapt.evaluate.metrics import corpus_scores, paired_bootstrap, significance_report

    check_outputs_apart({"--save-hyp": options.save_hyp},
                        {"--ref": options.ref, "--hyp": options.hyp, "--src": options.src, "--baseline": options.baseline})
    refs = _read_lines(options.ref, "reference")
    baseline = _read_lines(options.baseline, "baseline") if options.baseline else None
    if options.hyp:
        hyps = _read_lines(options.hyp, "hypothesis")
    else:
        from mtadapt.evaluate.metrics import check_lengths
        from mtadapt.inference.engine import translate_texts

        _check_output(options.save_hyp, "--save-hyp")
        sources = _read_lines(options.src, "source")
        check_lengths(sources, refs, "sources")  # before translating, not after
        engine = _open_engine(options)
        hyps = translate_texts(engine, sources, options.generation(), progress=cli_progress(options.no_progress))
        if options.save_hyp:
            _write_lines(options.save_hyp, hyps)
    scores = corpus_scores(hyps, refs, n_bootstrap=options.n_bootstrap)
    result: dict[str, Any] = {"scores": {k: v.to_dict() for k, v in scores.items()}}
    if baseline is not None:
        result["paired_bootstrap"] = paired_bootstrap(baseline, {"system": hyps}, refs, n_samples=options.n_bootstrap)
        result["significance"] = significance_report(result["paired_bootstrap"], options.n_bootstrap)
    if options.json:
        print(json.dumps(result, indent=1))
        return 0
    for s in scores.values():
        ci = f" (95% CI {s.ci_low:.2f}-{s.ci_high:.2f})" if s.ci_low is not None else ""
        print(f"{s.name:7s} {s.score:6.2f}{ci}  {s.signature}")
    if options.baseline:
        significance = result["significance"]
        print(significance["header"])
        for metric in significance["metrics"].values():
            print(f"  {metric['summary']}")
    return 0


def _settings(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for item in pairs:
        key, value = parse_override(item)
        out[key] = value
    return out


def params(options: ParamsOptions) -> int:
    """`mtadapt params`: the parameter table, one row per method."""
    from mtadapt.methods.params import format_table, param_report

    methods = options.method or ["lora"]
    settings = _settings_for_each(methods, options.settings)  # before loading a model: a typo fails at once
    target: Any = options.arch
    if options.model:
        from mtadapt.models.loading import load_model

        target = load_model(options.model).model
    rows = [param_report(target, method, settings) for method in methods]
    print(format_table(rows))
    return 0


def _settings_for_each(methods: list[str], pairs: list[str]) -> dict[str, Any]:
    """`--set` applies to every `--method`: each key must be a setting of each method.

    Raises:
        ConfigError: a key that some method does not have; every such key and method named, with
            that method's valid settings.
    """
    from dataclasses import fields

    from mtadapt.methods.registry import get_method

    settings = _settings(pairs)
    problems = []
    for method in methods:
        valid = sorted(f.name for f in fields(get_method(method).config_class) if f.init)
        for key in settings:
            if key not in valid:
                problems.append(f"--set {key}: not a setting of --method {method} (its settings: {', '.join(valid)})")
    if problems:
        if len(methods) > 1:
            problems.append("with several --method, each --set applies to every one; run one --method at a time instead")
        raise ConfigError("; ".join(problems))
    return settings


def merge(options: MergeOptions) -> int:
    """`mtadapt merge`: the adapters merged into a standalone model folder."""
    from mtadapt.methods.merge import save_merged
    from mtadapt.runs import open_for_inference

    check_outputs_apart({"--out": options.out}, {"--model": options.model, "--adapter": options.adapter, "--run": options.run})
    _check_output_folder(options.out, "--out", "a folder for the merged model")
    loaded, _ = open_for_inference(model=options.model, adapters=options.adapter, run=options.run,
                                   src_lang=options.src_lang, tgt_lang=options.tgt_lang, with_codec=False)
    save_merged(loaded.model, options.out, tokenizer=loaded.tokenizer, copy_model=False)
    print(f"merged model written to {options.out}")
    return 0


def export(options: ExportOptions) -> int:
    """`mtadapt export`: the model (and adapters) in another engine's format."""
    from mtadapt.runs import open_for_inference

    check_outputs_apart({"--out": options.out}, {"--model": options.model, "--adapter": options.adapter, "--run": options.run,
                                              "--calibration-text": options.calibration_text})
    if options.format == "npz":  # one file
        if Path(options.out).is_dir():
            raise DataError(f"--out {options.out} is a folder; --format npz writes one file, e.g. {Path(options.out) / 'model.npz'}")
        _check_parent_folders(options.out, "--out")
        if Path(options.out).exists():
            raise DataError(f"--out {options.out} exists; export never overwrites: give a new file name, or remove it first")
    else:
        _check_output_folder(options.out, "--out", f"a folder for the {options.format} export")
        if Path(options.out).is_dir() and any(Path(options.out).iterdir()):
            raise DataError(f"--out {options.out} is not empty; export never overwrites: give a new or empty folder, "
                            "or remove it first")
    if options.format == "ctranslate2":
        from mtadapt.export_ctranslate2 import export_ctranslate2_folder

        export_ctranslate2_folder(options.out, run=options.run, model=options.model, adapters=options.adapter,
                                  src_lang=options.src_lang, tgt_lang=options.tgt_lang, quantization=options.quantization)
        print(f"exported to {options.out}")
        return 0
    if options.format == "bergamot":
        from mtadapt.export import export_bergamot_folder

        path = export_bergamot_folder(options.out, run=options.run, model=options.model, adapters=options.adapter,
                                      calibration_file=options.calibration_text, calibration_lines=options.calibration_lines,
                                      calibration=options.calibration)
        print(f"exported to {path.parent} ({path.name})")
        return 0
    loaded, _ = open_for_inference(model=options.model, adapters=options.adapter, run=options.run, src_lang=options.src_lang,
                                   tgt_lang=options.tgt_lang, with_codec=False)
    if options.format == "peft":
        from mtadapt.methods.peft_interop import export_to_peft  # LoRA or prompt tuning, by the adapter's method

        export_to_peft(loaded.model, options.out, base_model_name_or_path=loaded.name_or_path)
    else:
        if not loaded.family.native:
            raise ConfigError(f"--format npz exports Marian-native models; {loaded.name_or_path} is {loaded.family.name}")
        from mtadapt.methods.base import adapter_names
        from mtadapt.methods.merge import merged_model

        from mtadapt.models.marian_native.convert import save_marian_npz

        model = merged_model(loaded.model, copy_model=False) if adapter_names(loaded.model) else loaded.model
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)  # as the folder formats make theirs
        save_marian_npz(model, options.out)
    print(f"exported to {options.out}")
    return 0


def augment_noise(options: NoiseOptions) -> int:
    """`augment noise`: noise a text (or source<TAB>target) file."""
    from mtadapt.augment.noise import noise_lines, noise_tsv_lines

    config, epoch = options.noise, options.epoch
    _check_output(options.output, "--output")
    check_outputs_apart({"--output": options.output}, {"--input": options.input})
    lines = _read_lines(options.input, "input")
    tsv = options.tsv or str(options.input).endswith(".tsv")
    source = "<stdin>" if options.input == "-" else options.input
    _write_lines(options.output, noise_tsv_lines(lines, config, epoch, source) if tsv else noise_lines(lines, config, epoch))
    return 0


def augment_mix(options: MixOptions) -> int:
    """`augment mix`: real pairs (upsampled) and synthetic pairs into one corpus."""
    from mtadapt.augment.backtranslate import write_mixed_corpus

    _check_output(options.output_src, "--output-src")
    _check_output(options.output_tgt, "--output-tgt")
    check_outputs_apart({"--output-src": options.output_src, "--output-tgt": options.output_tgt},
                        {"--real": options.real, "--synthetic": options.synthetic})
    counts = write_mixed_corpus(options.real, options.synthetic, options.output_src, options.output_tgt,
                                options.real_upsample, options.seed)
    print(f"mixed {counts['real']} real pairs x {options.real_upsample} + {counts['synthetic']} synthetic = {counts['mixed']} pairs")
    for side, paths in (("real", options.real), ("synthetic", options.synthetic)):  # every pair a reader dropped, with its reason
        print(f"{side} ({' '.join(paths)}): {counts[side + '_report']}")
    return 0


def augment_backtranslate(options: BacktranslateOptions) -> int:
    """`augment backtranslate`: synthetic pairs from monolingual text, resumable."""
    from dataclasses import asdict

    from mtadapt.augment.backtranslate import backtranslate_file
    from mtadapt.inference.sharded import check_work_folder

    for flag, path in (("--output", options.output), ("--output-src", options.output_src), ("--output-tgt", options.output_tgt)):
        _check_output(path, flag)
    _check_output_folder(options.work_dir, "--work-dir")
    check_outputs_apart({"--output": options.output, "--output-src": options.output_src, "--output-tgt": options.output_tgt,
                         "--work-dir": options.work_dir}, {"--input": options.input})
    check_work_folder(Path(options.work_dir or f"{options.output or options.output_src}.shards"))  # before the model loads
    config = options.backtranslation
    report = backtranslate_file(
        options.input, options.output or options.output_src, options.output_tgt, config, run=options.run, model=options.model,
        adapters=options.adapter, src_lang=options.src_lang, tgt_lang=options.tgt_lang, work_dir=options.work_dir,
        progress=cli_progress(options.no_progress), shortlist=False if options.no_shortlist else None, dtype=options.dtype,
        engine=options.engine, compute_type=options.compute_type,
    )
    if report is not None:  # None on ranks other than 0 (torchrun): rank 0 merged and reports
        print(json.dumps(asdict(report)) if options.json else report.summary())
    return 0


def compare(options: CompareOptions) -> int:
    """`mtadapt compare`: every cell of the grid; the table, and one line per failed cell."""
    from mtadapt.compare.grid import load_compare_recipe
    from mtadapt.compare.report import markdown_table
    from mtadapt.compare.runner import failed_cells, run_compare

    config, cells = load_compare_recipe(options.recipe, options.overrides)
    rows = run_compare(config, cells, progress=cli_progress(options.no_progress), source=options.recipe,
                       debug=options.debug or os.environ.get("MTADAPT_DEBUG", "").strip() not in ("", "0"))
    print(markdown_table(rows))
    print(f"report: {Path(config.output_dir) / 'report.md'} and report.html")
    failed = failed_cells(rows)
    for row in failed:  # the grid went on; each failure is one line, and the exit status says so
        print(f"error: cell {row['name']!r} failed: {row['reason']}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(rows)} cells failed; rerun the same command to run them again", file=sys.stderr)
    return (1 if any(r.get("internal") for r in failed) else 2) if failed else 0


def serve(options: ServeOptions) -> int:
    """`mtadapt serve`: flags become top-level settings on top of the YAML config."""
    from mtadapt.serve.config import load_serve_config

    flags: dict[str, Any] = {k: v for k, v in {
        "model": options.model, "run": options.run, "host": options.host, "port": options.port,
        "max_loaded": options.max_loaded, "admin_key": options.admin_key, "dtype": options.dtype,
        "shortlist": False if options.no_shortlist else None, "engine": options.engine, "compute_type": options.compute_type,
    }.items() if v is not None}
    adapters = [dict(zip(("name", "path"), item.split("=", 1))) for item in options.adapter]  # NAME=DIR: checked
    if adapters:
        flags["adapters"] = adapters
    if options.adapter_root:
        flags["adapter_roots"] = options.adapter_root
    if options.src_lang:  # with --tgt-lang (checked)
        from mtadapt.models.codes import public_code  # torch-free

        flags["pairs"] = [{"source": public_code(options.src_lang), "target": public_code(options.tgt_lang),
                           "src_lang": options.src_lang, "tgt_lang": options.tgt_lang, "adapter": options.default_adapter}]
    config = load_serve_config(options.config, flags)
    from mtadapt.serve.app import serve as start_server

    start_server(config)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error shape: a bad flag or value is one `error:` line (naming the
    flag, the valid values and the verb's --help), exit 2, instead of the usage block and a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


# Each typed verb: its path -> (its options dataclass, the function taking them). Its flags are
# built from the dataclass (`cli_options`); its one-line help is the class docstring's first
# sentence after "`mtadapt VERB`: ".
VERBS: dict[tuple[str, ...], tuple[type, Callable[[Any], int]]] = {
    ("train",): (TrainOptions, train),
    ("translate",): (TranslateOptions, translate),
    ("evaluate",): (EvaluateOptions, evaluate),
    ("params",): (ParamsOptions, params),
    ("merge",): (MergeOptions, merge),
    ("export",): (ExportOptions, export),
    ("augment", "noise"): (NoiseOptions, augment_noise),
    ("augment", "backtranslate"): (BacktranslateOptions, augment_backtranslate),
    ("augment", "mix"): (MixOptions, augment_mix),
    ("compare",): (CompareOptions, compare),
    ("serve",): (ServeOptions, serve),
}
# Verbs with subverbs (`mtadapt augment noise`): their one-line help.
VERB_GROUPS = {"augment": "data augmentation: noise, back-translation, mixing"}
# Fields a verb's options may have that the flags every verb shares fill (`common` in build_parser).
COMMON_FIELDS = frozenset({"no_progress", "debug"})


def _add_typed_verb(sub: Any, verb: tuple[str, ...], common: argparse.ArgumentParser) -> None:
    """The subcommand `verb`, its flags built from its options dataclass (`VERBS`)."""
    options_class, _ = VERBS[verb]
    summary = " ".join((options_class.__doc__ or "").split("\n\n")[0].split()).split(": ", 1)[-1].rstrip(".")
    p = sub.add_parser(verb[-1], parents=[common], help=summary)
    add_dataclass_options(p, options_class, skip=COMMON_FIELDS)
    p.set_defaults(func=lambda args: _run_typed_verb(verb, args))


def _run_typed_verb(verb: tuple[str, ...], args: argparse.Namespace) -> int:
    """Build the verb's options (their `__post_init__` checks run here) and call its function."""
    options_class, function = VERBS[verb]
    return function(dataclass_from_args(options_class, args))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtadapt", description="Adapt pretrained MT models cheaply and measurably.")
    debug_help = "show the traceback of an internal error (also MTADAPT_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-progress", action="store_true",
                        help="no progress bars: a plain line every 10 s (training: every train.log_every steps) instead; "
                             "the default when stderr is not a terminal")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="verb", required=True)

    groups: dict[str, Any] = {}
    for verb in VERBS:  # in the table's order, as --help lists them
        if len(verb) == 1:
            _add_typed_verb(sub, verb, common)
            continue
        if verb[0] not in groups:
            group = sub.add_parser(verb[0], parents=[common], help=VERB_GROUPS[verb[0]])
            groups[verb[0]] = group.add_subparsers(dest=f"{verb[0]}_verb", required=True)
        _add_typed_verb(groups[verb[0]], verb, common)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """mtadapt's own warnings as one `warning:` line; others as Python shows them."""
    if issubclass(category, MtadaptWarning):
        print(f"warning: {message}", file=sys.stderr if file is None else file)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _raised_by_mtadapt(err: BaseException) -> bool:
    """Whether the innermost frame of `err`'s traceback is mtadapt's own code."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    package = Path(__file__).resolve().parent
    return tb is not None and package in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def _user_error(err: Exception) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug.

    Expected: mtadapt's own errors; an OS error on a named file (no such file, a folder, no
    permission); and the ValueError / FileNotFoundError / FileExistsError that mtadapt code
    raises with a message written for users.
    """
    if isinstance(err, MtadaptError):
        return str(err)
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, (ValueError, FileNotFoundError, FileExistsError)) and _raised_by_mtadapt(err):
        return str(err)
    return None


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `train recipe.yaml --resume key=value`, `compare recipe.yaml --no-progress key=value`:
    # overrides may follow options in the verbs that take them.
    takes_overrides = hasattr(args, "overrides")
    overrides = [e for e in extra if takes_overrides and "=" in e and not e.startswith("-")]
    if len(overrides) != len(extra):
        parser.error(f"unrecognized arguments: {' '.join(e for e in extra if e not in overrides)}")
    if overrides:
        args.overrides = list(args.overrides) + overrides
    _refuse_empty_paths(args)
    return args.func(args)


# Every option naming a file or folder (argparse dest -> how the user wrote it).
PATH_OPTIONS = {
    "recipe": "RECIPE", "config": "CONFIG", "run": "--run", "model": "--model", "adapter": "--adapter",
    "adapter_root": "--adapter-root", "input": "--input", "output": "--output", "work_dir": "--work-dir",
    "ref": "--ref", "hyp": "--hyp", "src": "--src", "save_hyp": "--save-hyp", "baseline": "--baseline", "out": "--out",
    "calibration_text": "--calibration-text", "real": "--real", "synthetic": "--synthetic",
    "output_src": "--output-src", "output_tgt": "--output-tgt",
}


def _refuse_empty_paths(args: argparse.Namespace) -> None:
    """An empty path (`--out ''`, an unset shell variable) would mean the current folder:
    refused, naming the option."""
    for dest, flag in PATH_OPTIONS.items():
        value = getattr(args, dest, None)
        if any(isinstance(v, str) and not v.strip() for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"{flag} is an empty path{' (it would mean the current folder)' if dest in ('out', 'work_dir') else ''}; "
                              "give a file or folder name (an unset shell variable?)")


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (`| head -n 1`), so that a
    BrokenPipeError came from our output and not from a bug (a worker's pipe, a socket)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file descriptor (captured output)
        return False
    if not hasattr(select, "poll"):  # Windows: no poll; a broken stdout is the likely cause
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _stop_quietly_on_closed_stdout() -> int:
    """Python's recipe (the `signal` docs, "Note on SIGPIPE"): point stdout at /dev/null so that
    flushing it at exit raises nothing more, and exit as a closed pipe's writer does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Run one verb; the one place where errors become messages and exit statuses.

    Returns:
        0 on success, 2 for an error the user can fix (one `error:` line on stderr), 1 for an
        internal error (its traceback with --debug or MTADAPT_DEBUG=1), 130 on Ctrl-C, 141
        (quietly) when the reader of stdout has gone.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MTADAPT_DEBUG", "").strip() not in ("", "0")
    if not is_terminal(sys.stderr):  # a log or a pipe: no bars from Hugging Face's libraries either (read at import)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:  # imported already (the Python API, tests): switch its bars off now
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return _run(argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as err:  # noqa: BLE001 (the top-level handler)
            if isinstance(err, BrokenPipeError) and _stdout_reader_gone():
                return _stop_quietly_on_closed_stdout()
            message = _user_error(err)
            if message is not None and not debug:
                print(f"error: {message}", file=sys.stderr)
                return 2
            if debug:
                traceback.print_exc()
                return 2 if message is not None else 1
            text = " ".join(str(err).split())
            print(f"internal error: {type(err).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}\n"
                  "this is a bug (in mtadapt or a library it uses); rerun with --debug (or MTADAPT_DEBUG=1) "
                  "for the traceback, and report it with that", file=sys.stderr)
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
