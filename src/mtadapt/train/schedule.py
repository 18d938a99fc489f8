"""Learning-rate schedules: linear warm-up, then linear decay, inverse square root, or constant.

    lr(step) = peak * factor(step), step counted in optimizer steps from 0:
      warm-up:       factor = (step + 1) / warmup                     for step < warmup
      linear:        factor = max(0, (total - step) / (total - warmup))
      inverse_sqrt:  factor = sqrt(warmup / (step + 1))               (Vaswani et al.)
      constant:      factor = 1
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def lr_factor(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at each optimizer step.

    Raises:
        ValueError: unknown schedule (names the valid ones).
    """
    if schedule not in ("linear", "inverse_sqrt", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}; valid: 'linear', 'inverse_sqrt', 'constant'")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
        if schedule == "inverse_sqrt":
            return math.sqrt(max(1, warmup_steps) / (step + 1))
        return 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, warmup_steps, total_steps))
