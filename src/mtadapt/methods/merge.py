"""Merge LoRA adapters into a standalone transformers model folder.

``save_merged(model, folder)`` writes what ``AutoModelForSeq2SeqLM.from_pretrained(folder)``
loads with no mtadapt or peft installed: W' = W + scale * B @ A for every wrapped Linear,
then the plain ``nn.Linear`` put back. Speed equals the base model's; the logits equal the
unmerged model's up to float rounding (tested).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from mtadapt.methods import lora
from mtadapt.methods.base import adapter_layers

_MTADAPT_ATTRS = ("mtadapt_adapter_configs", "mtadapt_whole_model_method")


def merged_model(model: nn.Module, adapter_names: Sequence[str] | None = None, copy_model: bool = True) -> nn.Module:
    """A plain model with LoRA adapters merged in (default: the active ones).

    Args:
        copy_model: merge into a deep copy (the original keeps its adapters; needs memory for
            a second model). With False the given model is changed in place.

    Raises:
        ValueError: the merge would produce NaN/Inf (nothing is changed), or the model holds
            non-LoRA adapters (they cannot be merged into weights).
    """
    others = [name for name, layer in adapter_layers(model) if not isinstance(layer, lora.LoraLinear)]
    if others:
        raise ValueError(f"only LoRA merges into weights; remove the other adapters first (e.g. {others[:3]})")
    target = copy.deepcopy(model) if copy_model else model
    lora.merge_and_unload(target, adapter_names)
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
    """Merge and ``save_pretrained`` to ``folder`` (safetensors), with the tokenizer if given."""
    merged = merged_model(model, adapter_names, copy_model=copy_model)
    folder = Path(folder)
    merged.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
