"""`train.report_to: [tensorboard]` (Accelerate's trackers): the event files hold exactly the
scalars of metrics.jsonl at the same steps, read back with TensorBoard's own reader, and the
resolved config as hyperparameters."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

from mtadapt.cli import main
from mtadapt.train.tracking import hyperparameters, scalars

REPO = Path(__file__).resolve().parents[1]
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="tensorboard not installed (pip install 'mtadapt[track]')")


def test_hyperparameters_are_flat_scalars():
    flat = hyperparameters({"train": {"learning_rate": 1e-3, "report_to": ["tensorboard"], "seed": 0},
                            "data": {"train": {"paths": ["a", "b"]}, "max_sentences": None}, "method": {"settings": {}}})
    assert flat == {"train.learning_rate": 1e-3, "train.report_to": '["tensorboard"]', "train.seed": 0,
                    "data.train.paths": '["a", "b"]', "data.max_sentences": "null", "method.settings": "{}"}
    assert scalars({"step": 5, "loss": 1.5, "lr": 2e-4, "note": "x", "stopped": True}) == {"loss": 1.5, "lr": 2e-4}


@needs_tensorboard
def test_tensorboard_events_hold_the_metrics_rows(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    monkeypatch.chdir(tmp_path)
    code = main(["train", "recipes/toy.yaml", "train.max_steps=12", "train.warmup_steps=2", "train.eval_every=6",
                 "train.save_every=6", "train.log_every=5", "data.max_dev_sentences=8", "train.report_to=[tensorboard]",
                 "--no-progress"])
    assert code == 0
    run = tmp_path / "runs" / "toy"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    events = EventAccumulator(str(run / "tracking"))
    events.Reload()
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in scalars(row).items():
            expected.setdefault(key, []).append((row["step"], value))
    assert {"loss", "lr", "tokens_per_s", "dev_bleu", "dev_chrf", "dev_loss"} <= set(expected)
    assert set(events.Tags()["scalars"]) == set(expected)
    for key, points in expected.items():
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in logged] == [s for s, _ in points], key
        assert [v for _, v in logged] == pytest.approx([v for _, v in points], rel=1e-6), key  # stored as float32
    assert [s for s, _ in expected["dev_bleu"]] == [0, 6, 12] and [s for s, _ in expected["loss"]] == [5, 10, 12]
    (hparams,) = list((run / "tracking").glob("*/hparams.yml"))
    logged = yaml.safe_load(hparams.read_text(encoding="utf-8"))
    assert logged["train.max_steps"] == 12 and logged["train.learning_rate"] == pytest.approx(1e-3)
    assert logged["train.report_to"] == '["tensorboard"]' and logged["model.name_or_path"] == "tiny:mbart50"
    assert not os.environ.get("WANDB_MODE")  # only wandb runs set its offline default


def test_an_unknown_tracker_is_a_recipe_error(tmp_path, capsys):
    code = main(["train", str(REPO / "recipes" / "toy.yaml"), f"train.output_dir={tmp_path / 'r'}", "train.report_to=[tensorbored]"])
    assert code == 2
    err = capsys.readouterr().err
    assert "train.report_to[0]: 'tensorbored' is not one of 'tensorboard', 'wandb', 'mlflow'" in err
