"""Several named adapters on one base model: load, activate, switch, disable, delete, and
generate a batch whose rows use different adapters.

`AdapterSet` is a thin object over the model-wide functions of `mtadapt.methods.base`
and `mtadapt.methods.storage`; it holds no state of its own besides the model and the
family's `ModelTargets`, so mixing it with the plain functions is safe.

Mixed batches: ``generate(inputs, row_adapters=["de-med", "fr-law"], num_beams=3)`` sets a
per-row route for the duration of the call. Every adapter layer expands the route to its
activation batch (``repeat_interleave(num_beams)``, as HF ``generate`` expands rows), so
each source is translated with its own adapter, exactly as if translated alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtadapt.methods import base, storage
from mtadapt.models.targets import ModelTargets


class AdapterSet:
    """One base model, many adapters.

    Example::

        adapters = AdapterSet(model, BART_LIKE)
        adapters.load("runs/de-med/adapter", "de-med")
        adapters.load("runs/fr-law/adapter", "fr-law")
        adapters.activate("de-med")            # all rows use de-med
        adapters.disable()                     # base model
        out = adapters.generate(input_ids=ids, attention_mask=mask,
                                row_adapters=["de-med", "fr-law"], num_beams=3)
    """

    def __init__(self, model: nn.Module, targets: ModelTargets | None = None) -> None:
        self.model = model
        self.targets = targets

    @property
    def names(self) -> list[str]:
        return base.adapter_names(self.model)

    @property
    def active(self) -> list[str]:
        return base.active_adapters(self.model)

    def add(self, config: Any, adapter_name: str) -> None:
        """Add a fresh (untrained) adapter."""
        storage.add_adapter(self.model, config, self.targets, adapter_name)

    def load(self, folder: str | os.PathLike, adapter_name: str | None = None) -> str:
        """Load a saved adapter (fingerprint-checked); returns its name. Active adapters stay."""
        return storage.load_adapter(self.model, folder, self.targets, adapter_name)

    def save(self, adapter_name: str, folder: str | os.PathLike) -> None:
        storage.save_adapter(self.model, folder, adapter_name)

    def activate(self, *adapter_names: str) -> None:
        """Use these adapters (summed) for every row; switching is just activating another."""
        base.set_active_adapters(self.model, list(adapter_names))

    def disable(self) -> None:
        """Plain base model until the next `activate`."""
        base.set_active_adapters(self.model, [])

    def delete(self, adapter_name: str) -> None:
        base.delete_adapter(self.model, adapter_name)
        getattr(self.model, "mtadapt_adapter_configs", {}).pop(adapter_name, None)

    @torch.no_grad()
    def generate(self, row_adapters: Sequence[str | None] | None = None, **generate_kwargs: Any) -> torch.Tensor:
        """``model.generate(**generate_kwargs)``, each batch row with its own adapter.

        Args:
            row_adapters: one adapter name per source row (None / "__base__" = base model);
                None = the active adapters for every row.
        """
        if row_adapters is None:
            return self.model.generate(**generate_kwargs)
        with base.routing(self.model, row_adapters):
            return self.model.generate(**generate_kwargs)
