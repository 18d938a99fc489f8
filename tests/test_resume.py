"""Kill-and-resume: a run SIGKILLed mid-way and resumed ends with exactly the weights of an
uninterrupted run (same data order, optimizer, scheduler and dropout RNG restored); resume
guards and atomic checkpoints.

The training runs are subprocesses of `python -m mtadapt.cli train` on the toy recipe with
one thread each, so both runs reduce in the same order and run side by side on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# one worker runs the whole module: its expensive module-scoped fixture is built once (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_resume")

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "toy.yaml"
MAX_STEPS = 60
# Dev evaluation (generation) every 15 steps lies between checkpoints (every 10): it must
# not disturb the dropout RNG stream that the checkpoints replay. Dropout is on (0.1).
SETTINGS = [f"train.max_steps={MAX_STEPS}", "train.save_every=10", "train.eval_every=15", "train.log_every=10",
            "data.max_dev_sentences=16", "train.keep_checkpoints=2"]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _train_cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mtadapt.cli", "train", str(RECIPE), f"train.output_dir={run_dir}", *SETTINGS,
            "--no-progress", *extra]


def _latest_step(run_dir: Path) -> int:
    pointer = run_dir / "checkpoints" / "latest"
    try:
        return int(pointer.read_text().strip().split("-")[1])
    except (OSError, IndexError, ValueError):
        return -1


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "adapter.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """(uninterrupted run, killed-and-resumed run, kill step); the two run side by side."""
    tiny_model_dir("mbart50")  # build the cached tiny model once, before two processes race for it
    root = tmp_path_factory.mktemp("resume")
    straight, killed = root / "straight", root / "killed"
    reference = subprocess.Popen(_train_cmd(straight), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = subprocess.Popen(_train_cmd(killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while _latest_step(killed) < 20:
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint at step >= 20 within 10 minutes"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    kill_step = _latest_step(killed)
    assert kill_step < MAX_STEPS
    resumed = subprocess.run(_train_cmd(killed, "--resume"), env=_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    out, _ = reference.communicate(timeout=900)
    assert reference.returncode == 0, out[-3000:]
    return straight, killed, kill_step, resumed.stdout


def test_resumed_run_matches_uninterrupted(runs):
    straight, killed, kill_step, stdout = runs
    assert f"at step {kill_step}" in stdout  # it really resumed, from the checkpoint it named
    assert json.loads((killed / "result.json").read_text())["steps"] == MAX_STEPS
    a, b = _final_weights(straight), _final_weights(killed)
    assert set(a) == set(b) and len(a) > 10
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name}: max |diff| {(a[name] - b[name]).abs().max():.3g}"
    # The resumed run's metrics.jsonl is the uninterrupted one's (rows after the kill dropped).
    rows = lambda d: [{k: v for k, v in json.loads(r).items() if not k.startswith("tokens_per_s")}  # noqa: E731
                      for r in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(killed) == rows(straight)


def test_checkpoints_are_atomic_and_pruned(runs):
    straight, killed, _, _ = runs
    for run in (straight, killed):
        root = run / "checkpoints"
        assert not list(run.rglob("*.tmp")), "a .tmp folder or file was left after a completed save"
        assert (root / "latest").read_text().strip() == f"step-{MAX_STEPS:06d}"
        assert sorted(p.name for p in root.glob("step-*")) == ["step-000050", "step-000060"]  # keep_checkpoints=2
        for name in ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"):
            assert (root / f"step-{MAX_STEPS:06d}" / name).is_file()


def test_resuming_a_finished_run_changes_nothing(runs):
    straight, _, _, _ = runs
    before = _final_weights(straight)
    done = subprocess.run(_train_cmd(straight, "--resume"), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _final_weights(straight)
    assert all(torch.equal(before[k], after[k]) for k in before)
    straight_result = json.loads((straight / "result.json").read_text())
    assert straight_result["steps"] == MAX_STEPS and straight_result["precision"] == "float32"  # recorded, whatever the host


def test_new_run_in_existing_folder_needs_resume(runs, capsys):
    from mtadapt.cli import main

    straight, _, _, _ = runs
    code = main(["train", str(RECIPE), f"train.output_dir={straight}", "train.max_steps=50", "--no-progress"])
    assert code != 0
    assert "--resume" in capsys.readouterr().err


def test_logged_loss_after_resume_off_a_log_boundary(tmp_path, monkeypatch):
    """Resumed at step 15 with log_every=10, the row at step 20 is the mean of steps 16-20,
    exactly what an uninterrupted run logging every 5 steps reports there.

    The first run also builds the tiny model (a cold cache) in-process, the others load it:
    the loop's dropout RNG must not depend on how much RNG loading used.
    """
    from mtadapt.cli import main

    monkeypatch.setenv("MTADAPT_CACHE", str(tmp_path / "cold-cache"))
    common = [str(RECIPE), "data.dev=null", "train.schedule=constant", "train.warmup_steps=0"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *common, f"train.output_dir={tmp_path / 'a'}", "train.max_steps=20", "train.log_every=5", "--no-progress"]) == 0
        b = [*common, f"train.output_dir={tmp_path / 'b'}", "train.log_every=10", "train.save_every=15"]
        assert main(["train", *b, "train.max_steps=15", "--no-progress"]) == 0
        assert main(["train", *b, "train.max_steps=20", "--resume", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    loss_at = lambda run: {r["step"]: r["loss"] for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())}  # noqa: E731
    assert sorted(loss_at("b")) == [10, 15, 20]
    assert loss_at("b")[20] == pytest.approx(loss_at("a")[20], rel=1e-9)


def test_resume_is_exact_with_lora_dropout_and_grad_accumulation(tmp_path):
    """Stopped at step 8 and resumed to 16 equals 16 steps straight: LoRA (with its own
    dropout) and two micro-batches per optimizer step."""
    from mtadapt.cli import main

    common = [str(RECIPE), "data.dev=null", "train.schedule=constant", "train.warmup_steps=0", "train.grad_accumulation=2",
              "method.name=lora", "method.settings={rank: 4, dropout: 0.1}"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *common, f"train.output_dir={tmp_path / 'a'}", "train.max_steps=16", "--no-progress"]) == 0
        b = [*common, f"train.output_dir={tmp_path / 'b'}", "train.save_every=8"]
        assert main(["train", *b, "train.max_steps=8", "--no-progress"]) == 0
        assert main(["train", *b, "train.max_steps=16", "--resume", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    a, b = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    assert set(a) == set(b) and all(".lora_" in name for name in a) and len(a) >= 8
    for name in a:
        assert torch.equal(a[name], b[name]), name
