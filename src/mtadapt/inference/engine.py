"""One small protocol for what turns source token ids into target token ids: an `Engine`.

translate, evaluate, back-translation, compare's test decoding and serve hold an engine and
call it; none of them generates on its own. Two engines implement it:

- `PyTorchEngine` (here): mtadapt's PyTorch model of any family (HF `generate`, or the
  Marian-native search), adapters routed per row as `batch_context` sets them.
- `CTranslate2Engine` (`inference.ctranslate2`): a merged, converted HF model run by
  `ctranslate2.Translator` (one adapter per translator).

What a caller may rely on, as pseudo-code:

    engine.name            # "pytorch" | "ctranslate2"
    engine.codec           # PairCodec: encode_sources(texts) -> ids; decode(ids) -> texts
    engine.precision       # what it computes in: "float32", "bfloat16", "int8", "int8_float32" ...
    engine.model_name      # what it was opened as (a base's name or path), for manifests and messages
    engine.fingerprint     # {"architecture": ..., "weights": ...}: the base model's, as
                           # methods.storage records it (never the precision or the device)
    engine.position_limit  # most tokens a source may hold, or None
    outs = engine.translate_ids(src_ids, config, decoder_prompts=None, line_numbers=None)
    # outs[i]: the config.num_return_sequences output id lists of src_ids[i] (no prompt, no
    # </s>, no padding), in input order; sources over `position_limit` are cut to it, with one
    # warning naming their lines (`line_numbers`, 1-based; default: positions)
    with engine.seeded(seed):  # sampling draws depend on `seed` alone (shards, ranks)
        outs = engine.translate_ids(...)

Both engines share the length rule (`GenerationConfig.max_length_factor`): a batch's outputs
stop after ceil(factor * longest source of the batch) + 5 tokens, and batches are formed the
same way (sources sorted by length, longest first, `config.batch_size` at a time), so the
same model gives the same tokens in both wherever the arithmetic agrees (float32, greedy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from mtadapt.inference.generation import position_limit, translate_ids
from mtadapt.models.languages import PairCodec
from mtadapt.progress import ProgressMode
from mtadapt.settings import ENGINES, GenerationConfig  # noqa: F401  (ENGINES re-exported)

EngineName = Literal["pytorch", "ctranslate2"]


@runtime_checkable
class Engine(Protocol):
    """Translates token ids for one direction (see the module docstring)."""

    name: str
    codec: PairCodec
    precision: str
    model_name: str

    @property
    def fingerprint(self) -> dict[str, str]: ...

    @property
    def position_limit(self) -> int | None: ...

    def translate_ids(
        self,
        src_ids: list[list[int]],
        config: GenerationConfig,
        *,
        decoder_prompts: list[list[int]] | None = None,
        line_numbers: Sequence[int] | None = None,
        progress: bool | ProgressMode = False,
        desc: str = "translate",
    ) -> list[list[list[int]]]: ...

    def seeded(self, seed: int) -> AbstractContextManager: ...


def engine_id(engine: Engine) -> dict[str, str]:
    """What a work folder's manifest records of the engine: its name and precision (a run
    never mixes engines or precisions)."""
    return {"engine": engine.name, "dtype": engine.precision}


def translate_texts(engine: Engine, texts: list[str], config: GenerationConfig | None = None,
                    progress: bool | ProgressMode = False) -> list[str]:
    """Translate sentences with `engine` (first output of each); output i translates texts[i]."""
    config = config or GenerationConfig()
    outs = engine.translate_ids(engine.codec.encode_sources(texts), config, progress=progress)
    return engine.codec.decode([o[0] for o in outs])


class PyTorchEngine:
    """mtadapt's PyTorch model as an `Engine`: every family, Marian-native included.

    Args:
        model: The model as placed for inference (`runs.place_for_inference`), adapters and all.
        codec: Its direction.
        precision: What it runs in (`place_for_inference`'s answer; default: its parameters' dtype).
        model_name: What it was opened as (default: the model's `name_or_path`).
        batch_context: `batch_context(chunk)` wraps the generation of the sources at indices
            `chunk` of each `translate_ids` call (per-row adapter routing, as serve does).
    """

    name = "pytorch"

    def __init__(self, model: nn.Module, codec: PairCodec, precision: str | None = None,
                 batch_context: Callable[[list[int]], AbstractContextManager] | None = None,
                 model_name: str | None = None):
        self.model = model
        self.model_name = model_name or str(getattr(model, "name_or_path", "") or type(model).__name__)
        self.codec = codec
        self.precision = precision or str(next(model.parameters()).dtype).removeprefix("torch.")
        self.batch_context = batch_context

    @property
    def fingerprint(self) -> dict[str, str]:
        from mtadapt.methods import storage

        return asdict(storage.fingerprint(self.model, getattr(self.model, "mtadapt_whole_model_method", None)))

    @property
    def position_limit(self) -> int | None:
        return position_limit(self.model)

    def translate_ids(self, src_ids: list[list[int]], config: GenerationConfig, *,
                      decoder_prompts: list[list[int]] | None = None, line_numbers: Sequence[int] | None = None,
                      progress: bool | ProgressMode = False, desc: str = "translate") -> list[list[list[int]]]:
        return translate_ids(self.model, self.codec, src_ids, config, progress=progress, desc=desc,
                             decoder_prompts=decoder_prompts, batch_context=self.batch_context,
                             line_numbers=line_numbers)

    @contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        """torch's generator (and this model's GPU's) seeded with `seed`, restored after."""
        device = next(self.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield
