"""Marian parameter names <-> `MarianNativeModel` state dict, and Marian `.npz` export
(loading is `load.load_marian`).

Marian stores a linear layer as W (in, out) used as x @ W + b with b shaped (1, out);
`nn.Linear` stores weight (out, in), so matrices are transposed and biases squeezed.
LayerNorm `*_ln_scale` / `*_ln_bias` are (1, dim) too.

    Marian name (layer n = i + 1)                 module key (layer i)
    Wemb                                           model.shared.weight
    decoder_ff_logit_out_b                         final_logits_bias
    encoder_l{n}_self_W{q,k,v,o} / _b{q,k,v,o}     model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj
    encoder_l{n}_self_Wo_ln_{scale,bias}           ...self_attn_layer_norm
    {enc,dec}oder_l{n}_ffn_{W1,b1,W2,b2}           ...fc1, ...fc2
    {enc,dec}oder_l{n}_ffn_ffn_ln_{scale,bias}     ...final_layer_norm
    decoder_l{n}_rnn_{W,Wf,bf}                     model.decoder.layers.{i}.ssru.{W,Wf}
    decoder_l{n}_rnn_ffn_ln_{scale,bias}           ...ssru_layer_norm
    decoder_l{n}_self_*                            ...self_attn, ...self_attn_layer_norm
    decoder_l{n}_context_*                         ...encoder_attn, ...encoder_attn_layer_norm
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml

from .binary import MarianCheckpoint, MarianFormatError, read_marian
from .model import MarianNativeConfig, MarianNativeModel

# How a Marian array becomes a module tensor: "matrix" transposes (in, out) -> (out, in),
# "vector" squeezes (1, n) -> (n,), "same" keeps the shape.
Layout = Literal["matrix", "vector", "same"]
DEFAULT_HEADS = 8
_TIED_EMBEDDING_ALIASES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")
_ATTENTION_PROJ = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}


def _attention_entries(marian: str, module: str, norm: str) -> list[tuple[str, str, Layout]]:
    entries: list[tuple[str, str, Layout]] = []
    for letter, proj in _ATTENTION_PROJ.items():
        entries.append((f"{marian}_W{letter}", f"{module}.{proj}.weight", "matrix"))
        entries.append((f"{marian}_b{letter}", f"{module}.{proj}.bias", "vector"))
    entries += _norm_entries(f"{marian}_Wo", norm)
    return entries


def _norm_entries(marian: str, module: str) -> list[tuple[str, str, Layout]]:
    return [(f"{marian}_ln_scale", f"{module}.weight", "vector"), (f"{marian}_ln_bias", f"{module}.bias", "vector")]


def _ffn_entries(marian: str, module: str) -> list[tuple[str, str, Layout]]:
    return [
        (f"{marian}_ffn_W1", f"{module}.fc1.weight", "matrix"),
        (f"{marian}_ffn_b1", f"{module}.fc1.bias", "vector"),
        (f"{marian}_ffn_W2", f"{module}.fc2.weight", "matrix"),
        (f"{marian}_ffn_b2", f"{module}.fc2.bias", "vector"),
        *_norm_entries(f"{marian}_ffn_ffn", f"{module}.final_layer_norm"),
    ]


def name_map(config: MarianNativeConfig) -> list[tuple[str, str, Layout]]:
    """Every (Marian name, state-dict key, layout) of a model with this config."""
    entries: list[tuple[str, str, Layout]] = [
        ("Wemb", "model.shared.weight", "same"),
        ("decoder_ff_logit_out_b", "final_logits_bias", "same"),
    ]
    for i in range(config.encoder_layers):
        marian, module = f"encoder_l{i + 1}", f"model.encoder.layers.{i}"
        entries += _attention_entries(f"{marian}_self", f"{module}.self_attn", f"{module}.self_attn_layer_norm")
        entries += _ffn_entries(marian, module)
    for i in range(config.decoder_layers):
        marian, module = f"decoder_l{i + 1}", f"model.decoder.layers.{i}"
        if config.decoder_type == "ssru":
            entries += [
                (f"{marian}_rnn_W", f"{module}.ssru.W.weight", "matrix"),
                (f"{marian}_rnn_Wf", f"{module}.ssru.Wf.weight", "matrix"),
                (f"{marian}_rnn_bf", f"{module}.ssru.Wf.bias", "vector"),
                *_norm_entries(f"{marian}_rnn_ffn", f"{module}.ssru_layer_norm"),
            ]
        else:
            entries += _attention_entries(f"{marian}_self", f"{module}.self_attn", f"{module}.self_attn_layer_norm")
        entries += _attention_entries(
            f"{marian}_context", f"{module}.encoder_attn", f"{module}.encoder_attn_layer_norm"
        )
        entries += _ffn_entries(marian, module)
    return entries


def _count_layers(tensors: dict[str, np.ndarray], pattern: str) -> int:
    found = {int(m.group(1)) for name in tensors if (m := re.fullmatch(pattern, name))}
    return max(found, default=0)


def config_from_checkpoint(
    checkpoint: MarianCheckpoint, source: str | Path, heads: int | None = None, eos_id: int = 0
) -> MarianNativeConfig:
    """Dimensions from the tensors; heads and activation from `special:model.yml` if present.

    Raises:
        MarianFormatError: an architecture this port does not implement (named, with the
            file), e.g. untied embeddings or pre-norm.
    """
    tensors = checkpoint.tensors
    options = yaml.safe_load(checkpoint.special["model.yml"]) if "model.yml" in checkpoint.special else {}
    options = options or {}
    problems = []
    if "Wemb" not in tensors:
        present = sorted(n for n in tensors if "Wemb" in n)
        problems.append(f"no tied embedding 'Wemb' (found {present}); only tied-embeddings-all models are supported")
    if options.get("type", "transformer") != "transformer":
        problems.append(f"type: {options['type']!r}; valid: 'transformer'")
    if options.get("transformer-postprocess", "dan") != "dan" or options.get("transformer-preprocess", "") != "":
        problems.append(
            f"transformer-preprocess: {options.get('transformer-preprocess')!r}, transformer-postprocess: "
            f"{options.get('transformer-postprocess')!r}; valid: '' and 'dan' (post-norm)"
        )
    if options.get("transformer-ffn-depth", 2) != 2:
        problems.append(f"transformer-ffn-depth: {options['transformer-ffn-depth']}; valid: 2")
    if "decoder_l1_rnn_W" in tensors:
        decoder_type = "ssru"
        if options.get("dec-cell", "ssru") != "ssru":
            problems.append(f"dec-cell: {options['dec-cell']!r}; valid: 'ssru'")
    elif "decoder_l1_self_Wq" in tensors:
        decoder_type = "transformer"
    else:
        decoder_type = "ssru"
        problems.append("no decoder_l1_rnn_W (SSRU) or decoder_l1_self_Wq (self-attention) tensor")
    encoder_ffn, decoder_ffn = tensors.get("encoder_l1_ffn_W1"), tensors.get("decoder_l1_ffn_W1")
    if encoder_ffn is not None and decoder_ffn is not None and encoder_ffn.shape != decoder_ffn.shape:
        problems.append(
            f"decoder FFN width {decoder_ffn.shape[1]} differs from the encoder's {encoder_ffn.shape[1]} "
            "(transformer-decoder-dim-ffn); only equal widths are supported"
        )
    if problems:
        raise MarianFormatError(f"{source}: unsupported Marian model: " + "; ".join(problems))
    return MarianNativeConfig(
        dim=int(tensors["Wemb"].shape[1]),
        heads=heads or int(options.get("transformer-heads", DEFAULT_HEADS)),
        encoder_layers=_count_layers(tensors, r"encoder_l(\d+)_self_Wq"),
        decoder_layers=_count_layers(tensors, r"decoder_l(\d+)_context_Wq"),
        decoder_type=decoder_type,
        ffn_dim=int(tensors["encoder_l1_ffn_W1"].shape[1]) if "encoder_l1_ffn_W1" in tensors else 0,
        vocab_size=int(tensors["Wemb"].shape[0]),
        pad_id=eos_id,
        eos_id=eos_id,
        ffn_activation=options.get("transformer-ffn-activation", "relu"),
    )


def marian_to_state_dict(
    checkpoint: MarianCheckpoint, config: MarianNativeConfig, source: str | Path
) -> dict[str, torch.Tensor]:
    """Rename and re-lay Marian arrays into a `MarianNativeModel` state dict.

    Raises:
        MarianFormatError: tensors missing for this config or left over (all named).
    """
    tensors = checkpoint.tensors
    entries = name_map(config)
    missing = [marian for marian, _, _ in entries if marian not in tensors]
    unused = sorted(set(tensors) - {marian for marian, _, _ in entries})
    if missing or unused:
        raise MarianFormatError(
            f"{source}: tensor names do not match a {config.decoder_type} Marian transformer with "
            f"{config.encoder_layers} encoder / {config.decoder_layers} decoder layers: "
            f"missing {missing or 'none'}; unexpected {unused or 'none'}"
        )
    state: dict[str, torch.Tensor] = {}
    for marian, key, layout in entries:
        array = tensors[marian]
        if layout == "matrix":
            array = array.T
        elif layout == "vector":
            array = array.reshape(-1)
        state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    # The encoder and decoder hold the same tied embedding module, listed under their names too.
    for alias in _TIED_EMBEDDING_ALIASES:
        state[alias] = state["model.shared.weight"]
    return state


def state_dict_to_marian(model: MarianNativeModel) -> dict[str, np.ndarray]:
    """The inverse of `marian_to_state_dict`: Marian names and layouts, float32."""
    state = model.state_dict()
    arrays: dict[str, np.ndarray] = {}
    for marian, key, layout in name_map(model.config):
        array = state[key].detach().float().cpu().numpy()
        if layout == "matrix":
            array = array.T
        elif layout == "vector":
            array = array.reshape(1, -1)
        arrays[marian] = np.ascontiguousarray(array)
    return arrays


def model_yml(model: MarianNativeModel) -> str:
    """`special:model.yml` text: the loaded file's options updated with this model's shape."""
    config = model.config
    options = dict(getattr(model, "marian_options", None) or {})
    options.update({
        "type": "transformer",
        "dim-emb": config.dim,
        "enc-depth": config.encoder_layers,
        "dec-depth": config.decoder_layers,
        "transformer-heads": config.heads,
        "transformer-dim-ffn": config.ffn_dim,
        "transformer-ffn-depth": 2,
        "transformer-ffn-activation": config.ffn_activation,
        "transformer-decoder-autoreg": "rnn" if config.decoder_type == "ssru" else "self-attention",
        "transformer-postprocess": "dan",
        "transformer-preprocess": "",
        "tied-embeddings-all": True,
        "dim-vocabs": [config.vocab_size, config.vocab_size],
    })
    if config.decoder_type == "ssru":
        options["dec-cell"] = "ssru"
    return yaml.safe_dump(options, sort_keys=True)


def save_marian_npz(model: MarianNativeModel, path: str | Path) -> None:
    """Write `model` as a float32 Marian `.npz` (Marian's names, layouts and `special:model.yml`)."""
    arrays = state_dict_to_marian(model)
    # Marian keeps the YAML config as a NUL-terminated char array.
    arrays["special:model.yml"] = np.frombuffer(model_yml(model).encode("utf-8") + b"\0", dtype=np.int8)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)

