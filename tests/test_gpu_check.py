"""benchmarks/gpu_check.py cannot rot before a GPU is lent: its --tiny run (every part, toy
sizes, the CPU) prints every part ok and its ratio lines; it never picks a GPU unless asked;
and a part that fails is one line while the others go on."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"

pytest.importorskip("peft")


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env() -> dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_NUM_THREADS", "1")  # a shared 2-core machine: no oversubscription
    return env


def test_tiny_run_prints_every_part_and_its_ratios(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--steps", "5", "--keep-logs", str(tmp_path / "logs")],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-3000:]}"
    for pattern in [
        r"^machine: .*torch ", r"; device cpu$",
        *(rf"^{row}: ok: [\d,]+ real tokens/s over 5 steps" for row in ("mtadapt_lora", "mtadapt_full", "hf_lora", "hf_full")),
        r"^lora: mtadapt / HF, real tokens/s \d+\.\d\dx, peak RSS MiB \d+\.\d\dx$",
        r"^full: mtadapt / HF, real tokens/s \d+\.\d\dx, peak RSS MiB \d+\.\d\dx$",
        r"^translate: ok: float32 [\d,.]+ sent/s .*, bfloat16 [\d,.]+ sent/s .*, 16 sentences$",
        r"^translate: bfloat16 / float32, sentences/s \d+\.\d\dx$",
        r"^serve: ok in [\d.]+ s: ready in [\d.]+ s \(\w+\), 8 concurrent requests \(4 to the LoRA adapter\)",
        r"^summary: 7 of 7 parts ok in \d+ s$",
    ]:
        assert re.search(pattern, out, re.M), f"{pattern!r} not in:\n{out}"
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {
        "mtadapt_lora+mtadapt_full+hf_lora+hf_full+translate.log", "serve.log"}


def test_the_gpu_only_when_asked(monkeypatch, capsys):
    module = _script()
    # mtadapt trains and serves on any GPU it sees: the children of a CPU run see none
    assert module.child_env(argparse.Namespace(device="cpu"))["CUDA_VISIBLE_DEVICES"] == ""
    assert module.child_env(argparse.Namespace(device="cuda")).get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--help"])
    with pytest.raises(SystemExit):
        module.main()
    assert "--device {cpu,cuda}" in capsys.readouterr().out


def test_a_failing_part_is_one_line(tmp_path):
    """A part whose process fails (here: no model in its work folder) reports one line; the
    parts after it in the same process still run and report theirs."""
    module = _script()
    args = argparse.Namespace(device="cpu", steps=2, batch_size=2, lr=1e-4, warmup_steps=1, precision="no",
                              translate_batch_size=2, tiny=True)
    outcomes = module.run_child(args, ["translate", "mtadapt_lora"], tmp_path, module.child_env(args), timeout=120)
    assert set(outcomes) == {"translate", "mtadapt_lora"}
    assert all(isinstance(o, str) and "\n" not in o for o in outcomes.values()), outcomes
    for part in ("translate", "mtadapt_lora"):
        assert outcomes[part] == f"ModelError: model folder {tmp_path / 'model'} does not exist", outcomes
