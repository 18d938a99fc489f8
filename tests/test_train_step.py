"""The training step's pieces against their plain versions: the forward's inputs (no second
loss inside the model) and the fused AdamW."""

from __future__ import annotations

import pytest
import torch

from mtadapt.data.batching import collate
from mtadapt.models.families import get_family
from mtadapt.models.loading import load_model
from mtadapt.train.loop import build_optimizer, forward_inputs, label_smoothed_loss

DIRECTIONS = {"mbart50": ("de_DE", "en_XX"), "marian": (None, None), "t5": ("de", "en"), "m2m100": ("de", "en"),
              "nllb": ("deu_Latn", "eng_Latn")}


def _check_inputs(family_name: str, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
    inputs = forward_inputs(get_family(family_name), model, batch)
    with torch.no_grad():
        reference = model(**batch)  # the model shifts the labels itself and computes its loss
        out = model(**inputs)
    assert "labels" not in inputs and out.loss is None  # no second cross-entropy inside the model
    assert torch.equal(out.logits, reference.logits)
    assert label_smoothed_loss(out.logits, batch["labels"], 0.0).item() == pytest.approx(reference.loss.item(), rel=1e-6)


@pytest.mark.parametrize("family", sorted(DIRECTIONS))
def test_forward_inputs_give_the_logits_and_loss_of_labels(family: str) -> None:
    loaded = load_model(f"tiny:{family}")
    assert loaded.family.name == family
    codec = loaded.codec(*DIRECTIONS[family])
    src = codec.encode_sources(["ein kleines Haus", "ja"])
    tgt = codec.encode_targets(["a small house", "yes"])
    batch = collate(list(zip(src, tgt)), codec.pad_id)
    _check_inputs(family, loaded.model.eval(), batch)  # eval: no dropout, both passes see one network


def test_forward_inputs_of_the_marian_native_port() -> None:
    from mtadapt.models.marian_native.model import MarianNativeConfig, MarianNativeModel

    torch.manual_seed(0)
    config = MarianNativeConfig(dim=16, heads=4, encoder_layers=2, decoder_layers=2, decoder_type="ssru",
                                ffn_dim=32, vocab_size=50, pad_id=0, eos_id=0)
    model = MarianNativeModel(config).eval()
    batch = collate([([5, 6, 7, 0], [8, 9, 0]), ([11, 0], [12, 13, 14, 15, 0])], pad_id=0)
    _check_inputs("marian_native", model, batch)


def test_fused_adamw_follows_the_single_tensor_update() -> None:
    torch.manual_seed(0)
    shapes = [(8, 64), (64, 8), (8, 64), (32, 8)]  # LoRA A/B-like tensors
    fused_params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    plain_params = [torch.nn.Parameter(p.detach().clone()) for p in fused_params]
    fused = build_optimizer(fused_params, 1e-2, 0.01)
    plain = torch.optim.AdamW(plain_params, lr=1e-2, weight_decay=0.01, foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(5):
        grads = [torch.randn(s) for s in shapes]
        for params, optimizer in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(fused_params, plain_params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, torch.zeros_like(a))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_normalizations_match_plain_loops(smoothing: float) -> None:
    """train.loss_normalization against its definition, token by token."""
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    labels[0, 2:] = -100  # sentences of 2, 5 and 4 target tokens
    labels[2, 4:] = -100
    token_loss = [[torch.nn.functional.cross_entropy(logits[b, t][None], labels[b, t][None], label_smoothing=smoothing).item()
                   for t in range(5) if labels[b, t] != -100] for b in range(3)]
    every = [x for sentence in token_loss for x in sentence]
    expected = {"tokens": sum(every) / len(every), "sentences": sum(sum(s) / len(s) for s in token_loss) / 3,
                "fixed": sum(every) / 4.0}
    for normalization, value in expected.items():
        got = label_smoothed_loss(logits, labels, smoothing, normalization, fixed_tokens=4.0).item()
        assert got == pytest.approx(value, rel=1e-5), normalization
    assert expected["tokens"] != pytest.approx(expected["sentences"], rel=1e-3)  # the cases differ here
    with pytest.raises(ValueError, match="'tokens', 'sentences', 'fixed'"):
        label_smoothed_loss(logits, labels, smoothing, "batch")
