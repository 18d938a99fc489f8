"""The fine-tuning loop, on Accelerate: the same code on CPU, one GPU, or many GPUs/nodes
(`accelerate launch` / `torchrun`; DDP, or FSDP/DeepSpeed through Accelerate's config).

    for step in range(start, max_steps):                   # optimizer steps
        for micro in range(grad_accumulation):
            batch = next(batches)                          # token budget (+ max_sentences), length-bucketed
            logits = model(batch.inputs, family.decoder_inputs(model, batch.labels)).logits   # no loss in the model
            loss = label_smoothed_ce(logits, batch.labels) / accumulation
            backward(loss)
        clip(max_grad_norm); optimizer.step(); scheduler.step()
        every log_every: metrics.jsonl row (+ a log line with --no-progress)
        every eval_every: dev BLEU/chrF by generation -> best adapter, early stopping
        every save_every: atomic checkpoint (resumable with the same data order)
    (before step 1, with train.eval_at_start: the dev score of step 0, where curves start)

Throughput is counted in real tokens: source tokens under the attention mask plus target
tokens that are not -100 (padding excluded), over training time only (dev evaluation and
checkpoints excluded), summed over processes. metrics.jsonl gives each row's window
(`tokens_per_s`), the last `SMOOTHING_WINDOWS` windows together (`tokens_per_s_smoothed`)
and the run so far (`tokens_per_s_mean`).

A non-finite loss stops the run with a `TrainingError` before anything of that step is saved,
so the last checkpoint and `best/` stay the last good ones; weights are checked to be finite
before each save. The loop knows nothing of which method made the trainable parameters: it optimises
whatever has `requires_grad`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Collection, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from mtadapt.augment.noise import training_noiser
from mtadapt.config import RunConfig, config_to_dict
from mtadapt.data.batching import LABEL_PAD_ID, collate
from mtadapt.data.filters import LengthFilterConfig
from mtadapt.data.tasks import TaskData, load_task_data
from mtadapt.errors import CheckpointError, TrainingError
from mtadapt.evaluate.dev import evaluate_task
from mtadapt.io import (LOCK_FILES, append_line, atomic_write_json, atomic_write_lines, atomic_write_text, folder_lock,
                        read_jsonl_rows, replace_folder)
from mtadapt.methods import storage
from mtadapt.methods.base import adapter_names, freeze_base
from mtadapt.methods.language_adapters import add_language_adapters, add_shared_adapter
from mtadapt.methods.registry import config_from_dict as method_config_from_dict
from mtadapt.models.families import Family
from mtadapt.models.loading import LoadedModel
from mtadapt.progress import Progress, ProgressMode, eta_seconds, format_duration, progress_mode
from mtadapt.runs import load_base
from mtadapt.train import tracking
from mtadapt.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from mtadapt.train.schedule import build_scheduler


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: The run folder.
        steps: Optimizer steps done.
        final_adapter: Method weights after the last step (`run_dir/final`).
        best_adapter: Weights at the best dev score (`run_dir/best`), when evaluated.
        best_metric: That score.
        dev_history: Every dev evaluation ({"step", "bleu", "chrf", "loss"}), from step 0
            (before training) unless `train.eval_at_start` is off.
        train_seconds: Wall time of the optimisation steps (excluding loading, dev evaluation,
            checkpoints and the final save).
        tokens_per_second: Real (non-pad) source+target tokens per second of training.
        stopped_early: Whether early stopping ended the run.
        pair_distribution: Multi-pair runs: sampling probability of each trained direction.
        pairs_seen: Multi-pair runs: training examples seen per direction (this process).
    """

    run_dir: Path
    steps: int
    final_adapter: Path
    best_adapter: Path | None
    best_metric: float | None
    dev_history: list[dict[str, float]]
    train_seconds: float
    tokens_per_second: float
    stopped_early: bool
    pair_distribution: dict[str, float] | None = None
    pairs_seen: dict[str, int] | None = None


def apply_method(loaded: LoadedModel, name: str, settings: dict[str, Any], adapter_name: str = "default") -> Any:
    """Add the method's parameters to the model and freeze everything else (`storage.add_method`)."""
    method_config = method_config_from_dict(name, dict(settings))
    storage.add_method(loaded.model, method_config, loaded.family.targets, adapter_name=adapter_name, freeze=True)
    return method_config


def check_method_targets(loaded: LoadedModel, config: RunConfig) -> None:
    """Fail at once, not after reading the data, when LoRA `targets` (the one method setting
    that names modules) match no Linear layer of the model.

    Raises:
        ConfigError: naming the patterns and a few of the model's Linear modules.
    """
    if config.method.name == "lora":
        from mtadapt.methods.lora import target_module_names

        target_module_names(loaded.model, method_config_from_dict("lora", dict(config.method.settings)), loaded.family.targets)


def apply_run_method(loaded: LoadedModel, config: RunConfig, task: TaskData) -> list[str]:
    """`config.method` on the run's model: one adapter, or with `method.adapters:
    per_language` one adapter per language of the run (the base frozen), plus one shared
    adapter (`SHARED_ADAPTER`) on every row with `shared+per_language`. Returns the adapter names."""
    if not task.per_language:
        apply_method(loaded, config.method.name, config.method.settings)
        return adapter_names(loaded.model)
    method_config = method_config_from_dict(config.method.name, dict(config.method.settings))
    names = add_language_adapters(loaded.model, method_config, loaded.family.targets, task.languages())
    if config.method.adapters == "shared+per_language":
        names.append(add_shared_adapter(loaded.model, method_config, loaded.family.targets))
    freeze_base(loaded.model)
    return names


def label_smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float, normalization: str = "tokens",
                        fixed_tokens: float = 1.0) -> torch.Tensor:
    """Cross-entropy over target tokens (labels != LABEL_PAD_ID), with label smoothing.

    logits: (batch, tgt_len, vocab); labels: (batch, tgt_len). With l[b, t] each real
    token's loss and m[b, t] = labels != pad:
        tokens:     sum(l) / sum(m)                          (mean over the batch's tokens)
        sentences:  mean_b(sum_t(l[b]) / sum_t(m[b]))          (every sentence weighs the same)
        fixed:      sum(l) / fixed_tokens                      (every token the same, across batches)
    """
    flat = logits.float().reshape(-1, logits.shape[-1])
    if normalization == "tokens":
        return F.cross_entropy(flat, labels.reshape(-1), ignore_index=LABEL_PAD_ID, label_smoothing=smoothing)
    per_token = F.cross_entropy(flat, labels.reshape(-1), ignore_index=LABEL_PAD_ID, label_smoothing=smoothing,
                                reduction="none").reshape(labels.shape)  # (batch, tgt_len), 0 at padding
    if normalization == "fixed":
        return per_token.sum() / fixed_tokens
    if normalization == "sentences":
        counts = (labels != LABEL_PAD_ID).sum(dim=1).clamp(min=1)  # (batch,)
        return (per_token.sum(dim=1) / counts).mean()
    raise ValueError(f"unknown loss normalization {normalization!r}; valid: 'tokens', 'sentences', 'fixed'")


def mean_target_tokens(task: TaskData, config: RunConfig, rank: int, world: int) -> float:
    """Target tokens of an average batch of epoch 0: the constant of 'fixed' loss
    normalization and of 'batch_tokens' learning-rate scaling."""
    batches = task.epoch_batches(config, 0, rank, world)
    tgt = task.train.tgt_ids
    return sum(len(tgt[i]) for b in batches for i in b) / max(1, len(batches))


def forward_inputs(family: Family, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The training forward's inputs: `labels` replaced by the decoder inputs made from them.

    Given `labels`, a seq2seq model computes a loss of its own, a second cross-entropy over
    the vocabulary that the loop throws away (it applies its own, with label smoothing). So
    the loop passes what the model would build from the labels (`Family.decoder_inputs`)
    and `use_cache=False`, which labels imply in a Hugging Face model.
    """
    if "labels" not in batch:
        return batch
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return {**inputs, "decoder_input_ids": family.decoder_inputs(model, batch["labels"]), "use_cache": False}


FUSED_ADAMW_DEVICES = ("cpu", "cuda")
"""Devices with torch's fused AdamW kernel (torch >= 2.4 on CPU)."""


def build_optimizer(params: list[nn.Parameter], learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `params`, fused where torch has the kernel for them.

    A LoRA run optimises many small tensors (two per wrapped layer): the default
    single-tensor AdamW launches ~10 ops per tensor per step, which costs more than the
    arithmetic; the fused kernel updates them all in one call (the 24 tensors of LoRA q,v on
    `tiny:mbart50`: 1.8 -> 0.33 ms a step on CPU), as Seq2SeqTrainer's default
    `adamw_torch_fused` does. The same update rule; results agree within float rounding,
    not bit for bit. A checkpoint keeps the flag: resuming one saved before this continues
    unfused, as it began.
    """
    fused = bool(params) and all(p.is_floating_point() and p.device.type in FUSED_ADAMW_DEVICES for p in params)
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=fused or None)


def _save_method_folder(model: nn.Module, folder: Path, base_name: str) -> Path:
    """Save the method's weights into `folder`, replacing it atomically."""
    names = adapter_names(model)

    def build(tmp: Path) -> None:
        if len(names) > 1:  # per-language adapters: one adapter folder each, `folder/<name>/`
            for name in names:
                storage.save_adapter(model, tmp / name, adapter_name=name, base_model=base_name)
        else:
            storage.save_adapter(model, tmp, base_model=base_name)

    return replace_folder(folder, build)


def _check_finite_weights(params: list[torch.Tensor], step: int, run_dir: Path, what: str) -> None:
    """Refuse to save non-finite trained weights (they would become `best` or the checkpoint).

    Raises:
        TrainingError: naming the step and the last good checkpoint.
    """
    if all(bool(torch.isfinite(p).all()) for p in params):
        return
    raise TrainingError(
        f"step {step}: the trained weights are no longer finite (inf or NaN); {what} not saved. "
        f"{_last_good(run_dir)}; lower train.learning_rate or keep train.max_grad_norm > 0"
    )


def _last_good(run_dir: Path) -> str:
    try:
        last = latest_checkpoint(run_dir)
    except ValueError:
        last = None
    return f"the last good checkpoint is {last} (mtadapt train --resume continues from it)" if last else "no checkpoint was saved yet"


def _batch_stream(task: TaskData, config: RunConfig, start_epoch: int, start_batch: int, rank: int,
                  world: int) -> Iterator[tuple[int, int, list[int]]]:
    """(epoch, position in epoch, batch) from (start_epoch, start_batch) on, forever."""
    epoch, index = start_epoch, start_batch
    while True:
        batches = task.epoch_batches(config, epoch, rank, world)
        for i in range(index, len(batches)):
            yield epoch, i + 1, batches[i]
        epoch, index = epoch + 1, 0


class MetricsLog:
    """metrics.jsonl, and the same scalars to the trackers of `train.report_to` (Accelerate's
    `log`, see `train.tracking`); main process only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int, accelerator: Any = None):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.accelerator = accelerator  # None: no trackers
        if not enabled:
            return
        if resume_step and self.path.exists():  # drop rows logged after the checkpoint
            rows = [r for r in read_jsonl_rows(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_lines(self.path, (json.dumps(r) for r in rows))
        elif not resume_step:
            atomic_write_text(self.path, "")

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_line(self.path, json.dumps(row))
        if self.accelerator is not None:
            self.accelerator.log(tracking.scalars(row), step=row["step"])


RUN_MARKER = "run.yaml"
"""The file that makes a folder a run: `train` writes it before any other file of the run."""


def check_run_folder(run_dir: Path, other_files: Collection[str] = ()) -> None:
    """Refuse to train into a folder that is not empty and holds no run (no `RUN_MARKER`): its
    files named as a run's (result.json, metrics.jsonl, best/...) would be overwritten.

    Args:
        other_files: names a caller keeps in the run folder besides the run (compare's cell.json).

    Raises:
        CheckpointError: names the folder and a few of its entries.
    """
    if not run_dir.exists() or (run_dir / RUN_MARKER).is_file():
        return
    if not run_dir.is_dir():
        raise CheckpointError(f"train.output_dir {run_dir} is a file, not a folder; choose a new or empty folder")
    ignored = set(LOCK_FILES) | set(other_files)
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir() if p.name not in ignored)
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise CheckpointError(f"train.output_dir {run_dir} is not empty and holds no run (no {RUN_MARKER}): {shown}; "
                              "training writes result.json, metrics.jsonl, run.yaml... there: choose a new or empty folder")


def _write_run_files(run_dir: Path, config: RunConfig, task: TaskData) -> None:
    """run.yaml (the resolved config) and data_report.json (what reading kept and dropped, of
    the training and the dev data)."""
    atomic_write_text(run_dir / RUN_MARKER, yaml.safe_dump(config_to_dict(config), sort_keys=False))
    report: dict[str, Any] = {"train": task.train.report.summary()}
    devs = {p.name: p.dev.report.summary() for p in task.pairs if p.dev is not None}
    if task.multi_pair:
        report.update(pairs={p.name: p.train.report.summary() for p in task.trained}, sampling=task.summary())
        print(f"sampling: {task.summary()}")
    if devs:
        report["dev"] = devs if task.multi_pair else next(iter(devs.values()))
    atomic_write_json(run_dir / "data_report.json", report)
    print(f"train data: {task.train.report.summary()}")
    for name, summary in devs.items():
        print(f"dev data{' ' + name if task.multi_pair else ''}: {summary}")


SMOOTHING_WINDOWS = 5
"""Log windows (of `train.log_every` steps each) in `tokens_per_s_smoothed`."""


def _dev_scores(model: nn.Module, task: TaskData, config: RunConfig, main: bool) -> dict[str, float]:
    """Dev scores computed on the main process and shared with every process."""
    from accelerate.utils import broadcast_object_list

    scores = [evaluate_task(model, task, config) if main else None]  # per direction + macro average
    broadcast_object_list(scores)
    return scores[0]


def _dev_line(step: int, scores: dict[str, float]) -> str:
    return f"step {step}: dev BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f}"


def log_line(row: dict[str, Any], max_steps: int, eta: float | None) -> str:
    """The --no-progress line of a metrics row:
    ``step 20/300 | loss 3.214 | lr 2.00e-04 | 1,020 tokens/s (mean 985) | ETA 3m20s``."""
    left = f" | ETA {format_duration(eta)}" if eta is not None and row["step"] < max_steps else ""
    return (f"step {row['step']}/{max_steps} | loss {row['loss']:.3f} | lr {row['lr']:.2e} | "
            f"{row['tokens_per_s_smoothed']:,.0f} tokens/s (mean {row['tokens_per_s_mean']:,.0f}){left}")


def train(config: RunConfig, resume: bool = False, progress: bool | ProgressMode = True,
          other_files: Collection[str] = ()) -> TrainResult:
    """Fine-tune `config.model` with `config.method` on `config.data` (one direction or
    several: `data.pairs`; either way a `TaskData`).

    Args:
        resume: Continue from the run folder's latest checkpoint (same data order) instead
            of starting over. Without a checkpoint it starts from scratch.
        progress: A progress bar (True / "bar": step, loss, tokens/s, ETA), a line per
            `train.log_every` steps on stderr ("log": the CLI's --no-progress), or neither
            (False / "off"). Dev scores are printed in every mode.
        other_files: names the caller keeps in the run folder (see `check_run_folder`).

    The run folder is locked while training (`mtadapt.io.folder_lock`, by the main process).

    Raises:
        FileExistsError: the run folder holds a previous run and `resume` is False.
        CheckpointError: the run folder is not empty and holds no run (`check_run_folder`).
        FolderInUseError: another process is training in the run folder (its PID named).
        CheckpointError: `resume` finds a damaged checkpoint, or one of another method or
            model (run.yaml is then left as it was).
        TrainingError: the loss or the weights became non-finite; the last good checkpoint
            and `best/` are kept.
        DataError: no training pair left, or an empty dev set.
    """
    run_dir = Path(config.train.output_dir)
    check_run_folder(run_dir, other_files)  # before anything is written there, lock file included
    new_folder = not run_dir.exists()
    main = int(os.environ.get("RANK", "0")) == 0  # the process that writes the run (torchrun, accelerate launch)
    try:
        with folder_lock(run_dir, "run folder") if main else nullcontext():
            check_run_folder(run_dir, other_files)  # again, holding it: another process may have written meanwhile
            return _train(config, resume, progress)
    except BaseException:
        if main and new_folder:
            _remove_unused_run_folder(run_dir)
        raise


def _remove_unused_run_folder(run_dir: Path) -> None:
    """A run that failed before writing its run.yaml (a bad LoRA target, unreadable data)
    leaves no folder behind: the one it made holds only the lock's files."""
    try:
        entries = {p.name for p in run_dir.iterdir()}
        if entries <= set(LOCK_FILES):
            for name in entries:
                (run_dir / name).unlink(missing_ok=True)
            run_dir.rmdir()
    except OSError:
        pass  # another process has started there meanwhile: its folder now


def _train(config: RunConfig, resume: bool, progress: bool | ProgressMode) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    t = config.train
    run_dir = Path(t.output_dir)
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if not resume and (run_dir / "checkpoints").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another train.output_dir")
    tracking.offline_defaults(run_dir, list(t.report_to))
    accelerator = Accelerator(mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.grad_accumulation, cpu=not torch.cuda.is_available(),
                              log_with=list(t.report_to) or None, project_dir=str(run_dir))
    set_seed(t.seed)
    main = accelerator.is_main_process
    run_dir.mkdir(parents=True, exist_ok=True)

    loaded = load_base(config)
    check_method_targets(loaded, config)  # before the data is read
    filters = LengthFilterConfig(min_tokens=1, max_tokens=config.data.max_source_tokens, max_length_ratio=config.data.max_length_ratio)
    task = load_task_data(config, loaded, filters)  # every direction with its own codec and dev set
    codec, train_pairs = task.codec, task.train

    # Seed again: loading used the RNG by a varying amount (a tiny model is built on first
    # use, a hub model may initialise missing weights), and new parameters and dropout must
    # not depend on that (a fresh cache otherwise trained differently from a warm one).
    set_seed(t.seed)
    apply_run_method(loaded, config, task)
    model = loaded.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, t.learning_rate, t.weight_decay)
    scheduler = build_scheduler(optimizer, t.schedule, t.warmup_steps, t.max_steps)
    state: dict[str, Any] = {"epoch": 0, "batch_in_epoch": 0, "best": None, "bad_evals": 0, "dev_history": [], "tokens": 0,
                             "seconds": 0.0, "pairs_seen": {p.name: 0 for p in task.trained}}
    step = 0
    if checkpoint is not None:
        saved = load_checkpoint(checkpoint, model, optimizer, scheduler)
        step = saved["step"]
        state.update({k: saved[k] for k in state if k in saved})
        if main:
            print(f"resumed from {checkpoint} at step {step}")
    if main:  # after the checkpoint loaded: a refused resume leaves the run's run.yaml as it was
        _write_run_files(run_dir, config, task)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    if t.report_to:  # the resolved config as hyperparameters; files under <run>/tracking
        accelerator.init_trackers(tracking.TRACKING_DIR, config=tracking.hyperparameters(config_to_dict(config)))
    log = MetricsLog(run_dir, main, step, accelerator if t.report_to else None)
    if task.multi_pair and step == 0:
        summary = task.summary()
        log.write({"step": 0, **{f"sampling_p/{k}": v for k, v in summary["sampling_p"].items()},
                   **{f"train_examples/{k}": v for k, v in summary["train_examples"].items()}})
    higher_better = t.metric != "loss"
    mode = progress_mode(progress) if main else "off"
    if step == 0 and t.eval_at_start and task.has_dev:  # where every dev curve starts: the base
        scores = _dev_scores(unwrapped, task, config, main)
        state["dev_history"].append({"step": 0, **scores})
        log.write({"step": 0, **{f"dev_{k}": v for k, v in scores.items()}})
        if main:
            print(_dev_line(0, scores) + " (before training)", flush=True)

    noiser = training_noiser(config.data, train_pairs)  # data.noise; None when unset
    stream = _batch_stream(task, config, state["epoch"], state["batch_in_epoch"], accelerator.process_index, accelerator.num_processes)
    # 'fixed' loss normalization and 'batch_tokens' lr scaling: relative to an average batch
    mean_tokens = (mean_target_tokens(task, config, accelerator.process_index, accelerator.num_processes)
                   if t.loss_normalization == "fixed" or t.lr_scaling == "batch_tokens" else 1.0)
    model.train()
    bar = Progress(t.max_steps, "train", unit="step", mode="bar" if mode == "bar" else "off", initial=step)
    # window_steps: steps since the last log row; after a resume off a log boundary it is not
    # step % log_every, and dividing by that would misreport the mean loss.
    window_loss, window_tokens, window_steps, window_start = 0.0, 0, 0, time.perf_counter()
    recent: deque[tuple[int, float]] = deque(maxlen=SMOOTHING_WINDOWS)  # (tokens, seconds) per window
    session_start, session_first_step = time.perf_counter(), step  # ETA: this process's wall clock per step
    stopped_early = False
    while step < t.max_steps and not stopped_early:
        step_tokens = 0  # target tokens of this optimizer step (train.lr_scaling)
        for _ in range(t.grad_accumulation):
            epoch, position, indices = next(stream)
            examples = [(train_pairs.src_ids[i], train_pairs.tgt_ids[i]) for i in indices]
            if noiser is not None:  # data.noise: noise this epoch's texts, re-tokenize this batch only
                examples = noiser.tokenized_pairs(train_pairs, indices, epoch, codec)
            batch = collate(examples, codec.pad_id)
            task.count(indices, state["pairs_seen"])
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.accumulate(model), accelerator.autocast(), task.routing(unwrapped, indices):
                out = model(**forward_inputs(loaded.family, unwrapped, batch))
                loss = label_smoothed_loss(out.logits, batch["labels"], t.label_smoothing, t.loss_normalization, mean_tokens)
                accelerator.backward(loss)
                step_tokens += int((batch["labels"] != LABEL_PAD_ID).sum())
                if accelerator.sync_gradients and t.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, t.max_grad_norm)
                if accelerator.sync_gradients and t.lr_scaling == "batch_tokens":  # the schedule's lr x tokens / mean
                    scale = step_tokens / (mean_tokens * t.grad_accumulation)
                    for group in optimizer.param_groups:
                        group["lr"] *= scale
                optimizer.step()
                if accelerator.sync_gradients:  # the scheduler counts optimizer steps, not micro-batches
                    scheduler.step()
                optimizer.zero_grad()
            loss_value = loss.item()
            if not math.isfinite(loss_value):  # nothing of this step is saved: the last checkpoint stays good
                raise TrainingError(
                    f"step {step + 1}: the training loss is {loss_value} (not finite); the run stopped. "
                    f"{_last_good(run_dir)}. Lower train.learning_rate (now {t.learning_rate}), keep "
                    f"train.max_grad_norm > 0 (now {t.max_grad_norm}) or train in float32 (mixed_precision 'no')"
                )
            window_loss += loss_value / t.grad_accumulation
            window_tokens += int(batch["attention_mask"].sum() + (batch["labels"] != LABEL_PAD_ID).sum()) * accelerator.num_processes
        state["epoch"], state["batch_in_epoch"] = epoch, position
        step += 1
        window_steps += 1
        bar.update(1)
        if step % t.log_every == 0 or step == t.max_steps:
            elapsed = time.perf_counter() - window_start
            state["tokens"] += window_tokens
            state["seconds"] += elapsed
            recent.append((window_tokens, elapsed))
            row = {"step": step, "loss": window_loss / window_steps, "lr": scheduler.get_last_lr()[0],
                   "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                   "tokens_per_s_smoothed": sum(n for n, _ in recent) / max(sum(s for _, s in recent), 1e-9),
                   "tokens_per_s_mean": state["tokens"] / max(state["seconds"], 1e-9), "epoch": epoch}
            if task.multi_pair:
                row.update({f"seen/{k}": v for k, v in state["pairs_seen"].items()})
            log.write(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s_smoothed']:.0f}")
            if mode == "log":
                eta = eta_seconds(step - session_first_step, t.max_steps - session_first_step, time.perf_counter() - session_start)
                print(log_line(row, t.max_steps, eta), file=sys.stderr, flush=True)
            window_loss, window_tokens, window_steps, window_start = 0.0, 0, 0, time.perf_counter()
        pause_start = time.perf_counter()  # evaluation and checkpoints are not training time
        if task.has_dev and ((t.eval_every and step % t.eval_every == 0) or step == t.max_steps):
            scores = _dev_scores(unwrapped, task, config, main)
            model.train()
            value = scores[t.metric]
            state["dev_history"].append({"step": step, **scores})
            log.write({"step": step, **{f"dev_{k}": v for k, v in scores.items()}})
            improved = state["best"] is None or (value > state["best"] if higher_better else value < state["best"])
            if improved:
                state["best"], state["bad_evals"] = value, 0
                if main:
                    _check_finite_weights(params, step, run_dir, "best/")
                    _save_method_folder(unwrapped, run_dir / "best", loaded.name_or_path)
            else:
                state["bad_evals"] += 1
                stopped_early = t.early_stopping_patience > 0 and state["bad_evals"] >= t.early_stopping_patience
            if main:
                bar.write(_dev_line(step, scores) + (" (best)" if improved else ""), file=sys.stdout)
        if main and ((t.save_every and step % t.save_every == 0) or step == t.max_steps or stopped_early):
            _check_finite_weights(params, step, run_dir, f"checkpoint step-{step:06d}")
            save_checkpoint(run_dir, step, unwrapped, optimizer, scheduler, state, keep=t.keep_checkpoints)
        accelerator.wait_for_everyone()
        window_start += time.perf_counter() - pause_start
    bar.close()
    final = run_dir / "final"
    if main:
        _check_finite_weights(params, step, run_dir, "final/")
        _save_method_folder(unwrapped, final, loaded.name_or_path)
    accelerator.wait_for_everyone()
    best = run_dir / "best"
    tokens_per_s = state["tokens"] / state["seconds"] if state["seconds"] else 0.0
    result = TrainResult(
        run_dir=run_dir, steps=step, final_adapter=final, best_adapter=best if best.exists() else None,
        best_metric=state["best"], dev_history=state["dev_history"], train_seconds=state["seconds"],
        tokens_per_second=tokens_per_s, stopped_early=stopped_early,
        pair_distribution=task.distribution() if task.multi_pair else None,
        pairs_seen=dict(state["pairs_seen"]) if task.multi_pair else None,
    )
    if main:
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
        # dev scores depend on it: float32 weights, with bf16 autocast when mixed_precision asks
        summary["precision"] = "bfloat16 autocast" if accelerator.mixed_precision == "bf16" else "float32"
        atomic_write_json(run_dir / "result.json", summary)
    if t.report_to:
        accelerator.end_training()
    return result
