"""Bottleneck adapters: Houlsby (Houlsby et al., 2019) and Pfeiffer (Pfeiffer et al., 2021).

An adapter acts on the output ``h`` (..., d) of a sublayer, before that sublayer's
residual add and layer norm::

    adapter(h) = h + up(act(down(LN(h))))        LN only with layer_norm=True
    down: d -> m,  up: m -> d,  m = bottleneck_dim or d // reduction_factor

``up`` starts at zero (``up_init_std=0``), so a fresh adapter is exactly the identity and
the model computes what the base computes.

Placement (the module named by `ModelTargets` is wrapped, so the adapter sees its output):

* Houlsby: after self-attention (``targets.attention_output``) and after the FFN
  (``targets.ffn_output``) of every encoder and decoder layer; optionally after decoder
  cross-attention (``targets.cross_attention_output``, ``cross_attention=True``).
* Pfeiffer: after the FFN only.

Parameters per adapter with d = d_model, m = bottleneck size::

    2*d*m + m + d           (down W, down b, up W, up b)
    + 2*d                   with layer_norm=True (LN weight and bias)

The Houlsby table commonly quoted for mBART-large (d=1024, m=16) counts 33,808 per
adapter = 2*1024*16 + 16 + 1024, i.e. *without* the adapter LayerNorm; use
``layer_norm=False`` to reproduce it.

Several named adapters may sit in one wrapped module. Without routing, every row gets the
sum of the active adapters' contributions::

    y = h + sum_{a in active} up_a(act(down_a(LN_a(h))))

With per-example routing (see `mtadapt.methods.base`), ``r = expand_routing(route, N)``::

    for i in range(N):
        y[i] = h[i]
        if r[i] != -1 and route_names[r[i]] is held here:
            y[i] += up_a(act(down_a(LN_a(h[i]))))     a = route_names[r[i]]

computed per adapter on its rows (one gather, the adapter, one index_add).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from mtadapt.methods.base import (
    AdapterSelection,
    MethodConfig,
    active_adapters,
    adapter_names,
    expand_routing,
    find_modules,
    replace_module,
    set_active_adapters,
)
from mtadapt.models.targets import ModelTargets

Activation = Literal["relu", "gelu", "tanh", "silu"]
_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "silu": F.silu}


@dataclass
class BottleneckConfig(MethodConfig):
    """Settings shared by Houlsby and Pfeiffer adapters. Give exactly one size setting.

    Attributes:
        bottleneck_dim: m, the inner size of the adapter (>= 1).
        reduction_factor: m = d_model // reduction_factor (>= 1, and <= d_model).
        activation: non-linearity between down- and up-projection.
        layer_norm: LayerNorm on the adapter input (adds 2*d parameters per adapter).
        up_init_std: std of the normal init of the up-projection weight; 0 makes a fresh
            adapter exactly the identity.
        down_init_std: std of the normal init of the down-projection weight (Houlsby use
            near-zero init, 1e-2).
    """

    method: ClassVar[str] = ""
    routes_per_row: ClassVar[bool] = True
    bottleneck_dim: int | None = None
    reduction_factor: int | None = None
    activation: Activation = "relu"
    layer_norm: bool = True
    up_init_std: float = 0.0
    down_init_std: float = 1e-2

    def __post_init__(self) -> None:
        problems = []
        if self.bottleneck_dim is None and self.reduction_factor is None:
            problems.append(
                f"{self.method} needs an adapter size and none was given: set exactly one of bottleneck_dim "
                "(the adapter's inner size m, e.g. 64) and reduction_factor (m = d_model // reduction_factor, e.g. 16)"
            )
        elif self.bottleneck_dim is not None and self.reduction_factor is not None:
            problems.append(
                f"{self.method}: set exactly one of bottleneck_dim and reduction_factor, not both (got "
                f"bottleneck_dim={self.bottleneck_dim!r}, reduction_factor={self.reduction_factor!r})"
            )
        if self.bottleneck_dim is not None and (not isinstance(self.bottleneck_dim, int) or self.bottleneck_dim < 1):
            problems.append(f"{self.method} bottleneck_dim={self.bottleneck_dim!r} must be an integer >= 1")
        if self.reduction_factor is not None and (
            not isinstance(self.reduction_factor, int) or self.reduction_factor < 1
        ):
            problems.append(f"{self.method} reduction_factor={self.reduction_factor!r} must be an integer >= 1")
        if self.activation not in _ACTIVATIONS:
            problems.append(f"{self.method} activation={self.activation!r} must be one of {sorted(_ACTIVATIONS)}")
        if self.up_init_std < 0 or self.down_init_std < 0:
            problems.append(
                f"{self.method} up_init_std={self.up_init_std!r} and down_init_std={self.down_init_std!r} must be >= 0"
            )
        if problems:
            raise ValueError("; ".join(problems))

    def size_for(self, d_model: int) -> int:
        """The bottleneck size m for a sublayer of width ``d_model``."""
        if self.bottleneck_dim is not None:
            return self.bottleneck_dim
        m = d_model // self.reduction_factor
        if m < 1:
            raise ValueError(
                f"{self.method} reduction_factor={self.reduction_factor} leaves no bottleneck for "
                f"d_model={d_model}; use a reduction_factor <= {d_model}"
            )
        return m


@dataclass
class HoulsbyConfig(BottleneckConfig):
    """Houlsby adapters: after self-attention and after the FFN of every layer.

    Attributes:
        cross_attention: also after decoder cross-attention.
    """

    method: ClassVar[str] = "houlsby"
    cross_attention: bool = False


@dataclass
class PfeifferConfig(BottleneckConfig):
    """Pfeiffer adapters: after the FFN of every layer only."""

    method: ClassVar[str] = "pfeiffer"


def adapter_parameter_count(d_model: int, bottleneck_dim: int, layer_norm: bool) -> int:
    """Parameters of one adapter: 2*d*m + m + d, plus 2*d with its LayerNorm."""
    return 2 * d_model * bottleneck_dim + bottleneck_dim + d_model + (2 * d_model if layer_norm else 0)


class Bottleneck(nn.Module):
    """One adapter's residual-free branch: up(act(down(LN(h)))), (..., d) -> (..., d)."""

    def __init__(self, d_model: int, bottleneck_dim: int, config: BottleneckConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(d_model) if config.layer_norm else None
        self.down = nn.Linear(d_model, bottleneck_dim)
        self.up = nn.Linear(bottleneck_dim, d_model)
        self.activation = config.activation
        nn.init.normal_(self.down.weight, std=config.down_init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.normal_(self.up.weight, std=config.up_init_std) if config.up_init_std > 0 else nn.init.zeros_(
            self.up.weight
        )
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.layer_norm(h) if self.layer_norm is not None else h
        return self.up(_ACTIVATIONS[self.activation](self.down(z)))


class BottleneckLinear(AdapterSelection, nn.Module):
    """A sublayer output projection followed by named bottleneck adapters.

    ``forward(x) = h + sum of adapter branches on h`` with ``h = base_layer(x)``; see the
    module docstring for routing. Implements `mtadapt.methods.base.AdapterLayer`.
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapters = nn.ModuleDict()
        self._init_selection()

    # Some models read the projection's weight directly (T5's FFN checks ``wo.weight.dtype``).
    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.base_layer, "bias", None)

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def add_adapter(self, adapter_name: str, config: BottleneckConfig) -> None:
        if adapter_name in self.adapters:
            raise ValueError(f"adapter {adapter_name!r} already exists here; held: {self.adapter_names()}")
        d = self.out_features
        w = self.base_layer.weight
        self.adapters[adapter_name] = Bottleneck(d, config.size_for(d), config).to(device=w.device, dtype=w.dtype)

    # --- AdapterLayer protocol -------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        return list(self.adapters.keys())

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.adapters:
            raise KeyError(f"no adapter {adapter_name!r} here; held: {self.adapter_names()}")
        del self.adapters[adapter_name]
        self._forget(adapter_name)

    def adapter_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        return list(self.adapters[adapter_name].parameters())

    def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.adapters[adapter_name].state_dict().items()}

    def load_adapter_state_dict(self, adapter_name: str, tensors: dict[str, torch.Tensor]) -> None:
        self.adapters[adapter_name].load_state_dict(tensors, strict=True)

    # --- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)  # (N, ..., d)
        if self._route is not None:
            return self._routed_forward(h)
        y = h
        for name in self._active:
            if name in self.adapters:
                y = y + self.adapters[name](h)
        return y

    def _routed_forward(self, h: torch.Tensor) -> torch.Tensor:
        # h (N, ..., d); r (N,) index per row into _route_names, -1 = base only
        r = expand_routing(self._route.to(h.device), h.shape[0])
        y = h
        for index, name in enumerate(self._route_names):
            if name not in self.adapters:
                continue
            rows = (r == index).nonzero(as_tuple=True)[0]  # (n_a,)
            if rows.numel():
                y = y.index_add(0, rows, self.adapters[name](h.index_select(0, rows)))
        return y

    def extra_repr(self) -> str:
        return f"adapters={self.adapter_names()}, active={self._active}"


def target_module_names(model: nn.Module, config: BottleneckConfig, targets: ModelTargets) -> list[str]:
    """Names of the output projections that get an adapter for this config."""
    if isinstance(config, HoulsbyConfig):
        patterns = [targets.attention_output, targets.ffn_output]
        if config.cross_attention:
            patterns.append(targets.cross_attention_output)
    elif isinstance(config, PfeifferConfig):
        patterns = [targets.ffn_output]
    else:
        raise TypeError(f"config must be a HoulsbyConfig or PfeifferConfig, got {type(config).__name__}")
    found = find_modules(model, patterns)
    # A module already wrapped keeps its name; its inner base_layer never matches the patterns.
    return [name for name, _ in found]


def apply(
    model: nn.Module, config: BottleneckConfig, targets: ModelTargets, adapter_name: str = "default"
) -> None:
    """Wrap the targeted output projections (once) and add adapter ``adapter_name`` to each.

    The new adapter becomes active when no adapter was active before (the first adapter),
    as with LoRA; base weights are not frozen here (use `mtadapt.methods.base.freeze_base`).
    """
    was_active = active_adapters(model) if adapter_names(model) else []
    for name in target_module_names(model, config, targets):
        module = model.get_submodule(name)
        if not isinstance(module, BottleneckLinear):
            module = BottleneckLinear(module)
            replace_module(model, name, module)
        module.add_adapter(adapter_name, config)
    set_active_adapters(model, was_active or [adapter_name])


def bottleneck_layers(model: nn.Module) -> list[tuple[str, BottleneckLinear]]:
    """(name, layer) for every wrapped projection."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BottleneckLinear)]
