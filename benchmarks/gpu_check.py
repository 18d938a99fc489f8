"""A lent GPU's check, in one run of under 8 minutes: mtadapt's training loop, translation and
server on a randomly initialised model of mBART-large-50's shape, side by side with Hugging
Face's Seq2SeqTrainer + PEFT.

    python benchmarks/gpu_check.py --device cuda     # the GPU (never chosen without this flag)
    python benchmarks/gpu_check.py --tiny            # toy sizes on the CPU: the smoke test, < 1 min

Parts, each in a process of its own (the server: its own `mtadapt serve`), so that one that
fails, runs out of memory or crashes prints one line and the others still run (--tiny: the
training and translate parts share one process, each still in its own try/except, to save the
imports); a summary closes the run, and parts that would pass --time-limit are skipped:

    build          an MBartForConditionalGeneration of mBART-large-50's shape (12+12 layers,
                   d_model 1024, ffn 4096, 16 heads, vocabulary 250,054), seed 0, float32,
                   saved with tiny:mbart50's tokenizer (its ids are a few hundred of the 250,054:
                   every matrix, the output layer included, is the full shape's)
    mtadapt_lora   `mtadapt.train.loop.train`: LoRA r=8 alpha=16 on q,v (self + cross attention)
    mtadapt_full   the same loop, full fine-tuning
    hf_lora        Seq2SeqTrainer + PEFT LoRA of the same r, alpha and modules, their defaults
                   otherwise (random batches of --batch-size sentences padded per batch)
    hf_full        Seq2SeqTrainer, full fine-tuning
    translate      `mtadapt.inference.generation.translate_ids`, greedy, float32 then bfloat16
    serve          `mtadapt serve` on the device (the device's default precision), concurrent
                   requests to the base and to mtadapt_lora's adapter

Training, every row: --steps optimizer steps on the same --steps x --batch-size pairs (toy
pairs joined to 7-70 tokens), bf16 autocast with float32 weights (mixed_precision "bf16";
Seq2SeqTrainingArguments(bf16=True)), AdamW at the same learning rate and warm-up; mtadapt
batches --batch-size length-sorted sentences (data.max_sentences). Reported: real (non-pad)
source + target tokens per second of the training steps (mtadapt: `tokens_per_second`; HF:
the pairs' tokens / `train_runtime`), peak memory (GPU: torch.cuda.max_memory_allocated during
the row; CPU: the process's peak RSS, which under --tiny includes the rows before it), and
mtadapt / HF ratios. --keep-logs DIR keeps every part's log (the server's too).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC_LANG, TGT_LANG = "de_DE", "en_XX"
TRAIN_PARTS = ("mtadapt_lora", "mtadapt_full", "hf_lora", "hf_full")
PARTS = ("build", *TRAIN_PARTS, "translate", "serve")
# mBART-large-50 (facebook/mbart-large-50's config.json), and the toy sizes of --tiny
SHAPES = {
    "large": dict(d_model=1024, layers=12, heads=16, ffn=4096, vocab=250_054),
    "tiny": dict(d_model=64, layers=2, heads=4, ffn=128, vocab=1_000),
}
LORA = dict(rank=8, alpha=16.0)


# ---- the corpus and the model ------------------------------------------------------------------

def joined(de: list[str], en: list[str], n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """n pairs of 1-6 consecutive toy pairs joined: 7-70 tokens a side, 35 on average."""
    src, tgt = [], []
    for _ in range(n):
        k = rng.randint(1, 6)
        start = rng.randrange(len(de) - k)
        src.append(" ".join(de[start : start + k]))
        tgt.append(" ".join(en[start : start + k]))
    return src, tgt


def build(args: argparse.Namespace, work: Path) -> dict:
    """The corpus (train.de/en: steps x batch pairs; test.de: the translate part's sources) and
    the random model folder `work/model`."""
    import torch
    from transformers import AutoTokenizer, MBartConfig, MBartForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from mtadapt.io import iter_lines
    from mtadapt.models.loading import tiny_model_path
    from mtadapt.toy import toy_corpus_dir

    toy, rng = toy_corpus_dir(), random.Random(0)
    de, en = list(iter_lines(toy / "train.de")), list(iter_lines(toy / "train.en"))
    src, tgt = joined(de, en, args.steps * args.batch_size, rng)
    test, _ = joined(de, en, args.sentences, rng)
    for name, lines in (("train.de", src), ("train.en", tgt), ("test.de", test)):
        (work / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path("mbart50"))
    shape = SHAPES["tiny" if args.tiny else "large"]
    assert len(tokenizer) <= shape["vocab"], (len(tokenizer), shape["vocab"])
    config = MBartConfig(
        vocab_size=shape["vocab"], d_model=shape["d_model"], encoder_layers=shape["layers"], decoder_layers=shape["layers"],
        encoder_attention_heads=shape["heads"], decoder_attention_heads=shape["heads"], encoder_ffn_dim=shape["ffn"],
        decoder_ffn_dim=shape["ffn"], max_position_embeddings=1024, activation_function="gelu", scale_embedding=True,
        dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=tokenizer.pad_token_id, bos_token_id=0,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = MBartForConditionalGeneration(config)
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the output
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    return {"parameters": sum(p.numel() for p in model.parameters()), "pairs": len(src)}


# ---- the rows, each in its own process ----------------------------------------------------------

def peak_memory_mib(device: str) -> float:
    """Peak memory of this process: allocated GPU memory, or RSS on the CPU."""
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tokenized(codec, work: Path) -> tuple[list[list[int]], list[list[int]]]:
    from mtadapt.io import iter_lines

    return (codec.encode_sources(list(iter_lines(work / "train.de"))),
            codec.encode_targets(list(iter_lines(work / "train.en"))))


def run_mtadapt(args: argparse.Namespace, work: Path, method: str) -> dict:
    from mtadapt.config import config_from_dict
    from mtadapt.train.loop import train

    run_dir = work / f"run-{method}"
    config = config_from_dict({
        "model": {"name_or_path": str(work / "model")},
        "data": {"src_lang": SRC_LANG, "tgt_lang": TGT_LANG, "max_tokens": 1 << 20, "max_sentences": args.batch_size,
                 "train": {"paths": [str(work / "train.de"), str(work / "train.en")]}, "dev": None, "test": None},
        "method": {"name": method, "settings": {**LORA, "dropout": 0.0} if method == "lora" else {}},
        "train": {"output_dir": str(run_dir), "max_steps": args.steps, "learning_rate": args.lr,
                  "warmup_steps": args.warmup_steps, "mixed_precision": args.precision, "eval_every": 0,
                  "eval_at_start": False, "save_every": 0, "log_every": max(1, args.steps // 5), "seed": 0},
    })
    start = time.perf_counter()
    result = train(config, progress=False)
    wall = time.perf_counter() - start
    if method == "lora":  # the serve part serves it
        shutil.copytree(result.final_adapter, work / "lora-adapter", dirs_exist_ok=True)
    shutil.rmtree(run_dir)  # full fine-tuning: the model twice and AdamW's state, gigabytes
    return {"tokens_per_s": result.tokens_per_second, "train_s": result.train_seconds, "steps": result.steps,
            "wall_s": wall, "peak_mib": peak_memory_mib(args.device)}


def run_hf(args: argparse.Namespace, work: Path, method: str) -> dict:
    import torch
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from mtadapt.models.loading import load_model

    loaded = load_model(str(work / "model"))
    src, tgt = tokenized(loaded.codec(SRC_LANG, TGT_LANG), work)  # what tokenizer(src, text_target=tgt) gives
    features = [{"input_ids": s, "attention_mask": [1] * len(s), "labels": t} for s, t in zip(src, tgt)]
    torch.manual_seed(0)
    model = loaded.model
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                                                 target_modules=["q_proj", "v_proj"], task_type="SEQ_2_SEQ_LM"))
    training = Seq2SeqTrainingArguments(
        output_dir=str(work / f"hf-{method}"), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=args.lr, warmup_steps=args.warmup_steps, bf16=args.precision == "bf16", save_strategy="no",
        report_to=[], disable_tqdm=True, logging_steps=max(1, args.steps // 5), seed=0, use_cpu=args.device == "cpu",
    )
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, model=model, label_pad_token_id=-100)
    trainer = Seq2SeqTrainer(model=model, args=training, train_dataset=features, data_collator=collator)
    start = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - start
    real_tokens = sum(len(s) + len(t) for s, t in zip(src, tgt))  # steps x batch = the pairs: one epoch
    shutil.rmtree(work / f"hf-{method}", ignore_errors=True)
    return {"tokens_per_s": real_tokens / out.metrics["train_runtime"], "train_s": out.metrics["train_runtime"],
            "steps": out.global_step, "wall_s": wall, "peak_mib": peak_memory_mib(args.device)}


def run_translate(args: argparse.Namespace, work: Path) -> dict:
    from mtadapt.inference.generation import GenerationConfig, translate_ids
    from mtadapt.io import iter_lines
    from mtadapt.runs import open_for_inference, place_for_inference

    loaded, codec = open_for_inference(model=str(work / "model"), src_lang=SRC_LANG, tgt_lang=TGT_LANG)
    src_ids = codec.encode_sources(list(iter_lines(work / "test.de")))
    generation = GenerationConfig(batch_size=args.translate_batch_size, max_length_factor=1.5)
    out = {"sentences": len(src_ids)}
    for dtype in ("float32", "bfloat16"):  # float32 first: bfloat16 rounds the weights
        precision = place_for_inference(loaded.model, dtype, args.device)
        translate_ids(loaded.model, codec, src_ids[: args.translate_batch_size], generation)  # warm-up: kernels, allocator
        start = time.perf_counter()
        outputs = translate_ids(loaded.model, codec, src_ids, generation)  # lists of ids: the device has finished
        seconds = time.perf_counter() - start
        out[precision] = {"sentences_per_s": len(src_ids) / seconds, "tokens_per_s": sum(len(o[0]) for o in outputs) / seconds,
                          "seconds": seconds}
    out["peak_mib"] = peak_memory_mib(args.device)
    return out


def rows_main(args: argparse.Namespace) -> int:
    """A child process: the parts of --part in turn, each reported on stdout as one
    `RESULT part {json}` line, or `ERROR part message` (its traceback on stderr)."""
    import gc

    import torch

    work = Path(args.work)
    failed = 0
    for part in args.part.split(","):
        gc.collect()
        if args.device == "cuda":  # the part's own peak: what the parts before it held is freed
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            if part == "translate":
                result = run_translate(args, work)
            elif part.startswith("mtadapt_"):
                result = run_mtadapt(args, work, part.split("_", 1)[1])
            else:
                result = run_hf(args, work, part.split("_", 1)[1])
        except Exception as err:  # noqa: BLE001 (reported to the parent in one line)
            traceback.print_exc()
            print(f"ERROR {part} {one_line(err)}", flush=True)
            failed += 1
            continue
        print(f"RESULT {part} {json.dumps(result)}", flush=True)
    return 1 if failed else 0


class PartFailed(Exception):
    """A part's failure, already one line."""


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = f"{text[:300]}{'...' if len(text) > 300 else ''}"
    return text if isinstance(err, PartFailed) else f"{type(err).__name__}: {text}"


# ---- the server ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float) -> tuple[dict, float]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read()), time.perf_counter() - start
    except urllib.error.HTTPError as err:
        raise PartFailed(f"HTTP {err.code} from {url}: {err.read().decode(errors='replace')}") from None


def gpu_memory_of(pid: int) -> float | None:
    """MiB the GPU gives process `pid` (nvidia-smi), None where it cannot tell."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [line.split(",") for line in done.stdout.strip().split("\n") if "," in line]
    return next((float(used) for p, used in rows if p.strip() == str(pid)), None)


def run_serve(args: argparse.Namespace, work: Path, env: dict[str, str], deadline: float) -> dict:
    """`mtadapt serve` on the model (and mtadapt_lora's adapter, when that part saved one);
    --requests concurrent requests of 4 sentences, half of them to the adapter."""
    import yaml

    adapter = work / "lora-adapter"
    config = {
        "model": str(work / "model"),
        "pairs": [{"source": "de", "target": "en", "src_lang": SRC_LANG, "tgt_lang": TGT_LANG}],
        "adapters": [{"name": "lora", "path": str(adapter)}] if adapter.is_dir() else [],
        "batching": {"max_batch_sentences": 64, "max_length_factor": 1.5, "max_wait_ms": 20},
    }
    (work / "serve.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "serve.log", "wb")
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "mtadapt.cli", "serve", str(work / "serve.yaml"), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        health = None
        while health is None:
            if server.poll() is not None:
                tail = (work / "serve.log").read_text(encoding="utf-8", errors="replace").strip().split("\n")[-1]
                raise PartFailed(f"the server exited with {server.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise PartFailed("the server did not answer /health within the time limit")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    health = json.loads(response.read())
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        ready_s = time.perf_counter() - start
        lines = [line for line in (work / "test.de").read_text(encoding="utf-8").split("\n") if line]
        bodies = [{"texts": [lines[(4 * i + k) % len(lines)] for k in range(4)],
                   "adapter": "lora" if adapter.is_dir() and i % 2 else None} for i in range(args.requests)]
        timeout = max(10.0, deadline - time.monotonic())
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: post(url + "/v1/translate", body, timeout), bodies))
        for body, (answer, _) in zip(bodies, answers):
            if len(answer["translations"]) != len(body["texts"]):
                raise PartFailed(f"{len(body['texts'])} texts, {len(answer['translations'])} translations: {answer}")
        latencies = sorted(seconds for _, seconds in answers)
        return {"ready_s": ready_s, "precision": health.get("precision"), "requests": len(answers),
                "adapter_requests": sum(1 for b in bodies if b["adapter"]), "median_s": latencies[len(latencies) // 2],
                "max_s": latencies[-1], "gpu_mib": gpu_memory_of(server.pid) if args.device == "cuda" else None}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()


# ---- the parent ----------------------------------------------------------------------------------

def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MTADAPT_DEBUG", None)
    if args.device == "cpu":  # mtadapt trains and serves on a GPU whenever it sees one
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_child(args: argparse.Namespace, parts: list[str], work: Path, env: dict[str, str], timeout: float) -> dict[str, dict | str]:
    """Run `parts` in one child process: part -> its result, or the one line of its failure."""
    name = "+".join(parts)
    command = [sys.executable, __file__, "--part", ",".join(parts), "--work", str(work), "--device", args.device,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--warmup-steps", str(args.warmup_steps), "--precision", args.precision,
               "--translate-batch-size", str(args.translate_batch_size)] + (["--tiny"] if args.tiny else [])
    with open(work / f"{name}.log", "w", encoding="utf-8") as log:
        try:
            done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=log, text=True, timeout=timeout)
            stdout, ended = done.stdout, f"exit status {done.returncode}"
        except subprocess.TimeoutExpired as err:
            stdout = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
            ended = f"killed at the time limit, after {timeout:.0f} s"
    outcomes: dict[str, dict | str] = {}
    for line in stdout.split("\n"):
        kind, _, rest = line.partition(" ")
        part, _, text = rest.partition(" ")
        if kind == "RESULT" and part in parts:
            outcomes[part] = json.loads(text)
        elif kind == "ERROR" and part in parts:
            outcomes[part] = text
    tail = [line for line in (work / f"{name}.log").read_text(encoding="utf-8", errors="replace").split("\n") if line.strip()]
    for part in parts:  # a process killed (out of memory, a signal, the time limit) before it could say
        outcomes.setdefault(part, f"{ended}" + (f": {tail[-1].strip()[:300]}" if tail and "killed" not in ended else ""))
    return outcomes


def describe(part: str, r: dict, device: str) -> str:
    memory = "peak GPU" if device == "cuda" else "peak RSS"
    if part == "build":
        return f"{r['parameters']:,} parameters, {r['pairs']:,} training pairs"
    if part in TRAIN_PARTS:
        return (f"{r['tokens_per_s']:,.0f} real tokens/s over {r['steps']} steps ({r['train_s']:.1f} s), "
                f"{memory} {r['peak_mib']:,.0f} MiB")
    if part == "translate":
        return ", ".join(f"{d} {r[d]['sentences_per_s']:,.1f} sent/s ({r[d]['tokens_per_s']:,.0f} tokens/s)"
                         for d in ("float32", "bfloat16")) + f", {r['sentences']} sentences"
    gpu = f", GPU {r['gpu_mib']:,.0f} MiB" if r.get("gpu_mib") is not None else ""
    return (f"ready in {r['ready_s']:.1f} s ({r['precision']}), {r['requests']} concurrent requests "
            f"({r['adapter_requests']} to the LoRA adapter): median {r['median_s']:.2f} s, max {r['max_s']:.2f} s{gpu}")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "nan"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the GPU (default: the CPU)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (2+2 layers, d_model 64): the CPU smoke test")
    parser.add_argument("--steps", type=int, default=50, help="training steps of every row")
    parser.add_argument("--batch-size", type=int, help="sentences per training batch (default 32; --tiny 4)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--precision", choices=("bf16", "no"), default="bf16", help="training autocast (no: float32)")
    parser.add_argument("--sentences", type=int, help="sentences the translate part translates (default 512; --tiny 16)")
    parser.add_argument("--translate-batch-size", type=int, help="(default 64; --tiny 8)")
    parser.add_argument("--requests", type=int, default=8, help="concurrent requests to the server")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)} (build is always run)")
    parser.add_argument("--time-limit", type=float, default=420, help="seconds; parts that would start after it are skipped")
    parser.add_argument("--work-dir", help="where the work folder goes (the model, ~2.4 GB; full fine-tuning's "
                                           "checkpoint, ~10 GB; default: the system's temporary folder)")
    parser.add_argument("--keep-logs", help="folder to copy every part's log into (default: removed with the work folder)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # a child: the parts it runs, comma-separated
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch_size = args.batch_size or (4 if args.tiny else 32)
    args.sentences = args.sentences or (16 if args.tiny else 512)
    args.translate_batch_size = args.translate_batch_size or (8 if args.tiny else 64)
    if args.part:
        return rows_main(args)

    began = time.monotonic()
    deadline = began + args.time_limit
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    import torch

    from mtadapt.inference.precision import describe_machine

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    print(f"machine: {describe_machine(args.device)}", flush=True)
    shape = SHAPES["tiny" if args.tiny else "large"]
    print(f"model: mBART, {shape['layers']}+{shape['layers']} layers, d_model {shape['d_model']}, ffn {shape['ffn']}, "
          f"{shape['heads']} heads, vocabulary {shape['vocab']:,} (random, seed 0); training: {args.steps} steps x "
          f"{args.batch_size} sentences, autocast {args.precision}, lr {args.lr}, warm-up {args.warmup_steps}; "
          f"device {args.device}", flush=True)
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    env = child_env(args)
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        rows = [p for p in PARTS if p in chosen and p not in ("build", "serve")]
        # a process per part (its own memory, its own crash); --tiny: one process for them all
        groups = [["build"], *([rows] if args.tiny and rows else [[p] for p in rows]), *([["serve"]] if "serve" in chosen else [])]
        for group in groups:
            left, seconds = deadline - time.monotonic(), 0.0
            if group != ["build"] and "build" in failures:
                outcomes = {p: "skipped: no model (build failed)" for p in group}
            elif left < 10:
                outcomes = {p: f"skipped: the time limit ({args.time_limit:.0f} s) is reached" for p in group}
            else:
                start = time.perf_counter()
                try:
                    if group == ["build"]:
                        outcomes = {"build": build(args, work)}
                    elif group == ["serve"]:
                        outcomes = {"serve": run_serve(args, work, env, deadline)}
                    else:
                        outcomes = run_child(args, group, work, env, left)
                except Exception as err:  # noqa: BLE001 (one line, then the next part)
                    outcomes = {p: one_line(err) for p in group}
                seconds = time.perf_counter() - start
                outcomes = {p: o if isinstance(o, dict) else f"FAILED after {seconds:.1f} s: {o}" for p, o in outcomes.items()}
            for part, outcome in outcomes.items():
                if isinstance(outcome, dict):
                    results[part] = outcome
                    took = f" in {seconds:.1f} s" if len(group) == 1 else ""
                    print(f"{part}: ok{took}: {describe(part, outcome, args.device)}", flush=True)
                else:
                    failures[part] = outcome
                    print(f"{part}: {outcome}", flush=True)
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, Path(args.keep_logs) / log.name)

    memory = "peak GPU MiB" if args.device == "cuda" else "peak RSS MiB"
    trained = [p for p in TRAIN_PARTS if p in results]
    if trained:
        print(f"\n| row | real tokens/s | {memory} | steps | training s |\n|---|---|---|---|---|")
        for part in trained:
            r = results[part]
            print(f"| {part} | {r['tokens_per_s']:,.0f} | {r['peak_mib']:,.0f} | {r['steps']} | {r['train_s']:.1f} |")
    for method in ("lora", "full"):
        ours, theirs = results.get(f"mtadapt_{method}"), results.get(f"hf_{method}")
        if ours and theirs:
            print(f"{method}: mtadapt / HF, real tokens/s {ratio(ours['tokens_per_s'], theirs['tokens_per_s'])}, "
                  f"{memory} {ratio(ours['peak_mib'], theirs['peak_mib'])}")
    if "translate" in results:
        r = results["translate"]
        print(f"translate: bfloat16 / float32, sentences/s {ratio(r['bfloat16']['sentences_per_s'], r['float32']['sentences_per_s'])}")
    ran = [p for p in PARTS if p in results or p in failures]
    print(f"\nsummary: {len(results)} of {len(ran)} parts ok in {time.monotonic() - began:.0f} s"
          + "".join(f"\n  {p}: {failures[p]}" for p in ran if p in failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
