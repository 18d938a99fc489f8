"""The CTranslate2 side of a server: which engine serves each adapter, and its translators.

An adapter (or the base) served by CTranslate2 is a merged, converted model run by
`inference.ctranslate2.CTranslate2Engine`, one adapter per translator:

    start:     engine ctranslate2 anywhere -> refuse a Marian-native base, a compute type the
               device lacks, an adapter that does not merge (one named error each)
    register:  record.engine, record.precision; folder = the run-level cache's conversion of
               base + adapter for that compute type (converted once, reused after)
    first use: the registry's LRU opens the translator (`open`), eviction drops it
    a batch:   one adapter (the worker's group is the adapter's name), its rows through
               `translator.translate_ids` with the pair's decoder prompt

PyTorch adapters keep their records' engine "pytorch" and precision the base's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from mtadapt.inference.ctranslate2 import (
    META_FILE,
    ComputeTypeError,
    CTranslate2Engine,
    NotConvertibleError,
    check_compute_type,
    check_convertible,
    convert_folder,
)
from mtadapt.io import replace_folder
from mtadapt.methods import storage
from mtadapt.methods.merge import merged_model
from mtadapt.methods.peft_interop import PEFT_CONFIG_FILE, import_peft_lora
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import LoadedModel, load_model
from mtadapt.serve.config import BASE_ADAPTER
from mtadapt.serve.registry import AdapterRecord

FolderOf = Callable[[str | None, str], Path]
"""(adapter folder, or None for the base alone; compute type) -> a converted CTranslate2 folder."""


class Translators:
    """The engine of the base and of each adapter, and the CTranslate2 translators.

    Args:
        loaded: the served base (checked convertible; its device is CTranslate2's).
        codec: any served direction's codec (the decoder prompt is passed per batch).
        engine: what serves the base and every adapter whose entry names none.
        compute_type: CTranslate2's compute type where an entry names none.
        torch_precision: what the PyTorch model generates in.
        folder_of: see `FolderOf`.

    Raises:
        NotConvertibleError, ComputeTypeError: `engine` ctranslate2 for a base CTranslate2
            cannot run, or a compute type the device lacks.
    """

    def __init__(self, loaded: LoadedModel, codec: PairCodec, engine: str, compute_type: str,
                 torch_precision: str, folder_of: FolderOf) -> None:
        self.loaded, self.codec, self.folder_of = loaded, codec, folder_of
        self.engine, self.compute_type, self.torch_precision = engine, compute_type, torch_precision
        self.device = next(loaded.model.parameters()).device.type
        self.base: CTranslate2Engine | None = None
        self.opened: dict[str, CTranslate2Engine] = {}  # adapter name -> translator, those in memory
        try:  # asked now, while the served model holds no adapter (a PyTorch bottleneck one would refuse it)
            check_convertible(loaded)
            self._refusal: NotConvertibleError | None = None
        except NotConvertibleError as err:
            self._refusal = err
        if engine == "ctranslate2":  # refused at start, before anything is converted
            self.check(compute_type, "engine: ctranslate2")
            self.base = self._translator(self.folder_of(None, compute_type), compute_type)

    @property
    def base_precision(self) -> str:
        return self.compute_type if self.base is not None else self.torch_precision

    def check(self, compute_type: str, what: str) -> None:
        """Refuse a base CTranslate2 cannot run or a compute type this device lacks, naming `what`."""
        try:
            if self._refusal is not None:
                raise self._refusal
            check_compute_type(compute_type, self.device)
        except (NotConvertibleError, ComputeTypeError) as err:
            raise type(err)(f"{what}: {err}") from None

    def prepare(self, record: AdapterRecord, engine: str | None, compute_type: str | None) -> None:
        """Set the record's engine and precision; for CTranslate2, check and convert (or find in
        the cache) its merged model.

        Raises:
            NotConvertibleError: an adapter that does not merge into weights (or the base's).
            ComputeTypeError: a compute type the device lacks.
        """
        record.engine = engine or self.engine
        record.precision = self.torch_precision
        if record.engine != "ctranslate2":
            return
        record.precision = compute_type or self.compute_type
        self.check(record.precision, "engine: ctranslate2")
        if record.method != "lora":  # PEFT folders are LoRA (`describe` refuses the others)
            raise NotConvertibleError(f"{record.path}: CTranslate2 runs adapters merged into the weights (LoRA, "
                                      f"mtadapt's or PEFT's); this is a {record.method} adapter: serve it with engine: pytorch")
        record.folder = str(self.folder_of(record.path, record.precision))

    def open(self, record: AdapterRecord) -> None:
        """Open the record's translator (the registry's load of a CTranslate2 adapter)."""
        assert record.folder is not None, "prepare() converts a CTranslate2 adapter first"
        self.opened[record.name] = self._translator(Path(record.folder), record.precision)

    def close(self, name: str) -> bool:
        """Drop the adapter's translator (its eviction); False when it has none (PyTorch)."""
        return self.opened.pop(name, None) is not None

    def of(self, adapter: str) -> CTranslate2Engine | None:
        """The translator serving `adapter` (BASE_ADAPTER: the base); None: PyTorch serves it."""
        return self.base if adapter == BASE_ADAPTER else self.opened.get(adapter)

    def _translator(self, folder: Path, compute_type: str) -> CTranslate2Engine:
        # as many threads as PyTorch generates with, so that the engines compare on equal cores
        return CTranslate2Engine(folder, self.codec, compute_type, device=self.device,
                                 intra_threads=torch.get_num_threads())


def ctranslate2_folder_of(loaded: LoadedModel, load_base: Callable[[], LoadedModel] | None = None) -> FolderOf:
    """Converted folders of `loaded` plus an adapter, in the run-level cache
    (`runs.ctranslate2_cache_root() / runs.ctranslate2_cache_key(...)`: the base's fingerprint,
    the adapter folder's files, the compute type), the folders `mtadapt translate --engine
    ctranslate2 --model M --adapter A` uses too: converted once (the base as stored, the
    adapter merged in), reused after. `load_base()` gives the base as stored (float32, no
    adapters; default `load_model(loaded.name_or_path)`): the served model may run in bfloat16
    and hold other adapters, one of them merged in place for a batch."""
    from mtadapt.runs import ctranslate2_cache_key, ctranslate2_cache_root

    base = asdict(storage.fingerprint(loaded.model))  # of the weights as stored, whatever the precision
    fresh = load_base or (lambda: load_model(loaded.name_or_path))

    def folder_of(adapter: str | None, compute_type: str) -> Path:
        adapters = [Path(adapter)] if adapter is not None else []
        folder = ctranslate2_cache_root() / ctranslate2_cache_key(loaded.family.name, base, adapters, compute_type)
        if not (folder / META_FILE).is_file():
            replace_folder(folder, lambda tmp: _convert(tmp, fresh(), adapter, compute_type, base))
        return folder

    return folder_of


def _convert(tmp: Path, loaded: LoadedModel, adapter: str | None, compute_type: str, base: dict[str, str]) -> None:
    """Fill `tmp` with the CTranslate2 folder of the fresh base `loaded` with `adapter` merged in."""
    model = loaded.model.float()
    if adapter is not None and (Path(adapter) / PEFT_CONFIG_FILE).is_file():
        import_peft_lora(model, adapter, "served")
        model = merged_model(model, ["served"], copy_model=False)
    elif adapter is not None:  # its fingerprint was checked when the record was made
        storage.load_adapter(model, adapter, loaded.family.targets, "served", check_base=False)
        model = merged_model(model, ["served"], copy_model=False)
    meta = {"format": "ctranslate2", "base": loaded.name_or_path, "base_fingerprint": base,
            "adapters": [str(adapter)] if adapter is not None else []}
    convert_folder(tmp, model, loaded.tokenizer, loaded.family.name, compute_type, meta)
