"""Exchange adapters with HF PEFT (``adapter_config.json`` + ``adapter_model.safetensors``):
LoRA both ways, prompt tuning out (`export_prompt_to_peft`).

PEFT's saved format (peft/utils/save_and_load.py, ``get_peft_model_state_dict``) stores,
for a wrapped module ``<module>`` of the *plain* transformers model::

    base_model.model.<module>.lora_A.weight   (r, d_in)
    base_model.model.<module>.lora_B.weight   (d_out, r)

with the adapter name removed (PEFT re-inserts it on load), and an ``adapter_config.json``
holding ``peft_type: "LORA"``, ``r``, ``lora_alpha``, ``lora_dropout``, ``use_rslora``,
``target_modules`` ... Our ``lora_A[name]`` / ``lora_B[name]`` are the same matrices (PEFT
keeps them as ``nn.Linear`` weights), and both compute ``scale * B(A(dropout(x)))``, so the
exchange is a renaming. Neither direction needs ``peft`` installed.

We write ``target_modules`` as the list of full module names; PEFT matches a list entry
when a module name equals it or ends with ``"." + entry``, so exactly our modules are wrapped.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mtadapt.errors import AdapterError
from mtadapt.methods import lora
from mtadapt.io import atomic_write_json, atomic_write_with

PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_KEY = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight")
# PEFT LoRA options we do not implement: loading them silently would change the outputs
_UNSUPPORTED = {
    "use_dora": False, "fan_in_fan_out": False, "bias": "none", "modules_to_save": None,
    "rank_pattern": {}, "alpha_pattern": {}, "lora_bias": False, "layer_replication": None,
    "trainable_token_indices": None, "target_parameters": None, "use_qalora": False,
}


def export_lora_to_peft(
    model: nn.Module,
    folder: str | os.PathLike,
    adapter_name: str = "default",
    config: lora.LoraConfig | None = None,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write one LoRA adapter as a PEFT adapter folder (loads with ``PeftModel.from_pretrained``).

    Args:
        config: the adapter's settings; default: the one recorded by `storage.add_adapter`.
        base_model_name_or_path: written for PEFT's ``from_pretrained(folder)`` convenience.
    """
    if config is None:
        config = getattr(model, "mtadapt_adapter_configs", {}).get(adapter_name)
    if not isinstance(config, lora.LoraConfig):
        raise AdapterError(f"adapter {adapter_name!r}: pass its LoraConfig (none recorded on the model)")
    tensors: dict[str, torch.Tensor] = {}
    modules: list[str] = []
    for name, layer in lora.lora_layers(model):
        if adapter_name not in layer.lora_A:
            continue
        if layer.merged:
            raise AdapterError(f"{name} has merged adapters {layer.merged}; unmerge before exporting")
        modules.append(name)
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A[adapter_name].detach().contiguous().cpu().clone()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B[adapter_name].detach().contiguous().cpu().clone()
    if not modules:
        raise KeyError(f"no LoRA adapter {adapter_name!r} in the model")
    model_config = getattr(model, "config", None)
    peft_config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "SEQ_2_SEQ_LM" if getattr(model_config, "is_encoder_decoder", False) else None,
        "base_model_name_or_path": base_model_name_or_path or getattr(model_config, "_name_or_path", None) or None,
        "inference_mode": True,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "use_rslora": config.use_rslora,
        "target_modules": modules,
        "init_lora_weights": True,
        **_UNSUPPORTED,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_with(folder / PEFT_WEIGHTS_FILE, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    atomic_write_json(folder / PEFT_CONFIG_FILE, peft_config, indent=2)
    return folder


def export_prompt_to_peft(
    model: nn.Module,
    folder: str | os.PathLike,
    adapter_name: str = "default",
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write one prompt-tuning adapter as a PEFT ``PROMPT_TUNING`` folder for a seq2seq model.

    PEFT (``PeftModelForSeq2SeqLM``) computes, for prompt tuning::

        inputs_embeds  = [prompt_embeddings[:N] ; get_input_embeddings()(input_ids)]
        attention_mask = [1 x N ; attention_mask]

    which is our placement when the input embedding module itself yields what the encoder
    feeds its layers (mBART-50, M2M100/NLLB scale inside the embedding; T5 does not scale).
    HF Marian scales in the encoder, outside the embedding, and skips that scaling for
    ``inputs_embeds``: PEFT's tokens would enter unscaled, so export is refused there, as for
    Marian-native models (not transformers models). We write ``num_transformer_submodules: 1``
    so ``prompt_embeddings`` is exactly our (N, d) prompt (PEFT's seq2seq default, 2, keeps N
    more rows that its prompt-tuning forward never reads).

    Raises:
        ValueError: not a prompt adapter; a model whose placement differs (named).
    """
    from mtadapt.methods import prompt as prompt_method

    soft = None
    for module in model.modules():
        candidate = getattr(module, prompt_method.SITE_ATTR, None)
        if isinstance(candidate, prompt_method.SoftPrompt):
            encoder, soft = module, candidate
            break
    if soft is None or adapter_name not in soft.prompts:
        raise KeyError(f"no prompt-tuning adapter {adapter_name!r} in the model")
    if soft.placements.get(adapter_name, "prefix") != "prefix":
        raise AdapterError(f"prompt adapter {adapter_name!r} has placement 'suffix'; PEFT only prepends soft tokens")
    model_config = getattr(model, "config", None)
    if model_config is None or not hasattr(model, "get_input_embeddings"):
        raise AdapterError(f"{type(model).__name__} is not a transformers model; PEFT cannot load a prompt adapter for it")
    embedding = model.get_input_embeddings()
    scale = getattr(encoder, "embed_scale", None)
    if scale not in (None, 1, 1.0) and not hasattr(embedding, "embed_scale"):
        raise AdapterError(
            f"{type(model).__name__}: the encoder scales token embeddings by {scale} outside the embedding module and "
            "PEFT feeds prompt-tuned inputs unscaled, so a PEFT prompt adapter would not reproduce this one"
        )
    weights = soft.prompts[adapter_name].detach().contiguous().cpu().clone()  # (N, d)
    peft_config: dict[str, Any] = {
        "peft_type": "PROMPT_TUNING",
        "task_type": "SEQ_2_SEQ_LM",
        "base_model_name_or_path": base_model_name_or_path or getattr(model_config, "_name_or_path", None) or None,
        "inference_mode": True,
        "num_virtual_tokens": int(weights.shape[0]),
        "token_dim": int(weights.shape[1]),
        "num_transformer_submodules": 1,
        "num_attention_heads": getattr(model_config, "num_attention_heads", None),
        "num_layers": getattr(model_config, "num_hidden_layers", None),
        "prompt_tuning_init": "RANDOM",
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_with(folder / PEFT_WEIGHTS_FILE, lambda p: save_file({"prompt_embeddings": weights}, p, metadata={"format": "pt"}))
    atomic_write_json(folder / PEFT_CONFIG_FILE, peft_config, indent=2)
    return folder


def export_to_peft(
    model: nn.Module,
    folder: str | os.PathLike,
    adapter_name: str | None = None,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write one adapter as a PEFT folder, choosing the format by its method: LoRA
    (`export_lora_to_peft`) or prompt tuning (`export_prompt_to_peft`).

    Args:
        adapter_name: the adapter to export; default: the model's only adapter, or its only
            active one.

    Raises:
        ValueError: no adapter name given while the model holds several (or none) and not
            exactly one is active, or a method PEFT cannot load from us (named).
    """
    from mtadapt.methods.base import active_adapters, adapter_names
    from mtadapt.methods.prompt import PromptConfig

    names = adapter_names(model)
    if adapter_name is None:
        active = active_adapters(model) if names else []
        if len(names) != 1 and len(active) != 1:
            raise AdapterError(f"PEFT export writes one adapter; the model holds {names or 'none'} "
                             f"({len(active)} active): name the one to export")
        adapter_name = names[0] if len(names) == 1 else active[0]
    config = getattr(model, "mtadapt_adapter_configs", {}).get(adapter_name)
    if isinstance(config, lora.LoraConfig):
        return export_lora_to_peft(model, folder, adapter_name, base_model_name_or_path=base_model_name_or_path)
    if isinstance(config, PromptConfig):
        return export_prompt_to_peft(model, folder, adapter_name, base_model_name_or_path=base_model_name_or_path)
    raise AdapterError(f"PEFT export takes LoRA and prompt tuning adapters; {adapter_name!r} is {getattr(config, 'method', config)}")


def _check_supported(peft_config: dict[str, Any], folder: Path) -> None:
    problems = []
    if peft_config.get("peft_type") != "LORA":
        problems.append(f"peft_type={peft_config.get('peft_type')!r} (only 'LORA' is supported)")
    for key, plain in _UNSUPPORTED.items():
        value = peft_config.get(key, plain)
        if value != plain and value is not None:
            problems.append(f"{key}={value!r} (supported: {plain!r})")
    if problems:
        raise AdapterError(f"{folder / PEFT_CONFIG_FILE}: unsupported PEFT settings: " + "; ".join(problems))


def import_peft_lora(model: nn.Module, folder: str | os.PathLike, adapter_name: str = "default") -> lora.LoraConfig:
    """Add a PEFT LoRA adapter folder to ``model`` as mtadapt adapter ``adapter_name``.

    The wrapped modules come from the weight keys, so PEFT's ``target_modules`` spelling
    (suffix list or regex) does not matter. Returns the equivalent `LoraConfig`.

    Raises:
        ValueError: a PEFT option we do not implement (DoRA, biases, rank patterns...), or
            weights for modules the model does not have.
    """
    folder = Path(folder)
    peft_config = json.loads((folder / PEFT_CONFIG_FILE).read_text())
    _check_supported(peft_config, folder)
    weights_path = folder / PEFT_WEIGHTS_FILE
    if not weights_path.exists():
        raise FileNotFoundError(f"{weights_path} not found (only safetensors PEFT adapters are supported)")
    tensors = load_file(str(weights_path))
    per_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        match = _KEY.fullmatch(key)
        if match is None:
            raise AdapterError(f"{weights_path}: unexpected key {key!r} (expected base_model.model.<module>.lora_A.weight)")
        per_module.setdefault(match["module"], {})["lora_" + match["ab"]] = t
    modules = sorted(per_module)
    config = lora.LoraConfig(
        rank=int(peft_config["r"]),
        alpha=float(peft_config.get("lora_alpha", 8)),
        dropout=float(peft_config.get("lora_dropout", 0.0)),
        use_rslora=bool(peft_config.get("use_rslora", False)),
        targets=[re.escape(m) for m in modules],
    )
    from mtadapt.methods.storage import add_adapter  # records the config for later saving

    add_adapter(model, config, None, adapter_name)
    layers = dict(lora.lora_layers(model))
    missing = [m for m in modules if m not in layers]
    if missing:
        raise AdapterError(f"{weights_path} has weights for modules the model lacks: {missing[:5]}")
    for module in modules:
        layers[module].load_adapter_state_dict(adapter_name, per_module[module])
    return config
