"""End to end on the shipped toy task: `mtadapt train recipes/toy.yaml` on the tiny mBART-50
model takes test BLEU (by `mtadapt evaluate`) from about 0 to above 50, the loop's learning
rate follows the schedule's formula, and `mtadapt translate` keeps input order.

The test trains 250 steps at twice the recipe's learning rate (2e-3): measured on 2 CPU
cores, one thread, 24 s of training, test BLEU 74.9 (the recipe's 1e-3 reaches 53.1 at 300
steps, too close to the threshold, and ~100 at 500 steps in twice the time).
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch
from sacrebleu.metrics import BLEU

from mtadapt.cli import main

# one worker runs the whole module: its expensive module-scoped fixture is built once (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_toy_task")

REPO = Path(__file__).resolve().parents[1]
STEPS = 250
PEAK_LR = 2e-3  # 250 steps: test BLEU 74.9 (measured); at the recipe's 1e-3, 300 steps reach 53.1


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A run folder trained on the toy task (one thread: the shared machine is busy)."""
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", str(REPO / "recipes" / "toy.yaml"), f"train.output_dir={run_dir}",
                     f"train.max_steps={STEPS}", f"train.learning_rate={PEAK_LR}", "train.eval_every=0", "train.save_every=0", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return run_dir


def evaluate_json(capsys, *model_args: str, toy_dir: Path) -> dict:
    capsys.readouterr()
    code = main(["evaluate", *model_args, "--src", str(toy_dir / "test.de"), "--ref", str(toy_dir / "test.en"),
                 "--json", "--n-bootstrap", "0", "--no-progress"])
    assert code == 0
    return json.loads(capsys.readouterr().out)["scores"]


def test_training_raises_test_bleu(toy_run, toy_dir, capsys):
    untuned = evaluate_json(capsys, "--model", "tiny:mbart50", "--src-lang", "de_DE", "--tgt-lang", "en_XX", toy_dir=toy_dir)
    tuned = evaluate_json(capsys, "--run", str(toy_run), toy_dir=toy_dir)
    assert untuned["BLEU"]["score"] < 5
    assert tuned["BLEU"]["score"] > 50, tuned
    assert tuned["chrF"]["score"] > 70
    assert tuned["BLEU"]["signature"].startswith("nrefs:1|")
    result = json.loads((toy_run / "result.json").read_text())
    assert result["steps"] == STEPS and result["dev_history"][-1]["step"] == STEPS
    assert result["dev_history"][-1]["bleu"] > 50


def test_logged_learning_rate_follows_linear_schedule(toy_run):
    # toy.yaml: 30 warm-up steps, linear decay to 0 at max_steps (peak PEAK_LR here). A row at
    # step s logs the lr of the next optimizer step, i.e. factor(s).
    peak, warmup = PEAK_LR, 30
    rows = [json.loads(r) for r in (toy_run / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    assert sorted(lrs) == list(range(10, STEPS + 1, 10))
    for step, lr in lrs.items():
        factor = (step + 1) / warmup if step < warmup else (STEPS - step) / (STEPS - warmup)
        assert lr == pytest.approx(peak * factor, rel=1e-9, abs=1e-15), step
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] / 2


def test_translate_keeps_input_order(toy_run, toy_dir, tmp_path):
    sources = (toy_dir / "test.de").read_text(encoding="utf-8").splitlines()
    references = (toy_dir / "test.en").read_text(encoding="utf-8").splitlines()
    order = list(range(len(sources)))
    random.Random(0).shuffle(order)  # lengths interleaved; batches of 7 are sorted by length inside
    (tmp_path / "in.txt").write_text("".join(sources[i] + "\n" for i in order), encoding="utf-8")
    assert len({len(sources[i].split()) for i in order}) > 3
    code = main(["translate", "--run", str(toy_run), "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.txt"),
                 "--batch-size", "7", "--no-progress"])
    assert code == 0
    outputs = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    assert len(outputs) == len(sources)
    shuffled_refs = [references[i] for i in order]
    assert BLEU().corpus_score(outputs, [shuffled_refs]).score > 50
    assert sum(o == r for o, r in zip(outputs, shuffled_refs)) > len(outputs) // 4  # shifted order: ~0


@pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None, reason="ctranslate2 not installed")
def test_ctranslate2_int8_scores_within_1_bleu_of_float32(toy_run, toy_dir, tmp_path, capsys, monkeypatch):
    """`evaluate --engine ctranslate2`: the run merged and converted into the cache per compute
    type; int8 within 1 BLEU of float32. The folder `export` writes gives float32's score, and is
    refused for a run of another base."""
    monkeypatch.setenv("MTADAPT_CACHE", str(tmp_path / "cache"))
    engine = ["--run", str(toy_run), "--engine", "ctranslate2"]
    float32 = evaluate_json(capsys, *engine, "--compute-type", "float32", toy_dir=toy_dir)["BLEU"]["score"]
    int8 = evaluate_json(capsys, *engine, "--compute-type", "int8", toy_dir=toy_dir)["BLEU"]["score"]
    with capsys.disabled():  # shown with -s
        print(f"toy run test BLEU: ctranslate2 float32 {float32:.2f}, int8 {int8:.2f}")
    assert float32 > 50 and abs(int8 - float32) <= 1.0, (float32, int8)
    assert sorted(p.name.rsplit("-", 1)[1] for p in (tmp_path / "cache" / "ctranslate2").iterdir()) == ["float32", "int8"]
    from mtadapt import runs

    loads = []
    real_open = runs.open_for_inference
    monkeypatch.setattr(runs, "open_for_inference", lambda **kw: loads.append(kw) or real_open(**kw))
    again = evaluate_json(capsys, *engine, "--compute-type", "float32", toy_dir=toy_dir)["BLEU"]["score"]
    assert (again, loads) == (float32, [])  # the run's cached conversion, found without loading the model

    exported = tmp_path / "exported"
    assert main(["export", "--format", "ctranslate2", "--run", str(toy_run), "--out", str(exported)]) == 0
    folder = evaluate_json(capsys, *engine, "--model", str(exported), "--compute-type", "float32", toy_dir=toy_dir)
    assert folder["BLEU"]["score"] == float32
    other = tmp_path / "other"  # converted from another base
    assert main(["export", "--format", "ctranslate2", "--model", "tiny:nllb", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["evaluate", *engine, "--model", str(other), "--src", str(toy_dir / "test.de"),
                 "--ref", str(toy_dir / "test.en"), "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and f"CTranslate2 folder {other} was converted from base" in errors[0], errors
    assert "but the run's base has" in errors[0] and "export the run again" in errors[0]
