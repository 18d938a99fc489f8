"""mtadapt: adapt pretrained machine-translation models cheaply and measurably.

The Python API (`mtadapt.api`), PEFT's flow on mtadapt's methods::

    import mtadapt
    model = mtadapt.get_peft_model(mtadapt.load_model("tiny:mbart50"), mtadapt.LoraConfig(rank=8))
    model.print_trainable_parameters()

Names are imported on first use (module ``__getattr__``), so ``import mtadapt`` (and the
CLI's start-up) does not load torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "AdaptedModel": "mtadapt.api",
    "get_peft_model": "mtadapt.api",
    "from_pretrained": "mtadapt.api",
    "open_run": "mtadapt.api",
    "load_model": "mtadapt.models.loading",
    "wrap_model": "mtadapt.models.loading",
    "LoadedModel": "mtadapt.models.loading",
    "FingerprintMismatchError": "mtadapt.methods.storage",
    "MtadaptError": "mtadapt.errors",  # what a user can fix; the API raises these (all ValueErrors)
    "ConfigError": "mtadapt.errors",
    "DataError": "mtadapt.errors",
    "AdapterError": "mtadapt.errors",
    "AdapterSet": "mtadapt.methods.routing",
    "GenerationConfig": "mtadapt.settings",
    "LoraConfig": "mtadapt.methods.lora",
    "HoulsbyConfig": "mtadapt.methods.bottleneck",
    "PfeifferConfig": "mtadapt.methods.bottleneck",
    "PrefixConfig": "mtadapt.methods.prefix",
    "PromptConfig": "mtadapt.methods.prompt",
    "FullConfig": "mtadapt.methods.baselines",
    "BitFitConfig": "mtadapt.methods.baselines",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mtadapt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
