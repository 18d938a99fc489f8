"""The `mtadapt` command line: each verb maps to one plain function.

    mtadapt train RECIPE.yaml [key.path=value ...] [--resume]
    mtadapt compare RECIPE.yaml [key.path=value ...]
    mtadapt translate (--run DIR | --model M [--adapter DIR]) [-i FILE] [-o FILE]
    mtadapt evaluate --ref FILE (--hyp FILE | --run DIR --src FILE) [--baseline FILE]
    mtadapt params (--arch NAME | --model M) --method lora --set rank=8
    mtadapt merge --model M --adapter DIR --out DIR
    mtadapt export --format peft|npz|bergamot (--run DIR | --model M --adapter DIR) --out DIR
    mtadapt augment noise --input F --output F [--word-dropout P ...]
    mtadapt augment backtranslate --model M --input F --output F.tsv [--mode sample ...]
    mtadapt augment mix --real S T --synthetic S T --output-src S --output-tgt T
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mtadapt.config import ConfigError, parse_override
from mtadapt.evaluate.generation import INFERENCE_DTYPES


def _read_lines(path: str | None, what: str) -> list[str]:
    if path is None or path == "-":
        return sys.stdin.read().splitlines()
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: {what} file {path} does not exist")
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise SystemExit(f"error: {path}: invalid UTF-8 at byte {err.start}") from err


def _write_lines(path: str | None, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    from mtadapt.train.checkpoint import atomic_write_text

    atomic_write_text(Path(path), text)


def _generation(args: argparse.Namespace):
    from mtadapt.evaluate.generation import GenerationConfig

    return GenerationConfig(num_beams=args.beam, batch_size=args.batch_size, max_length_factor=args.max_length_factor)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", help="run folder written by `mtadapt train` (model, languages, best adapter)")
    p.add_argument("--model", help="base model: HF name or folder, bergamot:pt-en, tiny:<family>")
    p.add_argument("--adapter", action="append", default=[], help="adapter folder (repeatable)")
    p.add_argument("--src-lang", help="source language code (de_DE, de, deu_Latn...)")
    p.add_argument("--tgt-lang", help="target language code")
    p.add_argument("--no-shortlist", action="store_true",
                   help="Bergamot models: decode without the lexical shortlist (sources not in the model's source language)")


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per generation batch")
    p.add_argument("--max-length-factor", type=float, default=2.0, help="max output length / input length")
    _add_dtype_arg(p)


def _add_dtype_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=INFERENCE_DTYPES,
                   help="precision while generating (default: bfloat16 where the device has it natively, else "
                        "float32; a precision the device would emulate draws a warning). int8: Marian-native "
                        "models with their shipped int8 weights, on the CPU")


def cmd_train(args: argparse.Namespace) -> int:
    from mtadapt.config import load_recipe
    from mtadapt.train.loop import train

    config = load_recipe(args.recipe, args.overrides)
    result = train(config, resume=args.resume, progress=not args.no_progress)
    best = result.best_metric
    print(f"done: {result.steps} steps, {result.tokens_per_second:.0f} tokens/s; "
          f"best dev {config.train.metric} {best if best is None else round(best, 2)}; adapter {result.best_adapter or result.final_adapter}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from mtadapt.evaluate.generation import translate
    from mtadapt.runs import open_for_inference, place_for_inference

    loaded, codec = open_for_inference(run=args.run, model=args.model, adapters=args.adapter, src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                                        shortlist=False if args.no_shortlist else None)
    place_for_inference(loaded.model, args.dtype)
    lines = _read_lines(args.input, "input")
    out = translate(loaded.model, codec, lines, _generation(args), progress=not args.no_progress)
    _write_lines(args.output, out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mtadapt.evaluate.metrics import corpus_scores, paired_bootstrap

    refs = _read_lines(args.ref, "reference")
    if args.hyp:
        hyps = _read_lines(args.hyp, "hypothesis")
    else:
        if not args.src:
            raise SystemExit("error: give --hyp FILE, or --src FILE with --run/--model to translate it first")
        from mtadapt.evaluate.generation import translate
        from mtadapt.runs import open_for_inference, place_for_inference

        loaded, codec = open_for_inference(run=args.run, model=args.model, adapters=args.adapter, src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                                        shortlist=False if args.no_shortlist else None)
        place_for_inference(loaded.model, args.dtype)
        hyps = translate(loaded.model, codec, _read_lines(args.src, "source"), _generation(args), progress=not args.no_progress)
        if args.save_hyp:
            _write_lines(args.save_hyp, hyps)
    try:
        scores = corpus_scores(hyps, refs, n_bootstrap=args.n_bootstrap)
        result: dict[str, Any] = {"scores": {k: v.to_dict() for k, v in scores.items()}}
        if args.baseline:
            result["paired_bootstrap"] = paired_bootstrap(_read_lines(args.baseline, "baseline"), {"system": hyps}, refs, n_samples=max(args.n_bootstrap, 100))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for s in scores.values():
        ci = f" (95% CI {s.ci_low:.2f}-{s.ci_high:.2f})" if s.ci_low is not None else ""
        print(f"{s.name:7s} {s.score:6.2f}{ci}  {s.signature}")
    if args.baseline:
        pb = result["paired_bootstrap"]
        for metric in ("BLEU", "chrF"):
            base, sys_ = pb["baseline"][metric], pb["system"][metric]
            print(f"paired bootstrap {metric}: baseline {base['score']:.2f} -> system {sys_['score']:.2f} (p = {sys_['p_value']:.4f})")
    return 0


def _settings(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for item in pairs:
        key, value = parse_override(item)
        out[key] = value
    return out


def cmd_params(args: argparse.Namespace) -> int:
    from mtadapt.methods.params import architecture_names, format_table, param_report

    if not args.arch and not args.model:
        raise SystemExit(f"error: give --arch NAME ({', '.join(architecture_names())}) or --model M")
    target: Any = args.arch
    if args.model:
        from mtadapt.models.loading import load_model

        target = load_model(args.model).model
    rows = []
    for method in args.method or ["lora"]:
        rows.append(param_report(target, method, _settings(args.set) if len(args.method or ["lora"]) == 1 else {}))
    print(format_table(rows))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from mtadapt.methods.merge import save_merged
    from mtadapt.runs import open_for_inference

    loaded, _ = open_for_inference(model=args.model, adapters=args.adapter, run=args.run, src_lang=args.src_lang,
                                   tgt_lang=args.tgt_lang, with_codec=False)
    save_merged(loaded.model, args.out, tokenizer=loaded.tokenizer, copy_model=False)
    print(f"merged model written to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mtadapt.runs import open_for_inference

    if args.format == "bergamot":
        from mtadapt.export import export_bergamot_folder

        path = export_bergamot_folder(args.out, run=args.run, model=args.model, adapters=args.adapter,
                                      calibration_file=args.calibration_text, calibration_lines=args.calibration_lines,
                                      calibration=args.calibration)
        print(f"exported to {path.parent} ({path.name})")
        return 0
    loaded, _ = open_for_inference(model=args.model, adapters=args.adapter, run=args.run, src_lang=args.src_lang,
                                   tgt_lang=args.tgt_lang, with_codec=False)
    if args.format == "peft":
        from mtadapt.methods.base import adapter_names
        from mtadapt.methods.lora import LoraConfig
        from mtadapt.methods.peft_interop import export_lora_to_peft, export_prompt_to_peft
        from mtadapt.methods.prompt import PromptConfig

        names = adapter_names(loaded.model)
        if len(names) != 1:
            raise SystemExit(f"error: --format peft exports one adapter; the model holds {names or 'none'}")
        config = getattr(loaded.model, "mtadapt_adapter_configs", {}).get(names[0])
        if isinstance(config, LoraConfig):
            export_lora_to_peft(loaded.model, args.out, names[0], base_model_name_or_path=loaded.name_or_path)
        elif isinstance(config, PromptConfig):
            export_prompt_to_peft(loaded.model, args.out, names[0], base_model_name_or_path=loaded.name_or_path)
        else:
            raise SystemExit(f"error: --format peft exports LoRA and prompt tuning adapters; {names[0]!r} is {getattr(config, 'method', config)}")
    else:
        if loaded.family.name != "marian_native":
            raise SystemExit(f"error: --format npz exports Marian-native models; {loaded.name_or_path} is {loaded.family.name}")
        from mtadapt.methods.base import adapter_names
        from mtadapt.methods.merge import merged_model

        from mtadapt.models.marian_native.convert import save_marian_npz

        model = merged_model(loaded.model, copy_model=False) if adapter_names(loaded.model) else loaded.model
        save_marian_npz(model, args.out)
    print(f"exported to {args.out}")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    """`augment noise` (a file), `augment backtranslate` (synthetic pairs), `augment mix`."""
    from dataclasses import asdict

    if args.augment_verb == "noise":
        from mtadapt.augment.noise import NoiseConfig, noise_lines, noise_tsv_lines

        config = NoiseConfig(
            word_dropout=args.word_dropout, word_shuffle_distance=args.shuffle_distance,
            insertion_prob=args.insertion_prob, insertion_source=args.insertion_source, filler_token=args.filler_token,
            blank_prob=args.blank_prob, blank_token=args.blank_token, side=args.side, unit=args.unit,
            fraction=args.fraction, seed=args.seed,
        )
        lines = _read_lines(args.input, "input")
        tsv = args.tsv or str(args.input).endswith(".tsv")
        _write_lines(args.output, noise_tsv_lines(lines, config, args.epoch) if tsv else noise_lines(lines, config, args.epoch))
        return 0
    if args.augment_verb == "mix":
        from mtadapt.augment.backtranslate import write_mixed_corpus

        counts = write_mixed_corpus(args.real, args.synthetic, args.output_src, args.output_tgt, args.real_upsample, args.seed)
        print(f"mixed {counts['real']} real pairs x {args.real_upsample} + {counts['synthetic']} synthetic = {counts['mixed']} pairs")
        return 0
    from mtadapt.augment.backtranslate import BacktranslationConfig, backtranslate_file

    if bool(args.output) == bool(args.output_src):
        raise SystemExit("error: give --output FILE.tsv, or --output-src FILE --output-tgt FILE (a Moses pair)")
    if args.output_src and not args.output_tgt:
        raise SystemExit("error: --output-src needs --output-tgt")
    config = BacktranslationConfig(
        direction=args.direction, mode=args.mode, num_beams=args.beam, outputs_per_sentence=args.outputs_per_sentence,
        sampling_temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, batch_size=args.batch_size,
        max_length_factor=args.max_length_factor, tag=args.tag, max_length_ratio=args.max_length_ratio,
        drop_empty=not args.keep_empty, drop_copies=not args.keep_copies, drop_duplicates=not args.keep_duplicates,
        shard_size=args.shard_size, seed=args.seed,
    )
    report = backtranslate_file(
        args.input, args.output or args.output_src, args.output_tgt, config, run=args.run, model=args.model,
        adapters=args.adapter, src_lang=args.src_lang, tgt_lang=args.tgt_lang, work_dir=args.work_dir,
        progress=not args.no_progress, shortlist=False if args.no_shortlist else None, dtype=args.dtype,
    )
    print(json.dumps(asdict(report)) if args.json else report.summary())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mtadapt.compare.grid import load_compare_recipe
    from mtadapt.compare.report import markdown_table
    from mtadapt.compare.runner import run_compare

    config, cells = load_compare_recipe(args.recipe, args.overrides)
    rows = run_compare(config, cells, progress=not args.no_progress, source=args.recipe)
    print(markdown_table(rows))
    print(f"report: {Path(config.output_dir) / 'report.md'} and report.html")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtadapt", description="Adapt pretrained MT models cheaply and measurably.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("train", parents=[common], help="fine-tune with a YAML recipe")
    p.add_argument("recipe", nargs="?", help="YAML recipe (defaults: the toy task on tiny:mbart50)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. train.max_steps=100")
    p.add_argument("--resume", action="store_true", help="continue the run in train.output_dir from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", parents=[common], help="translate a file or stdin (batched, length-sorted)")
    _add_model_args(p)
    _add_generation_args(p)
    p.add_argument("-i", "--input", help="input file (default: stdin)")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("evaluate", parents=[common], help="sacreBLEU BLEU/chrF/chrF++ against local references, paired bootstrap")
    _add_model_args(p)
    _add_generation_args(p)
    p.add_argument("--ref", required=True, help="reference file, one sentence a line")
    p.add_argument("--hyp", help="hypothesis file (else translate --src)")
    p.add_argument("--src", help="source file to translate first")
    p.add_argument("--save-hyp", help="write the translations here")
    p.add_argument("--baseline", help="baseline hypotheses: paired bootstrap significance")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples (0 = no intervals)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("params", parents=[common], help="trainable / total parameters and adapter size per method")
    p.add_argument("--arch", help="named architecture on the meta device (no weights), e.g. facebook/mbart-large-50, t5-base")
    p.add_argument("--model", help="a model to load instead")
    p.add_argument("--method", action="append", help="method (repeatable; default lora)")
    p.add_argument("--set", action="append", default=[], help="method setting key=value, e.g. rank=8")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("merge", parents=[common], help="merge LoRA into a standalone model folder")
    _add_model_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export", parents=[common],
                       help="export an adapter to HF PEFT, or a Marian-native model to .npz or a Bergamot int8 folder")
    _add_model_args(p)
    p.add_argument("--format", choices=["peft", "npz", "bergamot"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--calibration-text", help="bergamot: source sentences to calibrate the int8 activation "
                                              "multipliers on (default: the run's training sources)")
    p.add_argument("--calibration-lines", type=int, default=200, help="bergamot: sentences sampled for calibration")
    p.add_argument("--calibration", choices=["auto", "relative", "absolute"], default="auto",
                   help="bergamot: relative = the base's shipped multipliers corrected by the adaptation's change "
                        "(auto when the base ships them); absolute = measured afresh, as Marian's calibration")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("augment", parents=[common], help="data augmentation: noise, back-translation, mixing")
    aug = p.add_subparsers(dest="augment_verb", required=True)
    a = aug.add_parser("noise", parents=[common], help="noise a text (or source<TAB>target) file: dropout, shuffle, insertion, blanking")
    a.add_argument("--input", required=True, help="one sentence a line, or a .tsv file (see --tsv)")
    a.add_argument("--output", required=True, help="noised file ('-' = stdout)")
    a.add_argument("--tsv", action="store_true", help="input is source<TAB>target: noise the --side column(s)")
    a.add_argument("--word-dropout", type=float, default=0.1, help="probability of deleting each word")
    a.add_argument("--shuffle-distance", type=float, default=3.0, help="k: no word moves k or more places (0 = off)")
    a.add_argument("--insertion-prob", type=float, default=0.0, help="probability of inserting a word in each gap")
    a.add_argument("--insertion-source", choices=["vocabulary", "filler"], default="vocabulary",
                   help="insert corpus words by frequency, or --filler-token")
    a.add_argument("--filler-token", default="<filler>")
    a.add_argument("--blank-prob", type=float, default=0.0, help="probability of replacing each word by --blank-token")
    a.add_argument("--blank-token", default="<blank>")
    a.add_argument("--side", choices=["source", "target", "both"], default="source", help="TSV column(s) to noise")
    a.add_argument("--unit", choices=["auto", "word", "grapheme"], default="auto",
                   help="auto: words; graphemes for scripts without spaces (zh, ja, th...)")
    a.add_argument("--fraction", type=float, default=1.0, help="share of lines noised")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--epoch", type=int, default=0, help="another epoch gives other noise")
    a.set_defaults(func=cmd_augment)
    a = aug.add_parser("backtranslate", parents=[common],
                       help="synthetic pairs from monolingual text (back- or forward translation), resumable")
    _add_model_args(a)
    a.add_argument("--input", required=True, help="monolingual text, one sentence a line (target side for --direction back)")
    a.add_argument("--output", help="output TSV (source<TAB>target)")
    a.add_argument("--output-src", help="output Moses source file (with --output-tgt)")
    a.add_argument("--output-tgt", help="output Moses target file")
    a.add_argument("--work-dir", help="shards and progress manifest; rerun to resume (default OUTPUT.shards)")
    a.add_argument("--direction", choices=["back", "forward"], default="back")
    a.add_argument("--mode", choices=["greedy", "beam", "sample", "noised_beam"], default="beam")
    a.add_argument("--beam", type=int, default=5, help="beam size for beam and noised_beam")
    a.add_argument("--outputs-per-sentence", type=int, default=1, help="n-best (beam) or samples (sample) per line")
    a.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    a.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens (0 = off)")
    a.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    a.add_argument("--batch-size", type=int, default=32)
    a.add_argument("--max-length-factor", type=float, default=2.0)
    a.add_argument("--tag", help="prepend this tag to every source (tagged BT), e.g. '[BT]'")
    a.add_argument("--max-length-ratio", type=float, default=3.0, help="drop pairs with a larger character-length ratio (0 = off)")
    a.add_argument("--keep-empty", action="store_true", help="keep empty outputs")
    a.add_argument("--keep-copies", action="store_true", help="keep outputs equal to their input")
    a.add_argument("--keep-duplicates", action="store_true", help="keep repeated pairs")
    a.add_argument("--shard-size", type=int, default=500, help="lines per shard (the unit of resumption)")
    a.add_argument("--seed", type=int, default=0)
    _add_dtype_arg(a)
    a.add_argument("--json", action="store_true", help="print the counts as JSON")
    a.set_defaults(func=cmd_augment)
    a = aug.add_parser("mix", parents=[common], help="mix real (upsampled) and synthetic pairs into one corpus")
    a.add_argument("--real", nargs="+", required=True, help="real corpus: SRC TGT (Moses) or one .tsv")
    a.add_argument("--synthetic", nargs="+", required=True, help="synthetic corpus: SRC TGT (Moses) or one .tsv")
    a.add_argument("--output-src", required=True, help="output source file (or the TSV without --output-tgt)")
    a.add_argument("--output-tgt", help="output target file")
    a.add_argument("--real-upsample", type=float, default=1.0, help="times each real pair is used (e.g. 2, 2.5)")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=cmd_augment)
    p = sub.add_parser("compare", parents=[common], help="run a grid of methods on one budget; results.jsonl, report.md/html")
    p.add_argument("recipe", help="compare recipe (base run + cells), e.g. recipes/quickstart.yaml")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. output_dir=/tmp/q base.train.max_steps=10")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `train recipe.yaml --resume key=value`: overrides may follow options.
    overrides = [e for e in extra if "=" in e and not e.startswith("-")]
    if extra and (getattr(args, "verb", None) != "train" or len(overrides) != len(extra)):
        parser.error(f"unrecognized arguments: {' '.join(e for e in extra if e not in overrides or args.verb != 'train')}")
    if overrides:
        args.overrides = list(args.overrides) + overrides
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
