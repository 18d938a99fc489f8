"""Experiment tracking as HF users know it: `train.report_to: [tensorboard, wandb, mlflow, ...]`
through Accelerate's tracker API (`Accelerator(log_with=...)`, `init_trackers`, `log`,
`end_training`), not a logger of our own.

What the trackers get is what `metrics.jsonl` holds, row for row:

    init_trackers("tracking", config=hyperparameters(run config))   # once, main process
    for row in metrics.jsonl rows:                                  # loss, lr, tokens/s every
        accelerator.log({k: v for numeric k, v in row}, step=row["step"])  # log_every steps;
                                                                    # dev_bleu/chrf/loss at evals
    end_training()

Offline by default: TensorBoard writes event files under `<run>/tracking/`; wandb runs in
offline mode in the run folder unless WANDB_MODE is set; mlflow writes to `<run>/mlruns`
unless MLFLOW_TRACKING_URI is set. Nothing leaves the machine unless the user says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TRACKING_DIR = "tracking"
"""Sub-folder of the run that Accelerate's file-based trackers write to (project name)."""


def offline_defaults(run_dir: Path, report_to: list[str]) -> None:
    """Keep trackers local unless the user's environment says otherwise."""
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(run_dir))
    if "mlflow" in report_to:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / "mlruns").resolve().as_uri())


def hyperparameters(config: dict[str, Any]) -> dict[str, int | float | str | bool]:
    """The resolved run config flattened to `section.key` scalars (what hparams views take):
    lists and mappings as JSON text, None as "null"."""
    flat: dict[str, int | float | str | bool] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node and prefix.count(".") < 2:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(node, (bool, int, float, str)):
            flat[prefix] = node
        else:
            flat[prefix] = json.dumps(node, sort_keys=True)

    walk(config, "")
    return flat


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numeric fields of a metrics.jsonl row, the step left out (it is the x axis)."""
    return {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
