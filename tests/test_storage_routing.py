"""Adapter storage (safetensors + JSON, fingerprints), many adapters, mixed beam search, merge."""

import json

import pytest
import torch
from torch import nn
from transformers import AutoModelForSeq2SeqLM, MBartConfig, MBartForConditionalGeneration

from mtadapt.methods import base, baselines, lora, merge, registry, storage
from mtadapt.methods.routing import AdapterSet
from mtadapt.models.targets import BART_LIKE


def tiny_mbart(seed: int = 0) -> MBartForConditionalGeneration:
    torch.manual_seed(seed)
    config = MBartConfig(
        vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, init_std=0.3,
    )
    return MBartForConditionalGeneration(config).eval()


def randomize_b(model: nn.Module, adapter_name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora.lora_layers(model):
            if adapter_name in layer.lora_B:
                B = layer.lora_B[adapter_name]
                B.copy_(torch.randn(B.shape, generator=g) * 0.5)


def logits(model: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(3, 100, (2, 7), generator=g)
    y = torch.randint(3, 100, (2, 5), generator=g)
    with torch.no_grad():
        return model(input_ids=x, decoder_input_ids=y).logits


def lora_model(seed_b: int = 5) -> MBartForConditionalGeneration:
    model = tiny_mbart()
    storage.add_adapter(model, lora.LoraConfig(rank=4, alpha=8), BART_LIKE, "de")
    randomize_b(model, "de", seed_b)
    return model


def test_save_load_round_trip(tmp_path):
    model = lora_model()
    expected = logits(model)
    storage.save_adapter(model, tmp_path / "ad", "de")
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["adapter.json", "adapter.safetensors"]
    meta = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    assert meta["method"] == "lora" and meta["settings"]["rank"] == 4 and len(meta["modules"]) == 12
    assert set(meta["fingerprint"]) == {"architecture", "weights"}

    fresh = tiny_mbart()
    assert storage.load_adapter(fresh, tmp_path / "ad") == "de"
    torch.testing.assert_close(logits(fresh), expected, rtol=0, atol=0)
    # the saved file holds only LoRA tensors: 12 modules x (A, B)
    from safetensors.torch import load_file

    assert len(load_file(str(tmp_path / "ad" / "adapter.safetensors"))) == 24


def test_load_into_other_base_names_both_fingerprints(tmp_path):
    model = lora_model()
    storage.save_adapter(model, tmp_path / "ad", "de")
    saved = json.loads((tmp_path / "ad" / "adapter.json").read_text())["fingerprint"]["weights"]
    other = tiny_mbart(seed=123)
    with pytest.raises(storage.FingerprintMismatchError) as err:
        storage.load_adapter(other, tmp_path / "ad")
    assert saved in str(err.value) and storage.fingerprint(other).weights in str(err.value)
    assert base.adapter_names(other) == []


def test_fingerprint_ignores_wrappers_and_adapters():
    plain = tiny_mbart()
    assert storage.fingerprint(plain) == storage.fingerprint(lora_model())


def test_adapter_set_add_activate_switch_disable_delete(tmp_path):
    model = tiny_mbart()
    plain = logits(model)
    adapters = AdapterSet(model, BART_LIKE)
    adapters.add(lora.LoraConfig(rank=4), "de")
    adapters.add(lora.LoraConfig(rank=2), "fr")
    randomize_b(model, "de", 1)
    randomize_b(model, "fr", 2)
    adapters.activate("de")
    de = logits(model)
    adapters.activate("fr")
    fr = logits(model)
    assert (de - fr).abs().max() > 0.1 and (de - plain).abs().max() > 0.1
    adapters.disable()
    torch.testing.assert_close(logits(model), plain, rtol=0, atol=0)
    adapters.save("fr", tmp_path / "fr")
    adapters.delete("fr")
    assert adapters.names == ["de"]
    adapters.load(tmp_path / "fr", "fr2")
    adapters.activate("fr2")
    torch.testing.assert_close(logits(model), fr, rtol=0, atol=0)
    with pytest.raises(KeyError, match="unknown adapter"):
        adapters.activate("xx")


def test_mixed_adapters_under_beam_search_equal_single_runs():
    model = tiny_mbart()
    adapters = AdapterSet(model, BART_LIKE)
    adapters.add(lora.LoraConfig(rank=4), "de")
    adapters.add(lora.LoraConfig(rank=4), "fr")
    randomize_b(model, "de", 1)
    randomize_b(model, "fr", 2)
    g = torch.Generator().manual_seed(3)
    src = torch.randint(3, 100, (2, 7), generator=g)
    kwargs = dict(num_beams=3, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    alone = []
    for row, name in enumerate(["de", "fr"]):
        adapters.activate(name)
        alone.append(adapters.generate(input_ids=src[row : row + 1], **kwargs)[0])
    adapters.disable()
    mixed = adapters.generate(input_ids=src, row_adapters=["de", "fr"], **kwargs)
    assert not torch.equal(alone[0], alone[1])  # the two adapters really translate differently
    torch.testing.assert_close(mixed[0], alone[0], rtol=0, atol=0)
    torch.testing.assert_close(mixed[1], alone[1], rtol=0, atol=0)
    # routing is cleared afterwards
    assert all(layer._route is None for _, layer in lora.lora_layers(model))


def test_merged_folder_loads_in_plain_transformers(tmp_path):
    model = lora_model()
    expected = logits(model)
    merge.save_merged(model, tmp_path / "merged")
    plain = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged").eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(logits(plain), expected, rtol=1e-5, atol=1e-5)
    src = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(4))
    kwargs = dict(max_new_tokens=10, num_beams=1, do_sample=False)
    torch.testing.assert_close(plain.generate(input_ids=src, **kwargs), model.generate(input_ids=src, **kwargs))
    assert lora.lora_layers(model)  # the original keeps its adapter


def test_bitfit_save_load(tmp_path):
    model = tiny_mbart()
    baselines.apply(model, baselines.BitFitConfig())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith("bias") for n in trainable)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.1)
    expected = logits(model)
    storage.save_adapter(model, tmp_path / "bitfit")
    fresh = tiny_mbart()
    storage.load_adapter(fresh, tmp_path / "bitfit")
    torch.testing.assert_close(logits(fresh), expected, rtol=0, atol=0)


def test_registry_names_valid_methods():
    with pytest.raises(ValueError, match="valid methods: lora"):
        registry.get_method("loraa")
    assert registry.get_method("lora").config_class is lora.LoraConfig
    with pytest.raises(ValueError, match="unknown setting"):
        registry.config_from_dict("lora", {"rnak": 4})
    assert {"lora", "full", "bitfit"} <= set(registry.available_methods())


def test_delete_adapter_leaves_no_stale_active_name():
    """Layers that never held an adapter keep its name active after a model-wide activation;
    deleting it must clear it there too, or the next `add_adapter` (which re-activates what
    was active) fails on the unknown name."""
    from mtadapt.methods.bottleneck import HoulsbyConfig

    model = tiny_mbart()
    storage.add_adapter(model, lora.LoraConfig(rank=2), BART_LIKE, "a")
    storage.add_adapter(model, HoulsbyConfig(bottleneck_dim=4), BART_LIKE, "b")
    base.set_active_adapters(model, ["a", "b"])
    base.delete_adapter(model, "b")
    assert all(layer.active_adapters() == ["a"] for _, layer in base.adapter_layers(model))
    storage.add_adapter(model, lora.LoraConfig(rank=2), BART_LIKE, "c")  # raised KeyError before
    assert base.adapter_names(model) == ["a", "c"]


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_add_method_leaves_exactly_the_adapter_trainable():
    """`storage.add_method(..., freeze=True)` (what `get_peft_model` and `mtadapt train`
    call): exactly the adapter's parameters train. tiny_mbart: d=32, LoRA's default targets
    are q_proj and v_proj of 2 encoder self-attentions and 2 decoder self- and
    cross-attentions (12 Linear 32x32), each adding A (r, 32) and B (32, r)."""
    d, r = 32, 4
    model = tiny_mbart()
    storage.add_method(model, lora.LoraConfig(rank=r, alpha=8), BART_LIKE, "de")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 12 * r * (d + d) == 3072
    adapter = {id(p) for _, layer in base.adapter_layers(model) for p in layer.adapter_parameters("de")}
    assert {id(p) for p in model.parameters() if p.requires_grad} == adapter
    assert all(".lora_" in n for n in trainable_names(model))

    # a second adapter trains too; the first stays trainable (every adapter trains, as in PEFT)
    storage.add_method(model, lora.LoraConfig(rank=2, alpha=4), BART_LIKE, "fr")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 12 * (r + 2) * (d + d)

    unfrozen = tiny_mbart()
    storage.add_method(unfrozen, lora.LoraConfig(rank=r), BART_LIKE, "de", freeze=False)
    assert trainable_names(unfrozen) == {n for n, _ in unfrozen.named_parameters()}  # nothing frozen


def test_add_method_whole_model_methods_choose_their_parameters():
    """Full fine-tuning trains everything; BitFit the biases: per encoder layer 4 attention
    projections (d each), fc1 (ffn), fc2 (d), 2 LayerNorms (d); per decoder layer 8
    projections, fc1, fc2, 3 LayerNorms; plus layernorm_embedding and layer_norm of encoder
    and decoder (d each). MBart's final_logits_bias is a buffer, not counted."""
    d, ffn, layers = 32, 64, 2
    full = tiny_mbart()
    storage.add_method(full, baselines.FullConfig(), BART_LIKE)
    assert trainable_names(full) == {n for n, _ in full.named_parameters()}

    bitfit = tiny_mbart()
    storage.add_method(bitfit, baselines.BitFitConfig(), BART_LIKE)
    per_encoder_layer = 4 * d + ffn + d + 2 * d
    per_decoder_layer = 8 * d + ffn + d + 3 * d
    expected = layers * (per_encoder_layer + per_decoder_layer) + 4 * d
    assert sum(p.numel() for p in bitfit.parameters() if p.requires_grad) == expected == 1600
    assert all(n.endswith(".bias") for n in trainable_names(bitfit))
