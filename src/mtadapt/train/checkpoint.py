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
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mtadapt.errors import CheckpointError
from mtadapt.io import atomic_write_json, atomic_write_text, atomic_write_with

LATEST = "latest"
_STEP_FOLDER = re.compile(r"^step-\d{6,}$")


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
    # through io: safetensors alone would leave its files 0600, whatever the umask
    tensors = trainable_tensors(model)
    atomic_write_with(tmp / "trainable.safetensors", lambda path: save_file(tensors, str(path)))
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    atomic_write_with(tmp / "optimizer.safetensors", lambda path: save_file(opt_tensors, str(path)))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{i}"] = s
    atomic_write_with(tmp / "rng.safetensors", lambda path: save_file(rng, str(path)))
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    payload = {"step": step, "optimizer": opt_meta, "scheduler": sched, **state}
    atomic_write_json(tmp / "state.json", payload)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(root / LATEST, final.name)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint `checkpoints/latest` names, or None when the run has saved none yet.

    Raises:
        CheckpointError: `latest` is unreadable or names no complete checkpoint folder
            (resuming would silently start over and overwrite the run's later files).
    """
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{pointer} is unreadable ({err}); it should hold a folder name such as step-000200") from None
    folder = pointer.parent / name
    if not _STEP_FOLDER.match(name):
        found = sorted(p.name for p in pointer.parent.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
        raise CheckpointError(
            f"{pointer} holds {name[:40]!r}, not a checkpoint name such as step-000200; checkpoints present: "
            f"{', '.join(found) or 'none'} (write one of them into {pointer} to resume from it)"
        )
    if not (folder / "state.json").is_file():
        raise CheckpointError(f"{pointer} names {name}, but {folder}/state.json does not exist; the checkpoint is missing or incomplete")
    return folder


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is damaged (truncated or not safetensors: {err})") from None


def load_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore trainable weights, optimizer, scheduler and RNG; return the saved state.

    Raises:
        CheckpointError: a damaged or missing file (named), or trainable parameters that do
            not match the model's (another method or model).
    """
    state_file = folder / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        int(state["step"]), state["optimizer"], state["scheduler"]  # noqa: B018 (the keys resuming needs)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{state_file} is damaged ({type(err).__name__}: {err})") from None
    tensors = _load_tensors(folder / "trainable.safetensors")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != set(params):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise CheckpointError(
            f"{folder}: checkpoint does not match this run's trainable parameters "
            f"(missing {missing[:3]}, unexpected {extra[:3]}); was the method or model changed?"
        )
    shapes = [f"{n} {tuple(tensors[n].shape)} != {tuple(p.shape)}" for n, p in params.items() if tensors[n].shape != p.shape]
    if shapes:
        raise CheckpointError(f"{folder}: checkpoint shapes differ from this run's parameters ({'; '.join(shapes[:3])}); were the method settings changed?")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name])
    optimizer.load_state_dict(_optimizer_state(_load_tensors(folder / "optimizer.safetensors"), state["optimizer"]))
    # state.json leaves out `lr_lambdas` (closures, not JSON); LambdaLR.load_state_dict pops
    # that key, so give it back as "nothing to restore" (None per lambda), or resume fails.
    scheduler.load_state_dict({"lr_lambdas": [None] * len(getattr(scheduler, "lr_lambdas", [])), **state["scheduler"]})
    rng = _load_tensors(folder / "rng.safetensors")
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return state
