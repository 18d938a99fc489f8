"""Agreement of `mtadapt export --format bergamot` with mtadapt, measured by the real Marian engine.

For an untuned Bergamot model (`--model bergamot:pt-en`) or a trained run (`--run RUN`), on
the held-out Bible test verses (500, the split the recipes use):

    float32   mtadapt's own float32 output (the run's adapters applied)
    int8      the exported int8 folder, translated by bergamot-translator
              (once per --calibration mode: relative, absolute)
    npz       `export --format npz` (float32) in bergamot-translator
    shipped   the shipped model in bergamot-translator (untuned only)

and prints BLEU against the references, BLEU of each against float32 (and against the
shipped model's output), the multipliers' calibration and the machine.

    .venv/bin/python benchmarks/bergamot_export.py --model bergamot:pt-en [--verses 500]
    .venv/bin/python benchmarks/bergamot_export.py --run runs/bible-lora [--verses 500]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import sacrebleu
import torch

from mtadapt.data import bible
from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.inference.precision import describe_machine
from mtadapt.export import export_bergamot_folder
from mtadapt.models.marian_native.engines import translate_with_bergamot
from mtadapt.runs import open_for_inference, read_run_config


def bleu(hyps: list[str], refs: list[str]) -> float:
    return sacrebleu.corpus_bleu(hyps, [refs]).score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run")
    parser.add_argument("--model")
    parser.add_argument("--bible", help="bible split pair, e.g. a-4 (pt->en) or 4-a; default from the model")
    parser.add_argument("--verses", type=int, default=500)
    parser.add_argument("--calibration", nargs="+", default=["relative", "absolute"])
    parser.add_argument("--calibration-lines", type=int, default=200)
    parser.add_argument("--calibration-text", help="for --model: calibration sources (default: the Bible train split)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model_name = args.model or read_run_config(args.run).model.name_or_path
    pair = args.bible or {"bergamot:pt-en": "a-4", "bergamot:en-pt": "4-a"}[model_name]
    config, _ = bible.parse_corpus_path(f"bible:{pair}:test")
    src, tgt = bible.write_splits(config)["test"]
    sources = [line for line in src.read_text(encoding="utf-8").split("\n") if line][: args.verses]
    references = [line for line in tgt.read_text(encoding="utf-8").split("\n") if line][: args.verses]
    print(f"machine: {describe_machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{model_name} {'run ' + args.run if args.run else 'untuned'}; {len(sources)} held-out verses bible:{pair}:test")
    calibration_text = args.calibration_text
    if calibration_text is None and not args.run:
        train_config, _ = bible.parse_corpus_path(f"bible:{pair}:train")
        calibration_text = bible.write_splits(train_config)["train"][0]
    loaded, codec = open_for_inference(run=args.run, model=args.model)
    outputs = {"float32 (mtadapt)": translate(loaded.model, codec, sources, GenerationConfig(batch_size=32))}
    with tempfile.TemporaryDirectory(prefix="mtadapt-export-bench-") as tmp:
        for mode in args.calibration:
            start = time.perf_counter()
            path = export_bergamot_folder(Path(tmp) / mode, run=args.run, model=args.model if not args.run else None,
                                          calibration=mode, calibration_lines=args.calibration_lines,
                                          calibration_file=None if args.run else calibration_text)
            print(f"export ({mode} calibration): {time.perf_counter() - start:.1f} s -> {path.name}")
            outputs[f"int8 {mode} (bergamot)"] = translate_with_bergamot(path.parent, sources).translations
        npz = Path(tmp) / "npz"
        npz.mkdir()
        from mtadapt.cli import main as cli

        files = loaded.model.marian_files
        code = files.model.name.split(".")[1]
        cli(["export", "--format", "npz", *(["--run", args.run] if args.run else ["--model", args.model]),
             "--out", str(npz / f"model.{code}.npz")])
        for item in (files.vocab, files.shortlist):
            if item is not None:
                (npz / item.name).write_bytes(item.read_bytes())
        outputs["npz (bergamot)"] = translate_with_bergamot(npz, sources).translations
        if not args.run:
            outputs["shipped int8 (bergamot)"] = translate_with_bergamot(files.directory, sources).translations
    base = outputs["float32 (mtadapt)"]
    print(f"\n| output | BLEU | chrF | BLEU vs float32 | delta BLEU vs float32 |\n|---|---|---|---|---|")
    for name, hyps in outputs.items():
        chrf = sacrebleu.corpus_chrf(hyps, [references]).score
        print(f"| {name} | {bleu(hyps, references):.2f} | {chrf:.2f} | {bleu(hyps, base):.1f} | "
              f"{bleu(hyps, references) - bleu(base, references):+.2f} |")
    if "shipped int8 (bergamot)" in outputs:
        shipped = outputs["shipped int8 (bergamot)"]
        for name, hyps in outputs.items():
            print(f"agreement with the shipped model, {name}: {bleu(hyps, shipped):.1f} BLEU")


if __name__ == "__main__":
    main()
