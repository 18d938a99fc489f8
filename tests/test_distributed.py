"""Two-process data-parallel training on CPU (torchrun, gloo): the ranks see different
batches, yet end with identical weights (gradients are averaged every step), and the
saved `final/` is those weights.

Each rank runs the real loop through a small script that only remembers which model object
the loop trains, so the loop itself carries no test hooks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]

RANK_SCRIPT = '''
"""Train with mtadapt on this rank, then dump this rank's trainable weights."""
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from mtadapt.config import load_recipe
from mtadapt.train import loop
from mtadapt.train.checkpoint import trainable_tensors

captured = {}
apply_method = loop.apply_method


def capture(loaded, *args, **kwargs):  # the module this rank trains (DDP wraps it, same params)
    captured["model"] = loaded.model
    return apply_method(loaded, *args, **kwargs)


loop.apply_method = capture
recipe, out, *overrides = sys.argv[1:]
result = loop.train(load_recipe(recipe, overrides), progress=False)
rank, world = dist.get_rank(), dist.get_world_size()  # fails unless really distributed
save_file(trainable_tensors(captured["model"]), str(Path(out) / f"rank{rank}-of-{world}.safetensors"))
print(f"rank {rank}/{world}: {result.steps} steps")
'''


def test_two_cpu_processes_end_with_identical_weights(tmp_path, tiny_model_dir):
    tiny_model_dir("mbart50")  # build the cached tiny model before two ranks race for it
    script = tmp_path / "rank_weights.py"
    script.write_text(RANK_SCRIPT, encoding="utf-8")
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
        str(REPO / "recipes" / "toy.yaml"), str(tmp_path), f"train.output_dir={run_dir}", "train.max_steps=20",
        "train.warmup_steps=5", "train.eval_every=0", "train.save_every=10", "data.max_dev_sentences=8",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rank 0/2: 20 steps" in done.stdout and "rank 1/2: 20 steps" in done.stdout

    rank0 = load_file(str(tmp_path / "rank0-of-2.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1-of-2.safetensors"))
    final = load_file(str(run_dir / "final" / "adapter.safetensors"))
    assert set(rank0) == set(rank1) == set(final) and len(rank0) > 10
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks differ in {name}"
        assert torch.equal(rank0[name], final[name]), f"final/ differs from the trained weights in {name}"

    # It trained: the weights moved away from the base model's.
    from mtadapt.models.loading import load_model

    base = dict(load_model("tiny:mbart50").model.named_parameters())
    moved = [n for n in rank0 if n in base and not torch.equal(base[n].detach(), rank0[n])]
    assert len(moved) > len(rank0) // 2
    assert (run_dir / "checkpoints" / "step-000020" / "state.json").is_file()  # main rank saved
