"""Parameter and adapter-size report, for a model or a named architecture built on the meta
device (no weights are allocated or downloaded, so mBART-large costs milliseconds).

Counting rules (identical to PEFT's ``print_trainable_parameters``):

* total = every parameter of the model *with* the method's parameters, tied parameters
  (shared embeddings) once; frozen sinusoidal position tables that transformers stores as
  parameters (Marian) are included, buffers (``final_logits_bias``, M2M100's sinusoidal
  table) are not.
* trainable = parameters with ``requires_grad`` after the method is applied and the base
  frozen.
* adapter file size = bytes of the tensors the method *saves* (``adapter_state_dict``; for
  prefix tuning the folded prefixes, not the reparameterisation MLP), in fp32 and bf16,
  without the few-KB safetensors header. Whole-model methods save their trainable tensors.

Bottleneck adapters: a LayerNorm inside an adapter is counted like any other parameter
(2 * d_model per adapter). Tables in papers often leave it out: the Houlsby table for
mBART-large counts 33,808 = 2*1024*16 + 16 + 1024 parameters per adapter of size 16
(down and up projections with biases, no LayerNorm); with ``layer_norm=True`` our count
is 2,048 higher per adapter.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mtadapt.methods import baselines
from mtadapt.methods.base import adapter_layers, count_parameters
from mtadapt.methods.registry import config_from_dict, config_to_dict
from mtadapt.methods.storage import add_method
from mtadapt.models.targets import BART_LIKE, T5, ModelTargets


def _architecture_configs() -> dict[str, tuple[str, dict[str, Any]]]:
    """Real hub config values (config.json of each checkpoint); name -> (model_type, kwargs)."""
    big = dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
               decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096,
               max_position_embeddings=1024, scale_embedding=True, activation_function="relu")
    return {
        "facebook/mbart-large-50": ("mbart", dict(big, vocab_size=250054, activation_function="gelu",
                                                  pad_token_id=1, bos_token_id=0, eos_token_id=2)),
        "facebook/m2m100_418M": ("m2m_100", dict(big, vocab_size=128112, pad_token_id=1, bos_token_id=0,
                                                 eos_token_id=2, decoder_start_token_id=2)),
        "facebook/nllb-200-distilled-600M": ("m2m_100", dict(big, vocab_size=256206, pad_token_id=1,
                                                             bos_token_id=0, eos_token_id=2,
                                                             decoder_start_token_id=2)),
        "Helsinki-NLP/opus-mt-de-en": ("marian", dict(vocab_size=58101, decoder_vocab_size=58101, d_model=512,
                                                      encoder_layers=6, decoder_layers=6,
                                                      encoder_attention_heads=8, decoder_attention_heads=8,
                                                      encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                                                      max_position_embeddings=512, scale_embedding=True,
                                                      activation_function="swish", pad_token_id=58100,
                                                      eos_token_id=0, decoder_start_token_id=58100,
                                                      share_encoder_decoder_embeddings=True)),
        "t5-small": ("t5", dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                                num_decoder_layers=6, num_heads=8, relative_attention_num_buckets=32,
                                feed_forward_proj="relu", tie_word_embeddings=True)),
        "t5-base": ("t5", dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12,
                               num_decoder_layers=12, num_heads=12, relative_attention_num_buckets=32,
                               feed_forward_proj="relu", tie_word_embeddings=True)),
    }


# short aliases people type
_ALIASES = {"mbart-large-50": "facebook/mbart-large-50", "m2m100_418M": "facebook/m2m100_418M",
            "nllb-200-distilled-600M": "facebook/nllb-200-distilled-600M",
            "opus-mt-de-en": "Helsinki-NLP/opus-mt-de-en"}


def architecture_names() -> list[str]:
    return list(_architecture_configs())


def build_meta_model(architecture: str) -> nn.Module:
    """The named architecture on the meta device (shapes only, no memory, no download)."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    name = _ALIASES.get(architecture, architecture)
    configs = _architecture_configs()
    if name not in configs:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(configs)}")
    model_type, kwargs = configs[name]
    config = AutoConfig.for_model(model_type, **kwargs)
    config._name_or_path = name
    with torch.device("meta"):
        return AutoModelForSeq2SeqLM.from_config(config)


def targets_for(model: nn.Module) -> ModelTargets:
    """Default targets from ``config.model_type``: T5 patterns for t5/mt5, BART-like otherwise."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return T5 if model_type in ("t5", "mt5", "umt5") else BART_LIKE


@dataclass(frozen=True)
class ParamReport:
    """One row of the report. Sizes are tensor bytes (no file header)."""

    architecture: str
    method: str
    settings: str
    trainable: int
    total: int
    adapter_bytes_fp32: int
    adapter_bytes_bf16: int

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def _saved_numel(model: nn.Module, adapter_name: str) -> int:
    return sum(
        t.numel()
        for _, layer in adapter_layers(model)
        if adapter_name in layer.adapter_names()
        for t in layer.adapter_state_dict(adapter_name).values()
    )


def _meta_copy(model: nn.Module) -> nn.Module:
    config = getattr(model, "config", None)
    if config is not None and hasattr(type(model), "config_class"):
        with torch.device("meta"):
            return type(model)(config)
    return copy.deepcopy(model).to("meta")


def param_report(
    model_or_arch: nn.Module | str,
    method: str | None = "lora",
    settings: dict[str, Any] | None = None,
    targets: ModelTargets | None = None,
) -> ParamReport:
    """Count parameters for a method on a model or a named architecture.

    Args:
        model_or_arch: a model (not modified: a meta-device copy is used when a method is
            given) or a name from `architecture_names` (short names like "t5-base" work).
        method: registry name ("lora", "houlsby", "full", ...); None = the model as it is.
        settings: the method's config fields, e.g. ``{"rank": 8, "targets": "default"}``.
        targets: the family's patterns; default from ``config.model_type`` (`targets_for`).

    Example: ``param_report("t5-base", "lora", {"rank": 8}).trainable == 884_736``.
    """
    settings = dict(settings or {})
    if isinstance(model_or_arch, str):
        arch_name = _ALIASES.get(model_or_arch, model_or_arch)
        model = build_meta_model(arch_name)
    else:
        arch_name = getattr(getattr(model_or_arch, "config", None), "_name_or_path", "") or type(model_or_arch).__name__
        model = _meta_copy(model_or_arch) if method is not None else model_or_arch
    if method is None:
        counts = count_parameters(model)
        return ParamReport(arch_name, "none", "", counts.trainable, counts.total, counts.trainable * 4, counts.trainable * 2)
    config = config_from_dict(method, settings)
    adapter_name = "report"
    add_method(model, config, targets or targets_for(model), adapter_name=adapter_name, freeze=True)
    counts = count_parameters(model)
    if config.whole_model:
        saved = sum(t.numel() for t in baselines.trainable_state_dict(model).values())
    else:
        saved = _saved_numel(model, adapter_name)
    shown = ", ".join(f"{k}={v}" for k, v in config_to_dict(config).items())
    return ParamReport(arch_name, method, shown, counts.trainable, counts.total, saved * 4, saved * 2)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def format_table(rows: list[ParamReport]) -> str:
    """A fixed-width text table (also valid Markdown) of report rows."""
    header = ["architecture", "method", "settings", "trainable", "total", "trainable %", "fp32 file", "bf16 file"]
    body = [
        [r.architecture, r.method, r.settings, f"{r.trainable:,}", f"{r.total:,}", f"{r.trainable_percent:.4f}",
         _human_bytes(r.adapter_bytes_fp32), _human_bytes(r.adapter_bytes_bf16)]
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in body]
    return "\n".join(lines)
