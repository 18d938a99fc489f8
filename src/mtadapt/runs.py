"""Open a trained model for inference: a run folder, or a base model plus adapter folders.

    model, codec = open_for_inference(run="runs/toy")                 # best (or final) of a run
    model, codec = open_for_inference(model="tiny:mbart50", adapters=["runs/toy/best"],
                                      src_lang="de_DE", tgt_lang="en_XX")
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mtadapt.config import RunConfig, config_from_dict
from mtadapt.methods import storage
from mtadapt.methods.base import adapter_names, set_active_adapters
from mtadapt.models.languages import PairCodec
from mtadapt.models.loading import LoadedModel, load_model


def read_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "run.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run folder written by `mtadapt train`?")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


def run_adapter(run_dir: str | Path, which: str = "best") -> Path:
    """The run's `best` adapter when it exists (and `which` is best), else `final`."""
    run_dir = Path(run_dir)
    for name in ([which, "final"] if which == "best" else [which]):
        if (run_dir / name / storage.CONFIG_FILE).exists():
            return run_dir / name
    raise FileNotFoundError(f"{run_dir} has no finished adapter ({which}/ or final/); did training finish?")


def open_for_inference(
    *,
    run: str | Path | None = None,
    model: str | None = None,
    adapters: list[str] | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    which: str = "best",
) -> tuple[LoadedModel, PairCodec]:
    """Load a base model, add saved adapters (their fingerprints checked), build the codec.

    A run folder supplies the model name, languages and adapter; explicit arguments win.

    Raises:
        ValueError: neither `run` nor `model` given.
    """
    family = tokenizer = None
    if run is not None:
        cfg = read_run_config(run)
        model = model or cfg.model.name_or_path
        family, tokenizer = cfg.model.family, cfg.model.tokenizer
        src_lang = src_lang or cfg.data.src_lang
        tgt_lang = tgt_lang or cfg.data.tgt_lang
        adapters = adapters or [str(run_adapter(run, which))]
    if model is None:
        raise ValueError("give --model (a name or path) or --run (a run folder)")
    loaded = load_model(model, family=family, tokenizer=tokenizer)
    for i, folder in enumerate(adapters or []):
        name = None if len(adapters or []) == 1 else f"adapter{i}"
        storage.load_adapter(loaded.model, folder, loaded.family.targets, adapter_name=name)
    names = adapter_names(loaded.model)
    if names:
        set_active_adapters(loaded.model, names)
    loaded.model.eval()
    codec = PairCodec(loaded.family, loaded.tokenizer, src_lang, tgt_lang, loaded.decoder_start_token_id)
    return loaded, codec
