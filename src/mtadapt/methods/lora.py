"""LoRA: low-rank updates of frozen Linear layers (Hu et al., 2021).

For a wrapped ``nn.Linear`` with weight W (d_out, d_in) and an adapter with
A (r, d_in), B (d_out, r)::

    y = x @ W^T + b + scale * dropout(x) @ A^T @ B^T
    scale = alpha / r            (rsLoRA: alpha / sqrt(r))

A starts Kaiming-uniform(a=sqrt(5)) like ``nn.Linear`` and B at zero, so a fresh adapter
is the identity (as in PEFT and the paper). The unmerged forward never builds the
(d_out, d_in) delta: two thin matmuls cost O(N * r * (d_in + d_out)).

Per-example routing (see `mtadapt.methods.base`): with ``a = expand_routing(route, N)``::

    for i in range(N):
        if a[i] != -1:
            y[i] += scale[a[i]] * dropout(x[i]) @ A[a[i]]^T @ B[a[i]]^T

computed per adapter on the rows routed to it (one gather, two matmuls, one index_add).
Unrouted, a plain ``nn.Linear`` base runs fused (see `LoraLinear.forward`): the base matmul
and each adapter's second matmul with its add are one ``addmm`` each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mtadapt.errors import AdapterError
from mtadapt.methods.base import (
    AdapterSelection,
    MethodConfig,
    active_adapters,
    adapter_names,
    expand_routing,
    find_modules,
    replace_module,
    resolve_target_patterns,
    set_active_adapters,
)
from mtadapt.models.targets import ModelTargets


@dataclass
class LoraConfig(MethodConfig):
    """LoRA settings.

    Attributes:
        rank: r, the inner dimension of B A (>= 1).
        alpha: scale numerator; scale = alpha / rank (rsLoRA: alpha / sqrt(rank)).
        dropout: dropout probability on the LoRA path input, in [0, 1).
        use_rslora: rank-stabilised scaling (Kalajdzievski, 2023).
        targets: "default" (q and v projections incl. cross-attention), "all-linear", or a
            list of regexes matched with ``re.fullmatch`` against module names.
    """

    method: ClassVar[str] = "lora"
    routes_per_row: ClassVar[bool] = True
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    use_rslora: bool = False
    targets: str | list[str] = field(default="default")

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.rank, int) or self.rank < 1:
            problems.append(f"lora rank={self.rank!r} must be an integer >= 1")
        if not self.alpha > 0:
            problems.append(f"lora alpha={self.alpha!r} must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"lora dropout={self.dropout!r} must be in [0, 1)")
        if isinstance(self.targets, str) and self.targets not in ("default", "all-linear"):
            problems.append(f"lora targets={self.targets!r} must be 'default', 'all-linear' or a list of regexes")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)


class LoraLinear(AdapterSelection, nn.Module):
    """A frozen ``nn.Linear`` (``base_layer``) plus any number of named LoRA adapters.

    Parameter names: ``<module>.lora_A.<adapter>`` (r, d_in), ``<module>.lora_B.<adapter>``
    (d_out, r). Implements `mtadapt.methods.base.AdapterLayer`.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.scale: dict[str, float] = {}
        self.dropout: dict[str, float] = {}
        self.merged: list[str] = []  # adapters currently added into base_layer.weight
        self._init_selection()
        self._shared: list[str] = []  # added on every row, on top of routing or the active adapters

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:  # HF code sometimes reads proj.weight (dtype checks)
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    # ---- adapters -------------------------------------------------------------------
    def add_adapter(self, adapter_name: str, config: LoraConfig) -> None:
        if adapter_name in self.lora_A:
            raise ValueError(f"adapter {adapter_name!r} already exists here; delete it first")
        w = self.base_layer.weight
        dtype = w.dtype if w.dtype.is_floating_point else torch.float32
        A = torch.empty(config.rank, self.in_features, device=w.device, dtype=dtype)
        nn.init.kaiming_uniform_(A, a=math.sqrt(5))  # = nn.Linear's default init, as in PEFT
        B = torch.zeros(self.out_features, config.rank, device=w.device, dtype=dtype)
        self.lora_A[adapter_name] = nn.Parameter(A)
        self.lora_B[adapter_name] = nn.Parameter(B)
        self.scale[adapter_name] = config.scale
        self.dropout[adapter_name] = config.dropout

    def adapter_names(self) -> list[str]:
        return list(self.lora_A.keys())

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.lora_A:
            raise KeyError(f"no LoRA adapter {adapter_name!r}; this layer holds {self.adapter_names()}")
        if adapter_name in self.merged:
            raise ValueError(f"adapter {adapter_name!r} is merged; unmerge before deleting it")
        del self.lora_A[adapter_name]
        del self.lora_B[adapter_name]
        del self.scale[adapter_name], self.dropout[adapter_name]
        self._forget(adapter_name)
        self._shared = [n for n in self._shared if n != adapter_name]

    def set_routing(self, route: torch.Tensor | None, route_names: Sequence[str]) -> None:
        if route is not None and self.merged:
            raise ValueError(f"cannot route per example while {self.merged} are merged; unmerge first")
        super().set_routing(route, route_names)

    def adapter_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        return [self.lora_A[adapter_name], self.lora_B[adapter_name]]

    def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
        return {"lora_A": self.lora_A[adapter_name].detach(), "lora_B": self.lora_B[adapter_name].detach()}

    def load_adapter_state_dict(self, adapter_name: str, tensors: dict[str, torch.Tensor]) -> None:
        for key, target in (("lora_A", self.lora_A[adapter_name]), ("lora_B", self.lora_B[adapter_name])):
            if key not in tensors:
                raise KeyError(f"missing {key} for adapter {adapter_name!r}; got {sorted(tensors)}")
            if tensors[key].shape != target.shape:
                raise ValueError(
                    f"{key} of adapter {adapter_name!r} has shape {tuple(tensors[key].shape)}, "
                    f"expected {tuple(target.shape)}"
                )
            with torch.no_grad():
                target.copy_(tensors[key])

    # ---- merge ----------------------------------------------------------------------
    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        """scale * B @ A, (d_out, d_in), in float32 for an accurate merge."""
        A, B = self.lora_A[adapter_name].float(), self.lora_B[adapter_name].float()
        return (B @ A) * self.scale[adapter_name]

    def merge(self, adapter_name: str, safe: bool = True) -> None:
        """Add the adapter's delta into the base weight (forward then skips it).

        Args:
            safe: compute the merged weight out of place and refuse NaN/Inf.
        """
        if adapter_name in self.merged:
            raise ValueError(f"adapter {adapter_name!r} is already merged")
        w = self.base_layer.weight
        merged = w.detach().float() + self.delta_weight(adapter_name)
        if safe and not torch.isfinite(merged).all():
            raise AdapterError(f"merging adapter {adapter_name!r} gives NaN/Inf weights; not merged")
        with torch.no_grad():
            w.copy_(merged.to(w.dtype))
        self.merged.append(adapter_name)

    def unmerge(self) -> None:
        """Subtract merged adapters, last merged first."""
        w = self.base_layer.weight
        while self.merged:
            name = self.merged.pop()
            with torch.no_grad():
                w.copy_((w.detach().float() - self.delta_weight(name)).to(w.dtype))

    # ---- forward --------------------------------------------------------------------
    def _dropout(self, h: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """The adapter's dropout on its input (training only)."""
        p = self.dropout[adapter_name]
        return F.dropout(h, p) if p and self.training else h

    def _lora(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        """scale * dropout(x) @ A^T @ B^T; x (..., d_in) -> (..., d_out)."""
        A, B = self.lora_A[adapter_name], self.lora_B[adapter_name]
        h = self._dropout(x if x.dtype == A.dtype else x.to(A.dtype), adapter_name)
        # scale the thin (..., r) intermediate rather than the (..., d_out) output
        return F.linear(F.linear(h, A) * self.scale[adapter_name], B)

    def set_shared_adapters(self, adapter_names: Sequence[str]) -> None:
        """Adapters added on every row, on top of routing or the active adapters."""
        unknown = [n for n in adapter_names if n not in self.lora_A]
        if unknown:
            raise KeyError(f"no LoRA adapter(s) {unknown}; this layer holds {self.adapter_names()}")
        self._shared = list(adapter_names)

    def shared_adapters(self) -> list[str]:
        return list(self._shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._route is not None:
            y = self._routed_forward(x, self.base_layer(x))
            for name in self._shared:  # (N, ..., d_out) += shared adapter on every row
                y = y + self._lora(x, name).to(y.dtype)
            return y
        live = [n for n in dict.fromkeys(self._active + self._shared) if n in self.lora_A and n not in self.merged]
        base = self.base_layer
        if not live:
            return base(x)
        # autocast (mixed_precision bf16) casts out-of-place ops only: the fused in-place addmm_
        # would add a float32 B to a bfloat16 output, so it takes the generic path too
        if (type(base) is not nn.Linear or any(self.lora_A[n].dtype != x.dtype for n in live) or x.dtype != base.weight.dtype
                or torch.is_autocast_enabled(x.device.type)):
            y = base(x)  # generic path: any Linear subclass, mixed dtypes, autocast
            for name in live:
                # in place: the base linear's backward needs its input, not its output
                y.add_(self._lora(x, name).to(y.dtype))
            return y
        # Fused path (plain nn.Linear, one dtype): per adapter two kernels instead of four,
        #   y2 = b + x2 W^T                  (N, d_out)    addmm
        #   y2 += scale * (x2 A^T) B^T       (N, r) -> (N, d_out), in place: addmm_(alpha=scale)
        # on the flattened rows x2 (N, d_in). The in-place update is safe for autograd: the
        # base addmm saves its inputs, not its output.
        x2 = x.reshape(-1, x.shape[-1])
        weight, bias = base.weight, base.bias
        y2 = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
        for name in live:
            h = self._dropout(x2, name)
            y2.addmm_(h @ self.lora_A[name].t(), self.lora_B[name].t(), alpha=self.scale[name])
        return y2.view(*x.shape[:-1], y2.shape[-1])

    def _routed_forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x (N, ..., d_in), y (N, ..., d_out); a (N,) adapter index per row, -1 = base only
        a = expand_routing(self._route, x.shape[0]).to(x.device)
        for j, name in enumerate(self._route_names):
            if name not in self.lora_A:
                continue
            rows = (a == j).nonzero().squeeze(1)  # (n_j,)
            if rows.numel() == 0:
                continue
            delta = self._lora(x.index_select(0, rows), name).to(y.dtype)  # (n_j, ..., d_out)
            y = y.index_add(0, rows, delta)
        return y

    def extra_repr(self) -> str:
        ranks = {n: self.lora_A[n].shape[0] for n in self.lora_A}
        return f"ranks={ranks}, active={self._active}, merged={self.merged}"


def lora_layers(model: nn.Module) -> list[tuple[str, LoraLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLinear)]


def target_module_names(model: nn.Module, config: LoraConfig, targets: ModelTargets) -> list[str]:
    """Names of the Linear (or already wrapped) modules this config targets."""
    patterns = resolve_target_patterns(config.targets, targets, "lora targets")
    found = find_modules(model, patterns, (nn.Linear, LoraLinear), "lora targets", "; or use 'default' or 'all-linear'")
    wrapped = [n for n, m in found if isinstance(m, LoraLinear)]
    # never wrap the inner base_layer of an existing wrapper (a broad regex like ".*" hits it)
    return [n for n, _ in found if not any(n.startswith(w + ".") for w in wrapped)]


def apply(model: nn.Module, config: LoraConfig, targets: ModelTargets, adapter_name: str = "default") -> None:
    """Wrap the targeted Linear layers (once) and add adapter ``adapter_name`` to each.

    The new adapter becomes active when no adapter was active before (first adapter), so
    ``apply`` + `freeze_base` is all a training run needs. Base weights are not frozen here.
    """
    if not isinstance(config, LoraConfig):
        raise TypeError(f"lora.apply needs a LoraConfig, got {type(config).__name__}")
    was_active = active_adapters(model) if adapter_names(model) else []
    names = target_module_names(model, config, targets)
    _warn_rank_above_width(model, names, config.rank)
    for name in names:
        module = model.get_submodule(name)
        if not isinstance(module, LoraLinear):
            module = LoraLinear(module)
            replace_module(model, name, module)
        module.add_adapter(adapter_name, config)
    set_active_adapters(model, was_active or [adapter_name])


def _warn_rank_above_width(model: nn.Module, names: list[str], rank: int) -> None:
    """One warning when `rank` exceeds min(in, out) of targeted layers: B A (out x in) cannot
    have a higher rank, so the extra rank adds parameters and no capacity."""
    import warnings

    from mtadapt.errors import MtadaptWarning

    widths = {}
    for name in names:
        layer = model.get_submodule(name)
        layer = layer.base_layer if isinstance(layer, LoraLinear) else layer
        widths[name] = (layer.out_features, layer.in_features)
    narrow = {name: shape for name, shape in widths.items() if rank > min(shape)}
    if narrow:
        name, (out, inp) = min(narrow.items(), key=lambda item: min(item[1]))
        warnings.warn(f"lora rank {rank} is above the width of {len(narrow)} of {len(widths)} targeted layers (the narrowest, "
                      f"{name}, is {out} x {inp}): B A cannot have a rank above min(in, out), so the extra rank adds "
                      f"parameters and no capacity; use rank <= {min(out, inp)}", MtadaptWarning, stacklevel=3)


def merge(model: nn.Module, adapter_names: Sequence[str] | None = None, safe: bool = True) -> None:
    """Merge adapters (default: the active ones) into the base weights of every LoRA layer.

    With ``safe`` every layer is checked before any weight changes, so a NaN/Inf in one
    layer leaves the whole model untouched.
    """
    names = list(adapter_names) if adapter_names is not None else active_adapters(model)
    layers = lora_layers(model)
    if safe:
        for layer_name, layer in layers:
            for n in names:
                if n in layer.lora_A and not torch.isfinite(
                    layer.base_layer.weight.detach().float() + layer.delta_weight(n)
                ).all():
                    raise AdapterError(f"merging adapter {n!r} gives NaN/Inf in {layer_name}; nothing merged")
    for _, layer in layers:
        for n in names:
            if n in layer.lora_A:
                layer.merge(n, safe=False)


def unmerge(model: nn.Module) -> None:
    """Undo `merge` on every LoRA layer (weights return to base within float rounding)."""
    for _, layer in lora_layers(model):
        layer.unmerge()


def merge_and_unload(model: nn.Module, adapter_names: Sequence[str] | None = None) -> nn.Module:
    """Merge (safely) and replace every LoRA layer by its plain Linear; returns the model."""
    merge(model, adapter_names, safe=True)
    for name, layer in lora_layers(model):
        replace_module(model, name, layer.base_layer)
    return model
