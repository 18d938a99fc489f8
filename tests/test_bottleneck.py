"""Houlsby and Pfeiffer adapters on tiny mBART / T5 / M2M100 models built from configs."""

from __future__ import annotations

import pytest
import torch
from transformers import M2M100Config, M2M100ForConditionalGeneration, MBartConfig, MBartForConditionalGeneration
from transformers import T5Config, T5ForConditionalGeneration

from mtadapt.methods import base
from mtadapt.models.marian_native.generate import generate as native_generate
from mtadapt.methods.bottleneck import (
    BottleneckLinear,
    HoulsbyConfig,
    PfeifferConfig,
    adapter_parameter_count,
    apply,
    bottleneck_layers,
)
from mtadapt.models.targets import BART_LIKE, T5

D, LAYERS = 32, 2


def tiny_mbart() -> MBartForConditionalGeneration:
    torch.manual_seed(0)
    cfg = MBartConfig(
        d_model=D, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, max_position_embeddings=64,
    )
    return MBartForConditionalGeneration(cfg).eval()


def tiny_m2m100() -> M2M100ForConditionalGeneration:
    torch.manual_seed(0)
    cfg = M2M100Config(
        d_model=D, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, max_position_embeddings=64,
    )
    return M2M100ForConditionalGeneration(cfg).eval()


def tiny_t5() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    cfg = T5Config(
        d_model=D, d_kv=8, d_ff=64, num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=4,
        vocab_size=100, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(cfg).eval()


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 100, (3, 7), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0  # a padded row
    input_ids[1, 5:] = 1
    labels = torch.randint(3, 100, (3, 5), generator=g)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def randomise_adapters(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if ".adapters." in name:
            p.data = torch.randn(p.shape, generator=g) * 0.1


FAMILIES = [(tiny_mbart, BART_LIKE), (tiny_m2m100, BART_LIKE), (tiny_t5, T5)]


def test_config_validation_names_values() -> None:
    with pytest.raises(ValueError, match="exactly one of bottleneck_dim"):
        HoulsbyConfig()
    with pytest.raises(ValueError, match="exactly one of bottleneck_dim"):
        HoulsbyConfig(bottleneck_dim=4, reduction_factor=2)
    with pytest.raises(ValueError, match="activation='swish'"):
        PfeifferConfig(bottleneck_dim=4, activation="swish")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction_factor=64 leaves no bottleneck"):
        apply(tiny_mbart(), PfeifferConfig(reduction_factor=64), BART_LIKE)


def test_houlsby_table_count_for_mbart_large() -> None:
    # The commonly quoted figure counts no adapter LayerNorm.
    assert adapter_parameter_count(1024, 16, layer_norm=False) == 33_808
    assert adapter_parameter_count(1024, 16, layer_norm=True) == 33_808 + 2048


@pytest.mark.parametrize("make, targets", FAMILIES)
def test_identity_at_init(make, targets) -> None:
    model = make()
    b = batch()
    with torch.no_grad():
        ref = model(**b).logits
        apply(model, HoulsbyConfig(bottleneck_dim=4, cross_attention=True), targets)
        out = model(**b).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("make, targets", FAMILIES)
@pytest.mark.parametrize("layer_norm", [True, False])
def test_exact_trainable_counts(make, targets, layer_norm) -> None:
    model = make()
    apply(model, HoulsbyConfig(bottleneck_dim=4, layer_norm=layer_norm), targets, "h")
    base.freeze_base(model)
    per = adapter_parameter_count(D, 4, layer_norm)
    # Houlsby: 2 adapters per layer, encoder and decoder
    assert base.count_parameters(model).trainable == 2 * (2 * LAYERS) * per
    apply(model, PfeifferConfig(reduction_factor=8, layer_norm=layer_norm), targets, "p")
    base.freeze_base(model)
    assert base.count_parameters(model).trainable == 2 * (2 * LAYERS) * per + (2 * LAYERS) * adapter_parameter_count(
        D, D // 8, layer_norm
    )
    model2 = make()
    apply(model2, HoulsbyConfig(bottleneck_dim=4, layer_norm=layer_norm, cross_attention=True), targets)
    base.freeze_base(model2)
    assert base.count_parameters(model2).trainable == (2 * (2 * LAYERS) + LAYERS) * per


def test_only_adapter_params_get_grads_and_loss_drops() -> None:
    for config in (HoulsbyConfig(bottleneck_dim=8), PfeifferConfig(bottleneck_dim=8)):
        model = tiny_mbart()
        apply(model, config, BART_LIKE)
        base.freeze_base(model)
        model.train()
        b = batch()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        losses = []
        for _ in range(15):
            opt.zero_grad()
            loss = model(**b).loss
            loss.backward()
            losses.append(loss.item())
            for name, p in model.named_parameters():
                assert (p.grad is not None) == (".adapters." in name), name
            opt.step()
        assert losses[-1] < losses[0] - 0.1, (config.method, losses)


def test_multiple_active_adapters_sum() -> None:
    model = tiny_mbart()
    apply(model, HoulsbyConfig(bottleneck_dim=4), BART_LIKE, "a")
    apply(model, PfeifferConfig(bottleneck_dim=2), BART_LIKE, "b")
    randomise_adapters(model, 3)
    x = torch.randn(2, 5, 64)
    _, fc2 = next((n, m) for n, m in bottleneck_layers(model) if n.endswith("fc2"))
    fc2.set_active_adapters(["a", "b"])
    h = fc2.base_layer(x)
    expected = h + fc2.adapters["a"](h) + fc2.adapters["b"](h)
    torch.testing.assert_close(fc2(x), expected)


def test_routing_matches_plain_loop() -> None:
    layer = BottleneckLinear(torch.nn.Linear(6, 8))
    layer.add_adapter("a", PfeifferConfig(bottleneck_dim=3, up_init_std=0.5))
    layer.add_adapter("b", PfeifferConfig(bottleneck_dim=2, up_init_std=0.5, layer_norm=False))
    x = torch.randn(5, 4, 6)
    route, names = torch.tensor([1, -1, 0, 1, 0]), ["a", "b"]
    layer.set_routing(route, names)
    out = layer(x)
    for i in range(5):
        h = layer.base_layer(x[i])
        want = h if route[i] < 0 else h + layer.adapters[names[route[i]]](h)
        torch.testing.assert_close(out[i], want)


@pytest.mark.parametrize("make, targets", FAMILIES)
def test_mixed_adapter_batch_equals_each_alone_incl_beam(make, targets) -> None:
    model = make()
    apply(model, HoulsbyConfig(bottleneck_dim=4, cross_attention=True), targets, "de")
    apply(model, PfeifferConfig(bottleneck_dim=6), targets, "fr")
    randomise_adapters(model, 5)
    b = batch()
    rows = ["de", "fr", "__base__"]
    with torch.no_grad():
        with base.routing(model, rows):
            mixed = model(**b).logits
            mixed_gen = model.generate(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=3, max_new_tokens=6,
                do_sample=False,
            )
        for i, name in enumerate(rows):
            base.set_active_adapters(model, [] if name == "__base__" else [name])
            one = {k: v[i : i + 1] for k, v in b.items()}
            torch.testing.assert_close(mixed[i : i + 1], model(**one).logits)
            alone = model.generate(
                input_ids=one["input_ids"], attention_mask=one["attention_mask"], num_beams=3, max_new_tokens=6,
                do_sample=False,
            )
            n = alone.shape[1]
            assert torch.equal(mixed_gen[i, :n], alone[0]), (name, mixed_gen[i], alone[0])
            assert (mixed_gen[i, n:] == model.config.pad_token_id).all()


def test_state_dict_round_trip() -> None:
    model = tiny_mbart()
    apply(model, HoulsbyConfig(bottleneck_dim=4), BART_LIKE)
    randomise_adapters(model, 7)
    saved = {n: m.adapter_state_dict("default") for n, m in bottleneck_layers(model)}
    assert set(next(iter(saved.values()))) == {
        "layer_norm.weight", "layer_norm.bias", "down.weight", "down.bias", "up.weight", "up.bias",
    }
    b = batch()
    with torch.no_grad():
        ref = model(**b).logits
    other = tiny_mbart()
    apply(other, HoulsbyConfig(bottleneck_dim=4), BART_LIKE)
    for n, m in bottleneck_layers(other):
        m.load_adapter_state_dict("default", saved[n])
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, ref)
    base.delete_adapter(other, "default")
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, tiny_mbart()(**b).logits)


def test_storage_round_trip(tmp_path) -> None:
    from mtadapt.methods import storage

    model = tiny_t5()
    storage.add_adapter(model, HoulsbyConfig(bottleneck_dim=4, cross_attention=True), T5, "de")
    randomise_adapters(model, 11)
    b = batch()
    with torch.no_grad():
        ref = model(**b).logits
    storage.save_adapter(model, tmp_path / "de", "de")
    other = tiny_t5()
    storage.load_adapter(other, tmp_path / "de", T5)
    base.set_active_adapters(other, ["de"])
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, ref)


@pytest.mark.parametrize("decoder_type", ["ssru", "transformer"])
def test_marian_native_houlsby_identity_and_routing(decoder_type: str) -> None:
    from mtadapt.models.marian_native.model import MarianNativeConfig, MarianNativeModel
    from mtadapt.models.targets import MARIAN_NATIVE

    torch.manual_seed(0)
    model = MarianNativeModel(MarianNativeConfig(dim=D, heads=4, encoder_layers=2, decoder_layers=2,
                                                 decoder_type=decoder_type, ffn_dim=64, vocab_size=50)).eval()
    ids = torch.randint(1, 50, (2, 6))
    labels = torch.randint(1, 50, (2, 4))
    with torch.no_grad():
        ref = model(input_ids=ids, labels=labels).logits
        apply(model, HoulsbyConfig(bottleneck_dim=4, cross_attention=True), MARIAN_NATIVE, "a")
        torch.testing.assert_close(model(input_ids=ids, labels=labels).logits, ref, rtol=0, atol=0)
        randomise_adapters(model, 2)
        with base.routing(model, ["a", "__base__"]):
            mixed = model(input_ids=ids, labels=labels).logits
            mixed_gen = native_generate(model, ids, num_beams=2, max_new_tokens=4)
        torch.testing.assert_close(mixed[1:], ref[1:])
        assert not torch.allclose(mixed[:1], ref[:1])
        base.set_active_adapters(model, ["a"])
        torch.testing.assert_close(mixed[:1], model(input_ids=ids[:1], labels=labels[:1]).logits)
        alone = native_generate(model, ids[:1], num_beams=2, max_new_tokens=4)
        assert torch.equal(mixed_gen[0, : alone.shape[1]], alone[0])
