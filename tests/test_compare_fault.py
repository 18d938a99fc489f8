"""Fault injection: `mtadapt compare` SIGKILLed at random instants (the whole process group: the
grid and its cell process), then rerun, ends with every cell exactly once and every training
step logged exactly once: nothing lost, nothing duplicated.

The kill instants (a random point of progress plus a random delay) are drawn from a seed (MTADAPT_FAULT_SEED, else a fresh one), which every
failure message names, so a failing instant can be replayed. The slow variant also compares
the resumed grid's scores with an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mtadapt.io import read_lines

MAX_STEPS = 8
BASE = {
    "model": {"name_or_path": "tiny:m2m100"},
    "data": {
        "src_lang": "de", "tgt_lang": "en", "train": {"paths": ["toy:train"]}, "dev": {"paths": ["toy:dev"]},
        "test": {"paths": ["toy:test"], "limit": 10}, "max_tokens": 128, "max_dev_sentences": 6,
    },
    "train": {"max_steps": MAX_STEPS, "warmup_steps": 1, "eval_every": 4, "save_every": 1, "log_every": 1,
              "learning_rate": 3.0e-3, "keep_checkpoints": 1},
    "generation": {"max_length_factor": 1.2},
}
CELLS = [{"name": "baseline", "method": "none"}, {"name": "lora", "method": "lora", "settings": {"rank": 2}}]


def _recipe(root: Path) -> Path:
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(root / "out"), "n_bootstrap": 10, "base": BASE, "cells": CELLS}),
                    encoding="utf-8")
    return path


def _compare(recipe: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, "-m", "mtadapt.cli", "compare", str(recipe), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _run_to_end(recipe: Path, seed: int) -> str:
    process = _compare(recipe)
    log, _ = process.communicate(timeout=600)
    assert process.returncode == 0, f"seed {seed}:\n{log[-4000:]}"
    return log


def _progress(out: Path) -> int:
    """How far the grid is: rows in results.jsonl * 100 + training steps logged by the LoRA cell."""
    done = len(read_lines(out / "results.jsonl")) if (out / "results.jsonl").exists() else 0
    metrics = out / "cells" / "lora" / "metrics.jsonl"
    try:
        steps = sum('"loss"' in line for line in read_lines(metrics)) if metrics.exists() else 0
    except ValueError:  # a line half written: read again next time
        steps = 0
    return done * 100 + steps


def _killed_then_finished(root: Path, seed: int, kills: int) -> tuple[Path, list[str]]:
    """Run the grid `kills` times, each SIGKILLed at a random instant, then once to the end.

    An instant is a random point of progress (the baseline row written, or LoRA step k logged)
    plus a random 0-300 ms, so every kill lands inside the work, at a different moment of it
    (mid-step, mid-checkpoint, mid-evaluation, mid-append)."""
    rng = random.Random(seed)
    recipe, out = _recipe(root), root / "out"
    instants = []
    for _ in range(kills):
        target = rng.choice([100] + [100 + k for k in range(1, MAX_STEPS + 1)])
        jitter = rng.uniform(0.0, 0.3)
        process = _compare(recipe)
        while process.poll() is None and _progress(out) < target:
            time.sleep(0.02)
        time.sleep(jitter)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        instants.append(f"progress {target} + {jitter:.2f} s (reached {_progress(out)})")
    _run_to_end(recipe, seed)
    return out, instants


def _check_nothing_lost_or_duplicated(out: Path, where: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in read_lines(out / "results.jsonl")]
    assert [(r["name"], r["status"]) for r in rows] == [("baseline", "done"), ("lora", "done")], where
    lora = rows[1]
    assert lora["steps"] == MAX_STEPS and [h["step"] for h in lora["dev_history"]] == [4, 8], where
    metrics = [json.loads(line) for line in read_lines(out / "cells" / "lora" / "metrics.jsonl")]
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1, MAX_STEPS + 1)), where  # each step once
    assert [m["step"] for m in metrics if "dev_bleu" in m] == [4, 8], where
    for row in rows:
        cell = out / "cells" / row["name"]
        hyps, refs = read_lines(cell / "test.hyp"), read_lines(cell / "test.ref")
        assert len(hyps) == len(refs) == row["test_sentences"] == 10, where
    table = [line for line in read_lines(out / "report.md") if line.startswith("| baseline") or line.startswith("| lora")]
    assert len(table) == 2, where
    return {r["name"]: r for r in rows}


def _seed() -> int:
    return int(os.environ.get("MTADAPT_FAULT_SEED") or random.SystemRandom().randrange(10**6))


def test_compare_killed_at_random_instants_loses_and_duplicates_nothing(tmp_path, tiny_model_dir):
    tiny_model_dir("m2m100")  # built once here, not raced for by the killed processes
    seed = _seed()
    out, instants = _killed_then_finished(tmp_path, seed, kills=1)
    _check_nothing_lost_or_duplicated(out, f"seed {seed} (MTADAPT_FAULT_SEED={seed}), killed at {instants}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_killed_compare_scores_equal_an_uninterrupted_run(tmp_path, tiny_model_dir, seed):
    tiny_model_dir("m2m100")
    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    _run_to_end(_recipe(tmp_path / "straight"), seed)
    reference = _check_nothing_lost_or_duplicated(tmp_path / "straight" / "out", "uninterrupted")
    out, instants = _killed_then_finished(tmp_path / "killed", seed, kills=4)
    resumed = _check_nothing_lost_or_duplicated(out, f"seed {seed}, killed at {instants}")
    for name in ("baseline", "lora"):
        assert resumed[name]["scores"] == reference[name]["scores"], f"seed {seed}, killed at {instants}"
