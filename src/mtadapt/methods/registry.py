"""Method name -> (config class, apply function).

Entries name a module and a config class *by string* and are imported on first use: listing
the methods (`method_names`, what config validation and the CLI offer) imports no torch, and a
method whose optional dependency is missing fails only when someone asks for it, with an error
that says which module and class were expected.

To add a method: write ``methods/<module>.py`` with a config dataclass (``method`` ClassVar
set to the registry name) and ``apply(model, config, targets, adapter_name="default")``
(contract in `mtadapt.methods.base`), then add one line to ``_METHODS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from mtadapt.errors import ConfigError

if TYPE_CHECKING:  # the registry itself stays torch-free: config and the CLI list its names
    from mtadapt.methods.base import MethodConfig

# name -> (module, config class name). One module's ``apply`` may serve several configs
# (bottleneck.apply dispatches on HoulsbyConfig / PfeifferConfig).
_METHODS: dict[str, tuple[str, str]] = {
    "lora": ("mtadapt.methods.lora", "LoraConfig"),
    "full": ("mtadapt.methods.baselines", "FullConfig"),
    "bitfit": ("mtadapt.methods.baselines", "BitFitConfig"),
    "houlsby": ("mtadapt.methods.bottleneck", "HoulsbyConfig"),
    "pfeiffer": ("mtadapt.methods.bottleneck", "PfeifferConfig"),
    "prefix": ("mtadapt.methods.prefix", "PrefixConfig"),
    "prompt": ("mtadapt.methods.prompt", "PromptConfig"),
}


@dataclass(frozen=True)
class MethodSpec:
    """A resolved registry entry."""

    name: str
    config_class: type[MethodConfig]
    apply: Callable[..., None]


METHOD_NAMES: tuple[str, ...] = tuple(_METHODS)
"""Every registered method name, in registry order (whether or not its module imports)."""


def available_methods() -> list[str]:
    """Registered methods whose module imports."""
    out = []
    for name in _METHODS:
        try:
            get_method(name)
        except ImportError:
            continue
        out.append(name)
    return out


def get_method(name: str) -> MethodSpec:
    """Resolve a method by name.

    Raises:
        ValueError: unknown name (lists the valid ones).
        ImportError: the method's module (or an optional dependency of it) or class is missing.
    """
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(_METHODS)}")
    module_name, class_name = _METHODS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise ImportError(f"method {name!r} needs module {module_name}, which is not installed") from err
    config_class = getattr(module, class_name, None)
    apply = getattr(module, "apply", None)
    if config_class is None or apply is None:
        raise ImportError(f"method {name!r}: {module_name} must define {class_name} and apply()")
    return MethodSpec(name=name, config_class=config_class, apply=apply)


def config_from_dict(name: str, settings: dict[str, Any]) -> MethodConfig:
    """Build a method's config from a plain dict (JSON/YAML), naming unknown keys."""
    spec = get_method(name)
    valid = {f.name for f in fields(spec.config_class) if f.init}
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown} for method {name!r}; valid: {sorted(valid)}")
    return spec.config_class(**settings)


def config_to_dict(config: MethodConfig) -> dict[str, Any]:
    """Settings of a config as a JSON-friendly dict (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
