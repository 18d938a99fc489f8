"""The serve configuration: dataclasses, a YAML file as overrides, validation like recipes.

    model: bergamot:pt-en
    adapters:
      - {name: bible, path: runs/bible-lora}       # a run folder, an adapter folder or a PEFT LoRA
      - {name: ui, path: adapters/ui}
    adapter_roots: [adapters]                      # POST /v1/adapters loads only under these
    max_loaded: 4                                  # LRU cap on adapters in memory (0 = no cap)
    engine: pytorch                                # or ctranslate2: every adapter (and the base)
                                                   # merged, converted, run by CTranslate2
    compute_type: int8                             # CTranslate2's (int8, int8_float32, float32 ...)
    pairs:
      - {source: pt, target: en, adapter: bible}   # the default adapter of the pair
    api_keys:
      - {tenant: acme, key: k-acme, adapters: [ui]}
    admin_key: k-admin
    limits: {max_texts: 64, max_chars: 2000, max_queue: 512}
    batching: {max_batch_sentences: 32, max_wait_ms: 5}
    files: {max_file_bytes: 2000000, expiry_s: 3600}   # /translate_file uploads, downloads kept 1 h

Every problem is reported at once, each with the file and line (`serve.yaml:7: pairs[0].adapter:
unknown adapter 'bibel'; configured: bible, ui`). Relative paths are resolved against the
file's folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtadapt.config_io import Builder, read_yaml_mapping, yaml_lines
from mtadapt.errors import ConfigError
from mtadapt.inference.ctranslate2 import QUANTIZATIONS
from mtadapt.inference.engine import ENGINES
from mtadapt.inference.generation import INFERENCE_DTYPES

BASE_ADAPTER = "__base__"
"""Adapter name meaning "the base model, no adapter" (PEFT's spelling)."""
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")  # a browser's Origin header: no path, no trailing slash


@dataclass
class AdapterEntry:
    """One adapter the server may use.

    Attributes:
        name: Name clients pass as `adapter` (letters, digits, `_.-`, at most 64).
        path: A run folder (its best adapter), an mtadapt adapter folder, or a HF PEFT LoRA
            folder (`adapter_config.json`).
        preload: Load at start (else on first use).
        engine: What runs it: `pytorch` (adapters routed per row, batched across adapters)
            or `ctranslate2` (merged into the base and converted, cached by the adapter's
            fingerprint and compute type; one adapter per batch). Default: the server's.
        compute_type: CTranslate2's compute type (int8, int8_float32, int16, float32 on CPU);
            default: the server's.
    """

    name: str = ""
    path: str = ""
    preload: bool = True
    engine: Literal[ENGINES] | None = None  # type: ignore[valid-type]
    compute_type: Literal[QUANTIZATIONS] | None = None  # type: ignore[valid-type]


@dataclass
class PairEntry:
    """One served direction, as LibreTranslate clients name it.

    Attributes:
        source: Public source code (`pt`), what clients send as `source`.
        target: Public target code (`en`).
        src_lang: The model's spelling of the source (`pt_XX` for mBART-50); default `source`
            (None for Marian-native models, which mark no language).
        tgt_lang: Same for the target.
        adapter: Default adapter of the pair when a request names none; null = base model.
    """

    source: str = ""
    target: str = ""
    src_lang: str | None = None
    tgt_lang: str | None = None
    adapter: str | None = None


@dataclass
class TenantKey:
    """An API key and the adapters its tenant may use.

    Attributes:
        tenant: Name in logs and metrics.
        key: The secret clients send (`api_key` field, `Authorization: Bearer`, `X-API-Key`).
        adapters: Adapter names this key may use; `["*"]` = every adapter.
        base: May use the base model (no adapter).
    """

    tenant: str = ""
    key: str = ""
    adapters: list[str] = field(default_factory=list)
    base: bool = True


@dataclass
class LimitsConfig:
    """Request limits.

    Attributes:
        max_texts: Texts per request.
        max_chars: Characters per text.
        max_source_tokens: Tokens per text after tokenization (the model's positions bound it).
        max_request_bytes: Request body size.
        max_queue: Sentences waiting for the worker; beyond it requests get 429 + Retry-After.
        request_timeout_s: Deadline of each request, from arrival; a request still queued
            at its deadline is answered 503.
        retry_after_s: The `Retry-After` a 429/503 answer carries.
        max_num_beams: Largest `num_beams` a native request may ask for.
    """

    max_texts: int = 64
    max_chars: int = 2000
    max_source_tokens: int = 256
    max_request_bytes: int = 1_000_000
    max_queue: int = 1024
    request_timeout_s: float = 60.0
    retry_after_s: int = 1
    max_num_beams: int = 8


@dataclass
class BatchingConfig:
    """How queued requests become generation batches.

    Attributes:
        max_batch_sentences: Sentences per generation batch (1 = no cross-request batching).
        max_batch_tokens: Source tokens per batch (sentences x longest source).
        max_wait_ms: How long the first queued request waits for others to join its batch.
        cross_adapter: Put requests for different LoRA/bottleneck adapters in one batch
            (per-example routing); off = one adapter per batch.
        num_beams: Beam size when a request gives none (LibreTranslate requests never do).
        max_length_factor: Output length limit factor when a request gives none.
        merge_single_lora: Run a batch whose rows all use one LoRA adapter with it merged
            into the base weights (no routing; outputs equal within float rounding).
    """

    max_batch_sentences: int = 32
    max_batch_tokens: int = 4096
    max_wait_ms: float = 5.0
    cross_adapter: bool = True
    num_beams: int = 1
    max_length_factor: float = 2.0
    merge_single_lora: bool = False


@dataclass
class FilesConfig:
    """`/translate_file` and `/download_file`.

    Attributes:
        max_file_bytes: Largest file a request may upload (.txt, .html, .po/.pot).
        expiry_s: How long a translated file stays downloadable.
        folder: Where translated files wait for download; default: a temporary folder of the
            server's own, removed when it stops.
    """

    max_file_bytes: int = 2_000_000
    expiry_s: float = 3600.0
    folder: str | None = None


@dataclass
class ServeConfig:
    """A whole server.

    Attributes:
        model: Base model (HF name or folder, `bergamot:pt-en`, `tiny:<family>`); default:
            the model of `run`.
        run: A run folder whose model, languages and adapter (named after the folder) to serve.
        shortlist: Bergamot models: decode with the lexical shortlist.
        dtype: Precision while generating (default: the device's; int8: Marian-native models
            with their shipped int8 weights).
        host: Bind address; 127.0.0.1 unless you mean to expose it.
        port: TCP port.
        adapters: Adapters known at start.
        adapter_roots: Folders under which `POST /v1/adapters` may load adapters.
        max_loaded: Most adapters in memory at once (least recently used evicted, reloaded on
            demand); 0 = no cap. CTranslate2 translators count as adapters.
        engine: What serves the base model and every adapter whose entry names none:
            `pytorch`, or `ctranslate2` (see `AdapterEntry.engine`; Marian-native models and
            adapters that do not merge into weights are refused at start).
        compute_type: CTranslate2's compute type where an entry names none (the device must
            run it: `ctranslate2.get_supported_compute_types`).
        pairs: Served directions; default: the run's or the model's only direction.
        api_keys: Tenant keys; none = an open server (every adapter for everyone).
        admin_key: Key of the admin endpoints (POST/DELETE /v1/adapters); none = disabled.
        cors_origins: Web origins (`https://app.example.org`, or `*`) whose pages may call the
            server from a browser (CORS, preflight included); none = no CORS headers.
        limits: Request limits.
        batching: Batch formation.
        files: File translation: size limit, expiry, folder.
    """

    model: str | None = None
    run: str | None = None
    shortlist: bool = True
    dtype: Literal[INFERENCE_DTYPES] | None = None  # type: ignore[valid-type]
    host: str = "127.0.0.1"
    port: int = 8080
    adapters: list[AdapterEntry] = field(default_factory=list)
    adapter_roots: list[str] = field(default_factory=list)
    max_loaded: int = 0
    engine: Literal[ENGINES] = "pytorch"  # type: ignore[valid-type]
    compute_type: Literal[QUANTIZATIONS] = "int8"  # type: ignore[valid-type]
    pairs: list[PairEntry] = field(default_factory=list)
    api_keys: list[TenantKey] = field(default_factory=list)
    admin_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    files: FilesConfig = field(default_factory=FilesConfig)


def validate_serve(config: ServeConfig) -> list[tuple[str, str]]:
    """Cross-field checks; returns (key path, message) pairs (empty = valid)."""
    errors: list[tuple[str, str]] = []
    if config.model is None and config.run is None:
        errors.append(("model", "give `model` (a name or path) or `run` (a run folder)"))
    names: dict[str, int] = {}
    for i, entry in enumerate(config.adapters):
        where = f"adapters[{i}]"
        if not isinstance(entry.name, str) or not ADAPTER_NAME.match(entry.name) or entry.name == BASE_ADAPTER:
            errors.append((f"{where}.name", f"{entry.name!r} is not a valid adapter name (letters, digits, '_.-', at most 64)"))
        elif entry.name in names:
            errors.append((f"{where}.name", f"{entry.name!r} repeats adapters[{names[entry.name]}]"))
        names.setdefault(entry.name, i)
        if not entry.path:
            errors.append((f"{where}.path", "empty; give the adapter's folder"))
        elif not Path(entry.path).is_dir():
            errors.append((f"{where}.path", f"{entry.path} is not a folder"))
    known = ", ".join(names) or "none"
    seen_pairs: dict[tuple[str, str], int] = {}
    for i, pair in enumerate(config.pairs):
        where = f"pairs[{i}]"
        if not pair.source or not pair.target:
            errors.append((where, "give both `source` and `target` (the codes clients send, e.g. pt, en)"))
        if (pair.source, pair.target) in seen_pairs:
            errors.append((where, f"{pair.source}->{pair.target} repeats pairs[{seen_pairs[(pair.source, pair.target)]}]"))
        seen_pairs.setdefault((pair.source, pair.target), i)
        if pair.adapter is not None and pair.adapter not in names and pair.adapter != BASE_ADAPTER:
            errors.append((f"{where}.adapter", f"unknown adapter {pair.adapter!r}; configured: {known}"))
    keys: dict[str, int] = {}
    for i, tenant in enumerate(config.api_keys):
        where = f"api_keys[{i}]"
        if not tenant.key or len(str(tenant.key)) < 8:
            errors.append((f"{where}.key", "give a key of at least 8 characters"))
        elif tenant.key in keys:
            errors.append((f"{where}.key", f"repeats the key of api_keys[{keys[tenant.key]}]"))
        keys.setdefault(tenant.key, i)
        for name in tenant.adapters:
            if name != "*" and name not in names:
                errors.append((f"{where}.adapters", f"unknown adapter {name!r}; configured: {known} (or '*')"))
    if config.admin_key is not None and (len(config.admin_key) < 8 or config.admin_key in keys):
        errors.append(("admin_key", "give a key of at least 8 characters that no tenant uses"))
    for i, root in enumerate(config.adapter_roots):
        if not Path(root).is_dir():
            errors.append((f"adapter_roots[{i}]", f"{root} is not a folder"))
    for i, origin in enumerate(config.cors_origins):
        if not isinstance(origin, str) or not (origin == "*" or _ORIGIN.match(origin)):
            errors.append((f"cors_origins[{i}]", f"{origin!r} is not an origin: give scheme://host[:port] "
                                                 "(https://app.example.org, no path) or '*'"))
    lim, bat = config.limits, config.batching
    positive = {
        "limits.max_texts": lim.max_texts, "limits.max_chars": lim.max_chars, "limits.max_source_tokens": lim.max_source_tokens,
        "limits.max_request_bytes": lim.max_request_bytes, "limits.max_queue": lim.max_queue,
        "limits.request_timeout_s": lim.request_timeout_s, "limits.max_num_beams": lim.max_num_beams,
        "batching.max_batch_sentences": bat.max_batch_sentences, "batching.max_batch_tokens": bat.max_batch_tokens,
        "batching.num_beams": bat.num_beams, "batching.max_length_factor": bat.max_length_factor,
        "files.max_file_bytes": config.files.max_file_bytes, "files.expiry_s": config.files.expiry_s,
    }
    for key, value in positive.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            errors.append((key, f"must be > 0, got {value!r}"))
    for key, value in {"max_loaded": config.max_loaded, "limits.retry_after_s": lim.retry_after_s, "batching.max_wait_ms": bat.max_wait_ms}.items():
        if isinstance(value, (int, float)) and value < 0:
            errors.append((key, f"must be >= 0, got {value!r}"))
    if isinstance(config.port, int) and not 0 <= config.port <= 65535:
        errors.append(("port", f"must be in 0..65535, got {config.port}"))
    if isinstance(bat.num_beams, int) and isinstance(lim.max_num_beams, int) and bat.num_beams > lim.max_num_beams:
        errors.append(("batching.num_beams", f"{bat.num_beams} exceeds limits.max_num_beams {lim.max_num_beams}"))
    if isinstance(lim.max_queue, int) and isinstance(lim.max_texts, int) and lim.max_queue < lim.max_texts:
        errors.append(("limits.max_queue", f"{lim.max_queue} is below limits.max_texts {lim.max_texts}: a full request could never queue"))
    return errors


def _resolve(data: dict, base: Path) -> dict:
    """Relative adapter paths, roots and the run folder, against the config file's folder."""
    def fix(p: object) -> object:
        return p if not isinstance(p, str) or ":" in p or Path(p).is_absolute() else str(base / p)

    if isinstance(data.get("run"), str):
        data["run"] = fix(data["run"])
    if isinstance(data.get("model"), str) and (base / data["model"]).exists():
        data["model"] = str(base / data["model"])
    for entry in data.get("adapters") or []:
        if isinstance(entry, dict) and "path" in entry:
            entry["path"] = fix(entry["path"])
    if isinstance(data.get("adapter_roots"), list):
        data["adapter_roots"] = [fix(r) for r in data["adapter_roots"]]
    if isinstance(data.get("files"), dict) and isinstance(data["files"].get("folder"), str):
        data["files"]["folder"] = fix(data["files"]["folder"])
    return data


def serve_config_from_dict(data: dict, source: str = "<serve>", lines: dict[str, int] | None = None) -> ServeConfig:
    """Build and validate a ServeConfig; raises ConfigError listing every problem with file:line."""
    builder = Builder(source, lines or {})
    config = builder.build(ServeConfig, data, "")
    try:  # after an unknown key too: every problem at once
        for path, message in validate_serve(config):
            builder.error(path, message)
    except (TypeError, AttributeError):
        if not builder.errors:
            raise
        # a value of the wrong type (already reported) stops the cross-field checks
    if builder.errors:
        raise ConfigError(f"{len(builder.errors)} problem(s) in {source}:\n  " + "\n  ".join(builder.errors))
    return config


def load_serve_config(path: str | Path | None, overrides: dict | None = None) -> ServeConfig:
    """Read a serve YAML file (or nothing) and apply command-line settings on top.

    Args:
        overrides: top-level keys set by flags (`model`, `port`, `adapters` appended ...).

    Raises:
        ConfigError: every invalid key and value, with file:line.
        FileNotFoundError: the file does not exist.
    """
    data: dict = {}
    lines: dict[str, int] = {}
    source = "<command line>"
    if path is not None:
        path = Path(path)
        data, text = read_yaml_mapping(path, "a mapping of serve settings (model, adapters, pairs, limits ...)")
        lines = yaml_lines(text)
        source = str(path)
        data = _resolve(data, path.parent)
    for key, value in (overrides or {}).items():
        if key == "adapters" and isinstance(data.get("adapters"), list):
            data["adapters"] = list(data["adapters"]) + list(value)
        else:
            data[key] = value
    return serve_config_from_dict(data, source if not overrides or path is None else f"{source} (+ flags)", lines)
