"""Streaming, sharded generation (inference.sharded): windows and shards cover every line
once in input order; old work folders resume; two torchrun CPU processes (gloo) write what
one process writes, for greedy, beam, sampling and `translate`; a rank killed with SIGKILL,
then a rerun with another number of processes, loses and duplicates nothing (one process
resumes two; two processes resume one)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtadapt.augment.backtranslate import BacktranslationConfig, backtranslate, generate_shards, read_shards
from mtadapt.cli import main
from mtadapt.inference import sharded
from mtadapt.inference.engine import PyTorchEngine
from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.io import iter_lines, iter_stream_lines

REPO = Path(__file__).resolve().parents[1]
FAST = dict(max_length_factor=0.5, batch_size=2)
KEEP_ALL = dict(drop_copies=False, drop_duplicates=False, drop_empty=False, max_length_ratio=0)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from mtadapt.models.languages import PairCodec
    from mtadapt.models.loading import load_model

    loaded = load_model(str(tiny_model_dir("marian")))
    return loaded.model, PairCodec(loaded.family, loaded.tokenizer, None, None, loaded.decoder_start_token_id)


@pytest.fixture(scope="module")
def text():
    from mtadapt.toy import toy_corpus_dir

    toy = list(iter_lines(toy_corpus_dir() / "train.en"))[:12]
    # an empty line (skipped by back-translation) and a line holding U+2028 (one line, not two)
    return toy[:5] + [""] + toy[5:8] + ["a house\u2028the end"] + toy[8:]


def test_lines_split_on_newline_only(tmp_path):
    import io

    (tmp_path / "f.txt").write_bytes("one\u2028still one\r\ntwo\x0c\n\nlast".encode())
    assert list(iter_lines(tmp_path / "f.txt")) == ["one\u2028still one", "two\x0c", "", "last"]
    assert list(iter_stream_lines(io.StringIO("a\u2028b\nc\n"))) == ["a\u2028b", "c"]
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: invalid UTF-8"):
        list(iter_lines(tmp_path / "bad.txt"))


def test_windows_cover_every_line_once_in_order(tiny, text, tmp_path):
    model, codec = tiny
    config = BacktranslationConfig(mode="greedy", shard_size=2, window_lines=4, **KEEP_ALL, **FAST)
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in text), encoding="utf-8")
    assert generate_shards(PyTorchEngine(model, codec), tmp_path / "in.txt", tmp_path / "w", config) == 7  # windows keep 4, 3, 4, 2 lines
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["window_shards"] == [2, 2, 2, 1] and manifest["done_shards"] == list(range(7))
    rows = read_shards(tmp_path / "w", tmp_path / "in.txt")
    assert [r.index for r in rows] == [i for i, line in enumerate(text) if line]
    assert [r.original for r in rows] == [line for line in text if line]
    for k in range(7):  # each shard's lines come from one window, longest first
        indices = [json.loads(line)["index"] for line in iter_lines(tmp_path / "w" / sharded.shard_name(k))]
        assert len({i // 4 for i in indices}) == 1
    assert generate_shards(PyTorchEngine(model, codec), text, tmp_path / "w", config) == 0  # the same input from memory: done
    with pytest.raises(ValueError, match="differs in: window_lines"):
        generate_shards(PyTorchEngine(model, codec), text, tmp_path / "w", BacktranslationConfig(mode="greedy", shard_size=2, window_lines=5, **FAST))
    with pytest.raises(ValueError, match=r"window_lines \(1\) must be >= shard_size \(2\)"):
        BacktranslationConfig(shard_size=2, window_lines=1)


def test_folder_from_before_windows_resumes(tiny, text, tmp_path):
    """A folder written before windows (no window_lines; rows keyed "synthetic") is one window."""
    model, codec = tiny
    config = BacktranslationConfig(mode="sample", outputs_per_sentence=2, top_k=20, shard_size=3, **KEEP_ALL, **FAST)
    pairs, _ = backtranslate(PyTorchEngine(model, codec), text, tmp_path / "new", config)
    old = tmp_path / "old"
    backtranslate(PyTorchEngine(model, codec), text, old, config)
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    del manifest["fingerprint"]["window_lines"], manifest["window_shards"]
    manifest["done_shards"] = [0, 1, 2]
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for k in range(3):
        rows = [json.loads(line) for line in iter_lines(old / sharded.shard_name(k))]
        (old / sharded.shard_name(k)).write_text("".join(json.dumps({"index": r["index"], "output": r["output"],
                                                                     "synthetic": r["text"]}) + "\n" for r in rows))
    (old / sharded.shard_name(3)).unlink()  # killed before the last shard
    assert generate_shards(PyTorchEngine(model, codec), text, old, config) == 1
    assert backtranslate(PyTorchEngine(model, codec), text, old, config)[0] == pairs
    assert "window_lines" not in json.loads((old / "manifest.json").read_text(encoding="utf-8"))["fingerprint"]


def test_translate_file_resumes_line_for_line(tiny, text, tmp_path):
    model, codec = tiny
    generation = GenerationConfig(**FAST)
    (tmp_path / "in.txt").write_text("".join(line + "\n" for line in text), encoding="utf-8")
    expected = translate(model, codec, text, generation)  # one window: the batches are the same
    work = tmp_path / "w"
    sharded.translate_file(PyTorchEngine(model, codec), tmp_path / "in.txt", tmp_path / "out.txt", generation, work_dir=work, shard_size=4)
    assert list(iter_lines(tmp_path / "out.txt")) == expected and not work.exists()
    # an interrupted run: every shard but the second one is there
    source = sharded.line_source(tmp_path / "in.txt")
    settings = sharded.translation_settings({}, generation, 4)
    sharded.generate_shards(PyTorchEngine(model, codec), source, work, settings, generation, shard_size=4, skip_empty=False)
    (work / sharded.shard_name(1)).unlink()
    assert sharded.translate_file(PyTorchEngine(model, codec), tmp_path / "in.txt", tmp_path / "out2.txt", generation, work_dir=work, shard_size=4) == 1
    assert list(iter_lines(tmp_path / "out2.txt")) == expected
    stream = list(sharded.translate_stream(PyTorchEngine(model, codec), iter(text), generation, window_lines=5))
    assert len(stream) == len(text)


# ---------------------------------------------------------------------------------------
# Over processes: torchrun, gloo, the real CLI on every rank.

RANK_SCRIPT = '''
"""Run `mtadapt` commands on this rank (optionally slowed per shard, to be killed mid-run)."""
import json, os, sys, time
from pathlib import Path

from mtadapt.cli import main
from mtadapt.inference.engine import PyTorchEngine

delay = float(os.environ.get("SLOW_SHARD_SECONDS", "0"))
if delay:
    generate = PyTorchEngine.translate_ids
    def slow_translate_ids(*args, **kwargs):
        time.sleep(delay)
        return generate(*args, **kwargs)
    PyTorchEngine.translate_ids = slow_translate_ids
Path(sys.argv[2], f"rank{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))
for argv in json.loads(Path(sys.argv[1]).read_text()):
    assert main(argv) == 0, argv
'''


def _commands(model: str, inp: Path, out: Path) -> list[list[str]]:
    common = ["--model", model, "--input", str(inp), "--window-lines", "5", "--shard-size", "2", "--batch-size", "2",
              "--max-length-factor", "0.5", "--no-progress"]
    keep = ["--max-length-ratio", "0", "--keep-copies", "--keep-duplicates", "--keep-empty"]
    return [
        ["augment", "backtranslate", *common, *keep, "--mode", "greedy", "--output", str(out / "greedy.tsv")],
        ["augment", "backtranslate", *common, *keep, "--mode", "beam", "--beam", "3", "--outputs-per-sentence", "2",
         "--output", str(out / "beam.tsv")],
        ["augment", "backtranslate", *common, *keep, "--mode", "sample", "--outputs-per-sentence", "2", "--top-k", "20",
         "--temperature", "1.5", "--seed", "7", "--output", str(out / "sample.tsv")],
        ["translate", *[a if a != "--input" else "-i" for a in common], "-o", str(out / "translate.txt")],
    ]


def _torchrun(tmp_path: Path, commands: list[list[str]], nproc: int, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    script, argv = tmp_path / "ranks.py", tmp_path / f"argv-{time.monotonic_ns()}.json"
    script.write_text(RANK_SCRIPT, encoding="utf-8")
    argv.write_text(json.dumps(commands), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **(env_extra or {}))
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    (tmp_path / "pids").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                             str(script), str(argv), str(tmp_path / "pids")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _one_process(commands: list[list[str]]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank: the same float sums
    try:
        for argv in commands:
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)


def _write_input(path: Path, text: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in text), encoding="utf-8")


def test_two_processes_write_what_one_writes(text, tmp_path, tiny_model_dir, capsys):
    model = str(tiny_model_dir("marian"))
    inp = tmp_path / "mono.en"
    _write_input(inp, text)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _one_process(_commands(model, inp, one))
    capsys.readouterr()
    # the greedy run of two processes resumes a one-process run that lost two shards
    _one_process(_commands(model, inp, two)[:1])
    for k in (1, 4):
        (two / "greedy.tsv.shards" / sharded.shard_name(k)).unlink()
    (two / "greedy.tsv").unlink()
    proc = _torchrun(tmp_path, _commands(model, inp, two), nproc=2)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert stdout.count("input lines") == 3  # rank 0 alone reports each back-translation
    for name in ("greedy.tsv", "beam.tsv", "sample.tsv", "translate.txt"):
        ours, theirs = list(iter_lines(one / name)), list(iter_lines(two / name))
        assert ours == theirs and len(ours) == {"beam.tsv": 26, "sample.tsv": 26, "translate.txt": 14}.get(name, 13), name
    assert len(set(iter_lines(one / "sample.tsv"))) > 13  # the samples differ from each other
    both = [json.loads(line)["index"] for k in range(7) for line in iter_lines(two / "beam.tsv.shards" / sharded.shard_name(k))]
    assert sorted(both) == sorted(2 * [i for i, line in enumerate(text) if line])


@pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None, reason="ctranslate2 not installed")
def test_two_processes_write_what_one_writes_with_ctranslate2(text, tmp_path, tiny_model_dir, capsys):
    """`--engine ctranslate2` (int8) over 2 torchrun ranks, each converting into a fresh cache
    only after rank 0 did: the same bytes as one process, sampled back-translation (seeded per
    shard) and greedy file translation."""
    model = str(tiny_model_dir("marian"))
    inp = tmp_path / "mono.en"
    _write_input(inp, text)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    engine = ["--engine", "ctranslate2", "--compute-type", "int8"]
    wanted = ("sample.tsv", "translate.txt")
    commands = lambda out: [[*argv, *engine] for argv in _commands(model, inp, out) if argv[-1].endswith(wanted)]  # noqa: E731
    _one_process(commands(one))
    capsys.readouterr()
    proc = _torchrun(tmp_path, commands(two), nproc=2, env_extra={"MTADAPT_CACHE": str(tmp_path / "fresh-cache")})
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert len(list((tmp_path / "fresh-cache" / "ctranslate2").iterdir())) == 1  # converted once, by rank 0
    for name in wanted:
        ours = (one / name).read_bytes()
        assert ours == (two / name).read_bytes() and len(ours.splitlines()) == {"sample.tsv": 26, "translate.txt": 14}[name], name
    assert len(set(iter_lines(one / "sample.tsv"))) > 13  # the samples differ from each other
    recorded = json.loads((one / "sample.tsv.shards" / sharded.MANIFEST).read_text())["fingerprint"]["model"]
    assert (recorded["engine"], recorded["dtype"]) == ("ctranslate2", "int8")


def test_killed_rank_then_rerun_with_another_process_count(text, tmp_path, tiny_model_dir):
    model = str(tiny_model_dir("marian"))
    inp = tmp_path / "mono.en"
    _write_input(inp, text * 2)  # 26 non-empty lines: windows keep 5, 4, 5, 4, 5, 3 -> 15 shards of 2
    out = tmp_path / "out"
    out.mkdir()
    command = _commands(model, inp, out)[0]
    proc = _torchrun(tmp_path, [command], nproc=2, env_extra={"SLOW_SHARD_SECONDS": "0.5"})
    work = out / "greedy.tsv.shards"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(work.glob("shard-*.jsonl"))) < 3:
        time.sleep(0.05)
    os.kill(int((tmp_path / "pids" / "rank1.pid").read_text()), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0, stdout[-2000:] + stderr[-2000:]  # torchrun stops the other rank
    made = len(list(work.glob("shard-*.jsonl")))
    assert 3 <= made < 15 and not (out / "greedy.tsv").exists()
    _one_process([command])  # one process takes up the rest (test_two_processes...: one, then two)
    resumed = list(iter_lines(out / "greedy.tsv"))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _one_process(_commands(model, inp, fresh)[:1])
    assert resumed == list(iter_lines(fresh / "greedy.tsv")) and len(resumed) == 26
    assert [r.original for r in read_shards(work, inp)] == [line for line in text * 2 if line]  # each line once, in order
    assert json.loads((work / "manifest.json").read_text(encoding="utf-8"))["done_shards"] == list(range(15))
