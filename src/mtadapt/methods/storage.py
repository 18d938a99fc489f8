"""Save and load one adapter: its weights (safetensors) and a JSON description. No pickle.

Folder layout::

    <folder>/adapter.safetensors   "<module name>.<tensor key>" -> tensor
                                    (whole-model methods: "<parameter name>" -> tensor)
    <folder>/adapter.json          {"format": "mtadapt-adapter", "version": 1, "method",
                                    "settings", "adapter_name", "base_model", "modules",
                                    "fingerprint": {"architecture", "weights"}}

Files are written to a temp file in the same folder and moved with ``os.replace``, JSON
last, so a reader never sees a half-written adapter.

The base fingerprint is cheap: the architecture part hashes the model config (or, without
one, parameter names and shapes); the weights part hashes names, shapes and the first and
last 16 values of every base parameter (adapter parameters excluded, wrapper segments
``.base_layer`` removed so wrapped and plain models agree). A base with merged adapters has
different weights; save before merging.

The fingerprint describes the weights as stored, not the precision or device they run in:
`remember_stored_weights` (called by `runs.place_for_inference` before it casts or quantises)
keeps each base parameter's float32 sample, and `fingerprint` hashes those from then on. So an
adapter trained on float32 weights is recognised on the same base served in bfloat16,
float16, int8 or on a GPU, and a translation work folder resumes under another precision's
default only if its own recorded precision matches (that is the work folder's check).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mtadapt.errors import AdapterError
from mtadapt.io import atomic_write_json, atomic_write_with

from mtadapt.methods import baselines
from mtadapt.methods.base import adapter_layers, adapter_names, check_adapter_name, freeze_base
from mtadapt.methods.registry import config_from_dict, config_to_dict, get_method
from mtadapt.models.targets import ModelTargets

FORMAT = "mtadapt-adapter"
VERSION = 1
WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"
# config keys that change between runs/versions without changing the network
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache",
                         "architectures", "_commit_hash", "_attn_implementation_autoset", "output_attentions",
                         "output_hidden_states", "return_dict"}


class FingerprintMismatchError(AdapterError):
    """The adapter was trained on a different base model."""


@dataclass(frozen=True)
class Fingerprint:
    architecture: str
    weights: str


def _base_parameters(model: nn.Module, whole_model_method: Any | None) -> list[tuple[str, torch.Tensor]]:
    """Base-model parameters by normalised name (adapter parameters and the parameters a
    whole-model method trains excluded)."""
    adapter_ids = {
        id(p) for _, layer in adapter_layers(model) for n in layer.adapter_names() for p in layer.adapter_parameters(n)
    }
    whole = whole_model_method
    trained = set(baselines.trainable_parameter_names(model, whole)) if whole is not None else set()
    out = []
    for name, p in model.named_parameters():
        if id(p) in adapter_ids or name in trained:
            continue
        out.append((name.replace(".base_layer", ""), p))
    return sorted(out, key=lambda item: item[0])


# attribute of a model placed for inference: {normalised name: (shape, float32 sample bytes)}
_STORED_ATTRIBUTE = "mtadapt_stored_weights"


def _weight_sample(p: torch.Tensor) -> bytes | None:
    """The first and last 16 values as float32 bytes (None on the meta device): 32 values per
    tensor are cheap even for 600M-parameter models, and any re-init changes them."""
    if p.device.type == "meta":
        return None
    flat = p.detach().reshape(-1)
    return torch.cat([flat[:16], flat[-16:]]).to(torch.float32).cpu().numpy().tobytes()


def remember_stored_weights(model: nn.Module) -> None:
    """Record the base weights' samples as they are now (as stored), so that `fingerprint`
    still names the same base after the model is cast or quantised. The first call wins:
    a model cast twice keeps the record of its stored weights."""
    if getattr(model, _STORED_ATTRIBUTE, None) is not None:
        return
    record = {name: (tuple(p.shape), _weight_sample(p)) for name, p in _base_parameters(model, None)}
    setattr(model, _STORED_ATTRIBUTE, record)


def forget_stored_weights(model: nn.Module) -> None:
    """Drop the record (the base weights changed: adapters merged into them)."""
    if getattr(model, _STORED_ATTRIBUTE, None) is not None:
        setattr(model, _STORED_ATTRIBUTE, None)


def _base_samples(model: nn.Module, whole_model_method: Any | None) -> list[tuple[str, tuple[int, ...], bytes | None]]:
    """(name, shape, sample) of every base parameter: from the stored-weights record when the
    model has one, else from the live parameters."""
    record = getattr(model, _STORED_ATTRIBUTE, None)
    if record is None:
        return [(n, tuple(p.shape), _weight_sample(p)) for n, p in _base_parameters(model, whole_model_method)]
    trained = set()
    if whole_model_method is not None:
        trained = {n.replace(".base_layer", "") for n in baselines.trainable_parameter_names(model, whole_model_method)}
    return [(n, shape, sample) for n, (shape, sample) in sorted(record.items()) if n not in trained]


def fingerprint(model: nn.Module, whole_model_method: Any | None = None) -> Fingerprint:
    """Architecture and weight fingerprints (sha256 hex, first 16 chars) of the base model,
    of its weights as stored (see the module docstring), whatever precision it runs in.

    Args:
        whole_model_method: a `FullConfig`/`BitFitConfig` whose trained parameters are not
            part of the base (full fine-tuning leaves only the architecture to compare).
    """
    arch = hashlib.sha256()
    config = getattr(model, "config", None)
    samples = _base_samples(model, whole_model_method)
    if config is not None and hasattr(config, "to_dict"):
        d = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        arch.update(json.dumps(d, sort_keys=True, default=str).encode())
    else:
        for name, shape, _ in samples:
            arch.update(f"{name}:{shape};".encode())
    weights = hashlib.sha256()
    for name, shape, sample in samples:
        weights.update(f"{name}:{shape};".encode())
        if sample is not None:
            weights.update(sample)
    return Fingerprint(arch.hexdigest()[:16], weights.hexdigest()[:16])


def _adapter_method(model: nn.Module, adapter_name: str) -> Any:
    configs = getattr(model, "mtadapt_adapter_configs", {})
    if adapter_name not in configs:
        raise KeyError(
            f"no config recorded for adapter {adapter_name!r}; add adapters with storage.add_adapter "
            f"(recorded: {sorted(configs)})"
        )
    return configs[adapter_name]


def add_adapter(
    model: nn.Module, config: Any, targets: ModelTargets | None, adapter_name: str = "default"
) -> None:
    """Apply a method by its config and record the config for saving.

    Raises:
        ConfigError: `adapter_name` cannot name an adapter (`base.check_adapter_name`);
            checked before the model changes.
    """
    check_adapter_name(adapter_name)
    spec = get_method(config.method)
    spec.apply(model, config, targets, adapter_name=adapter_name)
    if not hasattr(model, "mtadapt_adapter_configs"):
        model.mtadapt_adapter_configs = {}
    model.mtadapt_adapter_configs[adapter_name] = config


def add_method(
    model: nn.Module, config: Any, targets: ModelTargets | None, adapter_name: str = "default", freeze: bool = True
) -> None:
    """Add an adapter of `config` (`add_adapter`) and, with `freeze`, make it what trains:
    afterwards exactly the parameters of the model's adapters require grad (`freeze_base`),
    or, for a whole-model method (full, BitFit), exactly the parameters it chose itself.

    Raises:
        ConfigError: `adapter_name` cannot name an adapter; the model is left as it was.
    """
    add_adapter(model, config, targets, adapter_name=adapter_name)
    if freeze and not config.whole_model:  # baselines.apply already set requires_grad
        freeze_base(model)


def save_adapter(
    model: nn.Module,
    folder: str | os.PathLike,
    adapter_name: str = "default",
    config: Any | None = None,
    base_model: str | None = None,
) -> Path:
    """Save one adapter (or a whole-model method's trained tensors) to ``folder``.

    Args:
        config: the method config; default: the one recorded by `add_adapter` (or the
            whole-model method applied by `baselines.apply`).
        base_model: name recorded for humans; default ``model.config._name_or_path``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    whole = getattr(model, baselines.WHOLE_MODEL_ATTR, None)
    if config is None:
        config = whole if whole is not None and not adapter_names(model) else _adapter_method(model, adapter_name)
    tensors: dict[str, torch.Tensor] = {}
    modules: list[str] = []
    if config.whole_model:
        tensors = dict(baselines.trainable_state_dict(model))
    else:
        for name, layer in adapter_layers(model):
            if adapter_name not in layer.adapter_names():
                continue
            if getattr(layer, "merged", None):
                raise ValueError(f"{name} has merged adapters {layer.merged}; unmerge before saving")
            modules.append(name)
            for key, t in layer.adapter_state_dict(adapter_name).items():
                tensors[f"{name}.{key}"] = t
        if not modules:
            raise KeyError(f"no adapter {adapter_name!r} in the model; it holds {adapter_names(model)}")
    # safetensors refuses shared storage and non-contiguous views; copies are tiny for adapters
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    fp = fingerprint(model, config if config.whole_model else None)
    model_config = getattr(model, "config", None)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "method": config.method,
        "settings": config_to_dict(config),
        "adapter_name": adapter_name,
        "base_model": base_model or getattr(model_config, "_name_or_path", "") or "",
        "modules": modules,
        "fingerprint": {"architecture": fp.architecture, "weights": fp.weights},
    }
    atomic_write_with(folder / WEIGHTS_FILE, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    atomic_write_json(folder / CONFIG_FILE, meta, indent=2)  # last: a folder with it is complete
    return folder


_META_KEYS = {"method": str, "settings": dict, "adapter_name": str, "modules": list, "fingerprint": dict}


def read_adapter_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed `adapter.json` of an adapter folder.

    Raises:
        AdapterError: no such folder or file, invalid JSON (with line and column), another
            format, or a missing/mistyped key; the message names the file.
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise AdapterError(f"adapter folder {folder} does not exist" + (" (it is a file)" if folder.exists() else ""))
    if not path.is_file():
        raise AdapterError(f"{path} not found: is {folder} an mtadapt adapter folder?")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise AdapterError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise AdapterError(f"{path}:{err.lineno}: invalid JSON at column {err.colno}: {err.msg} (edited or truncated?)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else (type(meta).__name__, None)
        raise AdapterError(f"{path}: format {found[0]!r} v{found[1]}, expected {FORMAT!r} v{VERSION}")
    wrong = [f"{key!r} ({kind.__name__})" for key, kind in _META_KEYS.items() if not isinstance(meta.get(key), kind)]
    if wrong:
        raise AdapterError(f"{path}: missing or mistyped key(s) {', '.join(wrong)}")
    return meta


def _read_adapter_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise AdapterError(f"{path} not found; the adapter folder is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterError(f"{path} is damaged ({path.stat().st_size} bytes; truncated or not safetensors: {err})") from None


def check_fingerprint(model: nn.Module, meta: dict[str, Any], folder: str | os.PathLike = "") -> None:
    """Raise `FingerprintMismatchError` naming both fingerprints if the base differs."""
    saved_config = config_from_dict(meta["method"], meta["settings"])
    whole = saved_config if saved_config.whole_model else None
    fp = fingerprint(model, whole)
    saved = meta["fingerprint"]
    problems = []
    if saved["architecture"] != fp.architecture:
        problems.append(f"architecture {saved['architecture']} (adapter) != {fp.architecture} (model)")
    if saved["weights"] != fp.weights and not any(p.device.type == "meta" for p in model.parameters()):
        problems.append(f"weights {saved['weights']} (adapter) != {fp.weights} (model)")
    if problems:
        raise FingerprintMismatchError(
            f"adapter {folder} was trained on base {meta.get('base_model')!r} with a different fingerprint: "
            + "; ".join(problems)
        )


def load_adapter(
    model: nn.Module,
    folder: str | os.PathLike,
    targets: ModelTargets | None = None,
    adapter_name: str | None = None,
    check_base: bool = True,
) -> str:
    """Add a saved adapter to ``model`` under ``adapter_name`` (default: its saved name).

    Args:
        targets: the family's patterns; needed by methods that place modules by role
            (prefix, bottleneck). LoRA re-targets the exact saved module names.
        check_base: verify the base fingerprint first.

    Returns:
        The adapter name used.

    Raises:
        FingerprintMismatchError: the base differs from the one the adapter was saved from.
        AdapterError: a missing or damaged file, or weights that do not fit the saved
            settings (e.g. an edited rank); the message names the folder or file.
    """
    meta = read_adapter_config(folder)
    config_path = Path(folder) / CONFIG_FILE
    try:
        config = config_from_dict(meta["method"], meta["settings"])
    except (TypeError, ValueError, KeyError) as err:
        raise AdapterError(f"{config_path}: invalid method settings: {err}") from None
    if check_base:
        check_fingerprint(model, meta, folder)
    name = adapter_name or meta["adapter_name"]
    tensors = _read_adapter_weights(Path(folder) / WEIGHTS_FILE)
    try:
        return _add_saved_adapter(model, folder, meta, config, tensors, targets, name)
    except AdapterError:
        raise
    except (KeyError, ValueError, RuntimeError) as err:  # tensors that do not fit the settings
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise AdapterError(
            f"{folder}: {WEIGHTS_FILE} does not fit {CONFIG_FILE} (method {meta['method']!r}, settings "
            f"{meta['settings']}): {message}"
        ) from None


def _add_saved_adapter(
    model: nn.Module, folder: str | os.PathLike, meta: dict[str, Any], config: Any,
    tensors: dict[str, torch.Tensor], targets: ModelTargets | None, name: str,
) -> str:
    """Apply `config` under `name` and copy the saved `tensors` in (the body of `load_adapter`)."""
    if config.whole_model:
        params = dict(model.named_parameters())
        unknown = sorted(set(tensors) - set(params))
        if unknown:
            raise AdapterError(f"{folder}: {WEIGHTS_FILE} holds tensors the model does not have: {unknown[:3]}")
        with torch.no_grad():
            for key, t in tensors.items():
                params[key].copy_(t)
        baselines.apply(model, config, targets)
        return name
    if name in adapter_names(model):
        raise AdapterError(f"the model already holds an adapter {name!r}; pass another adapter_name")
    if config.method == "lora":
        config = replace(config, targets=[re.escape(m) for m in meta["modules"]])
    add_adapter(model, config, targets, adapter_name=name)
    layers = dict(adapter_layers(model))
    missing = [m for m in meta["modules"] if m not in layers or name not in layers[m].adapter_names()]
    if missing:
        raise AdapterError(f"adapter {folder} expects modules {missing[:5]} that the model does not have")
    for module_name in meta["modules"]:
        prefix = module_name + "."
        layers[module_name].load_adapter_state_dict(
            name, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    return name
