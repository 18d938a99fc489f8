"""Atomic, pickle-free training checkpoints, and resuming from the latest one.

A checkpoint is a folder

    checkpoints/step-000200/
        trainable.safetensors   parameters with requires_grad (what the method trains)
        optimizer.safetensors   AdamW moments, keyed state.<param index>.<name>
        state.json              step, epoch, batch position, best metric, scheduler state,
                                optimizer param_groups, counters
        rng.safetensors         torch CPU (and CUDA) generator states: dropout replays exactly

written as `step-000200.tmp/` and renamed into place, then `checkpoints/latest` is replaced
(write + os.replace) to name it. A run killed at any instant leaves either the previous
complete checkpoint or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

LATEST = "latest"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` atomically and prune all but the newest `keep`."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f"step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_tensors(model), str(tmp / "trainable.safetensors"))
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    save_file(rng, str(tmp / "rng.safetensors"))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    payload = {"step": step, "optimizer": opt_meta, "scheduler": sched, **state}
    (tmp / "state.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(root / LATEST, final.name)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    folder = run_dir / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / "state.json").exists() else None


def load_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore trainable weights, optimizer, scheduler and RNG; return the saved state.

    Raises:
        ValueError: the checkpoint's trainable parameters do not match the model's.
    """
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    tensors = load_file(str(folder / "trainable.safetensors"))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != set(params):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise ValueError(
            f"{folder}: checkpoint does not match this run's trainable parameters "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); was the method or model changed?"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name])
    optimizer.load_state_dict(_optimizer_state(load_file(str(folder / "optimizer.safetensors")), state["optimizer"]))
    # state.json leaves out `lr_lambdas` (closures, not JSON); LambdaLR.load_state_dict pops
    # that key, so give it back as "nothing to restore" (None per lambda), or resume fails.
    scheduler.load_state_dict({"lr_lambdas": [None] * len(getattr(scheduler, "lr_lambdas", [])), **state["scheduler"]})
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return state
