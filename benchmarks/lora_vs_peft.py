"""mtadapt LoRA vs HF PEFT LoRA, side by side in one run, on the same small mBART and batches.

Measures
  training: tokens/s (source + target tokens), step time (forward + backward + AdamW),
            peak memory of the training loop = peak RSS of a forked child minus its RSS at
            start (ru_maxrss, whole process: parameters, grads, optimizer state, activations),
            and bytes saved for backward (exact, via saved_tensors_hooks);
  adapter file size (mtadapt `save_adapter` vs PEFT `save_pretrained`);
  generation: greedy, fixed length, base vs unmerged LoRA vs merged LoRA.

Run: python benchmarks/lora_vs_peft.py --steps 30 (about a minute on 2 idle CPU cores). Each figure is
the best of --rounds alternated training runs / --gen-rounds interleaved generations.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import MBartConfig, MBartForConditionalGeneration

from mtadapt.methods import base, lora, storage
from mtadapt.models.targets import BART_LIKE

RANK, ALPHA = 8, 16


def build_base() -> MBartForConditionalGeneration:
    torch.manual_seed(0)
    config = MBartConfig(
        vocab_size=8000, d_model=256, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, max_position_embeddings=128,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, dropout=0.1, init_std=0.1,
    )
    return MBartForConditionalGeneration(config)


def batches(n: int, batch_size: int = 8, length: int = 24) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        {"input_ids": torch.randint(3, 8000, (batch_size, length), generator=g),
         "labels": torch.randint(3, 8000, (batch_size, length), generator=g)}
        for _ in range(n)
    ]


def make(kind: str, base_model: torch.nn.Module) -> torch.nn.Module:
    model = copy.deepcopy(base_model)
    if kind == "mtadapt":
        storage.add_adapter(model, lora.LoraConfig(rank=RANK, alpha=ALPHA), BART_LIKE, "default")
        base.freeze_base(model)
        return model
    import peft

    return peft.get_peft_model(model, peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["q_proj", "v_proj"]))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _train_child(kind: str, base_model: torch.nn.Module, data: list, queue: mp.Queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    rss_start = _rss_bytes()
    model = make(kind, base_model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    torch.manual_seed(2)
    times = []
    for step, b in enumerate(data):
        t0 = time.perf_counter()
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= 2:  # first steps warm up the allocator and kernels
            times.append(time.perf_counter() - t0)
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**data[0]).loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_start
    queue.put({"step_s": statistics.median(times), "peak_rss": peak, "saved_for_backward": saved,
               "trainable": sum(p.numel() for p in params)})


def train_run(kind: str, base_model: torch.nn.Module, data: list) -> dict:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_train_child, args=(kind, base_model, data, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def gen_once(model: torch.nn.Module, src: torch.Tensor) -> float:
    kwargs = dict(max_new_tokens=24, min_new_tokens=24, num_beams=1, do_sample=False)
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(input_ids=src, **kwargs)
        return time.perf_counter() - t0


def dir_size(folder: Path, name: str) -> int:
    return (folder / name).stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="training runs per side, alternated")
    parser.add_argument("--gen-rounds", type=int, default=10, help="timed generations per model, interleaved")
    args = parser.parse_args()
    import peft
    import transformers

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}")
    base_model = build_base()
    data = batches(args.steps)
    tokens = sum(b["input_ids"].numel() + b["labels"].numel() for b in data[:1])
    print(f"model: mBART d_model=256, 3+3 layers, vocab 8000; LoRA r={RANK} on q,v (self+cross); "
          f"batch 8 x (24 src + 24 tgt) tokens, {args.steps} steps (2 warm-up)")

    results: dict[str, list[dict]] = {"mtadapt": [], "peft": []}
    for _ in range(args.rounds):  # alternate so drift in machine load hits both equally
        for kind in ("mtadapt", "peft"):
            results[kind].append(train_run(kind, base_model, data))
    summary = {}
    for kind, runs in results.items():
        step = min(r["step_s"] for r in runs)
        summary[kind] = dict(step_s=step, tok_s=tokens / step, peak_rss=min(r["peak_rss"] for r in runs),
                             saved=runs[0]["saved_for_backward"], trainable=runs[0]["trainable"])
    print("\ntraining            mtadapt       peft    mtadapt/peft")
    m, p = summary["mtadapt"], summary["peft"]
    print(f"  trainable params  {m['trainable']:>9,}  {p['trainable']:>9,}")
    print(f"  step time (ms)    {1e3 * m['step_s']:9.1f}  {1e3 * p['step_s']:9.1f}   {m['step_s'] / p['step_s']:.3f}")
    print(f"  tokens/s          {m['tok_s']:9.0f}  {p['tok_s']:9.0f}   {m['tok_s'] / p['tok_s']:.3f}")
    print(f"  peak RSS +MiB     {m['peak_rss'] / 2**20:9.1f}  {p['peak_rss'] / 2**20:9.1f}   "
          f"{m['peak_rss'] / max(p['peak_rss'], 1):.3f}")
    print(f"  saved-for-bwd MiB {m['saved'] / 2**20:9.1f}  {p['saved'] / 2**20:9.1f}   {m['saved'] / p['saved']:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = make("mtadapt", base_model), make("peft", base_model)
        storage.save_adapter(ours, Path(tmp) / "ours")
        theirs.save_pretrained(Path(tmp) / "peft")
        s_ours = dir_size(Path(tmp) / "ours", storage.WEIGHTS_FILE)
        s_peft = dir_size(Path(tmp) / "peft", "adapter_model.safetensors")
    print(f"  adapter file (B)  {s_ours:9,}  {s_peft:9,}   {s_ours / s_peft:.3f}")

    src = torch.randint(3, 8000, (8, 16), generator=torch.Generator().manual_seed(3))
    plain = copy.deepcopy(base_model)
    unmerged = make("mtadapt", base_model)
    for _, layer in lora.lora_layers(unmerged):
        torch.nn.init.normal_(layer.lora_B["default"], std=0.01)
    merged = lora.merge_and_unload(copy.deepcopy(unmerged))
    models = {"base": plain.eval(), "unmerged": unmerged.eval(), "merged": merged.eval()}
    for model in models.values():
        gen_once(model, src)  # warm-up
    times = {name: [] for name in models}
    for _ in range(args.gen_rounds):  # interleaved one generation at a time: load drift hits all three
        for name, model in models.items():
            times[name].append(gen_once(model, src))
    t = {k: min(v) for k, v in times.items()}
    print("\ngeneration (greedy, 8 x 24 new tokens)   seconds   vs base")
    for name in ("base", "unmerged", "merged"):
        print(f"  {name:<40} {t[name]:7.3f}   {t[name] / t['base']:.3f}")


if __name__ == "__main__":
    main()
