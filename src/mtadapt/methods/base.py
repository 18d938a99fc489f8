"""The contract every fine-tuning method follows, and the helpers built on it.

A method lives in ``methods/<name>.py`` and exposes:

* a config dataclass (``LoraConfig``, ``HoulsbyConfig``...) with a class attribute
  ``method: ClassVar[str]`` naming it (the registry key, also written into saved adapters);
* ``apply(model, config, targets, adapter_name="default") -> None``, which inserts the
  method's modules *in place* (wrapping or replacing submodules found by the regexes of a
  `ModelTargets`, or by ``config.targets`` when it is an explicit list of regexes).
  Calling ``apply`` again with another ``adapter_name`` adds a second adapter to the same
  wrapped modules instead of wrapping twice.

The inserted modules ("adapter layers") hold several *named* adapters (``nn.ModuleDict`` /
``nn.ParameterDict`` keyed by adapter name) and implement `AdapterLayer` below. Everything
model-wide (activating, routing, deleting, freezing, counting) is a loop over those layers,
so one helper here serves every method.

Which adapters a forward pass uses, in order of precedence:

1. **Per-example routing** (`set_routing` / `routing`): a LongTensor ``route`` of shape
   ``(B,)`` with one index per batch row into a list of adapter names; index ``-1`` means the
   base model for that row (PEFT's ``"__base__"``). Every layer expands the route to the
   batch of the activation it sees with `expand_routing`::

       N = x.shape[0]                  # activation batch (rows of x)
       B = route.shape[0]
       if N == B:        r = route
       elif N % B == 0:  r = route.repeat_interleave(N // B)   # beam search / sampling
       else:             error

   HF ``generate`` expands the encoder output and decoder inputs with
   ``repeat_interleave(num_beams)`` (row ``i`` becomes rows ``i*k .. i*k+k-1``), and beam
   reordering only permutes beams *within* a source's group, so the expanded route stays
   correct through the whole search.
2. **Active adapters** (`set_active_adapters`): every row uses the sum of the active
   adapters' contributions. An empty list means the plain base model.

LoRA layers also hold *shared* adapters (`set_shared_adapters`), added on every row on top
of either of the above: a shared adapter next to routed per-language adapters
(`mtadapt.methods.language_adapters`, ``method.adapters: shared+per_language``).

Method modules never import a model family: they get names through `ModelTargets`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from mtadapt.errors import ConfigError
from mtadapt.models.targets import ModelTargets

BASE_ROUTE = -1
"""Route index meaning "no adapter for this row" (PEFT calls it ``"__base__"``)."""


@dataclass
class MethodConfig:
    """Base of every method config. Subclasses are dataclasses that set ``method``.

    Attributes:
        method: Registry name of the method ("lora", "houlsby", ...); a ClassVar so it is not
            a constructor argument and cannot disagree with the class.
        whole_model: The method trains the model's own parameters (full fine-tuning, BitFit)
            instead of adding adapter modules: it saves a subset of the base's tensors, its
            fingerprint covers only the frozen rest, and it cannot be routed per example.
        routes_per_row: Rows of one batch may name different adapters of this method and
            each row gets exactly its output alone (LoRA, bottleneck adapters: a per-row
            choice of weights). Prefix and prompt tuning route per row too, but a row's
            layout depends on the longest prompt in its batch, so a server keeps their
            requests in batches of one adapter.
    """

    method: ClassVar[str] = ""
    whole_model: ClassVar[bool] = False
    routes_per_row: ClassVar[bool] = False


@runtime_checkable
class AdapterLayer(Protocol):
    """What a method module (a wrapped Linear, an attention with prefixes...) provides.

    Adapter names are plain strings; a layer may hold adapters the model-wide helpers never
    touch (each helper acts on the names it is given).
    """

    def adapter_names(self) -> list[str]:
        """Names of the adapters this layer holds, in insertion order."""
        ...

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove one adapter's parameters (KeyError naming the held ones if absent)."""
        ...

    def set_active_adapters(self, adapter_names: Sequence[str]) -> None:
        """Adapters applied to every row when no routing is set; [] means the base model."""
        ...

    def active_adapters(self) -> list[str]:
        """Currently active adapters (may include names this layer does not hold: ignored)."""
        ...

    def set_routing(self, route: torch.Tensor | None, route_names: Sequence[str]) -> None:
        """Per-example routing: ``route[i]`` indexes ``route_names`` (or is BASE_ROUTE).

        Args:
            route: LongTensor (B,) or None to clear routing.
            route_names: adapter names the indices refer to.
        """
        ...

    def adapter_parameters(self, adapter_name: str) -> list[nn.Parameter]:
        """Trainable parameters of one adapter (what `freeze_base` leaves trainable)."""
        ...

    def adapter_state_dict(self, adapter_name: str) -> dict[str, torch.Tensor]:
        """Tensors to *save* for one adapter, keys relative to this layer.

        A method may transform at save time (prefix tuning folds its reparameterisation
        MLP into plain prefixes here); `load_adapter_state_dict` must accept exactly what
        this returns.
        """
        ...

    def load_adapter_state_dict(self, adapter_name: str, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of `adapter_state_dict` for an adapter already added with ``apply``."""
        ...


class AdapterSelection:
    """Which adapters a layer's forward uses: shared by every adapter layer.

    Holds ``_active`` (adapter names, summed) and the per-row route ``_route`` (B,) with its
    ``_route_names`` (see the module docstring for precedence and beam expansion). A layer
    calls `_init_selection` in ``__init__`` and `_forget` when it deletes an adapter; its
    forward reads the three attributes. Implements the selection half of `AdapterLayer`.
    """

    _active: list[str]
    _route: torch.Tensor | None
    _route_names: list[str]

    def _init_selection(self) -> None:
        self._active = []
        self._route = None
        self._route_names = []

    def _forget(self, adapter_name: str) -> None:
        self._active = [n for n in self._active if n != adapter_name]

    def set_active_adapters(self, adapter_names: Sequence[str]) -> None:
        self._active = list(adapter_names)

    def active_adapters(self) -> list[str]:
        return list(self._active)

    def set_routing(self, route: torch.Tensor | None, route_names: Sequence[str]) -> None:
        self._route = route
        self._route_names = list(route_names)

    def keep_route_rows(self, rows: torch.Tensor) -> None:
        """A generator dropped finished sources from its batch (Marian-native greedy and beam
        search do): keep the routes of the remaining sources, ``route = route[rows]``. A route
        of one row is every row's (`expand_routing` repeats it: one direction for the whole
        batch, as dev scoring routes a direction) and stays as it is."""
        if self._route is not None and self._route.shape[0] != 1:
            self._route = self._route.index_select(0, rows.to(self._route.device))


def resolve_target_patterns(
    spec: str | Sequence[str], targets: ModelTargets, field_name: str = "targets"
) -> tuple[str, ...]:
    """Turn a config's ``targets`` setting into regexes for `re.fullmatch`.

    Args:
        spec: "default" (the family's `ModelTargets.lora_default`), "all-linear"
            (`ModelTargets.all_linear`) or an explicit list of regexes.
        targets: the family's patterns.
        field_name: name of the config field, for the error message.

    Raises:
        ValueError: unknown string or an invalid regex.
    """
    if isinstance(spec, str):
        if spec == "default":
            return tuple(targets.lora_default)
        if spec == "all-linear":
            return tuple(targets.all_linear)
        raise ValueError(
            f"{field_name}={spec!r} is not valid: use 'default', 'all-linear' or a list of regexes"
        )
    patterns = tuple(spec)
    if not patterns:
        raise ValueError(f"{field_name} is an empty list: give at least one regex")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"{field_name} regex {pattern!r} is invalid: {err}") from err
    return patterns


def find_modules(
    model: nn.Module, patterns: Sequence[str], module_type: type | tuple[type, ...] = nn.Module,
    what: str = "module patterns", hint: str = "",
) -> list[tuple[str, nn.Module]]:
    """Modules whose full name matches any pattern (``re.fullmatch``) and type.

    Args:
        what: the setting the patterns come from, for the message (e.g. "lora targets").
        hint: what else the setting accepts, appended to the message.

    Raises:
        ConfigError: when nothing matches (almost always a wrong family or typo), naming the
            patterns and a few names of modules of that type to help fix them.
    """
    compiled = [re.compile(p) for p in patterns]
    found = [
        (name, module)
        for name, module in model.named_modules()
        if name and isinstance(module, module_type) and any(c.fullmatch(name) for c in compiled)
    ]
    if not found:
        kind = (module_type[0] if isinstance(module_type, tuple) else module_type).__name__
        sample = [n for n, m in model.named_modules() if n and isinstance(m, module_type)][:3]
        raise ConfigError(
            f"{what} {list(patterns)} match no {kind} module of this {type(model).__name__}"
            + (f"; its {kind} modules are named like {', '.join(sample)}" if sample else f"; it has no {kind} module")
            + f" (a pattern must match a whole name){hint}"
        )
    return found


def replace_module(model: nn.Module, name: str, new_module: nn.Module) -> None:
    """Set ``model.<name> = new_module`` for a dotted name."""
    parent_name, _, child_name = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child_name, new_module)


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    """(name, layer) for every method module in the model, outermost first."""
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer) and isinstance(module, nn.Module):
            yield name, module


def adapter_names(model: nn.Module) -> list[str]:
    """All adapter names held anywhere in the model, in first-seen order."""
    names: dict[str, None] = {}
    for _, layer in adapter_layers(model):
        for n in layer.adapter_names():
            names[n] = None
    return list(names)


ADAPTER_NAME = re.compile(r"[\w-]+")
"""Letters, digits, '_' and '-': a key of the layers' dicts, and a folder name when saved."""
_DICT_ATTRIBUTES = frozenset(dir(nn.ParameterDict())) | frozenset(dir(nn.ModuleDict()))  # "keys", "training", ...


def check_adapter_name(name: object) -> None:
    """Raise ConfigError unless `name` can name an adapter: `ADAPTER_NAME`, and neither
    "__base__" (the base model in a row route) nor an attribute of torch's ParameterDict /
    ModuleDict, which cannot be one of their keys (a layer would take it half-way)."""
    if isinstance(name, str) and ADAPTER_NAME.fullmatch(name) and name != "__base__" and name not in _DICT_ATTRIBUTES:
        return
    raise ConfigError(f"adapter name {name!r} is not valid: use letters, digits, '_' and '-' (e.g. 'default', 'de-en', "
                      "'lang_de'), not '__base__' (the base model in a row route) nor a name torch's ParameterDict "
                      "and ModuleDict use themselves ('keys', 'items', 'training', 'type', ...)")


def _check_known(model: nn.Module, names: Sequence[str]) -> None:
    known = adapter_names(model)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown adapter(s) {unknown}; the model holds {known}")


def set_active_adapters(model: nn.Module, names: str | Sequence[str]) -> None:
    """Activate these adapters on every layer ([] = base model)."""
    names = [names] if isinstance(names, str) else list(names)
    _check_known(model, names)
    for _, layer in adapter_layers(model):
        layer.set_active_adapters(names)


def active_adapters(model: nn.Module) -> list[str]:
    """Active adapters of the first adapter layer (all layers agree when set by this module)."""
    for _, layer in adapter_layers(model):
        return layer.active_adapters()
    return []


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove one adapter from every layer that holds it, and from every layer's active list
    (layers that never held it keep it active too after a model-wide `set_active_adapters`)."""
    _check_known(model, [name])
    for _, layer in adapter_layers(model):
        if name in layer.adapter_names():
            layer.delete_adapter(name)
        active = layer.active_adapters()
        if name in active:
            layer.set_active_adapters([n for n in active if n != name])


def expand_routing(route: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Expand a per-source route (B,) to an activation batch of ``batch_size`` rows.

    ``batch_size == k * B`` (beam search, num_return_sequences) gives
    ``route.repeat_interleave(k)``, matching how HF ``generate`` expands inputs.

    Raises:
        ValueError: when ``batch_size`` is not a multiple of the route length.
    """
    n_route = route.shape[0]
    if batch_size == n_route:
        return route
    if n_route == 0 or batch_size % n_route:
        raise ValueError(
            f"routing has {n_route} rows but the activation batch has {batch_size}; "
            "the batch must be a multiple of the routing length (k beams per source)"
        )
    return route.repeat_interleave(batch_size // n_route)


def set_routing(model: nn.Module, row_adapters: Sequence[str | None] | None) -> None:
    """Route each batch row to one adapter (None or "__base__" = base model for that row).

    Args:
        row_adapters: one adapter name per source sentence, or None to clear routing.
    """
    if row_adapters is None:
        for _, layer in adapter_layers(model):
            layer.set_routing(None, [])
        return
    route_names = sorted({n for n in row_adapters if n not in (None, "__base__")})
    _check_known(model, route_names)
    index = {n: i for i, n in enumerate(route_names)}
    route = torch.tensor(
        [BASE_ROUTE if n in (None, "__base__") else index[n] for n in row_adapters], dtype=torch.long
    )
    for _, layer in adapter_layers(model):
        layer.set_routing(route, route_names)


@contextmanager
def routing(model: nn.Module, row_adapters: Sequence[str | None]) -> Iterator[None]:
    """``with routing(model, ["de", "fr"]): model.generate(...)`` — cleared on exit."""
    set_routing(model, row_adapters)
    try:
        yield
    finally:
        set_routing(model, None)


def freeze_base(model: nn.Module, trainable_adapters: Sequence[str] | None = None) -> None:
    """Make only adapter parameters trainable.

    Args:
        trainable_adapters: adapters to train; None = every adapter in the model.

    Whole-model methods (full fine-tuning, BitFit) set ``requires_grad`` themselves and do
    not call this.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    names = adapter_names(model) if trainable_adapters is None else list(trainable_adapters)
    _check_known(model, names)
    for _, layer in adapter_layers(model):
        for name in names:
            if name in layer.adapter_names():
                for p in layer.adapter_parameters(name):
                    p.requires_grad_(True)


@dataclass(frozen=True)
class ParameterCount:
    """Parameter counts as PEFT's ``print_trainable_parameters`` reports them.

    Tied parameters (shared embeddings) are counted once, as ``named_parameters`` yields them.
    """

    trainable: int
    total: int

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable and total parameters (works on meta-device models)."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return ParameterCount(trainable=trainable, total=total)
