"""The Python API (`mtadapt.api`): a cheap `import mtadapt`, and each call agreeing with the
module it stands on (counts, fingerprints, switching and per-row routing, merge, PEFT)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import mtadapt
from mtadapt.methods import lora, params

SOURCES = ["der alte hund sieht eine katze", "ein kind mag dieser baum heute", "jeder vogel hoert die frau",
           "der mann nimmt das buch"]


def randomize_b(model, adapter_name: str, seed: int) -> None:
    """LoRA starts as the identity (B = 0); random B makes adapters differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora.lora_layers(model):
            if adapter_name in layer.lora_B:
                B = layer.lora_B[adapter_name]
                B.copy_(torch.randn(B.shape, generator=g) * 2.0)


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"input_ids": torch.randint(5, 200, (2, 6), generator=g), "decoder_input_ids": torch.randint(5, 200, (2, 4), generator=g)}


@pytest.fixture
def adapted():
    model = mtadapt.get_peft_model(mtadapt.load_model("tiny:mbart50"), mtadapt.LoraConfig(rank=4, targets="all-linear"),
                                   "a", src_lang="de_DE", tgt_lang="en_XX")
    randomize_b(model.model, "a", 1)
    model.eval()
    return model


def test_import_mtadapt_loads_no_torch():
    code = ("import sys, mtadapt; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'get_peft_model' in dir(mtadapt); f = mtadapt.get_peft_model; assert 'torch' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mtadapt.nope  # noqa: B018


def test_trainable_count_is_the_params_report_and_peft_count():
    peft = pytest.importorskip("peft")
    base = mtadapt.load_model("tiny:mbart50")
    row = params.param_report(base.model, "lora", {"rank": 4, "targets": "all-linear"})
    model = mtadapt.get_peft_model(base, "lora", rank=4, targets="all-linear")
    assert model.get_nb_trainable_parameters() == (row.trainable, row.total)
    assert row.trainable > 0 and all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())
    modules = sorted({n.rsplit(".", 1)[-1] for n, _ in lora.lora_layers(model.model)})
    theirs = peft.get_peft_model(mtadapt.load_model("tiny:mbart50").model, peft.LoraConfig(r=4, target_modules=modules))
    assert theirs.get_nb_trainable_parameters() == (row.trainable, row.total)


def test_bad_settings_are_named():
    base = mtadapt.load_model("tiny:mbart50")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['rnak'\] for method 'lora'"):
        mtadapt.get_peft_model(base, "lora", rnak=4)
    with pytest.raises(TypeError, match="settings"):
        mtadapt.get_peft_model(base, mtadapt.LoraConfig(), rank=4)


def test_save_load_keeps_outputs_and_refuses_another_base(adapted, tmp_path):
    adapted.save_pretrained(tmp_path / "a")
    with torch.no_grad():
        expected = adapted(**batch()).logits
    again = mtadapt.from_pretrained("tiny:mbart50", tmp_path / "a", src_lang="de_DE", tgt_lang="en_XX")
    assert again.active_adapters == ["a"]
    with torch.no_grad():
        assert torch.equal(again(**batch()).logits, expected)
    assert again.translate(SOURCES) == adapted.translate(SOURCES)
    other = mtadapt.load_model("tiny:mbart50")
    with torch.no_grad():
        other.model.model.shared.weight[0] += 1.0  # another base: same architecture, other weights
    with pytest.raises(mtadapt.FingerprintMismatchError, match="different fingerprint"):
        mtadapt.from_pretrained(other, tmp_path / "a")


def test_switching_and_per_row_adapters_agree(adapted, tmp_path):
    adapted.add_adapter("b", mtadapt.LoraConfig(rank=4, targets="all-linear"))
    randomize_b(adapted.model, "b", 2)
    assert adapted.active_adapters == ["a"]  # a later adapter waits for set_adapter
    with_a = adapted.translate(SOURCES)
    adapted.set_adapter("b")
    with_b = adapted.translate(SOURCES)
    with adapted.disable_adapters():
        plain = adapted.translate(SOURCES)
    assert adapted.active_adapters == ["b"]
    assert with_a != with_b and with_a != plain
    rows = ["a", "b", None, "a"]
    mixed = adapted.translate(SOURCES, row_adapters=rows, batch_size=3, num_beams=2)
    # the same batches (the output length limit follows the longest source of a batch)
    adapted.set_adapter("a")
    beam_a = adapted.translate(SOURCES, batch_size=3, num_beams=2)
    adapted.set_adapter("b")
    beam_b = adapted.translate(SOURCES, batch_size=3, num_beams=2)
    with adapted.disable_adapters():
        beam_plain = adapted.translate(SOURCES, batch_size=3, num_beams=2)
    by_name = {"a": beam_a, "b": beam_b, None: beam_plain}
    assert mixed == [by_name[r][i] for i, r in enumerate(rows)]
    # two adapters save into one sub-folder each and load back as they were
    adapted.save_pretrained(tmp_path / "both")
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["a", "b"]
    again = mtadapt.from_pretrained("tiny:mbart50", tmp_path / "both", src_lang="de_DE", tgt_lang="en_XX")
    again.set_adapter("b")
    assert again.translate(SOURCES) == with_b
    with pytest.raises(ValueError, match="row_adapters has 2 names for 4 sentences"):
        adapted.translate(SOURCES, row_adapters=["a", "b"])


def test_merge_and_unload_gives_the_same_logits_without_lora(adapted):
    with torch.no_grad():
        expected = adapted(**batch()).logits
        with adapted.disable_adapters():
            base_logits = adapted(**batch()).logits
    plain = adapted.merge_and_unload()
    assert not lora.lora_layers(plain) and plain is adapted.model
    with torch.no_grad():
        merged = plain(**batch()).logits
    # float rounding of W + s * B @ A (|B| ~ 2 here) against an adapter that moves logits by > 0.1
    assert (merged - expected).abs().max() < 1e-3 < 0.1 < (expected - base_logits).abs().max()
    assert adapted.translate(SOURCES[:1]) == mtadapt.AdaptedModel(mtadapt.wrap_model(plain, adapted.tokenizer), "de_DE", "en_XX").translate(SOURCES[:1])


def test_export_peft_loads_in_peft_with_equal_logits(adapted, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSeq2SeqLM

    adapted.export_peft(tmp_path / "peft")
    theirs = peft.PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(adapted.loaded.name_or_path), tmp_path / "peft").eval()
    with torch.no_grad():
        assert torch.allclose(theirs(**batch()).logits, adapted(**batch()).logits, atol=1e-5)


def test_a_plain_transformers_model_with_its_tokenizer(tmp_path):
    loaded = mtadapt.load_model("tiny:mbart50")
    model = mtadapt.get_peft_model(loaded.model, mtadapt.LoraConfig(rank=2), tokenizer=loaded.tokenizer,
                                   src_lang="de_DE", tgt_lang="en_XX")
    assert model.loaded.family.name == "mbart50"
    assert len(model.translate(SOURCES)) == len(SOURCES)
    bare = mtadapt.get_peft_model(mtadapt.load_model("tiny:mbart50").model, mtadapt.LoraConfig(rank=2))
    with pytest.raises(ValueError, match="without a tokenizer"):
        bare.translate(SOURCES)


def test_export_peft_names_what_it_cannot_export(tmp_path):
    model = mtadapt.get_peft_model(mtadapt.load_model("tiny:mbart50"), "houlsby", bottleneck_dim=4)
    with pytest.raises(ValueError, match="PEFT export takes LoRA and prompt tuning adapters; 'default' is houlsby"):
        model.export_peft(tmp_path / "x")
    two = mtadapt.get_peft_model(mtadapt.load_model("tiny:mbart50"), mtadapt.LoraConfig(rank=2), "a")
    two.add_adapter("b", mtadapt.LoraConfig(rank=2))
    two.set_adapter("a", "b")
    with pytest.raises(ValueError, match=r"holds \['a', 'b'\] \(2 active\): name the one to export"):
        two.export_peft(tmp_path / "y")
    assert (two.export_peft(tmp_path / "b", "b") / "adapter_config.json").exists()
