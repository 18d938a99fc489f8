"""LoRA: exact counts, identity at init, merge round trip, safe merge, routing vs a plain loop."""

import math

import pytest
import torch
from torch import nn
from transformers import MBartConfig, MBartForConditionalGeneration, T5Config, T5ForConditionalGeneration

from mtadapt.methods import base, lora
from mtadapt.models.targets import BART_LIKE, T5


def tiny_mbart(seed: int = 0) -> MBartForConditionalGeneration:
    torch.manual_seed(seed)
    config = MBartConfig(
        vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, init_std=0.3,
    )
    return MBartForConditionalGeneration(config).eval()


def tiny_t5(seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5ForConditionalGeneration(config).eval()


def randomize_b(model: nn.Module, std: float = 0.5) -> None:
    """B starts at zero (identity); give it values so the adapter changes outputs."""
    for _, layer in lora.lora_layers(model):
        for name in layer.lora_B:
            nn.init.normal_(layer.lora_B[name], std=std)


def logits(model: nn.Module, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, 100, (2, 7), generator=g)
    y = torch.randint(3, 100, (2, 5), generator=g)
    with torch.no_grad():
        return model(input_ids=x, decoder_input_ids=y).logits


def test_config_errors_name_every_bad_value():
    with pytest.raises(ValueError) as err:
        lora.LoraConfig(rank=0, dropout=1.5, targets="everything")
    message = str(err.value)
    assert "rank=0" in message and "dropout=1.5" in message and "'everything'" in message


def test_scale_plain_and_rslora():
    assert lora.LoraConfig(rank=8, alpha=16).scale == 2.0
    assert lora.LoraConfig(rank=16, alpha=16, use_rslora=True).scale == 4.0


def test_default_targets_count_exactly_mbart():
    model = tiny_mbart()
    lora.apply(model, lora.LoraConfig(rank=4), BART_LIKE)
    base.freeze_base(model)
    names = [n for n, _ in lora.lora_layers(model)]
    # q,v of 2 encoder self-attn + q,v of 2 decoder self-attn and 2 cross-attn = 12 Linear(32, 32)
    assert len(names) == 12
    assert "model.decoder.layers.1.encoder_attn.v_proj" in names
    counts = base.count_parameters(model)
    assert counts.trainable == 12 * 4 * (32 + 32) == 3072
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())


def test_all_linear_targets_t5():
    model = tiny_t5()
    lora.apply(model, lora.LoraConfig(rank=2, targets="all-linear"), T5)
    base.freeze_base(model)
    # encoder: 4 attn + wi, wo per block; decoder: 8 attn + wi, wo per block; 2 blocks each
    attn = 2 * 4 * 2 * (32 + 32) + 2 * 8 * 2 * (32 + 32)
    ffn = 4 * 2 * ((32 + 64) + (64 + 32))
    assert base.count_parameters(model).trainable == attn + ffn
    assert "lm_head" not in [n for n, _ in lora.lora_layers(model)]


def test_init_matches_nn_linear_and_is_identity():
    model = tiny_mbart()
    before = logits(model)
    lora.apply(model, lora.LoraConfig(rank=4), BART_LIKE)
    torch.testing.assert_close(logits(model), before, rtol=0, atol=0)
    layer = lora.lora_layers(model)[0][1]
    A = layer.lora_A["default"]
    bound = 1 / math.sqrt(32)  # kaiming_uniform(a=sqrt(5)) on fan_in=32
    assert A.abs().max() <= bound and A.abs().max() > 0.5 * bound
    assert torch.count_nonzero(layer.lora_B["default"]) == 0


def test_forward_equals_explicit_formula():
    torch.manual_seed(0)
    layer = lora.LoraLinear(nn.Linear(16, 24))
    layer.add_adapter("a", lora.LoraConfig(rank=3, alpha=6))
    nn.init.normal_(layer.lora_B["a"])
    layer.set_active_adapters(["a"])
    x = torch.randn(5, 4, 16)
    W, b = layer.base_layer.weight, layer.base_layer.bias
    expected = x @ W.T + b + 2.0 * x @ layer.lora_A["a"].T @ layer.lora_B["a"].T
    torch.testing.assert_close(layer(x), expected)
    layer.set_active_adapters([])
    torch.testing.assert_close(layer(x), x @ W.T + b)


def test_forward_and_backward_under_bf16_autocast():
    """Training with mixed_precision bf16: autocast casts out-of-place ops only, so the fused
    in-place path would add a float32 B to a bfloat16 output (it raised a dtype error)."""
    torch.manual_seed(0)
    layer = lora.LoraLinear(nn.Linear(16, 24))
    layer.add_adapter("a", lora.LoraConfig(rank=3, alpha=6))
    nn.init.normal_(layer.lora_B["a"])
    layer.set_active_adapters(["a"])
    x = torch.randn(5, 4, 16)
    W, b = layer.base_layer.weight, layer.base_layer.bias
    expected = x @ W.T + b + 2.0 * x @ layer.lora_A["a"].T @ layer.lora_B["a"].T
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected, atol=0.1, rtol=0.05)
    y.float().sum().backward()
    assert layer.lora_A["a"].grad.dtype == torch.float32 and layer.lora_B["a"].grad.abs().sum() > 0


def test_merge_unmerge_round_trip():
    model = tiny_mbart()
    base_weights = {n: p.clone() for n, p in model.named_parameters()}
    lora.apply(model, lora.LoraConfig(rank=4, alpha=8), BART_LIKE)
    randomize_b(model)
    unmerged = logits(model)
    assert (unmerged - logits(tiny_mbart())).abs().max() > 0.1  # the adapter does something
    lora.merge(model)
    torch.testing.assert_close(logits(model), unmerged, rtol=1e-5, atol=1e-5)
    lora.unmerge(model)
    torch.testing.assert_close(logits(model), unmerged, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        if "lora_" not in name:
            torch.testing.assert_close(p, base_weights[name.replace(".base_layer", "")], rtol=0, atol=1e-6)


def test_safe_merge_refuses_nan_and_changes_nothing():
    model = tiny_mbart()
    lora.apply(model, lora.LoraConfig(rank=4), BART_LIKE)
    randomize_b(model)
    last = lora.lora_layers(model)[-1][1]
    with torch.no_grad():
        last.lora_B["default"][0, 0] = float("inf")
    first = lora.lora_layers(model)[0][1]
    w_before = first.base_layer.weight.clone()
    with pytest.raises(ValueError, match="NaN/Inf"):
        lora.merge(model)
    torch.testing.assert_close(first.base_layer.weight, w_before, rtol=0, atol=0)
    assert all(not layer.merged for _, layer in lora.lora_layers(model))


def test_routing_matches_plain_loop_with_beam_expansion():
    """y[i] += scale[a[i]] * x[i] @ A[a[i]]^T @ B[a[i]]^T, a = route.repeat_interleave(k)."""
    torch.manual_seed(0)
    layer = lora.LoraLinear(nn.Linear(8, 6))
    layer.add_adapter("a", lora.LoraConfig(rank=2, alpha=4))
    layer.add_adapter("b", lora.LoraConfig(rank=3, alpha=3, use_rslora=True))
    for n in ("a", "b"):
        nn.init.normal_(layer.lora_B[n])
    names = ["a", "b"]
    route = torch.tensor([1, -1, 0])  # source 1 -> base model
    k = 2  # beams per source
    x = torch.randn(3 * k, 5, 8)
    layer.set_routing(route, names)
    y = layer(x)
    expected = layer.base_layer(x).clone()
    a = route.repeat_interleave(k)
    for i in range(x.shape[0]):
        if a[i] >= 0:
            n = names[a[i]]
            expected[i] += layer.scale[n] * x[i] @ layer.lora_A[n].T @ layer.lora_B[n].T
    torch.testing.assert_close(y, expected)
    with pytest.raises(ValueError, match="multiple of the routing length"):
        layer(torch.randn(4, 5, 8))


def test_routing_refused_while_merged():
    layer = lora.LoraLinear(nn.Linear(4, 4))
    layer.add_adapter("a", lora.LoraConfig(rank=2))
    layer.merge("a")
    with pytest.raises(ValueError, match="unmerge first"):
        layer.set_routing(torch.tensor([0]), ["a"])


def test_dropout_only_on_lora_path():
    torch.manual_seed(0)
    layer = lora.LoraLinear(nn.Linear(8, 8))
    layer.add_adapter("a", lora.LoraConfig(rank=2, dropout=0.5))
    layer.set_active_adapters(["a"])
    layer.train()
    x = torch.randn(4, 8)
    torch.testing.assert_close(layer(x), layer.base_layer(x))  # B = 0: dropout cannot leak
    nn.init.normal_(layer.lora_B["a"])
    assert not torch.allclose(layer(x), layer(x))  # stochastic in training
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_unknown_target_regex_names_modules():
    with pytest.raises(ValueError, match="Linear modules are named like"):
        lora.apply(tiny_mbart(), lora.LoraConfig(targets=[r".*nonexistent"]), BART_LIKE)


def test_second_adapter_reuses_wrappers_and_first_stays_active():
    model = tiny_mbart()
    lora.apply(model, lora.LoraConfig(rank=4), BART_LIKE, "one")
    lora.apply(model, lora.LoraConfig(rank=2), BART_LIKE, "two")
    assert base.adapter_names(model) == ["one", "two"]
    assert base.active_adapters(model) == ["one"]
    assert len(lora.lora_layers(model)) == 12  # no wrapper inside a wrapper
    base.delete_adapter(model, "one")
    assert base.adapter_names(model) == ["two"] and base.active_adapters(model) == []


def test_merge_in_place_restores_the_base_bit_for_bit():
    """methods.merge.merge_in_place: merged outputs equal routed ones; restore() copies the
    stored weights back exactly (an unmerge by subtraction leaves rounding: checked too)."""
    from mtadapt.methods.merge import merge_in_place

    model = tiny_mbart()
    lora.apply(model, lora.LoraConfig(rank=4, alpha=8), BART_LIKE, adapter_name="a")
    lora.apply(model, lora.LoraConfig(rank=4, alpha=8), BART_LIKE, adapter_name="b")
    randomize_b(model)
    stored = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    base.set_active_adapters(model, ["a"])
    routed = logits(model)
    merged = merge_in_place(model, "a")
    changed = [n for n, p in model.named_parameters() if "lora_" not in n and not torch.equal(p, stored[n])]
    assert len(changed) == len(merged.originals) > 0
    torch.testing.assert_close(logits(model), routed, rtol=1e-5, atol=1e-5)
    merged.restore()
    assert all(torch.equal(p, stored[n]) for n, p in model.named_parameters() if "lora_" not in n)
    assert all(not layer.merged for _, layer in lora.lora_layers(model))
    torch.testing.assert_close(logits(model), routed, rtol=0, atol=0)


def test_methods_declare_whether_they_route_per_row():
    from mtadapt.methods.registry import METHOD_NAMES, get_method

    declared = {name: get_method(name).config_class.routes_per_row for name in METHOD_NAMES}
    assert {n for n, r in declared.items() if r} == {"lora", "houlsby", "pfeiffer"}
    assert set(declared) >= {"lora", "houlsby", "pfeiffer", "prefix", "prompt", "full", "bitfit"}
