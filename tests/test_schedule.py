"""Learning-rate schedules against their closed forms, and the training loss against a plain
per-token reference."""

from __future__ import annotations

import math

import pytest
import torch

from mtadapt.train.loop import label_smoothed_loss
from mtadapt.train.schedule import build_scheduler, lr_factor

PEAK = 2e-3


def reference_lr(schedule: str, warmup: int, total: int, step: int) -> float:
    """lr of optimizer step `step` (0-based), written out from the formulas."""
    if step < warmup:
        return PEAK * (step + 1) / warmup
    if schedule == "linear":
        return PEAK * max(0.0, (total - step) / (total - warmup))
    if schedule == "inverse_sqrt":  # Vaswani et al.: d^-0.5 * min(s^-0.5, s * w^-1.5), s 1-based, peak at s = w
        s = step + 1
        return PEAK * min(s**-0.5, s * warmup**-1.5) / warmup**-0.5
    return PEAK


@pytest.mark.parametrize("schedule", ["linear", "inverse_sqrt", "constant"])
@pytest.mark.parametrize("warmup,total", [(10, 50), (1, 7), (30, 30)])
def test_scheduler_follows_formula(schedule, warmup, total):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=PEAK)
    scheduler = build_scheduler(optimizer, schedule, warmup, total)
    seen = []
    for step in range(total):  # the lr the optimizer uses at each step, as in the loop
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [reference_lr(schedule, warmup, total, s) for s in range(total)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert max(seen) == pytest.approx(PEAK)  # warm-up reaches the peak
    if schedule == "linear":
        assert seen[-1] == pytest.approx(PEAK / max(1, total - warmup))  # one step above zero at the end


def test_no_warmup_starts_at_peak():
    for schedule in ("linear", "inverse_sqrt", "constant"):
        assert lr_factor(schedule, 0, 100)(0) == 1.0


def test_unknown_schedule_names_valid_ones():
    with pytest.raises(ValueError, match="'linear', 'inverse_sqrt', 'constant'"):
        lr_factor("cosine", 10, 100)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothed_loss_matches_plain_reference(smoothing):
    torch.manual_seed(0)
    batch, length, vocab = 3, 5, 11
    logits = torch.randn(batch, length, vocab, dtype=torch.float64)
    labels = torch.randint(0, vocab, (batch, length))
    labels[0, 3:] = -100  # padding is ignored
    labels[2, 1:] = -100
    # Plain: for each real target token, (1 - e) * -log p[y] + e * mean over v of -log p[v].
    total, count = 0.0, 0
    for b in range(batch):
        for t in range(length):
            y = int(labels[b, t])
            if y == -100:
                continue
            logp = [logits[b, t, v].item() - math.log(sum(math.exp(x) for x in logits[b, t].tolist())) for v in range(vocab)]
            total += (1 - smoothing) * -logp[y] + smoothing * -sum(logp) / vocab
            count += 1
    loss = label_smoothed_loss(logits, labels, smoothing)
    assert loss.item() == pytest.approx(total / count, rel=1e-6)
    assert count == 5 + 3 + 1


def test_label_smoothed_loss_gradient_flows_only_through_real_tokens():
    logits = torch.randn(2, 4, 7, requires_grad=True)
    labels = torch.tensor([[1, 2, -100, -100], [3, -100, -100, -100]])
    label_smoothed_loss(logits, labels, 0.1).backward()
    assert logits.grad[0, 2:].abs().sum() == 0 and logits.grad[1, 1:].abs().sum() == 0
    assert logits.grad[0, :2].abs().sum() > 0
