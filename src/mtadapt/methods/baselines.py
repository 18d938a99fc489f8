"""Whole-model baselines: full fine-tuning and BitFit (bias terms only, Ben Zaken et al., 2022).

These insert no modules and hold no named adapters: ``apply`` sets ``requires_grad`` and
records the config on the model (``model.mtadapt_whole_model_method``) so storage knows
which tensors to save (`trainable_state_dict`). Only one such method per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mtadapt.methods.base import MethodConfig
from mtadapt.models.targets import ModelTargets

WHOLE_MODEL_ATTR = "mtadapt_whole_model_method"


@dataclass
class FullConfig(MethodConfig):
    """Full fine-tuning: every parameter trains (embeddings included), except those the
    model itself keeps frozen (transformers' sinusoidal position tables, requires_grad=False)."""

    method: ClassVar[str] = "full"
    whole_model: ClassVar[bool] = True


@dataclass
class BitFitConfig(MethodConfig):
    """BitFit: only bias vectors train.

    Attributes:
        include_layer_norm: also train LayerNorm biases (as in the BitFit paper). T5 has no
            biases at all, so BitFit cannot be applied to it.
    """

    method: ClassVar[str] = "bitfit"
    whole_model: ClassVar[bool] = True
    include_layer_norm: bool = True


def _is_trainable(name: str, module: nn.Module, p: nn.Parameter, config: FullConfig | BitFitConfig) -> bool:
    if isinstance(config, FullConfig):
        return p.requires_grad
    if not name.endswith("bias"):
        return False
    return config.include_layer_norm or not isinstance(module, nn.LayerNorm)


def trainable_parameter_names(model: nn.Module, config: FullConfig | BitFitConfig) -> list[str]:
    """Names (as ``named_parameters`` gives them, tied ones once) the method trains."""
    names = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{param_name}" if module_name else param_name
            if _is_trainable(full, module, p, config):
                names.append(full)
    return names


def apply(
    model: nn.Module,
    config: FullConfig | BitFitConfig,
    targets: ModelTargets | None = None,
    adapter_name: str = "default",
) -> None:
    """Set ``requires_grad`` for full fine-tuning or BitFit. ``targets`` is unused.

    Raises:
        ValueError: BitFit on a model without bias parameters (e.g. T5).
    """
    if not isinstance(config, (FullConfig, BitFitConfig)):
        raise TypeError(f"baselines.apply needs FullConfig or BitFitConfig, got {type(config).__name__}")
    names = set(trainable_parameter_names(model, config))
    if not names:
        raise ValueError(f"{config.method}: the model has no parameters to train (BitFit on a model without biases?)")
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
    setattr(model, WHOLE_MODEL_ATTR, config)


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a whole-model method saves (detached, by parameter name)."""
    config = getattr(model, WHOLE_MODEL_ATTR, None)
    if config is None:
        raise ValueError("no whole-model method (full/bitfit) was applied to this model")
    names = set(trainable_parameter_names(model, config))
    return {n: p.detach() for n, p in model.named_parameters() if n in names}
