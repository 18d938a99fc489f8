"""mtadapt against transformers' Seq2SeqTrainer + PEFT LoRA, end to end, side by side in one run.

The same tiny mBART-50 model (`tiny:mbart50`, the same weights), the same LoRA (r=8,
alpha=16, no dropout, q_proj and v_proj of every attention incl. cross-attention), the same
corpus, epochs, peak learning rate and schedule (linear, with warm-up), AdamW, gradient
clipping at 1.0, no label smoothing (run_translation.py's default):

    corpus: the toy task (de -> en) with lengths spread the way real text spreads them:
            each training pair is 1-4 consecutive toy pairs joined (1: 40%, 2: 30%, 3: 20%,
            4: 10%), so sentences run from ~5 to ~40 words; dev: the 100 toy dev sentences
    HF default:        Seq2SeqTrainer(get_peft_model(model, LoraConfig(...)), batch of --batch-size
                       sentences, DataCollatorForSeq2Seq: padded per random batch), as
                       run_translation.py sets it up; group_by_length off (its default)
    HF group_by_length: the same with group_by_length=True (megabatches sorted by length)
    mtadapt:           `mtadapt train` with method lora, token-budget length-bucketed batches;
                       the budget is set so that an epoch has as many steps as HF's

Each row runs in its own fresh process (peak RSS is that process's ru_maxrss: imports, model,
data, training), the rows in turn (--rounds repeats them in reverse order to bracket drift).
Reported: wall time of the training call, real (non-pad) source + target tokens per second of
its steps (HF: `train_runtime`, from the first step on; mtadapt: `tokens_per_second`, the steps
without the final save), peak RSS, and final dev BLEU (greedy, the same mtadapt generation path
for every row). On a shared machine wall time follows the other jobs' load more than the code,
so each row also gives the CPU seconds of its whole training call (one thread: the work done)
and real tokens per CPU second; mtadapt's call also loads the model, reads and tokenizes the
data and saves the final adapter and checkpoint inside it, so that ratio leans against mtadapt.

    python benchmarks/vs_hf_trainer.py [--train-pairs 3000] [--epochs 3] [--batch-size 16] [--lr 3e-3] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mtadapt.evaluate.precision import describe_machine

REPO = Path(__file__).resolve().parents[1]
SRC_LANG, TGT_LANG = "de_DE", "en_XX"
ROWS = ("hf_default", "hf_group_by_length", "mtadapt")


def write_corpus(out: Path, n: int, seed: int) -> None:
    """train.de/train.en: n pairs of 1-4 joined toy pairs; dev.de/dev.en: the toy dev set."""
    from mtadapt.io import iter_lines
    from mtadapt.toy import toy_corpus_dir

    toy = toy_corpus_dir()
    de, en = list(iter_lines(toy / "train.de")), list(iter_lines(toy / "train.en"))
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        k = rng.choices((1, 2, 3, 4), weights=(4, 3, 2, 1))[0]
        start = rng.randrange(len(de) - k)
        src.append(" ".join(de[start : start + k]))
        tgt.append(" ".join(en[start : start + k]))
    for name, lines in (("train.de", src), ("train.en", tgt), ("dev.de", list(iter_lines(toy / "dev.de"))),
                        ("dev.en", list(iter_lines(toy / "dev.en")))):
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dev_bleu(model, codec, data: Path) -> float:
    import sacrebleu

    from mtadapt.evaluate.generation import GenerationConfig, translate
    from mtadapt.io import iter_lines

    hyps = translate(model, codec, list(iter_lines(data / "dev.de")), GenerationConfig(batch_size=32))
    return sacrebleu.corpus_bleu(hyps, [list(iter_lines(data / "dev.en"))]).score


def tokenized(codec, data: Path, split: str) -> tuple[list[list[int]], list[list[int]]]:
    from mtadapt.io import iter_lines

    return (codec.encode_sources(list(iter_lines(data / f"{split}.de"))),
            codec.encode_targets(list(iter_lines(data / f"{split}.en"))))


def steps_per_epoch_of_budget(codec, data: Path, max_tokens: int) -> int:
    from mtadapt.data.batching import bucketed_batches

    src, tgt = tokenized(codec, data, "train")
    return len(bucketed_batches([len(s) for s in src], [len(t) for t in tgt], max_tokens, seed=0, epoch=0))


def mtadapt_budget(codec, data: Path, steps_per_epoch: int) -> int:
    """The smallest token budget whose bucketed epoch has at most `steps_per_epoch` batches."""
    lo, hi = 16, 1 << 16
    while lo < hi:
        mid = (lo + hi) // 2
        if steps_per_epoch_of_budget(codec, data, mid) <= steps_per_epoch:
            hi = mid
        else:
            lo = mid + 1
    return lo


def run_hf(args: argparse.Namespace, data: Path, group_by_length: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from mtadapt.models.loading import load_model

    loaded = load_model("tiny:mbart50")
    codec = loaded.codec(SRC_LANG, TGT_LANG)
    src, tgt = tokenized(codec, data, "train")  # what tokenizer(src, text_target=tgt) gives, via the same codec
    features = [{"input_ids": s, "attention_mask": [1] * len(s), "labels": t} for s, t in zip(src, tgt)]
    real_tokens = args.epochs * sum(len(s) + len(t) for s, t in zip(src, tgt))
    torch.manual_seed(args.seed)
    model = get_peft_model(loaded.model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                                    task_type="SEQ_2_SEQ_LM"))
    training = Seq2SeqTrainingArguments(
        output_dir=str(data / f"hf-{group_by_length}"), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        num_train_epochs=args.epochs, lr_scheduler_type="linear", warmup_steps=args.warmup_steps, weight_decay=0.0,
        max_grad_norm=1.0, label_smoothing_factor=0.0, save_strategy="no",
        # transformers 5: group_by_length=True became train_sampling_strategy="group_by_length"
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        eval_strategy="no", logging_steps=50, report_to=[], seed=args.seed, use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, model=model, label_pad_token_id=-100)
    trainer = Seq2SeqTrainer(model=model, args=training, train_dataset=features, data_collator=collator)
    before = rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    out = trainer.train()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    return {"wall_s": wall, "cpu_s": cpu, "train_s": out.metrics["train_runtime"], "steps": out.global_step,
            "tokens_per_s": real_tokens / out.metrics["train_runtime"], "tokens_per_cpu_s": real_tokens / cpu,
            "rss_before_train_mib": before,
            "peak_rss_mib": rss_mib(), "bleu": dev_bleu(model, codec, data)}


def run_mtadapt(args: argparse.Namespace, data: Path) -> dict:
    from mtadapt.config import config_from_dict
    from mtadapt.models.loading import load_model
    from mtadapt.runs import open_for_inference
    from mtadapt.train.loop import train

    codec = load_model("tiny:mbart50").codec(SRC_LANG, TGT_LANG)
    hf_steps = -(-args.train_pairs // args.batch_size)  # HF: ceil(N / batch) steps an epoch
    budget = mtadapt_budget(codec, data, hf_steps)
    per_epoch = steps_per_epoch_of_budget(codec, data, budget)
    config = config_from_dict({
        "model": {"name_or_path": "tiny:mbart50"},
        "data": {"src_lang": SRC_LANG, "tgt_lang": TGT_LANG, "max_tokens": budget, "max_dev_sentences": 100,
                 "train": {"paths": [str(data / "train.de"), str(data / "train.en")]},
                 "dev": None, "test": None},  # dev BLEU after training, as for HF: no evaluation inside the timed call
        "method": {"name": "lora", "settings": {"rank": 8, "alpha": 16.0, "dropout": 0.0, "targets": "default"}},
        "train": {"output_dir": str(data / "mtadapt-run"), "max_steps": args.epochs * per_epoch, "learning_rate": args.lr,
                  "warmup_steps": args.warmup_steps, "schedule": "linear", "label_smoothing": 0.0, "max_grad_norm": 1.0,
                  "eval_every": 0, "save_every": 0, "log_every": 50, "seed": args.seed},
    })
    real_tokens = args.epochs * sum(len(s) + len(t) for s, t in zip(*tokenized(codec, data, "train")))
    before = rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = train(config, progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    loaded, codec = open_for_inference(model="tiny:mbart50", adapters=[str(result.final_adapter)], src_lang=SRC_LANG, tgt_lang=TGT_LANG)
    return {"wall_s": wall, "cpu_s": cpu, "train_s": result.train_seconds, "steps": result.steps,
            "tokens_per_s": result.tokens_per_second, "tokens_per_cpu_s": real_tokens / cpu,
            "rss_before_train_mib": before, "peak_rss_mib": rss_mib(), "bleu": dev_bleu(loaded.model, codec, data),
            "max_tokens": budget}


def machine() -> str:
    return f"{describe_machine()}; rows run with {os.environ['OMP_NUM_THREADS']} thread(s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-pairs", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="HF sentences per batch (mtadapt: the same steps per epoch)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every row (1: no oversubscription on a shared machine)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the rows, every other round in reverse order")
    parser.add_argument("--row", choices=ROWS, help=argparse.SUPPRESS)  # a child process: one row
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        data = Path(args.data)
        result = run_mtadapt(args, data) if args.row == "mtadapt" else run_hf(args, data, args.row == "hf_group_by_length")
        print("RESULT " + json.dumps(result))
        return
    warmup = min(args.warmup_steps, args.epochs * -(-args.train_pairs // args.batch_size) // 5)
    if warmup != args.warmup_steps:
        print(f"warm-up {args.warmup_steps} steps is more than a fifth of the run: {warmup} steps")
        args.warmup_steps = warmup
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the children: the same threads for every row
    print(f"machine: {machine()}")
    print(f"{args.train_pairs} pairs x {args.epochs} epochs, HF batch {args.batch_size}, lr {args.lr}, warmup {args.warmup_steps}")
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    results: dict[str, list[dict]] = {row: [] for row in ROWS}
    with tempfile.TemporaryDirectory(prefix="vs-hf-") as tmp:
        data = Path(tmp)
        write_corpus(data, args.train_pairs, args.seed)
        for r in range(args.rounds):
            for row in ROWS if r % 2 == 0 else ROWS[::-1]:
                command = [sys.executable, __file__, "--row", row, "--data", str(data), "--train-pairs", str(args.train_pairs),
                           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                           "--warmup-steps", str(args.warmup_steps), "--seed", str(args.seed)]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"{row} failed:\n{done.stderr[-4000:]}")
                result = json.loads(next(line for line in done.stdout.split("\n") if line.startswith("RESULT "))[7:])
                result["load"] = os.getloadavg()[0]
                results[row].append(result)
                shutil.rmtree(data / "mtadapt-run", ignore_errors=True)  # train() refuses a used run folder
                print(f"round {r + 1} {row}: {json.dumps(result)}", flush=True)
    print("\n| row | steps | wall s | CPU s | real tokens/s | real tokens/CPU s | peak RSS MiB | dev BLEU |")
    print("|---|---|---|---|---|---|---|---|")
    for row in ROWS:
        for x in results[row]:
            print(f"| {row} | {x['steps']} | {x['wall_s']:.1f} | {x['cpu_s']:.1f} | {x['tokens_per_s']:,.0f} | "
                  f"{x['tokens_per_cpu_s']:,.0f} | {x['peak_rss_mib']:.0f} | {x['bleu']:.2f} |")
    best = {row: max(x["tokens_per_s"] for x in results[row]) for row in ROWS}
    best_cpu = {row: max(x["tokens_per_cpu_s"] for x in results[row]) for row in ROWS}
    rss = {row: max(x["peak_rss_mib"] for x in results[row]) for row in ROWS}
    print(f"\nmtadapt / HF default, real tokens/s: {best['mtadapt'] / best['hf_default']:.2f}x; "
          f"/ HF group_by_length: {best['mtadapt'] / best['hf_group_by_length']:.2f}x (best of {args.rounds} round(s))")
    print(f"mtadapt / HF default, real tokens per CPU second: {best_cpu['mtadapt'] / best_cpu['hf_default']:.2f}x; "
          f"/ HF group_by_length: {best_cpu['mtadapt'] / best_cpu['hf_group_by_length']:.2f}x")
    print(f"peak RSS mtadapt {rss['mtadapt']:.0f} MiB, HF default {rss['hf_default']:.0f} MiB, "
          f"group_by_length {rss['hf_group_by_length']:.0f} MiB; load average while running: "
          f"{', '.join(format(x['load'], '.1f') for row in ROWS for x in results[row])}")


if __name__ == "__main__":
    main()
