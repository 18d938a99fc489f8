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
    with pytest.raises(mtadapt.ConfigError, match=r"unknown setting\(s\) \['rnak'\] for method 'lora'"):
        mtadapt.get_peft_model(base, "lora", rnak=4)
    with pytest.raises(mtadapt.ConfigError, match="settings"):
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
    with pytest.raises(mtadapt.ConfigError, match="row_adapters has 2 names for 4 sentences"):
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
    with pytest.raises(mtadapt.ConfigError, match="without a tokenizer"):
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


# ------------------------------------------------ what a user can get wrong: an MtadaptError each


def test_a_string_is_one_sentence(adapted):
    one = adapted.translate(SOURCES[0])  # not one translation per character
    assert isinstance(one, str) and one == adapted.translate(SOURCES[:1])[0]
    assert adapted.translate(SOURCES[0], row_adapters=["a"]) == one


def test_translate_takes_strings_only(adapted):
    from mtadapt.errors import DataError

    with pytest.raises(DataError, match=r"^texts\[1\] is None, not a string: translate takes a sentence \(str\) or a list of them$"):
        adapted.translate([SOURCES[0], None])
    with pytest.raises(DataError, match=r"^texts\[0\] is int, not a string"):
        adapted.translate([3])
    with pytest.raises(mtadapt.MtadaptError, match=r"^unknown source language code 'xx_YY' for this mbart50 tokenizer; it knows: "):
        adapted.translate(SOURCES, src_lang="xx_YY")
    with pytest.raises(mtadapt.ConfigError, match=r"^unknown target language code 'de'"):
        adapted.translate(SOURCES, tgt_lang="de")


@pytest.mark.parametrize("name", ["", "de.en", "__base__", "keys", "a/b", 7])
def test_bad_adapter_names_are_refused_before_anything_changes(adapted, tmp_path, name):
    with pytest.raises(mtadapt.ConfigError, match=rf"^adapter name {name!r} is not valid: use letters, digits, '_' and '-' "):
        adapted.add_adapter(name, mtadapt.LoraConfig(rank=2))
    assert adapted.adapters.names == ["a"] and list(adapted.model.mtadapt_adapter_configs) == ["a"]
    with pytest.raises(mtadapt.ConfigError, match="^adapter name "):
        mtadapt.get_peft_model(mtadapt.load_model("tiny:mbart50"), mtadapt.LoraConfig(rank=2), name)
    # the model is as it was: it saves, takes a valid name, merges
    assert adapted.save_pretrained(tmp_path / "saved") == tmp_path / "saved"
    adapted.add_adapter("de-en_2", mtadapt.LoraConfig(rank=2))
    assert adapted.adapters.names == ["a", "de-en_2"]
    adapted.merge_and_unload()


def test_unknown_and_taken_adapter_names_are_named(adapted, tmp_path):
    unknown = r"^unknown adapter\(s\) \['nope'\]; the model holds \['a'\]$"
    for call in (lambda: adapted.set_adapter("a", "nope"), lambda: adapted.delete_adapter("nope"),
                 lambda: adapted.save_pretrained(tmp_path / "x", "nope"), lambda: adapted.merge_and_unload(["nope"]),
                 lambda: adapted.translate(SOURCES[:1], row_adapters=["nope"])):
        with pytest.raises(mtadapt.AdapterError, match=unknown):
            call()
    assert adapted.active_adapters == ["a"] and not (tmp_path / "x").exists()
    with pytest.raises(mtadapt.AdapterError, match=r"^the model already holds an adapter 'a'; delete_adapter\('a'\) first, or pick another name$"):
        adapted.add_adapter("a", mtadapt.LoraConfig(rank=2))


def test_saving_onto_a_file_is_refused(adapted, tmp_path):
    path = tmp_path / "taken.txt"
    path.write_text("x", encoding="utf-8")
    for target in (path, path / "inside"):
        with pytest.raises(mtadapt.ConfigError, match=rf"^save_pretrained: {path} is a file, not a folder; give a folder path"):
            adapted.save_pretrained(target)
    assert path.read_text(encoding="utf-8") == "x"


def test_a_config_is_a_method_config_or_a_method_name(adapted):
    base = mtadapt.load_model("tiny:mbart50")
    refused = r"^config must be a method config \(mtadapt.LoraConfig\(rank=8\), ...\) or a method name with its settings as keywords"
    for config in ({"method": "lora", "rank": 2}, 5):
        with pytest.raises(mtadapt.ConfigError, match=refused):
            mtadapt.get_peft_model(base, config)
        with pytest.raises(mtadapt.ConfigError, match=refused):
            adapted.add_adapter("b", config)
    assert adapted.adapters.names == ["a"]
    adapted.add_adapter("b", "lora", rank=2)  # a name and keywords, as get_peft_model takes them
    assert adapted.model.mtadapt_adapter_configs["b"] == mtadapt.LoraConfig(rank=2)


def test_a_deleted_bottleneck_adapter_does_not_block_merging_the_lora_one(adapted):
    """Deleting the last bottleneck adapter leaves its wrappers (plain `base_layer(x)`): the
    LoRA adapter still merges, the merged model is plain, and its logits are the LoRA model's."""
    from mtadapt.methods.base import adapter_layers
    from mtadapt.methods.merge import merge_refusal

    with torch.no_grad():
        expected = adapted(**batch()).logits
    adapted.add_adapter("h", mtadapt.HoulsbyConfig(bottleneck_dim=8))
    refusal = merge_refusal(adapted.model)
    assert refusal is not None and "bottleneck adapters" in refusal  # a held houlsby adapter is refused
    adapted.delete_adapter("h")
    assert merge_refusal(adapted.model) is None
    plain = adapted.merge_and_unload(["a"])
    assert not list(adapter_layers(plain))
    assert set(plain.state_dict()) == set(mtadapt.load_model("tiny:mbart50").model.state_dict())  # no wrapper's names
    with torch.no_grad():
        assert (plain(**batch()).logits - expected).abs().max() < 1e-3
