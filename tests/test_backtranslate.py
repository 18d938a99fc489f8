"""Back-translation: modes, batched output equal to one-at-a-time, resume after SIGKILL
without lost or duplicated lines, each filter's count, tags, mixing, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mtadapt.augment.backtranslate import (
    EDUNOV_NOISE,
    BacktranslationConfig,
    FilterReport,
    SyntheticRow,
    backtranslate,
    check_tag,
    filter_rows,
    generate_shards,
    mix_corpora,
    read_shards,
    synthetic_pairs,
    tag_pieces,
    write_mixed_corpus,
)
from mtadapt.augment.noise import NoiseConfig
from mtadapt.inference.engine import PyTorchEngine
from mtadapt.inference.generation import GenerationConfig, translate

# short outputs keep the random tiny model fast (it rambles to the length limit)
FAST = dict(max_length_factor=0.5, batch_size=4)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from mtadapt.models.languages import PairCodec
    from mtadapt.models.loading import load_model

    loaded = load_model(str(tiny_model_dir("marian")))
    return loaded.model, PairCodec(loaded.family, loaded.tokenizer, None, None, loaded.decoder_start_token_id)


@pytest.fixture(scope="module")
def lines():
    from mtadapt.toy import toy_corpus_dir

    text = (toy_corpus_dir() / "train.en").read_text(encoding="utf-8").splitlines()
    return text[:5] + [""] + text[5:10]  # an empty line is skipped, not translated


def test_greedy_equals_one_sentence_at_a_time(tiny, lines, tmp_path):
    model, codec = tiny
    config = BacktranslationConfig(mode="greedy", shard_size=5, drop_copies=False, drop_duplicates=False,
                                   drop_empty=False, max_length_ratio=0, **FAST)
    pairs, report = backtranslate(PyTorchEngine(model, codec), lines, tmp_path / "w", config)
    plain = [translate(model, codec, [line], GenerationConfig(batch_size=1, max_length_factor=0.5))[0]
             for line in lines[:4]]
    # The length limit follows the padded batch width, so a sentence batched with longer ones
    # may run further (this random model never emits </s>): alone it gives a prefix.
    assert all(s.startswith(" ".join(p.split())) for (s, _), p in zip(pairs, plain))
    assert [t for _, t in pairs] == [line for line in lines if line]
    assert (report.input_lines, report.empty_inputs, report.generated, report.kept) == (11, 1, 10, 10)


def test_modes_outputs_per_sentence_and_direction(tiny, lines, tmp_path):
    model, codec = tiny
    text = [line for line in lines if line][:6]
    off = dict(drop_copies=False, drop_duplicates=False, drop_empty=False, max_length_ratio=0, **FAST)
    beam = BacktranslationConfig(mode="beam", num_beams=3, outputs_per_sentence=2, **off)
    rows = read_shards_after(model, codec, text, tmp_path / "beam", beam)
    assert [(r.index, r.output) for r in rows] == [(i, j) for i in range(6) for j in range(2)]
    assert all(rows[2 * i].synthetic != rows[2 * i + 1].synthetic for i in range(6))  # distinct n-best
    sample = BacktranslationConfig(mode="sample", outputs_per_sentence=3, top_k=20, sampling_temperature=1.5, **off)
    pairs, report = backtranslate(PyTorchEngine(model, codec), text, tmp_path / "sample", sample)
    assert report.generated == 18 and len(pairs) == 18
    assert len({s for s, _ in pairs}) > 6  # samples differ
    again, _ = backtranslate(PyTorchEngine(model, codec), text, tmp_path / "sample2", sample)
    assert again == pairs  # seeded per shard
    blank_all = NoiseConfig(word_dropout=0, word_shuffle_distance=0, blank_prob=1.0, blank_token="_")
    noised = BacktranslationConfig(mode="noised_beam", num_beams=3, outputs_per_sentence=2, noise=blank_all, **off)
    noised_pairs, _ = backtranslate(PyTorchEngine(model, codec), text, tmp_path / "noised", noised)
    beam_pairs = synthetic_pairs(rows, beam)  # the same beam outputs, without noise
    assert [t for _, t in noised_pairs] == [t for _, t in beam_pairs]
    assert [s for s, _ in noised_pairs] == [" ".join("_" for _ in s.split()) for s, _ in beam_pairs]
    assert BacktranslationConfig(mode="noised_beam").source_noise() == EDUNOV_NOISE
    assert BacktranslationConfig(mode="beam", noise=blank_all).source_noise() is None
    forward = BacktranslationConfig(direction="forward", mode="greedy", **off)
    fw, _ = backtranslate(PyTorchEngine(model, codec), text, tmp_path / "fw", forward)
    assert [s for s, _ in fw] == text  # originals are the sources


def read_shards_after(model, codec, text, work, config):
    backtranslate(PyTorchEngine(model, codec), text, work, config)
    return read_shards(work, text)


def row(index: int, output: int, synthetic: str, original: str) -> SyntheticRow:
    return SyntheticRow(index=index, output=output, original=original, synthetic=synthetic)


def test_each_filter_counted():
    rows = [
        row(0, 0, "casa", "house"),                 # kept
        row(1, 0, "outra", "other"),                # kept
        row(2, 0, "", "some text"),                 # empty
        row(3, 0, "x" * 40, "short"),               # length ratio 40/5 > 3
        row(4, 0, "The  House", "the house"),       # copy (case, spacing ignored)
        row(5, 0, "uma casa", "a house"),           # kept
        row(5, 1, "uma casa", "a house"),           # duplicate
        row(6, 0, "   ", "b"),                      # empty (spaces only)
    ]
    report = FilterReport()
    kept = filter_rows(rows, BacktranslationConfig(), report)
    assert report.dropped == {"empty": 2, "length_ratio": 1, "copy": 1, "duplicate": 1}
    assert [(r.index, r.output) for r in kept] == [(0, 0), (1, 0), (5, 0)] and report.kept == 3
    report = FilterReport()
    everything = BacktranslationConfig(drop_empty=False, max_length_ratio=0, drop_copies=False, drop_duplicates=False)
    assert len(filter_rows(rows, everything, report)) == 8 and sum(report.dropped.values()) == 0


def test_tagged_output_and_tag_check(tiny, lines, tmp_path):
    model, codec = tiny
    text = [line for line in lines if line][:4]
    config = BacktranslationConfig(mode="greedy", tag="hh", drop_copies=False, max_length_ratio=0, **FAST)
    pairs, _ = backtranslate(PyTorchEngine(model, codec), text, tmp_path / "w", config)
    assert all(s.startswith("hh ") for s, _ in pairs) and [t for _, t in pairs] == text
    assert all(not t.startswith("hh") for _, t in pairs)
    assert tag_pieces(codec, "hh") == codec.encode_sources(["hh"])[0][:-1]  # the pieces before </s>
    check_tag(codec, "hh")
    with pytest.raises(ValueError, match="becomes <unk>"):
        check_tag(codec, "[BT]")  # '[' and 'B' are not in the tiny vocabulary


def test_config_errors():
    with pytest.raises(ValueError) as err:
        BacktranslationConfig(mode="greedy", outputs_per_sentence=2, top_p=0, tag="a b", max_length_ratio=0.5)
    for part in ("mode 'greedy' gives one output", "top_p", "tag must be", "max_length_ratio"):
        assert part in str(err.value)
    with pytest.raises(ValueError, match=r"outputs_per_sentence \(4\) must be <= num_beams \(2\)"):
        BacktranslationConfig(mode="beam", num_beams=2, outputs_per_sentence=4)


def test_resume_refuses_other_settings(tiny, lines, tmp_path):
    model, codec = tiny
    text = [line for line in lines if line][:3]
    backtranslate(PyTorchEngine(model, codec), text, tmp_path / "w", BacktranslationConfig(mode="greedy", **FAST))
    with pytest.raises(ValueError, match="differs in: generation"):
        backtranslate(PyTorchEngine(model, codec), text, tmp_path / "w", BacktranslationConfig(mode="beam", num_beams=2, **FAST))
    with pytest.raises(ValueError, match="input_lines, input_sha1"):
        backtranslate(PyTorchEngine(model, codec), text[:2], tmp_path / "w", BacktranslationConfig(mode="greedy", **FAST))


KILLED_RUN = """
import sys, time
import mtadapt.augment.backtranslate as bt
import mtadapt.inference.sharded as sharded
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model

from mtadapt.inference.engine import PyTorchEngine

generate = PyTorchEngine.translate_ids
def slow_translate_ids(*args, **kwargs):  # slow enough to be killed mid-run
    time.sleep(0.4)
    return generate(*args, **kwargs)
PyTorchEngine.translate_ids = slow_translate_ids
loaded = load_model(sys.argv[1])
codec = PairCodec(loaded.family, loaded.tokenizer, None, None, loaded.decoder_start_token_id)
lines = open(sys.argv[2], encoding="utf-8").read().splitlines()
config = bt.BacktranslationConfig(mode="greedy", shard_size=3, max_length_factor=0.5, batch_size=2)
print("started", flush=True)
bt.generate_shards(PyTorchEngine(loaded.model, codec), lines, sys.argv[3], config)
"""


def test_resume_after_sigkill_loses_and_duplicates_nothing(tiny, lines, tmp_path, tiny_model_dir):
    model, codec = tiny
    text = ([line for line in lines if line] * 2)[:12]  # 12 lines -> 4 shards of 3
    (tmp_path / "in.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    (tmp_path / "run.py").write_text(textwrap.dedent(KILLED_RUN), encoding="utf-8")
    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tiny_model_dir("marian")),
                             str(tmp_path / "in.txt"), str(work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = work / "manifest.json"
    deadline = time.time() + 600  # a loaded machine imports torch slowly
    done: list[int] = []
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists():
            try:
                done = json.loads(manifest.read_text(encoding="utf-8"))["done_shards"]
            except (json.JSONDecodeError, KeyError):
                done = []
            if len(done) >= 2:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = json.loads(manifest.read_text(encoding="utf-8"))["done_shards"]
    assert 2 <= len(done) < 4  # killed mid-run
    config = BacktranslationConfig(mode="greedy", shard_size=3, max_length_factor=0.5, batch_size=2,
                                   drop_copies=False, drop_duplicates=False, drop_empty=False, max_length_ratio=0)
    assert generate_shards(PyTorchEngine(model, codec), text, work, config) == 4 - len(done)  # only the rest
    resumed = read_shards(work, text)
    assert [r.index for r in resumed] == list(range(12))  # each line once, in order
    fresh, _ = backtranslate(PyTorchEngine(model, codec), text, tmp_path / "fresh", config)
    assert synthetic_pairs(resumed, config) == fresh
    assert generate_shards(PyTorchEngine(model, codec), text, work, config) == 0  # finished: nothing to do


def test_mix_upsamples_real_pairs(tmp_path):
    real = [(f"r{i}", f"R{i}") for i in range(10)]
    synthetic = [(f"s{i}", f"S{i}") for i in range(7)]
    mixed = mix_corpora(real, synthetic, real_upsample=2.5, seed=3)
    assert len(mixed) == 10 * 2 + 5 + 7
    counts = {p: mixed.count(p) for p in real}
    assert sorted(counts.values()) == [2] * 5 + [3] * 5
    assert mixed[-7:] == synthetic
    assert mix_corpora(real, synthetic, 2.5, seed=3) == mixed
    with pytest.raises(ValueError, match="real_upsample must be >= 1"):
        mix_corpora(real, synthetic, 0.5)
    (tmp_path / "r.pt").write_text("um\ndois\n", encoding="utf-8")
    (tmp_path / "r.en").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "s.tsv").write_text("[BT] três\tthree\n", encoding="utf-8")
    counts = write_mixed_corpus([tmp_path / "r.pt", tmp_path / "r.en"], [tmp_path / "s.tsv"],
                                tmp_path / "m.pt", tmp_path / "m.en", real_upsample=2)
    assert counts == {"real": 2, "synthetic": 1, "mixed": 5, "real_report": "read 2 pairs, kept 2 (100.0%); dropped 0",
                      "synthetic_report": "read 1 pairs, kept 1 (100.0%); dropped 0"}
    assert (tmp_path / "m.pt").read_text(encoding="utf-8").splitlines() == ["um", "dois", "um", "dois", "[BT] três"]
    assert (tmp_path / "m.en").read_text(encoding="utf-8").splitlines() == ["one", "two", "one", "two", "three"]


def test_cli_backtranslate(tmp_path, lines, tiny_model_dir, capsys):
    from mtadapt.cli import main

    inp = tmp_path / "mono.en"
    inp.write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    out_src, out_tgt = tmp_path / "bt.src", tmp_path / "bt.en"
    argv = ["augment", "backtranslate", "--model", str(tiny_model_dir("marian")), "--input", str(inp),
            "--output-src", str(out_src), "--output-tgt", str(out_tgt), "--mode", "sample", "--outputs-per-sentence", "2",
            "--tag", "hh", "--max-length-factor", "0.5", "--max-length-ratio", "0", "--keep-copies", "--no-progress", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["generated"] == 10 and report["kept"] == 10 - report["dropped"]["duplicate"] - report["dropped"]["empty"]
    src = out_src.read_text(encoding="utf-8").splitlines()
    tgt = out_tgt.read_text(encoding="utf-8").splitlines()
    assert len(src) == len(tgt) == report["kept"] and all(s.startswith("hh ") for s in src)
    assert set(tgt) <= set(lines[:5])
    assert json.loads(Path(f"{out_src}.shards/report.json").read_text(encoding="utf-8")) == report
    assert main(argv) == 0  # a second run reuses the shards (the manifest matches)
    capsys.readouterr()
    assert main(["augment", "backtranslate", "--model", "tiny:marian", "--input", str(inp)]) == 2
    assert "error: give --output FILE.tsv" in capsys.readouterr().err


def test_dtype_casts_the_reverse_model_and_enters_the_fingerprint(tmp_path, lines, tiny_model_dir, monkeypatch):
    import torch

    import mtadapt.augment.backtranslate as bt
    import mtadapt.inference.sharded as sharded

    seen = []
    real = sharded.generate_shards

    def spy(engine, *args, **kwargs):
        seen.append(next(engine.model.parameters()).dtype)
        return real(engine, *args, **kwargs)

    monkeypatch.setattr(sharded, "generate_shards", spy)
    inp = tmp_path / "mono.en"
    inp.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    config = BacktranslationConfig(mode="greedy", max_length_ratio=0, **FAST)
    model = str(tiny_model_dir("marian"))
    bt.backtranslate_file(inp, tmp_path / "bt.tsv", None, config, model=model, work_dir=tmp_path / "w", dtype="bfloat16")
    assert seen == [torch.bfloat16]
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["fingerprint"]["model"]["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="differs in: model"):  # the same work folder, float32 now
        bt.backtranslate_file(inp, tmp_path / "bt.tsv", None, config, model=model, work_dir=tmp_path / "w", dtype="float32")
    bt.backtranslate_file(inp, tmp_path / "bt.tsv", None, config, model=model, work_dir=tmp_path / "f", dtype="float32")
    path = tmp_path / "f" / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    assert manifest["fingerprint"]["model"]["dtype"] == "float32"  # every precision is recorded
    assert manifest["fingerprint"]["model"]["engine"] == "pytorch"  # and the engine
    del manifest["fingerprint"]["model"]["dtype"]  # a folder from before precisions were recorded ran in float32:
    del manifest["fingerprint"]["model"]["engine"]  # (and from before engines, on PyTorch)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    bt.backtranslate_file(inp, tmp_path / "bt.tsv", None, config, model=model, work_dir=tmp_path / "f", dtype="float32")
    with pytest.raises(ValueError, match="differs in: model"):  # ... and is not taken for a bfloat16 one
        path.write_text(json.dumps(manifest), encoding="utf-8")
        bt.backtranslate_file(inp, tmp_path / "bt.tsv", None, config, model=model, work_dir=tmp_path / "f", dtype="bfloat16")
    with pytest.raises(ValueError, match=r"dtype 'fp8' is not one of float32, bfloat16, float16"):
        bt.backtranslate_file(inp, tmp_path / "bt.tsv", None, config, model=model, dtype="fp8")


def test_seen_pairs_equals_a_set():
    import random

    from mtadapt.augment.backtranslate import SeenPairs

    rng = random.Random(0)
    keys = [rng.getrandbits(64) for _ in range(300)] + [0, 2**64 - 1]
    seen, plain = SeenPairs(merge_every=7), set()  # many merges into the sorted array
    for key in keys + keys[:50]:
        assert (key in seen) == (key in plain)
        seen.add(key)
        plain.add(key)
    assert len(seen) == len(plain) and all(k in seen for k in plain)
    assert not any(rng.getrandbits(64) in seen for _ in range(200))
