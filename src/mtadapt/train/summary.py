"""What the end of `mtadapt train` says: where the best adapter is, its dev score against
step 0 (the model before training), and the commands that come next. For example (toy LoRA):

    done: 300 steps, 2m53s of training, 3,144 real tokens/s (mean, padding excluded)
    best adapter: runs/toy-lora/best (step 300): dev BLEU 11.17, +11.17 over step 0 (0.00); dev chrF 36.24, ...
    next:
      mtadapt translate --run runs/toy-lora -i input.txt -o output.txt
      mtadapt evaluate --run runs/toy-lora --src test.src --ref test.ref
      mtadapt serve --run runs/toy-lora   # HTTP service (LibreTranslate-compatible and native)
      mtadapt export --format peft --run runs/toy-lora --out peft/
      mtadapt merge --run runs/toy-lora --out merged/
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from mtadapt.config import RunConfig
from mtadapt.progress import format_duration

METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "loss": "loss"}


def _best_row(history: list[dict[str, float]], metric: str, best: float | None) -> dict[str, float] | None:
    """The evaluation that made `best/` (the first trained one with the best score)."""
    trained = [h for h in history if h["step"] > 0]
    return next((h for h in trained if best is not None and h[metric] == best), trained[-1] if trained else None)


def compare_to_start(row: dict[str, float], start: dict[str, float], metric: str) -> str:
    """``dev BLEU 48.10, +35.60 over step 0 (12.50)``, plainly "below step 0" when worse."""
    name = METRIC_NAMES[metric]
    delta = row[metric] - start[metric]
    better = delta < 0 if metric == "loss" else delta > 0
    if delta == 0:
        return f"dev {name} {row[metric]:.2f}, the same as at step 0"
    if better:
        return f"dev {name} {row[metric]:.2f}, {delta:+.2f} over step 0 ({start[metric]:.2f})"
    return f"dev {name} {row[metric]:.2f}, WORSE than step 0 ({start[metric]:.2f}, {delta:+.2f}): training has not helped on dev"


def next_commands(run_dir: Path, config: RunConfig, method_name: str) -> list[str]:
    """The commands that use this run next (multi-pair runs name a direction), shell-quoted:
    each can be pasted as it is, a run folder with spaces included."""
    run = shlex.quote(str(run_dir))
    direction = ""
    if config.data.pairs:
        first = config.data.pair_corpora()[0]
        direction = f" --src-lang {shlex.quote(str(first.src_lang))} --tgt-lang {shlex.quote(str(first.tgt_lang))}"
    lines = [
        f"mtadapt translate --run {run}{direction} -i input.txt -o output.txt",
        f"mtadapt evaluate --run {run}{direction} --src test.src --ref test.ref",
        f"mtadapt serve --run {run}{direction}   # HTTP service (LibreTranslate-compatible and native)",
    ]
    if method_name in ("lora", "prompt") and config.method.adapters == "shared":
        lines.append(f"mtadapt export --format peft --run {run} --out peft/")
    if method_name == "lora" and config.method.adapters == "shared":
        lines.append(f"mtadapt merge --run {run} --out merged/")
    if config.model.name_or_path.startswith("bergamot:") or config.model.name_or_path.endswith((".bin", ".npz")):
        lines.append(f"mtadapt export --format npz --run {run} --out model.npz")
    return lines


def summary_lines(result: Any, config: RunConfig) -> list[str]:
    """The closing lines of `mtadapt train` for a `TrainResult` of `config`."""
    lines = [f"done: {result.steps} steps, {format_duration(result.train_seconds)} of training, "
             f"{result.tokens_per_second:,.0f} real tokens/s (mean, padding excluded)"]
    metric = config.train.metric
    history = result.dev_history or []
    start = next((h for h in history if h["step"] == 0), None)
    best = _best_row(history, metric, result.best_metric)
    if result.best_adapter is not None and best is not None:
        where = f"best adapter: {result.best_adapter} (step {best['step']})"
        if start is None:
            lines.append(f"{where}: dev {METRIC_NAMES[metric]} {best[metric]:.2f} (no step-0 score: train.eval_at_start is off)")
        else:
            shown = [metric] + [m for m in ("bleu", "chrf") if m != metric]
            lines.append(f"{where}: " + "; ".join(compare_to_start(best, start, m) for m in shown))
    else:
        lines.append(f"adapter: {result.final_adapter} (no dev set, so no best adapter)")
    lines.append("next:")
    lines += [f"  {c}" for c in next_commands(result.run_dir, config, config.method.name)]
    return lines
