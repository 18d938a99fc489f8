"""HF PEFT interop: export loads in PEFT with equal logits, PEFT adapters import, training
steps agree (loss and every gradient)."""

import copy

import pytest
import torch
from torch import nn
from transformers import MBartConfig, MBartForConditionalGeneration, T5Config, T5ForConditionalGeneration

from mtadapt.methods import base, lora, peft_interop, storage
from mtadapt.models.targets import BART_LIKE, T5

peft = pytest.importorskip("peft")


def tiny_mbart(seed: int = 0, dropout: float = 0.1) -> MBartForConditionalGeneration:
    torch.manual_seed(seed)
    config = MBartConfig(
        vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, init_std=0.3, dropout=dropout,
    )
    return MBartForConditionalGeneration(config).eval()


def tiny_t5(seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5ForConditionalGeneration(config).eval()


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(3, 100, (3, 7), generator=g), "labels": torch.randint(3, 100, (3, 5), generator=g)}


def randomize_b(model: nn.Module, adapter_name: str) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, layer in lora.lora_layers(model):
            layer.lora_B[adapter_name].copy_(torch.randn(layer.lora_B[adapter_name].shape, generator=g) * 0.5)


@pytest.mark.parametrize("family", ["mbart", "t5"])
def test_export_loads_in_peft_with_equal_logits(tmp_path, family):
    base_model = tiny_mbart() if family == "mbart" else tiny_t5()
    targets = BART_LIKE if family == "mbart" else T5
    ours = copy.deepcopy(base_model)
    storage.add_adapter(ours, lora.LoraConfig(rank=4, alpha=8, use_rslora=True), targets, "x")
    randomize_b(ours, "x")
    peft_interop.export_lora_to_peft(ours, tmp_path / "peft", "x")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base_model), tmp_path / "peft").eval()
    b = batch()
    with torch.no_grad():
        a_logits = ours(**b).logits
        p_logits = theirs(**b).logits
        plain = base_model(**b).logits
    assert (a_logits - plain).abs().max() > 0.1
    assert (a_logits - p_logits).abs().max() < 1e-5


def test_import_adapter_made_by_peft(tmp_path):
    base_model = tiny_mbart()
    theirs = peft.get_peft_model(
        copy.deepcopy(base_model), peft.LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    theirs.save_pretrained(tmp_path / "peft")
    ours = copy.deepcopy(base_model)
    config = peft_interop.import_peft_lora(ours, tmp_path / "peft", "imported")
    assert config.rank == 4 and config.alpha == 12.0 and len(lora.lora_layers(ours)) == 12
    b = batch()
    with torch.no_grad():
        assert (ours(**b).logits - theirs.eval()(**b).logits).abs().max() < 1e-5
    # and it saves as a normal mtadapt adapter
    storage.save_adapter(ours, tmp_path / "ours", "imported")


def test_import_refuses_unsupported_peft_options(tmp_path):
    theirs = peft.get_peft_model(tiny_mbart(), peft.LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    theirs.save_pretrained(tmp_path / "dora")
    with pytest.raises(ValueError, match="use_dora=True"):
        peft_interop.import_peft_lora(tiny_mbart(), tmp_path / "dora")


def test_one_training_step_matches_peft():
    base_model = tiny_mbart(dropout=0.0)  # train mode: no stochastic base dropout to desync the two
    theirs = peft.get_peft_model(
        copy.deepcopy(base_model), peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)  # nonzero B so A gets a gradient too
    ours = copy.deepcopy(base_model)
    lora.apply(ours, lora.LoraConfig(rank=4, alpha=8), BART_LIKE)
    base.freeze_base(ours)
    peft_params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, layer in lora.lora_layers(ours):
            layer.lora_A["default"].copy_(peft_params[f"base_model.model.{name}.lora_A.default.weight"])
            layer.lora_B["default"].copy_(peft_params[f"base_model.model.{name}.lora_B.default.weight"])
    ours.train()
    theirs.train()
    b = batch()
    loss_ours = ours(**b).loss
    loss_theirs = theirs(**b).loss
    loss_ours.backward()
    loss_theirs.backward()
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=1e-6, atol=1e-6)
    n_checked = 0
    for name, layer in lora.lora_layers(ours):
        for ab in ("A", "B"):
            g_ours = getattr(layer, f"lora_{ab}")["default"].grad
            g_theirs = peft_params[f"base_model.model.{name}.lora_{ab}.default.weight"].grad
            assert g_ours.abs().max() > 0
            torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-7)
            n_checked += 1
    assert n_checked == 24
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == theirs.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("family", ["mbart", "t5"])
def test_prompt_export_loads_in_peft_with_equal_logits_and_generation(tmp_path, family):
    from mtadapt.methods.prompt import PromptConfig

    base_model = tiny_mbart(dropout=0.0) if family == "mbart" else tiny_t5()
    targets = BART_LIKE if family == "mbart" else T5
    ours = copy.deepcopy(base_model)
    storage.add_adapter(ours, PromptConfig(prompt_length=5, init="normal", init_std=1.0, seed=0), targets, "p")
    peft_interop.export_prompt_to_peft(ours, tmp_path / "peft", "p")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base_model), tmp_path / "peft").eval()
    b = batch()
    b["attention_mask"] = torch.ones_like(b["input_ids"])
    b["attention_mask"][1, 4:] = 0  # a padded row: PEFT and mtadapt extend the mask alike
    with torch.no_grad():
        a_logits = ours(**b).logits
        p_logits = theirs(**b).logits
        plain = base_model(**b).logits
        kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=2, do_sample=False, max_new_tokens=6)
        a_gen, p_gen = ours.generate(**kw), theirs.generate(**kw)
    assert (a_logits - plain).abs().max() > 0.1
    assert (a_logits - p_logits).abs().max() < 1e-5
    assert torch.equal(a_gen, p_gen)


def test_prompt_export_refuses_a_placement_peft_does_not_share(tmp_path):
    from transformers import MarianConfig, MarianMTModel

    from mtadapt.methods.prompt import PromptConfig

    config = MarianConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
                          encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, decoder_vocab_size=100, pad_token_id=1,
                          eos_token_id=2, decoder_start_token_id=1, max_position_embeddings=64, scale_embedding=True)
    model = MarianMTModel(config).eval()
    storage.add_adapter(model, PromptConfig(prompt_length=2), BART_LIKE, "p")
    with pytest.raises(ValueError, match="outside the embedding module"):
        peft_interop.export_prompt_to_peft(model, tmp_path / "peft", "p")
    suffix = tiny_mbart()
    storage.add_adapter(suffix, PromptConfig(prompt_length=2, placement="suffix"), BART_LIKE, "s")
    with pytest.raises(ValueError, match="PEFT only prepends"):
        peft_interop.export_prompt_to_peft(suffix, tmp_path / "peft", "s")
