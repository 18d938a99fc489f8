"""The adapters a server knows, which of them are in memory, and the LRU cap.

A record is made when an adapter is registered (at start or by `POST /v1/adapters`): its
folder is read (run folder -> its best adapter; mtadapt adapter; HF PEFT LoRA), its base
fingerprint compared with the served base, its size and parameter count taken from the
safetensors header. The weights enter the model on first use (or at start with `preload`).

An adapter served by CTranslate2 (`engine` "ctranslate2") is a merged, converted translator
instead: "loading" it opens its translator (`translators.open(record)`, `serve.translators`),
"evicting" it drops the translator; the same LRU and `max_loaded` count both kinds.

    ensure_loaded(names):             # the worker calls it before each batch
        for n in names not in memory:
            while max_loaded and len(in memory) >= max_loaded:
                evict the least recently used adapter not in `names`
            load n
        mark names most recently used

Only the worker thread loads, evicts and unregisters (it owns the model); the event loop
reads records under the lock (listing, "is this adapter known").
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from mtadapt.errors import AdapterError  # an adapter folder that cannot be served; names the folder and why
from mtadapt.methods import base, storage
from mtadapt.methods.registry import get_method
from mtadapt.methods.peft_interop import PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, import_peft_lora
from mtadapt.methods.routing import AdapterSet
from mtadapt.models.loading import LoadedModel

@dataclass
class AdapterRecord:
    """What `GET /v1/adapters` shows of one adapter."""

    name: str
    path: str
    kind: str  # "mtadapt" | "peft"
    method: str
    trainable_parameters: int
    bytes: int
    base_fingerprint: str | None  # weights fingerprint recorded in the adapter (None: PEFT)
    loaded: bool = False
    requests_served: int = 0
    sentences_served: int = 0
    engine: str = "pytorch"  # "pytorch" | "ctranslate2"
    precision: str = ""  # what it computes in: the base's dtype (pytorch), the compute type (ctranslate2)
    folder: str | None = None  # ctranslate2: its converted model folder

    @property
    def routable(self) -> bool:
        """Requests for this adapter may share a batch with other adapters' (the method declares
        it; a CTranslate2 translator holds one merged adapter, so never)."""
        return self.engine == "pytorch" and get_method(self.method).config_class.routes_per_row

    def to_dict(self) -> dict:
        return {
            "name": self.name, "path": self.path, "kind": self.kind, "method": self.method,
            "trainable_parameters": self.trainable_parameters, "bytes": self.bytes,
            "base_fingerprint": self.base_fingerprint, "state": "loaded" if self.loaded else "evicted",
            "requests_served": self.requests_served, "sentences_served": self.sentences_served,
            "engine": self.engine, "precision": self.precision,
        }


def _tensor_stats(weights: Path) -> tuple[int, int]:
    """(parameters, bytes) of a safetensors file, from its header."""
    n = 0
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            size = 1
            for d in shape:
                size *= d
            n += size
    return n, weights.stat().st_size


def adapter_folder(path: str | Path) -> Path:
    """The adapter folder of `path`: itself, or a run folder's best (else final) adapter.

    Raises:
        AdapterError: not an adapter, PEFT or run folder; a run with per-language adapters.
    """
    folder = Path(path)
    if (folder / storage.CONFIG_FILE).exists() or (folder / PEFT_CONFIG_FILE).exists():
        return folder
    if (folder / "run.yaml").exists():
        from mtadapt.runs import run_adapter

        try:
            inner = run_adapter(folder)
        except FileNotFoundError as err:
            raise AdapterError(str(err)) from err
        if not (inner / storage.CONFIG_FILE).exists():
            raise AdapterError(f"{folder}: a run with per-language adapters; serve its language adapters one by one")
        return inner
    raise AdapterError(
        f"{folder} holds no {storage.CONFIG_FILE} (mtadapt adapter), {PEFT_CONFIG_FILE} (PEFT LoRA) or run.yaml (run folder)"
    )


class AdapterRegistry:
    """Adapter records plus the LRU of those in memory.

    Args:
        loaded: the base model (PyTorch adapters are added to `loaded.model`).
        max_loaded: most adapters in memory (0 = no cap).
        translators: `serve.translators.Translators` (open/close), for records with engine
            "ctranslate2"; the serve engine sets it once its codecs exist.
    """

    def __init__(self, loaded: LoadedModel, max_loaded: int = 0, translators: Any = None) -> None:
        self.loaded = loaded
        self.adapters = AdapterSet(loaded.model, loaded.family.targets)
        self.max_loaded = max_loaded
        self.translators = translators
        self.base_fingerprint = storage.fingerprint(loaded.model)  # before any adapter goes in
        self.lock = threading.Lock()
        self._records: dict[str, AdapterRecord] = {}
        self._lru: OrderedDict[str, None] = OrderedDict()  # in memory, least recently used first
        self.loads = 0
        self.evictions = 0

    # ---- read side (any thread) ------------------------------------------------------------

    def get(self, name: str) -> AdapterRecord | None:
        with self.lock:
            return self._records.get(name)

    def records(self) -> list[AdapterRecord]:
        with self.lock:
            return list(self._records.values())

    def loaded_names(self) -> list[str]:
        with self.lock:
            return list(self._lru)

    # ---- write side (worker thread) --------------------------------------------------------

    def describe(self, name: str, path: str | Path) -> AdapterRecord:
        """Read and check an adapter folder without loading its weights.

        Raises:
            AdapterError: unreadable folder, a whole-model method, a different base.
        """
        folder = adapter_folder(path)
        if (folder / storage.CONFIG_FILE).exists():
            try:
                meta = storage.read_adapter_config(folder)
            except (ValueError, json.JSONDecodeError) as err:
                raise AdapterError(f"{folder}: {err}") from err
            if meta["method"] in ("full", "bitfit"):
                raise AdapterError(f"{folder}: method {meta['method']!r} changes the base weights; serve it as its own model")
            saved = meta["fingerprint"]
            fp = self.base_fingerprint
            if saved.get("architecture") != fp.architecture or saved.get("weights") != fp.weights:
                raise AdapterError(
                    f"{folder} was trained on base {meta.get('base_model')!r} with fingerprint "
                    f"{saved.get('architecture')}/{saved.get('weights')}; the served base is {fp.architecture}/{fp.weights}"
                )
            params, size = _tensor_stats(folder / storage.WEIGHTS_FILE)
            return AdapterRecord(name, str(folder), "mtadapt", meta["method"], params, size, saved.get("weights"))
        peft = json.loads((folder / PEFT_CONFIG_FILE).read_text(encoding="utf-8"))
        if peft.get("peft_type") != "LORA":
            raise AdapterError(f"{folder}: PEFT type {peft.get('peft_type')!r}; only LORA adapters are served")
        if not (folder / PEFT_WEIGHTS_FILE).exists():
            raise AdapterError(f"{folder / PEFT_WEIGHTS_FILE} not found (only safetensors PEFT adapters are supported)")
        params, size = _tensor_stats(folder / PEFT_WEIGHTS_FILE)
        return AdapterRecord(name, str(folder), "peft", "lora", params, size, None)

    def register(self, record: AdapterRecord, preload: bool = False) -> None:
        """Add a described adapter (replacing none: names are unique).

        Raises:
            AdapterError: the name is taken.
        """
        with self.lock:
            if record.name in self._records:
                raise AdapterError(f"name: adapter {record.name!r} is already registered; DELETE it first")
            self._records[record.name] = record
        if preload:
            self.ensure_loaded([record.name])

    def unregister(self, name: str) -> AdapterRecord:
        """Unload (if in memory) and forget an adapter.

        Raises:
            KeyError: unknown name.
        """
        with self.lock:
            if name not in self._records:
                raise KeyError(name)
        if name in self._lru:
            self._unload(name)
        with self.lock:
            return self._records.pop(name)

    def ensure_loaded(self, names: list[str]) -> None:
        """Bring `names` into memory, evicting least recently used others past `max_loaded`.

        Raises:
            AdapterError: more names than `max_loaded`, or a folder that fails to load.
        """
        wanted = list(dict.fromkeys(names))
        if self.max_loaded and len(wanted) > self.max_loaded:
            raise AdapterError(f"a batch needs {len(wanted)} adapters but max_loaded is {self.max_loaded}")
        for name in wanted:
            if name in self._lru:
                continue
            while self.max_loaded and len(self._lru) >= self.max_loaded:
                victim = next(n for n in self._lru if n not in wanted)
                self._unload(victim)
                self.evictions += 1
            self._load(name)
        with self.lock:
            for name in wanted:
                self._lru.move_to_end(name)

    def _load(self, name: str) -> None:
        record = self.get(name)
        if record is None:
            raise AdapterError(f"adapter: unknown adapter {name!r}")
        if record.engine == "ctranslate2":
            self._open(record)
            return
        try:
            if record.kind == "peft":
                import_peft_lora(self.loaded.model, record.path, name)
            else:  # the fingerprint was checked when the record was made
                storage.load_adapter(self.loaded.model, record.path, self.loaded.family.targets, name, check_base=False)
        except Exception as err:
            if name in self.adapters.names:
                self.adapters.delete(name)
            raise AdapterError(f"adapter {name!r} ({record.path}) failed to load: {err}") from err
        base.set_active_adapters(self.loaded.model, [])  # loading activates; the server routes every batch
        self.loads += 1
        with self.lock:
            self._lru[name] = None
            record.loaded = True

    def _open(self, record: AdapterRecord) -> None:
        try:
            self.translators.open(record)
        except Exception as err:
            raise AdapterError(f"adapter {record.name!r} ({record.folder}) failed to open in CTranslate2: {err}") from err
        self.loads += 1
        with self.lock:
            self._lru[record.name] = None
            record.loaded = True

    def _unload(self, name: str) -> None:
        if self.translators is None or not self.translators.close(name):
            self.adapters.delete(name)
        with self.lock:
            self._lru.pop(name, None)
            record = self._records.get(name)
            if record is not None:
                record.loaded = False
