"""Parameter report: exact agreement with PEFT on real architectures built on the meta device."""

import pytest
import torch
from transformers import MBartConfig, MBartForConditionalGeneration

from mtadapt.methods import params


def test_t5_base_lora_r8_matches_peft_numbers():
    row = params.param_report("t5-base", "lora", {"rank": 8})
    assert row.trainable == 884_736
    assert row.total == 222_903_552 + 884_736
    assert row.adapter_bytes_fp32 == 884_736 * 4 and row.adapter_bytes_bf16 == 884_736 * 2


def test_mbart_large_50_lora_r8_matches_peft_numbers():
    row = params.param_report("mbart-large-50", "lora", {"rank": 8})
    assert (row.trainable, row.total) == (1_179_648, 612_059_136)
    assert f"{row.trainable_percent:.4f}" == "0.1927"


@pytest.mark.parametrize(
    "arch, total",
    [("facebook/m2m100_418M", 483_905_536), ("facebook/nllb-200-distilled-600M", 615_073_792),
     ("Helsinki-NLP/opus-mt-de-en", 74_410_496), ("t5-small", 60_506_624)],
)
def test_architectures_build_on_meta_with_known_totals(arch, total):
    model = params.build_meta_model(arch)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert params.param_report(model, None).total == total


@pytest.mark.parametrize("arch, modules", [("Helsinki-NLP/opus-mt-de-en", ["q_proj", "v_proj"]),
                                           ("t5-small", ["q", "k", "v", "o", "wi", "wo"])])
def test_agrees_with_peft_counts(arch, modules):
    peft = pytest.importorskip("peft")
    settings = {"rank": 4, "targets": "default" if len(modules) == 2 else "all-linear"}
    ours = params.param_report(arch, "lora", settings)
    theirs = peft.get_peft_model(params.build_meta_model(arch), peft.LoraConfig(r=4, target_modules=modules))
    assert (ours.trainable, ours.total) == theirs.get_nb_trainable_parameters()


def test_report_on_a_model_does_not_change_it():
    torch.manual_seed(0)
    model = MBartForConditionalGeneration(MBartConfig(
        vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))
    total = sum(p.numel() for p in model.parameters())
    row = params.param_report(model, "lora", {"rank": 2, "targets": "all-linear"})
    # 2 enc x (4 attn 32x32 + fc1 32->64 + fc2 64->32) + 2 dec x (8 attn + fc1 + fc2), r=2
    assert row.trainable == 2 * (2 * (4 * 64 + 96 + 96) + 2 * (8 * 64 + 96 + 96))
    assert row.total == total + row.trainable
    assert sum(p.numel() for p in model.parameters()) == total
    assert next(model.parameters()).device.type == "cpu"


def test_bitfit_and_full_rows_and_table():
    rows = [params.param_report("opus-mt-de-en", "bitfit", {}), params.param_report("opus-mt-de-en", "full", {})]
    assert rows[0].trainable == 82_944
    # the frozen sinusoidal position tables (2 x 512 x 512) stay frozen in full fine-tuning
    assert rows[1].trainable == 74_410_496 - 2 * 512 * 512
    table = params.format_table(rows)
    assert "82,944" in table and "bitfit" in table and table.count("\n") == 3


def test_unknown_architecture_lists_known():
    with pytest.raises(ValueError, match="t5-base"):
        params.build_meta_model("gpt-5")
