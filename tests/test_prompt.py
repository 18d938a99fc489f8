"""Prompt tuning on tiny mBART / M2M100 / T5 / Marian built from configs."""

from __future__ import annotations

import pytest
import torch
from transformers import MarianConfig, MarianMTModel

from mtadapt.methods import base
from mtadapt.models.marian_native.generate import generate as native_generate
from mtadapt.methods.prompt import PromptConfig, SoftPrompt, apply, layout_rows, token_embeddings
from mtadapt.models.targets import BART_LIKE, T5

from test_prefix import D, greedy_recompute, padded_batch, row, tiny_m2m100, tiny_mbart, tiny_t5, assert_same_until_eos

FAMILIES = [
    pytest.param(make, targets, id=make.__name__)
    for make, targets in [(tiny_mbart, BART_LIKE), (tiny_m2m100, BART_LIKE), (tiny_t5, T5)]
]


def tiny_marian() -> MarianMTModel:
    torch.manual_seed(0)
    cfg = MarianConfig(
        d_model=D, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, decoder_vocab_size=100, pad_token_id=1,
        eos_token_id=2, decoder_start_token_id=1, max_position_embeddings=64, scale_embedding=True, init_std=0.2,
    )
    return MarianMTModel(cfg).eval()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="prompt_length=0"):
        PromptConfig(prompt_length=0)
    with pytest.raises(ValueError, match="init='zeros'"):
        PromptConfig(init="zeros")  # type: ignore[arg-type]


def test_unseeded_init_follows_torch_global_seed() -> None:
    """seed=None draws from torch's global generator: a run seeded by the training loop starts
    from the same prompt every time (it had drawn from OS entropy, so reruns differed)."""

    def initial_prompt(global_seed: int) -> torch.Tensor:
        model = tiny_mbart()
        torch.manual_seed(global_seed)
        apply(model, PromptConfig(prompt_length=6, init="normal", init_std=1.0), BART_LIKE)
        return model.get_encoder().prompt_tuning.prompts["default"].detach().clone()

    torch.testing.assert_close(initial_prompt(5), initial_prompt(5), rtol=0, atol=0)
    assert not torch.equal(initial_prompt(5), initial_prompt(6))


def test_layout_rows_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    prompts, tokens = torch.randn(3, 4, 2, generator=g), torch.randn(3, 5, 2, generator=g)
    lengths = torch.tensor([4, 0, 2])
    out = layout_rows(prompts, lengths, tokens, torch.zeros(2))
    for i in range(3):
        n = int(lengths[i])
        want = torch.cat([prompts[i, :n], tokens[i], torch.zeros(4 - n, 2)])
        torch.testing.assert_close(out[i], want)
    starts = torch.tensor([5, 2, 0])  # suffix placement: after each row's real tokens
    out = layout_rows(prompts, lengths, tokens, torch.zeros(2), starts)
    for i in range(3):
        n, s = int(lengths[i]), int(starts[i])
        want = torch.cat([tokens[i, :s], prompts[i, :n], tokens[i, s:], torch.zeros(4 - n, 2)])
        torch.testing.assert_close(out[i], want)


def test_suffix_needs_right_padding() -> None:
    from mtadapt.methods.prompt import suffix_starts

    assert suffix_starts(torch.tensor([[1, 1, 0], [1, 1, 1]])).tolist() == [2, 3]
    with pytest.raises(ValueError, match="right-padded"):
        suffix_starts(torch.tensor([[0, 1, 1]]))


def test_token_embeddings_reproduce_encoder_inputs() -> None:
    # mBART scales inside embed_tokens, HF Marian in the encoder: both must match input_ids.
    for model in (tiny_mbart(), tiny_marian()):
        enc = model.get_encoder()
        ids = torch.randint(3, 100, (2, 5))
        with torch.no_grad():
            want = enc(input_ids=ids).last_hidden_state
            got = enc(inputs_embeds=token_embeddings(enc, ids)).last_hidden_state
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("make, targets", FAMILIES)
def test_prompt_changes_outputs_counts_and_vocab_init(make, targets) -> None:
    model = make()
    b = padded_batch(model)
    with torch.no_grad():
        ref = model(**b).logits
    apply(model, PromptConfig(prompt_length=4, seed=0), targets)
    base.freeze_base(model)
    assert base.count_parameters(model).trainable == 4 * D
    soft: SoftPrompt = model.get_encoder().prompt_tuning
    # init="vocab": every prompt row is some vocabulary embedding
    vocab = token_embeddings(model.get_encoder(), torch.arange(100)[None])[0]
    for p in soft.prompts["default"]:
        assert (vocab - p).abs().amax(-1).min() == 0
    with torch.no_grad():
        assert (model(**b).logits - ref).abs().max() > 1e-3


@pytest.mark.parametrize("placement", ["prefix", "suffix"])
@pytest.mark.parametrize("make, targets", FAMILIES)
def test_padded_batch_rows_equal_alone_and_generate(make, targets, placement) -> None:
    model = make().double()  # float64: exact row comparisons despite T5's large logits
    apply(model, PromptConfig(prompt_length=3, init="normal", init_std=1.0, seed=1, placement=placement), targets)
    b = padded_batch(model)
    with torch.no_grad():
        full = model(**b).logits
        for i in range(3):
            torch.testing.assert_close(full[i : i + 1], model(**row(b, i)).logits, rtol=1e-9, atol=1e-9)
        greedy = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=1,
                                do_sample=False, max_new_tokens=8)
        assert_same_until_eos(greedy, greedy_recompute(model, b["input_ids"], b["attention_mask"], 8),
                              model.config.eos_token_id)
        kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=3, do_sample=False,
                  max_new_tokens=8)
        assert torch.equal(model.generate(**kw), model.generate(**kw, use_cache=False))


@pytest.mark.parametrize("placement", ["prefix", "suffix"])
@pytest.mark.parametrize("make, targets", FAMILIES)
def test_routing_different_prompt_lengths_equals_each_alone(make, targets, placement) -> None:
    model = make().double()
    apply(model, PromptConfig(prompt_length=2, seed=2, placement=placement), targets, "de")
    apply(model, PromptConfig(prompt_length=5, seed=3, placement=placement), targets, "fr")
    b = padded_batch(model)
    names = ["fr", "__base__", "de"]
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


def test_active_prompts_concatenate() -> None:
    model = tiny_mbart()
    apply(model, PromptConfig(prompt_length=2, seed=2), BART_LIKE, "a")
    apply(model, PromptConfig(prompt_length=3, seed=3), BART_LIKE, "b")
    base.set_active_adapters(model, ["a", "b"])
    soft = model.get_encoder().prompt_tuning
    prompts, lengths = soft.rows(2)
    assert lengths.tolist() == [5, 5]
    torch.testing.assert_close(prompts[1], torch.cat([soft.prompts["a"], soft.prompts["b"]]))


def test_only_prompt_gets_grads_and_loss_drops() -> None:
    model = tiny_mbart()
    apply(model, PromptConfig(prompt_length=8, seed=0), BART_LIKE)
    base.freeze_base(model)
    model.train()
    b = padded_batch(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = model(**b).loss
        loss.backward()
        losses.append(loss.item())
        for name, p in model.named_parameters():
            assert (p.grad is not None) == ("prompt_tuning" in name), name
        opt.step()
    assert losses[-1] < losses[0] - 0.1, losses


def test_state_dict_round_trip() -> None:
    model = tiny_mbart()
    apply(model, PromptConfig(prompt_length=3, seed=0), BART_LIKE)
    b = padded_batch(model)
    saved = model.get_encoder().prompt_tuning.adapter_state_dict("default")
    assert saved["prompt"].shape == (3, D)
    other = tiny_mbart()
    apply(other, PromptConfig(prompt_length=3, seed=9), BART_LIKE)
    other.get_encoder().prompt_tuning.load_adapter_state_dict("default", saved)
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, model(**b).logits)
    base.delete_adapter(other, "default")
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, tiny_mbart()(**b).logits)


def test_storage_round_trip(tmp_path) -> None:
    from mtadapt.methods import storage

    model = tiny_t5()
    storage.add_adapter(model, PromptConfig(prompt_length=3, seed=0), T5, "fr")
    b = padded_batch(model)
    with torch.no_grad():
        ref = model(**b).logits
    storage.save_adapter(model, tmp_path / "fr", "fr")
    other = tiny_t5()
    storage.load_adapter(other, tmp_path / "fr", T5)
    base.set_active_adapters(other, ["fr"])
    with torch.no_grad():
        torch.testing.assert_close(other(**b).logits, ref)


# --- Marian-native (Bergamot students): the encoder takes inputs_embeds and returns its mask ---


@pytest.mark.parametrize("placement", ["prefix", "suffix"])
def test_marian_native_prompt_matches_plain_reference_and_generates(placement) -> None:
    """Prompted logits == the encoder run by hand on [prompt ; embed(ids)] with the extended
    mask; padded rows == each row alone; beam search with per-row prompts of different
    lengths == each row alone."""
    from mtadapt.models.targets import MARIAN_NATIVE

    from test_prefix import tiny_native

    model = tiny_native("ssru")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    ids[1, 3:] = 0
    labels = torch.randint(1, 50, (3, 5), generator=g)
    apply(model, PromptConfig(prompt_length=4, init="normal", init_std=1.0, seed=0, placement=placement), MARIAN_NATIVE)
    encoder = model.model.encoder
    prompt = encoder.prompt_tuning.prompts["default"]  # (4, D)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        # plain reference, hooks bypassed: encoder layers on [prompt ; scaled embeddings]
        tokens = encoder.embed_tokens(ids) * encoder.embed_scale
        if placement == "prefix":
            x = torch.cat([prompt.expand(3, -1, -1), tokens], dim=1)
            full_mask = torch.cat([torch.ones(3, 4, dtype=mask.dtype), mask], dim=1)
        else:  # after each row's real tokens, before its padding
            rows, masks = [], []
            for i in range(3):
                n = int(mask[i].sum())
                rows.append(torch.cat([tokens[i, :n], prompt, tokens[i, n:]]))
                masks.append(torch.cat([mask[i, :n], torch.ones(4, dtype=mask.dtype), mask[i, n:]]))
            x, full_mask = torch.stack(rows), torch.stack(masks)
        from mtadapt.models.marian_native.model import sinusoidal_positions, shift_right

        x = x + sinusoidal_positions(x.shape[1], x.shape[-1], dtype=x.dtype)
        for layer in encoder.layers:
            x = layer(x, full_mask)
        hidden = model.model.decoder(shift_right(labels, model.config.pad_id), x, full_mask)
        torch.testing.assert_close(out, model.logits(hidden), rtol=1e-9, atol=1e-9)
        for i in range(3):
            n = int(mask[i].sum())
            alone = model(input_ids=ids[i : i + 1, :n], attention_mask=mask[i : i + 1, :n], labels=labels[i : i + 1])
            torch.testing.assert_close(out[i : i + 1], alone.logits, rtol=1e-9, atol=1e-9)
        apply(model, PromptConfig(prompt_length=2, init="normal", init_std=1.0, seed=1, placement=placement), MARIAN_NATIVE, "short")
        names = ["short", "__base__", "default"]
        for num_beams in (3, 1):  # beam search and greedy
            with base.routing(model, names):
                mixed = native_generate(model, ids, mask, num_beams=num_beams, max_new_tokens=5)
            for i, name in enumerate(names):
                base.set_active_adapters(model, [] if name == "__base__" else [name])
                n = int(mask[i].sum())
                alone = native_generate(model, ids[i : i + 1, :n], mask[i : i + 1, :n], num_beams=num_beams, max_new_tokens=5)
                assert torch.equal(mixed[i, : alone.shape[1]], alone[0])
