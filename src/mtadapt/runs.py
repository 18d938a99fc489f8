"""Open a trained model for inference: a run folder, or a base model plus adapter folders.

    model, codec = open_for_inference(run="runs/toy")                 # best (or final) of a run
    model, codec = open_for_inference(model="tiny:mbart50", adapters=["runs/toy/best"],
                                      src_lang="de_DE", tgt_lang="en_XX")
    model, codec = open_for_inference(run="runs/multi", src_lang="es", tgt_lang="en")  # one
                                      # direction of a multi-pair run (data.pairs)

A multi-pair run gives each direction what training gave it: its target-language tag (models
without language codes, `reserve_language_tags` over the run's target languages) and, with
`method.adapters: per_language`, the source language's adapters in the encoder and the target
language's in the decoder (`activate_language_adapters`), plus the shared adapter with
`shared+per_language`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtadapt.config import RunConfig, config_from_dict, load_yaml
from mtadapt.errors import AdapterError, CheckpointError, ConfigError, MtadaptWarning
from mtadapt.inference.generation import INFERENCE_DTYPES
from mtadapt.methods import storage
from mtadapt.methods.base import adapter_names, set_active_adapters
from mtadapt.methods.language_adapters import PREFIX as LANGUAGE_PREFIX
from mtadapt.methods.language_adapters import SHARED_ADAPTER, activate_language_adapters, set_shared_adapter
from mtadapt.models.languages import PairCodec, reserve_language_tags
from mtadapt.models.loading import LoadedModel, load_model


def load_base(config: RunConfig) -> LoadedModel:
    """Load a run's base model as `config.model` names it (`tiny:<family>` builds a cached tiny model)."""
    m = config.model
    return load_model(m.name_or_path, family=m.family, tokenizer=m.tokenizer, trust_remote_code=m.trust_remote_code,
                      shortlist=m.shortlist)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration a run folder was trained with (its `run.yaml`).

    Raises:
        CheckpointError: no run.yaml, or one that is not valid YAML / not a run configuration
            (names the file).
    """
    path = Path(run_dir) / "run.yaml"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} not found: is {run_dir} a run folder written by `mtadapt train`?")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of run settings, got {type(data).__name__}")
        return config_from_dict(data, str(path))
    except (ConfigError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is damaged: {err}; it is rewritten by `mtadapt train`, restore it or train again") from None


def run_adapter(run_dir: str | Path, which: str = "best") -> Path:
    """The run's `best` adapter when it exists (and `which` is best), else `final`."""
    run_dir = Path(run_dir)
    for name in ([which, "final"] if which == "best" else [which]):
        folder = run_dir / name
        if folder.is_dir() and adapter_folders(folder):  # one adapter, or one per language
            return folder
    raise FileNotFoundError(f"{run_dir} has no finished adapter ({which}/ or final/); did training finish?")


def _run_adapters(adapters: list[str], which: str = "best") -> tuple[list[str], list[tuple[str | None, str | None]]]:
    """Adapter folders with each run folder among them replaced by its best (else final)
    adapter, as `serve --adapter` takes them; and the directions of those runs.

    Raises:
        AdapterError: a run with per-language adapters (`--run` routes them by language).
    """
    folders, directions = [], []
    for given in adapters:
        if (Path(given) / storage.CONFIG_FILE).exists() or not (Path(given) / "run.yaml").is_file():
            folders.append(given)
            continue
        inner = adapter_folders(run_adapter(given, which))
        if len(inner) != 1:
            raise AdapterError(f"--adapter {given} is a run with per-language adapters; open it with --run {given}, "
                               "which routes each language to its adapter")
        folders.append(str(inner[0][1]))
        cfg = read_run_config(given)
        if not cfg.data.pairs:
            directions.append((cfg.data.src_lang, cfg.data.tgt_lang))
    return folders, directions


def _run_direction(cfg: RunConfig, run: str | Path, src_lang: str | None, tgt_lang: str | None) -> tuple[str | None, str | None]:
    """The direction to serve from a multi-pair run: the one asked for, or its only one.

    Raises:
        ValueError: no direction given while the run has several, naming them.
    """
    directions = [(c.src_lang, c.tgt_lang) for c in cfg.data.pair_corpora()]
    if src_lang is None and tgt_lang is None and len(directions) == 1:
        return directions[0]
    if src_lang is None or tgt_lang is None:
        names = ", ".join(f"--src-lang {s} --tgt-lang {t}" for s, t in directions)
        raise ValueError(f"{run} is a multi-pair run; choose a direction: {names} (or any pair of its languages)")
    return src_lang, tgt_lang


def adapter_folders(folder: Path) -> list[tuple[str | None, Path]]:
    """(name, folder) of the adapters saved in a run's `best/` or `final/`: one adapter, or one
    sub-folder per language adapter (`lang_<code>/`)."""
    if (folder / storage.CONFIG_FILE).exists():
        return [(None, folder)]
    if not folder.is_dir():
        return []
    subs = sorted(p for p in folder.iterdir() if (p / storage.CONFIG_FILE).exists())
    return [(p.name, p) for p in subs]


def place_for_inference(model: nn.Module, dtype: str | None = None, device: torch.device | str | None = None) -> str:
    """Move `model` to `device`, else to the GPU when there is one (training gets it through
    Accelerate; under torchrun each rank passes its own GPU), and set its precision for
    generation: `dtype` (one of INFERENCE_DTYPES), or None for the device's default
    (`inference.precision`: bfloat16 where the hardware has it, else float32). bfloat16/float16
    change some outputs; a precision the device would emulate draws a warning. "int8" runs a
    Marian-native model's matrices and output layer in int8 on the CPU with the int8 weights
    it shipped (`models.marian_native.int8`). The base fingerprint stays that of the weights
    as stored (`storage.remember_stored_weights`), so adapters and work folders still match.
    Returns the precision the model now runs in, e.g. "float32" or "int8".

    Raises:
        ValueError: an unknown dtype (the message lists the valid ones), or int8 for a
            model that is not Marian-native.
    """
    import warnings

    from mtadapt.inference.precision import default_inference_dtype, emulation_warning

    if dtype is not None and dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(INFERENCE_DTYPES)} (or None: the device's default)")
    storage.remember_stored_weights(model)  # the base fingerprint keeps naming the weights as stored
    if dtype == "int8":
        from mtadapt.models.marian_native.int8 import to_int8
        from mtadapt.models.marian_native.model import MarianNativeModel

        if not isinstance(model, MarianNativeModel):
            raise ValueError(f"--dtype int8 runs Marian-native (Bergamot) models; this is a {type(model).__name__} "
                             f"(valid for it: {', '.join(d for d in INFERENCE_DTYPES if d != 'int8')})")
        message = emulation_warning("int8", "cpu")
        if message:
            warnings.warn(message, stacklevel=2)
        model.float()  # fbgemm's int8 kernels run on the CPU; the model stays there
        to_int8(model)
        return "int8"
    if device is not None:
        model.to(device)
    elif torch.cuda.is_available():
        model.cuda()
    device = next(model.parameters()).device
    explicit = dtype is not None
    dtype = dtype or default_inference_dtype(device)
    message = emulation_warning(dtype, device) if explicit else None
    if message:
        warnings.warn(message, stacklevel=2)
    model.to(getattr(torch, dtype))
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def open_for_inference(
    *,
    run: str | Path | None = None,
    model: str | None = None,
    adapters: list[str] | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    which: str = "best",
    shortlist: bool | None = None,
    with_codec: bool = True,
) -> tuple[LoadedModel, PairCodec]:
    """Load a base model, add saved adapters (their fingerprints checked), build the codec.

    A run folder supplies the model name, languages and adapter; explicit arguments win.
    `shortlist` (Bergamot models): None takes the run's `model.shortlist` (default on).
    `with_codec=False` (merge, export: no text goes in) skips the direction and the codec,
    which is then None.

    Raises:
        ValueError: neither `run` nor `model` given; a multi-pair run without a direction;
            a target language the run has no tag for.
    """
    family = tokenizer = None
    cfg: RunConfig | None = None
    folders: list[tuple[str | None, Path]] = []
    asked = {"--src-lang": src_lang, "--tgt-lang": tgt_lang}  # the caller's own, before a run fills them in
    if run is not None:
        cfg = read_run_config(run)
        model = model or cfg.model.name_or_path
        family, tokenizer = cfg.model.family, cfg.model.tokenizer
        if shortlist is None:
            shortlist = cfg.model.shortlist
        if cfg.data.pairs and (with_codec or src_lang or tgt_lang):
            src_lang, tgt_lang = _run_direction(cfg, run, src_lang, tgt_lang)
        else:
            src_lang = src_lang or cfg.data.src_lang
            tgt_lang = tgt_lang or cfg.data.tgt_lang
        if not adapters:
            folders = adapter_folders(run_adapter(run, which))
    if model is None:
        raise ValueError("give --model (a name or path) or --run (a run folder)")
    if not folders and adapters:
        adapters, run_languages = _run_adapters(adapters, which)
        if cfg is None and len(run_languages) == 1:  # `--adapter RUN` alone: the run's direction unless given
            src_lang, tgt_lang = src_lang or run_languages[0][0], tgt_lang or run_languages[0][1]
    folders = folders or [(None if len(adapters or []) == 1 else f"adapter{i}", Path(f)) for i, f in enumerate(adapters or [])]
    loaded = load_model(model, family=family, tokenizer=tokenizer, shortlist=True if shortlist is None else shortlist)
    for name, folder in folders:
        storage.load_adapter(loaded.model, folder, loaded.family.targets, adapter_name=name)
    names = adapter_names(loaded.model)
    languages = [n for n in names if n.startswith(LANGUAGE_PREFIX)]
    if cfg is not None and cfg.method.adapters in ("per_language", "shared+per_language") and languages:
        activate_language_adapters(loaded.model, src_lang, tgt_lang)  # encoder: source's, decoder: target's
        if SHARED_ADAPTER in names:
            set_shared_adapter(loaded.model, SHARED_ADAPTER)  # plus the shared adapter on every row
    elif names:
        set_active_adapters(loaded.model, names)
    loaded.model.eval()
    if not with_codec:
        return loaded, None  # type: ignore[return-value]
    tag = None
    if cfg is not None and cfg.data.pairs and loaded.family.language_style == "none":
        targets = sorted({c.tgt_lang for c in cfg.data.pair_corpora() if c.tgt_lang is not None})
        if len(targets) > 1:  # trained with target tags: the same tags (they depend on the set only)
            tags = reserve_language_tags(loaded.tokenizer, targets)
            if tgt_lang not in tags:
                raise ValueError(f"{run} tagged target languages {', '.join(targets)}; --tgt-lang {tgt_lang} has no tag")
            tag = tags[tgt_lang]
    codec = PairCodec(loaded.family, loaded.tokenizer, src_lang, tgt_lang, loaded.decoder_start_token_id, target_tag_id=tag)
    if cfg is None or not cfg.data.pairs:  # a multi-pair run's direction is chosen by them
        _warn_unused_languages(loaded, model, asked, tag)
    return loaded, codec


def _warn_unused_languages(loaded: LoadedModel, name: str, asked: dict[str, str | None], tag: int | None) -> None:
    """One warning when a language asked for changes nothing: the model marks no source language
    (Marian, Marian-native), or no target language either (a bilingual Marian model; a
    Marian-native one without target tags). Such a model translates the direction it was
    trained for, whatever code is given."""
    import warnings

    family = loaded.family
    marks_target = family.language_style not in ("marian_tags", "none") or bool(family.language_codes(loaded.tokenizer)) \
        or tag is not None
    marks_source = family.language_style not in ("marian_tags", "none")
    unused = [f"{flag} {code}" for flag, code in asked.items()
              if code is not None and not (marks_source if flag == "--src-lang" else marks_target)]
    if unused:
        what = "only the target language" if marks_target else "no languages"
        warnings.warn(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used: {name} "
                      f"({family.name}) marks {what}; it translates the direction it was trained for", MtadaptWarning,
                      stacklevel=3)


# ---------------------------------------------------------------------------------------
# Engines: the model opened for inference behind `inference.engine.Engine`.

DEFAULT_COMPUTE_TYPES = {"cpu": "int8", "cuda": "int8_float16"}
"""CTranslate2's default compute type per device: int8 weights are what make it worth running
(on CPU 3.2x HF float32 in issue 24's measurement, where its float32 is no faster than HF's),
and the toy run's int8 output scores within 1 BLEU of float32 (tests/test_engines.py)."""


def ctranslate2_cache_root() -> Path:
    """Where converted runs are kept: $MTADAPT_CACHE/ctranslate2 (default ~/.cache/mtadapt)."""
    return Path(os.environ.get("MTADAPT_CACHE", Path.home() / ".cache" / "mtadapt")) / "ctranslate2"


def ctranslate2_cache_key(family: str, base_fingerprint: dict[str, str], adapter_folders: list[Path],
                          compute_type: str, direction: tuple[str | None, str | None] | None = None) -> str:
    """The cache folder's name: the family, a sha256 of the base's fingerprint, every adapter
    file (its config and weights: the adapter's fingerprint) and, for per-language adapters,
    the direction (which of them are merged); and the compute type."""
    import hashlib

    digest = hashlib.sha256(repr(sorted(base_fingerprint.items())).encode())
    for folder in adapter_folders:
        for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    if direction is not None:
        digest.update(repr(direction).encode())
    return f"{family}-{digest.hexdigest()[:16]}-{compute_type}"


def is_ctranslate2_folder(path: str | Path | None) -> bool:
    """Whether `path` is (or means to be) a CTranslate2 folder: model.bin or mtadapt.json in it."""
    from mtadapt.inference.ctranslate2 import META_FILE

    return path is not None and Path(path).is_dir() and any((Path(path) / n).is_file() for n in ("model.bin", META_FILE))


def open_engine(
    *,
    engine: str = "pytorch",
    run: str | Path | None = None,
    model: str | None = None,
    adapters: list[str] | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    which: str = "best",
    shortlist: bool | None = None,
    dtype: str | None = None,
    compute_type: str | None = None,
    device: torch.device | None = None,
    ranks: Any = None,
) -> Any:
    """Open a run (or a base plus adapters, or an exported CTranslate2 folder) as an Engine.

        pytorch:      open_for_inference + place_for_inference (dtype) -> PyTorchEngine
        ctranslate2:  --model DIR an exported folder: used as it is (checked against --run's
                      base when a run is given too);
                      else open_for_inference, merge, convert into
                      ctranslate2_cache_root()/ctranslate2_cache_key(...) once (built beside,
                      renamed into place), reused after -> CTranslate2Engine(compute_type)

    Args:
        device: Where to run (a rank's GPU); None = the GPU when there is one, else the CPU.
        ranks: This process among a run's (`inference.sharded.Ranks`): rank 0 converts while
            the others wait at a barrier, so a run is converted once.

    Raises:
        ConfigError: an unknown engine; --dtype with ctranslate2 or --compute-type with pytorch;
            a CTranslate2 folder given to the pytorch engine.
        NotACTranslate2FolderError, ComputeTypeError, NotConvertibleError,
        FolderFingerprintError: see `inference.ctranslate2`.
    """
    from mtadapt.inference.engine import ENGINES, PyTorchEngine

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "pytorch":
        if compute_type is not None:
            raise ConfigError("--compute-type is CTranslate2's: add --engine ctranslate2, or give --dtype for the "
                              "PyTorch engine")
        if is_ctranslate2_folder(model):
            raise ConfigError(f"--model {model} is a CTranslate2 folder: run it with --engine ctranslate2")
        loaded, codec = open_for_inference(run=run, model=model, adapters=adapters, src_lang=src_lang, tgt_lang=tgt_lang,
                                           which=which, shortlist=shortlist)
        precision = place_for_inference(loaded.model, dtype, device)
        return PyTorchEngine(loaded.model, codec, precision, model_name=loaded.name_or_path)
    from mtadapt.inference.ctranslate2 import CTranslate2Engine, check_compute_type, require_ctranslate2

    require_ctranslate2()
    if dtype is not None:
        raise ConfigError(f"--dtype {dtype} is the PyTorch engine's; with --engine ctranslate2 give --compute-type "
                          "(int8, int8_float32, int16, float32 on CPU)")
    kind = "cuda" if (device is not None and device.type == "cuda") or (device is None and torch.cuda.is_available()) else "cpu"
    compute_type = compute_type or DEFAULT_COMPUTE_TYPES[kind]
    check_compute_type(compute_type, kind)  # before anything loads or converts
    if is_ctranslate2_folder(model):
        folder, codec = _exported_folder(model, run, src_lang, tgt_lang, which)
        name = str(model)
    else:
        folder, codec, name = _converted_run(run, model, adapters, src_lang, tgt_lang, which, compute_type, ranks)
    # as many threads as PyTorch would use (OMP_NUM_THREADS, torch.set_num_threads)
    index = device.index if device is not None and device.type == "cuda" and device.index is not None else 0
    return CTranslate2Engine(folder, codec, compute_type, device=kind, device_index=index,
                             intra_threads=torch.get_num_threads(), model_name=name)


def _exported_folder(folder: str | Path, run: str | Path | None, src_lang: str | None, tgt_lang: str | None,
                     which: str) -> tuple[Path, PairCodec]:
    """An exported CTranslate2 folder and its codec (the tokenizer saved in it; the direction
    given, else the run's, else the folder's only one), checked against the run's base."""
    from transformers import AutoTokenizer

    from mtadapt.inference.ctranslate2 import META_FILE, NotACTranslate2FolderError, check_folder_fingerprint, read_folder_meta
    from mtadapt.models.families import get_family

    folder = Path(folder)
    meta = read_folder_meta(folder)
    if not meta.get("family"):
        raise NotACTranslate2FolderError(f"{folder} has no {META_FILE} (or one without its family): mtadapt runs the "
                                         "folders `mtadapt export --format ctranslate2` writes; export the model with it")
    if run is not None:
        cfg = read_run_config(run)
        _, recorded = adapter_folders(run_adapter(run, which))[0]
        saved = json.loads((recorded / storage.CONFIG_FILE).read_text(encoding="utf-8"))["fingerprint"]
        check_folder_fingerprint(folder, meta, saved)
        if cfg.data.pairs:
            src_lang, tgt_lang = _run_direction(cfg, run, src_lang, tgt_lang)
        src_lang, tgt_lang = src_lang or cfg.data.src_lang, tgt_lang or cfg.data.tgt_lang
    languages = meta.get("languages") or []
    if src_lang is None and tgt_lang is None and len(languages) == 1:
        src_lang, tgt_lang = languages[0]["src_lang"], languages[0]["tgt_lang"]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    codec = PairCodec(get_family(meta["family"]), tokenizer, src_lang, tgt_lang, meta.get("decoder_start_token_id"))
    return folder, codec


def _local_files(path: str | Path | None) -> list[list[Any]] | None:
    """[name, size, mtime_ns] of each file in a local model folder, sorted; None for a name
    that is no folder (a hub or tiny name)."""
    if path is None or not Path(path).is_dir():
        return None
    return sorted([p.name, st.st_size, st.st_mtime_ns] for p in Path(path).iterdir() if p.is_file() for st in [p.stat()])


def _cached_conversion(run: str | Path | None, model: str | None, adapters: list[str] | None, src_lang: str | None,
                       tgt_lang: str | None, which: str, compute_type: str) -> tuple[Path, PairCodec, str] | None:
    """The folder `_converted_run` converted before, found without loading the PyTorch model,
    and its codec and base name; None when there is none, or for per-language adapters.

    With one adapter (a run's, or --adapter on --model) the cache key needs the base's
    fingerprint, which the adapter recorded when it was saved (and which loading checks the
    base against): the key comes from the adapter's files alone, and the folder's own record
    (base fingerprint, family, compute type) is checked too. The base named by --model is not
    opened: the conversion of the adapter's own base is what runs. A base folder alone
    (--model DIR) is found by the folder's record of that base's files (path, sizes and
    modification times): any change to them converts again."""
    from mtadapt.inference.ctranslate2 import META_FILE, read_folder_meta

    if run is None and not adapters:
        files = _local_files(model)
        if files is None:
            return None
        wanted = {"adapters": [], "base_dir": str(Path(model).resolve()), "base_files": files, "quantization": compute_type}
        candidates = ctranslate2_cache_root().glob(f"*-{compute_type}")
    else:
        if run is None and model is None:
            return None
        try:
            folders = [f for _, f in adapter_folders(run_adapter(run, which))] if run is not None and not adapters \
                else [Path(a) for a in _run_adapters(list(adapters or []), which)[0]]
            recorded = json.loads((folders[0] / storage.CONFIG_FILE).read_text(encoding="utf-8"))["fingerprint"] \
                if len(folders) == 1 else None
        except (OSError, ValueError, KeyError, TypeError, AdapterError):
            return None  # loading says what is wrong with the run or adapter, as it always did
        if recorded is None:
            return None
        key = ctranslate2_cache_key("", recorded, folders, compute_type)  # "-<digest>-<compute type>"
        wanted = {"base_fingerprint": recorded, "quantization": compute_type}
        candidates = (f for f in ctranslate2_cache_root().glob(f"*{key}") if f.name.endswith(key))
    for folder in candidates:
        if not (folder / META_FILE).is_file():
            continue  # being built, or left half-built: the slow path builds it
        meta = read_folder_meta(folder)
        if all(meta.get(k) == v for k, v in wanted.items()) and folder.name.startswith(f"{meta.get('family')}-"):
            folder, codec = _exported_folder(folder, run, src_lang, tgt_lang, which)
            return folder, codec, meta["base"]
    return None


def _converted_run(run: str | Path | None, model: str | None, adapters: list[str] | None, src_lang: str | None,
                   tgt_lang: str | None, which: str, compute_type: str, ranks: Any) -> tuple[Path, PairCodec, str]:
    """The run (or base + adapters) merged and converted for `compute_type`, from the cache
    when it is there; its codec; the base's name. One process finds a cached single adapter's
    folder without loading the model (`_cached_conversion`); ranks of a launched run take the
    path below, so that every rank passes the same barriers."""
    if ranks is None or ranks.world <= 1:
        found = _cached_conversion(run, model, adapters, src_lang, tgt_lang, which, compute_type)
        if found is not None:
            return found
    from dataclasses import asdict

    from mtadapt.inference.ctranslate2 import META_FILE, check_convertible, convert_folder, read_folder_meta
    from mtadapt.io import atomic_write_json, replace_folder
    from mtadapt.methods.merge import merged_model

    base_files = _local_files(model)  # before loading: a file changed meanwhile makes the record stale, not wrong
    loaded, codec = open_for_inference(run=run, model=model, adapters=adapters, src_lang=src_lang, tgt_lang=tgt_lang,
                                       which=which)
    check_convertible(loaded)
    whole = getattr(loaded.model, "mtadapt_whole_model_method", None)
    base = asdict(storage.fingerprint(loaded.model, whole))
    folders = [f for _, f in adapter_folders(run_adapter(run, which))] if run is not None and not adapters \
        else [Path(a) for a in _run_adapters(list(adapters or []), which)[0]]
    direction = (codec.src_lang, codec.tgt_lang) if len(folders) > 1 else None
    folder = ctranslate2_cache_root() / ctranslate2_cache_key(loaded.family.name, base, folders, compute_type, direction)

    def build(tmp: Path) -> None:
        names = adapter_names(loaded.model)
        merged = merged_model(loaded.model, copy_model=False) if names else loaded.model
        meta = {"format": "ctranslate2", "base": loaded.name_or_path, "base_fingerprint": base,
                "run": None if run is None else str(run), "adapters": [str(f) for f in folders],
                "base_dir": str(Path(model).resolve()) if base_files is not None else None, "base_files": base_files,
                "languages": [{"src_lang": codec.src_lang, "tgt_lang": codec.tgt_lang}]}
        convert_folder(tmp, merged, loaded.tokenizer, loaded.family.name, compute_type, meta)

    waits = ranks is not None and ranks.world > 1
    if waits and not ranks.main:
        ranks.barrier()  # rank 0 converts; the others find its folder
    if not (folder / META_FILE).is_file():
        replace_folder(folder, build)
    elif base_files is not None and not waits:
        meta = read_folder_meta(folder)
        if (meta.get("base_dir"), meta.get("base_files")) != (str(Path(model).resolve()), base_files):
            # the same weights (the key) in other or touched files: record these, so that the
            # next command finds the folder without loading the model (`_cached_conversion`)
            atomic_write_json(folder / META_FILE, {**meta, "base_dir": str(Path(model).resolve()), "base_files": base_files}, indent=2)
    if waits and ranks.main:
        ranks.barrier()
    return folder, codec, loaded.name_or_path
