"""Engines (`inference.engine`): the PyTorch engine is `generation.translate_ids` behind the
protocol (adapters, prompts, seeds); the CTranslate2 engine, over a merged random LoRA of every
HF family, gives the PyTorch engine's float32 greedy tokens exactly and its beam-3 outputs on
nearly every sentence; the CLI refuses each bad input in one line."""

from __future__ import annotations

import importlib.util
import json

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

    sample = GenerationConfig(do_sample=True, top_k=20, sampling_temperature=1.5, batch_size=4)
    with engine.seeded(7):
        first = engine.translate_ids(ids, sample)
    with engine.seeded(7):
        again = engine.translate_ids(ids, sample)
    with engine.seeded(8):
        other = engine.translate_ids(ids, sample)
    assert first == again and first != other
