"""Merge LoRA adapters into a standalone transformers model folder.

``save_merged(model, folder)`` writes what ``AutoModelForSeq2SeqLM.from_pretrained(folder)``
loads with no mtadapt or peft installed: W' = W + scale * B @ A for every wrapped Linear,
then the plain ``nn.Linear`` put back. Speed equals the base model's; the logits equal the
unmerged model's up to float rounding (tested).

``merge_in_place(model, name)`` merges one LoRA adapter into the live model's weights for a
while (serve: a batch whose rows all use one adapter) and hands back a ``MergedAdapter`` whose
``restore()`` copies the stored base weights back bit for bit (subtracting ``scale * B @ A``
again would leave float rounding in the base).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtadapt.errors import AdapterError
from mtadapt.io import fill_folder
from mtadapt.methods import lora, storage
from mtadapt.methods.base import adapter_layers, replace_module

_MTADAPT_ATTRS = ("mtadapt_adapter_configs", "mtadapt_whole_model_method")

# Why each non-LoRA adapter layer cannot become plain weights (full fine-tuning and BitFit
# change the weights themselves, so they need no merge).
_UNMERGEABLE = {
    "BottleneckLinear": "bottleneck adapters (houlsby, pfeiffer) are nonlinear layers "
                        "(down-projection, activation, up-projection) that a plain transformer does not have; "
                        "no weight change reproduces them",
    "PrefixSite": "prefix tuning adds learned key/value positions to every attention, which a plain "
                  "transformer (and Marian's engine) has no place for",
    "SoftPrompt": "prompt tuning prepends learned vectors to the encoder input, which a plain transformer "
                  "(and Marian's engine) cannot take",
}


def _empty_wrapper(layer: nn.Module) -> bool:
    """A layer around a plain `base_layer` that holds no adapter now: what deleting the last
    bottleneck adapter leaves; it computes `base_layer(x)` and `merged_model` unwraps it."""
    return isinstance(getattr(layer, "base_layer", None), nn.Module) and not layer.adapter_names()


def merge_refusal(model: nn.Module) -> str | None:
    """Why `model`'s adapters cannot be merged into its weights (one line), or None if they can."""
    reasons: dict[str, list[str]] = {}
    for name, layer in adapter_layers(model):
        if not isinstance(layer, lora.LoraLinear) and not _empty_wrapper(layer):
            kind = type(layer).__name__
            reasons.setdefault(kind, []).append(name)
    if not reasons:
        return None
    parts = [f"{_UNMERGEABLE.get(kind, kind + ' layers cannot be merged')} (e.g. {names[0]})" for kind, names in reasons.items()]
    return "only LoRA adapters merge into weights: " + "; ".join(parts)


def merged_model(model: nn.Module, adapter_names: Sequence[str] | None = None, copy_model: bool = True) -> nn.Module:
    """A plain model with LoRA adapters merged in (default: the active ones).

    Args:
        copy_model: merge into a deep copy (the original keeps its adapters; needs memory for
            a second model). With False the given model is changed in place.

    Raises:
        AdapterError: the merge would produce NaN/Inf (nothing is changed), or the model holds
            non-LoRA adapters (they cannot be merged into weights).
    """
    refusal = merge_refusal(model)
    if refusal is not None:
        raise AdapterError(refusal)
    target = copy.deepcopy(model) if copy_model else model
    lora.merge_and_unload(target, adapter_names)
    # what is left are empty wrappers (merge_refusal let nothing else through); outermost first,
    # one at a time: a wrapper's base may be another wrapper
    while (left := next(adapter_layers(target), None)) is not None:
        replace_module(target, left[0], left[1].base_layer)
    storage.forget_stored_weights(target)  # its weights are no longer the stored base's
    for attr in _MTADAPT_ATTRS:
        if attr in target.__dict__:
            delattr(target, attr)
    return target


def save_merged(
    model: nn.Module,
    folder: str | os.PathLike,
    adapter_names: Sequence[str] | None = None,
    tokenizer: Any | None = None,
    copy_model: bool = True,
) -> Path:
    """Merge and ``save_pretrained`` to ``folder`` (safetensors), with the tokenizer if given.

    Each file is written whole (`mtadapt.io.fill_folder`), with the mode a plain write gives.
    """
    merged = merged_model(model, adapter_names, copy_model=copy_model)

    def build(tmp: Path) -> None:
        merged.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)

    return fill_folder(folder, build)


@dataclass
class MergedAdapter:
    """One LoRA adapter merged into a live model by `merge_in_place`.

    Attributes:
        name: the merged adapter.
        originals: (weight, its value before the merge) of every Linear the adapter changed.
    """

    name: str
    model: nn.Module
    originals: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def restore(self) -> None:
        """Put the exact base weights back and mark every LoRA layer unmerged."""
        for _, layer in lora.lora_layers(self.model):
            layer.merged.clear()
        with torch.no_grad():
            for weight, original in self.originals:
                weight.copy_(original)
        self.originals = []


def merge_in_place(model: nn.Module, name: str) -> MergedAdapter:
    """Merge LoRA adapter `name` into `model`'s weights (W += scale * B @ A where it sits),
    keeping a copy of each changed weight for an exact `restore()`. The adapter's LoRA
    layers then skip it (it is in the weights); other adapters stay as they were."""
    merged = MergedAdapter(name, model)
    for _, layer in lora.lora_layers(model):
        if name in layer.lora_A:
            weight = layer.base_layer.weight
            merged.originals.append((weight, weight.detach().clone()))
            layer.merge(name)
    return merged
