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

from pathlib import Path

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
