"""Prefix tuning on tiny mBART / M2M100 / T5 (eager and sdpa) built from configs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import M2M100Config, M2M100ForConditionalGeneration, MBartConfig, MBartForConditionalGeneration
from transformers import T5Config, T5ForConditionalGeneration

from mtadapt.methods import base
from mtadapt.models.marian_native.generate import generate as native_generate
from mtadapt.methods.prefix import (
    PrefixConfig,
    PrefixSite,
    apply,
    extend_attention_mask,
    fold_reparameterisation,
    prefix_parameter_count,
    prefix_sites,
)
from mtadapt.models.targets import BART_LIKE, T5

D, LAYERS, SRC_LEN = 32, 2, 6


def tiny_mbart(impl: str = "sdpa") -> MBartForConditionalGeneration:
    torch.manual_seed(0)
    cfg = MBartConfig(
        d_model=D, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, max_position_embeddings=64,
        init_std=0.2, attn_implementation=impl,
    )
    return MBartForConditionalGeneration(cfg).eval()


def tiny_m2m100(impl: str = "sdpa") -> M2M100ForConditionalGeneration:
    torch.manual_seed(0)
    cfg = M2M100Config(
        d_model=D, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, max_position_embeddings=64,
        init_std=0.2, attn_implementation=impl,
    )
    return M2M100ForConditionalGeneration(cfg).eval()


def tiny_t5(impl: str = "sdpa") -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    cfg = T5Config(
        d_model=D, d_kv=8, d_ff=64, num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=4,
        vocab_size=100, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, initializer_factor=5.0,
        attn_implementation=impl,
    )
    return T5ForConditionalGeneration(cfg).eval()


FAMILIES = [
    pytest.param(make, targets, impl, id=f"{make.__name__}-{impl}")
    for make, targets in [(tiny_mbart, BART_LIKE), (tiny_m2m100, BART_LIKE), (tiny_t5, T5)]
    for impl in ("eager", "sdpa")
]


def padded_batch(model, seed: int = 1) -> dict[str, torch.Tensor]:
    """3 rows of SRC_LEN tokens, the middle one padded after 3 tokens, plus labels."""
    pad = model.config.pad_token_id
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 100, (3, SRC_LEN), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 3:] = 0
    input_ids[1, 3:] = pad
    labels = torch.randint(3, 100, (3, 5), generator=g)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def row(b: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Row i alone, without its padding."""
    n = int(b["attention_mask"][i].sum())
    return {"input_ids": b["input_ids"][i : i + 1, :n], "attention_mask": b["attention_mask"][i : i + 1, :n],
            "labels": b["labels"][i : i + 1]}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="prefix_length=0"):
        PrefixConfig(prefix_length=0)
    with pytest.raises(ValueError, match="at least one of"):
        PrefixConfig(encoder_self_attention=False, decoder_self_attention=False, cross_attention=False)


def test_refuses_flash_or_unknown_attention() -> None:
    model = tiny_mbart()
    model.config._attn_implementation_internal = "flex_attention"
    with pytest.raises(ValueError, match="attn_implementation in"):
        apply(model, PrefixConfig(prefix_length=2), BART_LIKE)


def test_extend_attention_mask_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    n, q, kv, p = 3, 4, 6, 2
    mask = torch.rand(n, 1, q, kv, generator=g) > 0.3
    keep = torch.tensor([[True, True], [True, False], [False, False]])
    out = extend_attention_mask(mask, keep, p, q, kv, causal=False, as_bool=True, dtype=torch.float32,
                                device=torch.device("cpu"))
    for i in range(n):
        for j in range(q):
            assert out[i, 0, j, :p].tolist() == keep[i].tolist()
            assert out[i, 0, j, p:].tolist() == mask[i, 0, j].tolist()
    # None + causal -> bottom-right causal, additive format
    out = extend_attention_mask(None, None, p, q, kv, causal=True, as_bool=False, dtype=torch.float32,
                                device=torch.device("cpu"))
    for j in range(q):
        for k in range(p + kv):
            visible = k < p or (k - p) <= j + kv - q
            assert (out[0, 0, j, k] == 0) == visible
    # additive input keeps its values
    add = torch.where(mask, 0.0, torch.finfo(torch.float32).min)
    out = extend_attention_mask(add, keep, p, q, kv, causal=False, as_bool=True, dtype=torch.float32,
                                device=torch.device("cpu"))
    assert out.dtype == torch.float32 and torch.equal(out[..., p:], add)
    assert torch.equal(out[..., :p] == 0, keep[:, None, None, :].expand(n, 1, q, p))


def test_attention_matches_plain_formula() -> None:
    """One encoder self-attention with prefixes == softmax over [K_p; K] computed by hand."""
    model = tiny_mbart("eager")
    apply(model, PrefixConfig(prefix_length=3, reparameterize=False), BART_LIKE)
    attn = model.model.encoder.layers[0].self_attn
    site: PrefixSite = attn.prefix_tuning
    x = torch.randn(2, 5, D)
    mask = torch.zeros(2, 1, 5, 5)
    mask[1, :, :, 3:] = torch.finfo(torch.float32).min
    out, _ = attn(x, attention_mask=mask)
    kp, vp = site.prefix("default")
    for b in range(2):
        n = 5 if b == 0 else 3
        split = lambda t: t.view(-1, 4, 8).transpose(0, 1)  # noqa: E731  (T, D) -> (H, T, hd)
        q = split(attn.q_proj(x[b])) * attn.scaling
        k = torch.cat([split(kp), split(attn.k_proj(x[b, :n]))], dim=1)
        v = torch.cat([split(vp), split(attn.v_proj(x[b, :n]))], dim=1)
        ctx = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v  # (H, T, hd)
        want = attn.out_proj(ctx.transpose(0, 1).reshape(5, D))
        torch.testing.assert_close(out[b], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, targets, impl", FAMILIES)
def test_prefix_changes_outputs_and_eager_equals_sdpa(make, targets, impl) -> None:
    b = padded_batch(make())
    outs = []
    for implementation in ("eager", "sdpa"):
        model = make(implementation)
        with torch.no_grad():
            ref = model(**b).logits
            apply(model, PrefixConfig(prefix_length=4), targets)
            outs.append(model(**b).logits)
        assert (outs[-1] - ref).abs().max() > 1e-3
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reparameterize", [False, True])
def test_exact_trainable_counts(reparameterize: bool) -> None:
    config = PrefixConfig(prefix_length=5, reparam_hidden=16, reparameterize=reparameterize)
    model = tiny_mbart()
    apply(model, config, BART_LIKE)
    base.freeze_base(model)
    sites = 3 * LAYERS  # encoder self, decoder self, cross
    assert len(prefix_sites(model)) == sites
    assert base.count_parameters(model).trainable == prefix_parameter_count(config, sites, D)
    if reparameterize:
        assert prefix_parameter_count(config, sites, D) == 5 * D + D * 16 + 16 + 16 * 2 * sites * D + 2 * sites * D
    # only cross-attention, T5 width = heads * d_kv
    model = tiny_t5()
    config = PrefixConfig(prefix_length=5, reparameterize=False, encoder_self_attention=False,
                          decoder_self_attention=False)
    apply(model, config, T5)
    base.freeze_base(model)
    assert base.count_parameters(model).trainable == 2 * LAYERS * 5 * 32


@pytest.mark.parametrize("make, targets, impl", FAMILIES)
def test_mixed_length_batch_rows_equal_alone(make, targets, impl) -> None:
    # prefix length == source length: the peft#565 trap for cross-attention caches
    # float64: T5's unscaled attention makes float32 batch-vs-row noise ~5e-4 on logits ~80
    model = make(impl).double()
    apply(model, PrefixConfig(prefix_length=SRC_LEN, reparameterize=False), targets)
    b = padded_batch(model)
    with torch.no_grad():
        full = model(**b).logits
        for i in range(3):
            torch.testing.assert_close(full[i : i + 1], model(**row(b, i)).logits, rtol=1e-9, atol=1e-9)


def greedy_recompute(model, input_ids, attention_mask, steps: int) -> torch.Tensor:
    """Greedy decoding that re-runs the whole decoder every step (no cache at all)."""
    start = model.config.decoder_start_token_id
    out = torch.full((input_ids.shape[0], 1), start, dtype=torch.long)
    for _ in range(steps):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=out,
                       use_cache=False).logits
        out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return out


def assert_same_until_eos(generated: torch.Tensor, reference: torch.Tensor, eos: int) -> None:
    # the last position is skipped: mBART's forced_eos_token_id forces </s> at max_length
    for g, r in zip(generated, reference):
        n = len(g) - 1
        hits = (r == eos).nonzero()
        if len(hits) and hits[0, 0] > 0:
            n = min(n, int(hits[0, 0]) + 1)
        assert torch.equal(g[:n], r[:n]), (g, r)


@pytest.mark.parametrize("make, targets, impl", FAMILIES)
def test_generate_with_cache_equals_recompute(make, targets, impl) -> None:
    model = make(impl)
    apply(model, PrefixConfig(prefix_length=SRC_LEN, reparam_hidden=16), targets)
    b = padded_batch(model)
    eos = model.config.eos_token_id
    with torch.no_grad():
        greedy = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=1,
                                do_sample=False, max_new_tokens=8)
        assert_same_until_eos(greedy, greedy_recompute(model, b["input_ids"], b["attention_mask"], 8), eos)
        kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=3, do_sample=False,
                  max_new_tokens=8)
        beam = model.generate(**kw)
        beam_nocache = model.generate(**kw, use_cache=False)
        assert torch.equal(beam, beam_nocache)
        # each row of the padded batch translates as when alone
        for i in range(3):
            r = row(b, i)
            alone = model.generate(input_ids=r["input_ids"], attention_mask=r["attention_mask"], num_beams=3,
                                   do_sample=False, max_new_tokens=8)
            assert torch.equal(beam[i, : alone.shape[1]], alone[0])


@pytest.mark.parametrize("reparameterize", [False, True])
def test_only_prefix_params_get_grads_and_loss_drops(reparameterize: bool) -> None:
    model = tiny_mbart()
    apply(model, PrefixConfig(prefix_length=4, reparam_hidden=32, reparameterize=reparameterize), BART_LIKE)
    base.freeze_base(model)
    model.train()
    b = padded_batch(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model(**b).loss
        loss.backward()
        losses.append(loss.item())
        for name, p in model.named_parameters():
            is_method = "prefix_tuning" in name or "prefix_reparameterisation" in name
            assert (p.grad is not None) == is_method, name
        opt.step()
    assert losses[-1] < losses[0] - 0.1, losses


def test_save_folds_reparameterisation_and_load_reproduces() -> None:
    config = PrefixConfig(prefix_length=3, reparam_hidden=16)
    model = tiny_mbart()
    apply(model, config, BART_LIKE)
    b = padded_batch(model)
    with torch.no_grad():
        ref = model(**b).logits
    saved = {}
    for name, layer in base.adapter_layers(model):
        saved[name] = layer.adapter_state_dict("default")
    tensors = {n: t for n, t in saved.items() if t}
    assert all(set(t) == {"prefix_key", "prefix_value"} and t["prefix_key"].shape == (3, D) for t in tensors.values())
    assert saved["prefix_reparameterisation"] == {}
    # load into a fresh model set up for training with the MLP: the MLP goes, outputs match
    other = tiny_mbart()
    apply(other, config, BART_LIKE)
    layers = dict(base.adapter_layers(other))
    for name, t in saved.items():
        layers[name].load_adapter_state_dict("default", t)
    assert not list(other.prefix_reparameterisation.parameters())
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, ref)
    # folding in place keeps the outputs
    fold_reparameterisation(model, "default")
    assert not list(model.prefix_reparameterisation.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(**b).logits, ref)


@pytest.mark.parametrize("make, targets, impl", FAMILIES[::2])
def test_routing_mixed_prefix_lengths_equals_each_alone(make, targets, impl) -> None:
    model = make(impl).double()
    apply(model, PrefixConfig(prefix_length=2, reparameterize=False), targets, "de")
    apply(model, PrefixConfig(prefix_length=5, reparameterize=False, encoder_self_attention=False), targets, "fr")
    b = padded_batch(model)
    names = ["fr", "de", "__base__"]
    kw = dict(num_beams=2, do_sample=False, max_new_tokens=6)
    with torch.no_grad():
        with base.routing(model, names):
            mixed = model(**b).logits
            mixed_gen = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kw)
        for i, name in enumerate(names):
            base.set_active_adapters(model, [] if name == "__base__" else [name])
            r = row(b, i)
            torch.testing.assert_close(mixed[i : i + 1], model(**r).logits, rtol=1e-9, atol=1e-9)
            alone = model.generate(input_ids=r["input_ids"], attention_mask=r["attention_mask"], **kw)
            assert torch.equal(mixed_gen[i, : alone.shape[1]], alone[0])


def test_routed_prefix_rows_match_loop() -> None:
    model = tiny_mbart()
    apply(model, PrefixConfig(prefix_length=2, reparameterize=False), BART_LIKE, "a")
    apply(model, PrefixConfig(prefix_length=3, reparameterize=False), BART_LIKE, "b")
    site = prefix_sites(model)[0][1]
    site.set_routing(torch.tensor([1, -1, 0]), ["a", "b"])
    k, v, keep = site.prefix_kv(6)  # 2 beams per source
    r = torch.tensor([1, -1, 0]).repeat_interleave(2)
    for i in range(6):
        if r[i] < 0:
            assert not keep[i].any()
            continue
        kp, vp = site.prefix(["a", "b"][r[i]])
        p = kp.shape[0]
        assert keep[i].tolist() == [True] * p + [False] * (3 - p)
        torch.testing.assert_close(k[i, :, :p], kp.view(p, 4, 8).transpose(0, 1))
        torch.testing.assert_close(v[i, :, :p], vp.view(p, 4, 8).transpose(0, 1))


def test_active_adapters_concatenate() -> None:
    model = tiny_mbart()
    apply(model, PrefixConfig(prefix_length=2, reparameterize=False), BART_LIKE, "a")
    apply(model, PrefixConfig(prefix_length=3, reparameterize=False), BART_LIKE, "b")
    base.set_active_adapters(model, ["a", "b"])
    site = prefix_sites(model)[0][1]
    k, v, keep = site.prefix_kv(2)
    assert keep is None and k.shape == (2, 4, 5, 8)
    torch.testing.assert_close(k[0, :, 2:], site.prefix("b")[0].view(3, 4, 8).transpose(0, 1))


# --- Marian-native (Bergamot students): its attention takes a prefix_provider ---------------


def tiny_native(decoder_type: str):
    from mtadapt.models.marian_native.model import MarianNativeConfig, MarianNativeModel

    torch.manual_seed(0)
    config = MarianNativeConfig(dim=D, heads=4, encoder_layers=2, decoder_layers=2, decoder_type=decoder_type,
                                ffn_dim=64, vocab_size=50, pad_id=0, eos_id=0)
    model = MarianNativeModel(config).double().eval()
    with torch.no_grad():
        model.model.shared.weight.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("decoder_type", ["ssru", "transformer"])
def test_marian_native_prefix(decoder_type: str) -> None:
    from mtadapt.models.targets import MARIAN_NATIVE

    model = tiny_native(decoder_type)
    # the transformer decoder also has self-attention, which MARIAN_NATIVE (SSRU) does not name
    targets = MARIAN_NATIVE if decoder_type == "ssru" else replace(MARIAN_NATIVE, decoder_self_attention=BART_LIKE.decoder_self_attention)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (3, SRC_LEN), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    ids[1, 3:] = 0
    labels = torch.randint(1, 50, (3, 5), generator=g)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        apply(model, PrefixConfig(prefix_length=SRC_LEN, reparameterize=False, init_std=0.5), targets)
        assert len(prefix_sites(model)) == (2 + 2 + (2 if decoder_type == "transformer" else 0))
        out = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        assert (out - ref).abs().max() > 1e-3
        for i in range(3):
            n = int(mask[i].sum())
            alone = model(input_ids=ids[i : i + 1, :n], attention_mask=mask[i : i + 1, :n], labels=labels[i : i + 1])
            torch.testing.assert_close(out[i : i + 1], alone.logits, rtol=1e-9, atol=1e-9)
        # cached greedy decoding == recomputing the whole decoder each step
        greedy = native_generate(model, ids, mask, num_beams=1, max_new_tokens=5)
        seq = torch.zeros(3, 1, dtype=torch.long)  # position 0 is the start position
        for _ in range(greedy.shape[1]):
            logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=seq).logits
            seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        for r in range(3):
            stop = (greedy[r] == 0).nonzero()
            n = int(stop[0, 0]) + 1 if len(stop) else greedy.shape[1]
            assert torch.equal(greedy[r, :n], seq[r, 1 : n + 1])
        beam = native_generate(model, ids, mask, num_beams=3, max_new_tokens=5)
        for i in range(3):
            n = int(mask[i].sum())
            alone = native_generate(model, ids[i : i + 1, :n], mask[i : i + 1, :n], num_beams=3, max_new_tokens=5)
            assert torch.equal(beam[i, : alone.shape[1]], alone[0])
    # per-row masks are not expressible through prefix_provider: base rows are refused
    with pytest.raises(NotImplementedError, match="same prefix length"):
        with base.routing(model, ["default", "__base__", "default"]):
            model(input_ids=ids, attention_mask=mask, labels=labels)


def test_storage_round_trip_saves_folded_prefixes(tmp_path) -> None:
    from mtadapt.methods import storage

    config = PrefixConfig(prefix_length=3, reparam_hidden=16)
    model = tiny_mbart()
    storage.add_adapter(model, config, BART_LIKE, "de")
    b = padded_batch(model)
    with torch.no_grad():
        ref = model(**b).logits
    storage.save_adapter(model, tmp_path / "de", "de")
    other = tiny_mbart()
    assert storage.load_adapter(other, tmp_path / "de", BART_LIKE) == "de"
    assert not list(other.prefix_reparameterisation.parameters())  # the MLP is folded away
    base.set_active_adapters(other, ["de"])
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, ref)
