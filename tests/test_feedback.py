"""What the shell shows while work runs and when it ends: `--no-progress` log lines (train
every `log_every` steps, other verbs every 10 s and at the end), the step-0 dev row, the
closing summary of `train`, and the tokens/s figures of metrics.jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from mtadapt.cli import main
from mtadapt.progress import Progress, format_duration
from mtadapt.train.summary import compare_to_start, summary_lines

# one worker runs the whole module: its module-scoped training run is built once (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_feedback")

REPO = Path(__file__).resolve().parents[1]
STEPS = 6
LINE = re.compile(r"^step (\d+)/6 \| loss (\d+\.\d{3}) \| lr (\S+) \| ([\d,]+) tokens/s \(mean ([\d,]+)\)( \| ETA \d+(m\d\d)?s)?$")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One short LoRA run on the toy task through the CLI, with --no-progress."""
    out = tmp_path_factory.mktemp("feedback") / "run"
    capture = pytest.MonkeyPatch()
    import io
    import sys

    stdout, stderr = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", stdout)
    capture.setattr(sys, "stderr", stderr)
    try:
        code = main(["train", str(REPO / "recipes" / "toy-lora.yaml"), f"train.output_dir={out}", f"train.max_steps={STEPS}",
                     "train.log_every=2", "train.eval_every=3", "train.warmup_steps=1", "train.save_every=3",
                     "data.max_dev_sentences=6", "--no-progress"])
    finally:
        capture.undo()
    assert code == 0, stderr.getvalue()
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text(encoding="utf-8").split("\n") if r]
    return SimpleNamespace(dir=out, stdout=stdout.getvalue(), stderr=stderr.getvalue(), rows=rows,
                           result=json.loads((out / "result.json").read_text(encoding="utf-8")))


def test_no_progress_train_logs_a_line_per_log_every_steps(run):
    lines = [line for line in run.stderr.split("\n") if line.startswith("step ")]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == [2, 4, 6]
    assert [m.group(6) is not None for m in matches] == [True, True, False]  # an ETA until the last step
    train_rows = [r for r in run.rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4, 6]
    for m, row in zip(matches, train_rows):  # the line shows the row's numbers
        assert m.group(2) == f"{row['loss']:.3f}" and float(m.group(3)) == pytest.approx(row["lr"], rel=1e-2)
        assert m.group(4) == f"{row['tokens_per_s_smoothed']:,.0f}" and m.group(5) == f"{row['tokens_per_s_mean']:,.0f}"
    assert not re.search(r"train: +\d+%", run.stderr)  # and no progress bar drawn


def test_step_zero_dev_row_is_the_untrained_base(run):
    from mtadapt.config import load_recipe
    from mtadapt.data.tasks import load_corpus
    from mtadapt.evaluate.dev import evaluate_dev
    from mtadapt.models.loading import load_model

    first = run.rows[0]
    assert first["step"] == 0 and set(first) == {"step", "dev_bleu", "dev_chrf", "dev_loss"}
    assert [h["step"] for h in run.result["dev_history"]] == [0, 3, 6]
    assert any(line.startswith("step 0: dev BLEU ") for line in run.stdout.split("\n")) and "(before training)" in run.stdout
    # LoRA starts as the identity (B = 0): step 0 scores the plain base model
    config = load_recipe(str(REPO / "recipes" / "toy-lora.yaml"), ["data.max_dev_sentences=6"])
    loaded = load_model("tiny:mbart50")
    codec = loaded.codec("de_DE", "en_XX")
    base = evaluate_dev(loaded.model.eval(), codec, load_corpus(config, "dev", codec, None), config)
    assert first["dev_loss"] == pytest.approx(base["loss"], rel=1e-5)
    assert first["dev_chrf"] == pytest.approx(base["chrf"], abs=1e-6)
    assert run.result["dev_history"][-1]["loss"] < first["dev_loss"]  # and training moved off it


def test_step_zero_is_skippable(tmp_path, capsys):
    code = main(["train", str(REPO / "recipes" / "toy-lora.yaml"), f"train.output_dir={tmp_path / 'r'}", "train.max_steps=2",
                 "train.warmup_steps=1", "train.eval_every=2", "train.eval_at_start=false", "data.max_dev_sentences=2",
                 "--no-progress"])
    assert code == 0
    rows = [json.loads(r) for r in (tmp_path / "r" / "metrics.jsonl").read_text(encoding="utf-8").split("\n") if r]
    assert [r["step"] for r in rows if "dev_bleu" in r] == [2]
    assert "(no step-0 score: train.eval_at_start is off)" in capsys.readouterr().out


def test_train_ends_with_the_best_adapter_against_step_zero_and_next_commands(run):
    lines = run.stdout.rstrip("\n").split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("done: "))
    assert re.fullmatch(r"done: 6 steps, \d+s of training, [\d,]+ real tokens/s \(mean, padding excluded\)", lines[i])
    history = run.result["dev_history"]
    best = next(h for h in history if h["step"] > 0 and h["bleu"] == run.result["best_metric"])
    assert lines[i + 1].startswith(f"best adapter: {run.dir / 'best'} (step {best['step']}): dev BLEU {best['bleu']:.2f}")
    assert f"chrF {best['chrf']:.2f}" in lines[i + 1] and "step 0" in lines[i + 1]
    assert lines[i + 2] == "next:"
    commands = [line.strip() for line in lines[i + 3:]]
    assert commands[0] == f"mtadapt translate --run {run.dir} -i input.txt -o output.txt"
    assert commands[1].startswith(f"mtadapt evaluate --run {run.dir} ")
    assert commands[2].startswith(f"mtadapt serve --run {run.dir}")
    assert f"mtadapt export --format peft --run {run.dir} --out peft/" in commands


def test_summary_says_plainly_when_training_made_dev_worse():
    start, row = {"step": 0, "bleu": 30.0, "chrf": 50.0, "loss": 2.0}, {"step": 100, "bleu": 28.5, "chrf": 51.0, "loss": 2.5}
    assert compare_to_start(row, start, "bleu") == (
        "dev BLEU 28.50, WORSE than step 0 (30.00, -1.50): training has not helped on dev")
    assert compare_to_start(row, start, "chrf") == "dev chrF 51.00, +1.00 over step 0 (50.00)"
    assert compare_to_start(row, start, "loss").startswith("dev loss 2.50, WORSE than step 0 (2.00, +0.50)")
    from mtadapt.config import load_recipe

    config = load_recipe(str(REPO / "recipes" / "toy.yaml"), [])
    result = SimpleNamespace(steps=100, train_seconds=75.0, tokens_per_second=1234.5, dev_history=[start, row], best_metric=28.5,
                             best_adapter=Path("runs/toy/best"), final_adapter=Path("runs/toy/final"), run_dir=Path("runs/toy"))
    lines = summary_lines(result, config)
    assert lines[0] == "done: 100 steps, 1m15s of training, 1,234 real tokens/s (mean, padding excluded)"
    assert lines[1].startswith("best adapter: runs/toy/best (step 100): dev BLEU 28.50, WORSE than step 0")
    assert not any("peft" in line for line in lines)  # full fine-tuning: no PEFT export offered


def test_tokens_per_s_smoothed_and_mean(run):
    rows = [r for r in run.rows if "loss" in r]
    rates = [r["tokens_per_s"] for r in rows]
    for k, row in enumerate(rows):  # a token-weighted mean of the last windows lies among them
        window = rates[max(0, k - 4): k + 1]
        assert min(window) * (1 - 1e-9) <= row["tokens_per_s_smoothed"] <= max(window) * (1 + 1e-9)
    assert rows[-1]["tokens_per_s_mean"] == pytest.approx(run.result["tokens_per_second"], rel=1e-9)


def test_log_progress_lines_and_translate_no_progress(tmp_path, capsys):
    import io

    stream = io.StringIO()
    with Progress(5, "work", unit="sent", mode="log", interval=0.0, stream=stream) as progress:
        for _ in range(5):
            progress.update(1)
    lines = stream.getvalue().split("\n")[:-1]
    assert len(lines) == 5 and lines[-1].startswith("work: 5/5 sent (100%), ")
    assert re.fullmatch(r"work: 2/5 sent \(40%\), [\d,.]+ sent/s, elapsed \d+s, ETA \d+s", lines[1])
    assert (format_duration(5), format_duration(125), format_duration(7500)) == ("5s", "2m05s", "2h05m")

    sources = ["der hund sieht eine katze", "ein kind mag dieser baum", "jeder vogel hoert die frau"]
    (tmp_path / "in.de").write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    code = main(["translate", "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", "-i", str(tmp_path / "in.de"),
                 "-o", str(tmp_path / "out.en"), "--no-progress"])
    assert code == 0
    err = capsys.readouterr().err
    assert re.search(r"^translate: 3/3 sent \(100%\), [\d,.]+ sent/s, elapsed \d+s$", err, re.M), err
