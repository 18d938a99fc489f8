"""Language-specific adapters: one adapter per language, chosen per example, the encoder's
by the source language and the decoder's by the target language.

Every language gets one named adapter (``lang_<code>``) on every targeted layer. A batch row
translating de -> en runs the encoder layers with ``lang_de_DE`` and the decoder layers
(self-attention, cross-attention, FFN) with ``lang_en_XX``, so the encoder half of an
adapter is trained by the directions out of its language and the decoder half by the
directions into it (language-specific encoder/decoder adapters; a held-out direction like
en -> fr is then served by the English encoder half and the French decoder half).

Routing is `mtadapt.methods.base` per-example routing, set separately on two subsets of the
adapter layers, told apart by module name (`split_layers`)::

    for each adapter layer L named n:
        route = src_route if ENCODER.search(n) and not DECODER.search(n) else tgt_route
        L.set_routing(route, names)     # route[i] indexes names; -1 = base model

Each layer expands its route to the activation batch (``repeat_interleave(k)`` for k beams,
see `base.expand_routing`), so beam search and sampling keep every row with its own
adapters. Cross-attention key/value projections live in the decoder and use the target
language's adapter, although their input is the encoder output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mtadapt.methods import storage
from mtadapt.methods.base import adapter_layers, adapter_names, set_active_adapters
from mtadapt.models.targets import ModelTargets

SHARED_ADAPTER = "shared"
ENCODER = re.compile(r"(^|\.)encoder\.")
DECODER = re.compile(r"(^|\.)decoder\.")
PREFIX = "lang_"


def language_adapter_name(language: str) -> str:
    """Adapter name of a language code: `de_DE` -> `lang_de_DE`."""
    return PREFIX + language.replace(".", "_")


def add_language_adapters(model: nn.Module, method_config: Any, targets: ModelTargets, languages: Sequence[str]) -> list[str]:
    """Add one adapter per language (same method settings); returns their names.

    No adapter is active afterwards: rows take adapters only through `language_routing`.
    """
    names = []
    for language in dict.fromkeys(languages):  # unique, in order
        name = language_adapter_name(language)
        storage.add_adapter(model, method_config, targets, adapter_name=name)
        names.append(name)
    set_active_adapters(model, [])
    return names


def add_shared_adapter(model: nn.Module, method_config: Any, targets: ModelTargets) -> str:
    """Add `SHARED_ADAPTER`, applied to every row on top of the language adapters (LoRA;
    ``method.adapters: shared+per_language``); returns its name."""
    storage.add_adapter(model, method_config, targets, adapter_name=SHARED_ADAPTER)
    set_active_adapters(model, [])
    set_shared_adapter(model, SHARED_ADAPTER)
    return SHARED_ADAPTER


def set_shared_adapter(model: nn.Module, name: str | None) -> None:
    """Every LoRA layer adds adapter `name` on every row (None: no shared adapter).

    Raises:
        ValueError: an adapter layer that cannot hold a shared adapter (not LoRA).
    """
    for layer_name, layer in adapter_layers(model):
        if not hasattr(layer, "set_shared_adapters"):
            raise ValueError(f"{layer_name}: {type(layer).__name__} has no shared adapters; shared+per_language needs LoRA")
        if name is None or name in layer.adapter_names():
            layer.set_shared_adapters([] if name is None else [name])


def split_layers(model: nn.Module) -> tuple[list[Any], list[Any]]:
    """(encoder adapter layers, decoder adapter layers) by module name.

    Raises:
        ValueError: an adapter layer is in neither (names a few, so a new family's layout
            can be added to ENCODER/DECODER).
    """
    encoder, decoder, neither = [], [], []
    for name, layer in adapter_layers(model):
        if DECODER.search(name):
            decoder.append(layer)
        elif ENCODER.search(name):
            encoder.append(layer)
        else:
            neither.append(name)
    if neither:
        raise ValueError(f"adapter layers outside encoder and decoder cannot be routed by language: {neither[:3]}")
    return encoder, decoder


def set_language_routing(model: nn.Module, src_langs: Sequence[str] | None, tgt_langs: Sequence[str] | None = None) -> None:
    """Route row i's encoder through its source language's adapter and its decoder through
    its target language's; None clears routing. A language without an adapter (a held-out
    language) runs that half on the base model.

    Args:
        src_langs: one source language per batch row (before beam expansion).
        tgt_langs: one target language per row, same length.
    """
    encoder, decoder = split_layers(model)
    if src_langs is None or tgt_langs is None:
        for layer in encoder + decoder:
            layer.set_routing(None, [])
        return
    if len(src_langs) != len(tgt_langs):
        raise ValueError(f"{len(src_langs)} source languages but {len(tgt_langs)} target languages")
    known = set(adapter_names(model))
    route_names = sorted(known)
    index = {n: i for i, n in enumerate(route_names)}

    def route(langs: Sequence[str]) -> torch.Tensor:  # (B,) adapter index per row, -1 = base
        return torch.tensor([index.get(language_adapter_name(lang), -1) for lang in langs], dtype=torch.long)

    src_route, tgt_route = route(src_langs), route(tgt_langs)
    for layer in encoder:
        layer.set_routing(src_route, route_names)
    for layer in decoder:
        layer.set_routing(tgt_route, route_names)


def activate_language_adapters(model: nn.Module, src_lang: str | None, tgt_lang: str | None) -> None:
    """One direction for every row (inference of a single direction, any batch size): the
    encoder layers use the source language's adapter, the decoder layers the target
    language's; a language without an adapter leaves that half on the base model."""
    encoder, decoder = split_layers(model)
    known = set(adapter_names(model))
    for layers, language in ((encoder, src_lang), (decoder, tgt_lang)):
        name = None if language is None else language_adapter_name(language)
        for layer in layers:
            layer.set_active_adapters([name] if name in known else [])


@contextmanager
def language_routing(model: nn.Module, src_langs: Sequence[str], tgt_langs: Sequence[str]) -> Iterator[None]:
    """``with language_routing(model, ["de_DE", "en_XX"], ["en_XX", "de_DE"]): model.generate(...)``."""
    set_language_routing(model, src_langs, tgt_langs)
    try:
        yield
    finally:
        set_language_routing(model, None)
