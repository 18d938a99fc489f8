"""Run a comparison grid cell after cell, resumably, and write the report.

    for cell in cells:
        if results.jsonl has cell (same fingerprint): skip          # finished earlier
        run the cell in a fresh Python process:                      # honest peak memory
            train(config, resume=True)                               # continues a killed cell
            translate the test set with the best adapter, BLEU/chrF with bootstrap CIs
        append the cell's row to results.jsonl                        # "failed" with its error: the grid goes on
    paired bootstrap of every cell against the untuned baseline and full fine-tuning
    rewrite results.jsonl with those comparisons, then report.md and report.html

One process per cell makes the peak resident memory (`ru_maxrss`) the cell's own and
returns every byte to the system between cells. A cell whose method cannot be applied to
the model (BitFit on T5, which has no biases) is recorded as "unsupported" with the reason;
a cell that fails (a non-finite loss, a bad path, a crash) is recorded as "failed" with its
one-line error, the grid goes on, and the report shows the row: `failed_cells` lists them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mtadapt.compare.grid import Cell, CompareConfig
from mtadapt.config import config_from_dict, config_to_dict
from mtadapt.data.bible import CORPUS_DIR_ENV
from mtadapt.errors import ConfigError, MtadaptError
from mtadapt.io import append_line, atomic_write_json, atomic_write_lines, folder_lock, read_jsonl_rows, read_lines
from mtadapt.progress import ProgressMode, progress_mode

RESULTS_FILE = "results.jsonl"
CELL_FILE = "cell.json"
CELL_RESULT_FILE = "cell_result.json"


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of results.jsonl; a torn last line (killed mid-write) is ignored."""
    return read_jsonl_rows(path)


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_lines(path, (json.dumps(r) for r in rows))


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# ---------------------------------------------------------------------------------------
# One cell, inside its own process.


def _peak_memory() -> dict[str, float | None]:
    import resource

    import torch

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": rss_mb, "peak_gpu_mb": gpu_mb}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_cell(spec: dict[str, Any], progress: bool | ProgressMode = True) -> dict[str, Any]:
    """Train (unless the method is `none`) and evaluate one cell; returns its result row.

    `spec` is what the runner wrote to the cell's `cell.json`: name, method, settings,
    fingerprint, n_bootstrap and the cell's RunConfig as a dict.
    """
    from mtadapt.inference.precision import describe_machine
    from mtadapt.evaluate.metrics import corpus_scores
    from mtadapt.methods.params import param_report
    from mtadapt.data.tasks import load_corpus
    from mtadapt.evaluate.dev import evaluate_dev
    from mtadapt.runs import load_base, open_for_inference
    from mtadapt.train.loop import train

    config = config_from_dict(spec["config"], f"cell {spec['name']!r}")
    run_dir = Path(config.train.output_dir)
    row: dict[str, Any] = {k: spec[k] for k in ("name", "method", "settings", "fingerprint")}
    start = time.perf_counter()
    loaded = load_base(config)
    if config.data.test is None:
        raise ConfigError("data.test is not set in the compare base; cells are scored on the test set")
    if spec["method"] == "none":
        total = sum(p.numel() for p in loaded.model.parameters())
        codec = loaded.codec(config.data.src_lang, config.data.tgt_lang)
        model = loaded.model.eval()
        dev = load_corpus(config, "dev", codec, None)  # the untuned dev score: step 0 of every curve
        history = [{"step": 0, **evaluate_dev(model, codec, dev, config)}] if dev else []
        row.update(trainable=0, total=total, adapter_bytes=0, steps=0, train_seconds=0.0, tokens_per_second=None, dev_history=history)
    else:
        try:  # applies the method to a meta copy: fails fast, with the reason, if unsupported
            report = param_report(loaded.model, spec["method"], spec["settings"], targets=loaded.family.targets)
        except (TypeError, ValueError, NotImplementedError) as err:
            row.update(status="unsupported", reason=f"{type(err).__name__}: {err}")
            return row
        del loaded
        result = train(config, resume=True, progress=progress, other_files=(CELL_FILE, CELL_RESULT_FILE))
        loaded, codec = open_for_inference(run=run_dir)  # the best adapter by dev score (else final)
        adapter = result.best_adapter or result.final_adapter
        model = loaded.model
        row.update(
            trainable=report.trainable, total=report.total, adapter_bytes=_folder_bytes(adapter), steps=result.steps,
            train_seconds=result.train_seconds, tokens_per_second=result.tokens_per_second,
            dev_history=result.dev_history, evaluated_adapter=adapter.name,
        )
    test = load_corpus(config, "test", codec, None)
    engine = _test_engine(spec, config, model, codec, run_dir)
    outputs = engine.translate_ids(test.src_ids, config.generation, progress=progress, desc="test set")
    hyps = codec.decode([o[0] for o in outputs])
    atomic_write_lines(run_dir / "test.hyp", hyps)
    atomic_write_lines(run_dir / "test.ref", test.tgt)
    scores = corpus_scores(hyps, test.tgt, n_bootstrap=spec["n_bootstrap"])
    row.update(
        status="done", test_sentences=len(hyps), scores={k: v.to_dict() for k, v in scores.items()},
        engine=engine.name, precision=engine.precision, machine=describe_machine(),
        cell_seconds=time.perf_counter() - start, **_peak_memory(),
    )
    return row


def _test_engine(spec: dict[str, Any], config: Any, model: Any, codec: Any, run_dir: Path) -> Any:
    """What decodes the cell's test set: `spec["engine"]`; a cell CTranslate2 cannot take (an
    adapter that does not merge, a Marian-native model) decodes with PyTorch, as its row says."""
    from mtadapt.inference.ctranslate2 import NotConvertibleError
    from mtadapt.inference.engine import PyTorchEngine
    from mtadapt.runs import open_engine

    if spec.get("engine", "pytorch") == "ctranslate2":
        where = {"model": config.model.name_or_path} if spec["method"] == "none" else {"run": run_dir}
        try:
            return open_engine(engine="ctranslate2", src_lang=codec.src_lang, tgt_lang=codec.tgt_lang,
                               compute_type=spec.get("compute_type"), **where)
        except NotConvertibleError:
            pass
    return PyTorchEngine(model, codec, str(next(model.parameters()).dtype).removeprefix("torch."))


def failed_row(spec: dict[str, Any], reason: str, internal: bool) -> dict[str, Any]:
    """The result row of a cell that failed: `reason` on one line; `internal`: a bug, not a
    problem of the recipe or the data (the report and the exit status tell them apart)."""
    reason = " ".join(reason.split())
    return {**{k: spec[k] for k in ("name", "method", "settings", "fingerprint")}, "status": "failed",
            "reason": f"internal error: {reason}" if internal else reason, "internal": internal}


def _cell_main(cell_file: str, progress: ProgressMode, debug: bool = False) -> int:
    """Run one cell and write its row, "failed" with the one-line error when it raises (the
    traceback only with `debug`): the grid goes on with the next cell."""
    spec = json.loads(Path(cell_file).read_text(encoding="utf-8"))
    try:
        row = run_cell(spec, progress=progress)
    except KeyboardInterrupt:  # Ctrl-C reached the grid too: it stops there
        return 130
    except Exception as err:  # noqa: BLE001 (one cell's failure is recorded, not raised)
        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(err, MtadaptError):
            row = failed_row(spec, str(err), internal=False)
        elif isinstance(err, OSError) and err.filename is not None and err.strerror:
            row = failed_row(spec, f"{err.filename}: {err.strerror}", internal=False)
        else:
            row = failed_row(spec, f"{type(err).__name__}: {err}; rerun with --debug for the traceback", internal=True)
    atomic_write_json(Path(cell_file).with_name(CELL_RESULT_FILE), row)
    return 0


# ---------------------------------------------------------------------------------------
# The grid, in the calling process.


def started_with_other_config(run_dir: Path, fingerprint: str) -> bool:
    """Whether `run_dir` holds a cell started under another configuration: its cell file
    names another fingerprint, or is unreadable. A cell absent from results.jsonl (a killed
    grid, or a grid file that lists other cells) would otherwise be resumed as it stands."""
    spec_file = run_dir / CELL_FILE
    if not spec_file.exists():
        return False
    try:
        return json.loads(spec_file.read_text(encoding="utf-8")).get("fingerprint") != fingerprint
    except (OSError, ValueError, AttributeError):
        return True


def _run_cell_process(cell: Cell, n_bootstrap: int, progress: bool | ProgressMode, debug: bool = False,
                      engine: str = "pytorch", compute_type: str | None = None) -> dict[str, Any]:
    run_dir = Path(cell.config.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": cell.name, "method": cell.spec.method, "settings": cell.spec.settings, "fingerprint": cell.fingerprint,
        "n_bootstrap": n_bootstrap, "config": config_to_dict(cell.config), "engine": engine, "compute_type": compute_type,
    }
    atomic_write_json(run_dir / CELL_FILE, spec, default=str)
    result_file = run_dir / CELL_RESULT_FILE
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "mtadapt.compare.runner", str(run_dir / CELL_FILE)]
    if progress_mode(progress) != "bar":  # the cell logs lines (or stays quiet) instead of drawing bars
        command.append("--no-progress" if progress_mode(progress) == "log" else "--quiet")
    if debug:
        command.append("--debug")
    env = dict(os.environ)
    # Corpora built at run time (e.g. `bible:` paths) go into the compare folder, next to the results.
    env.setdefault(CORPUS_DIR_ENV, str(run_dir.parent.parent / "data"))
    rc = subprocess.call(command, env=env)
    if rc == 130:
        raise KeyboardInterrupt
    if rc == 0 and result_file.exists():
        return json.loads(result_file.read_text(encoding="utf-8"))
    # the process died without writing its row: killed (the OOM killer sends SIGKILL) or crashed
    how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}"
    hint = " (out of memory?)" if rc == -signal.SIGKILL else ""
    return failed_row(spec, f"the cell process {how}{hint} without a result; its output is above, "
                            f"its run folder is {run_dir}", internal=rc != -signal.SIGKILL)


def failed_cells(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of cells that failed (status "failed"), in grid order."""
    return [r for r in rows if r.get("status") == "failed"]


def add_comparisons(rows: list[dict[str, Any]], output_dir: Path, n_bootstrap: int) -> None:
    """Paired bootstrap (sacreBLEU, `n_bootstrap` resamples) of every finished cell against the
    untuned baseline (the first `none` cell) and full fine-tuning (the first `full` cell), in place."""
    from mtadapt.evaluate.metrics import paired_bootstrap

    done = [r for r in rows if r.get("status") == "done"]
    hyps = {r["name"]: read_lines(output_dir / "cells" / r["name"] / "test.hyp", "hypotheses") for r in done}
    refs = {r["name"]: read_lines(output_dir / "cells" / r["name"] / "test.ref", "references") for r in done}
    for reference_method, key in (("none", "vs_baseline"), ("full", "vs_full")):
        reference = next((r["name"] for r in done if r["method"] == reference_method), None)
        for r in rows:
            r.pop(key, None)
        if reference is None:
            continue
        systems = {n: h for n, h in hyps.items() if n != reference and refs[n] == refs[reference]}
        if not systems:
            continue
        # sacreBLEU names the reference "baseline"; prefix the cells so none collides with it
        tests = paired_bootstrap(hyps[reference], {f"cell:{n}": h for n, h in systems.items()}, refs[reference],
                                 n_samples=n_bootstrap)
        for r in done:
            if r["name"] in systems:
                t = tests[f"cell:{r['name']}"]
                r[key] = {"reference": reference, "resamples": n_bootstrap, **{
                    metric: {"delta": t[metric]["score"] - tests["baseline"][metric]["score"], "p_value": t[metric]["p_value"]}
                    for metric in ("BLEU", "chrF")
                }}


def run_compare(config: CompareConfig, cells: list[Cell], progress: bool | ProgressMode = True, source: str = "",
                debug: bool = False) -> list[dict[str, Any]]:
    """Run every unfinished cell, then write results.jsonl (with the paired tests), report.md,
    report.html and the plots into `config.output_dir`. Returns the rows in grid order.

    A cell that fails is a row with status "failed" and its one-line error (`failed_cells`);
    the grid goes on, and a rerun runs it again. `debug`: cells print the traceback of a failure.

    A cell already in results.jsonl with the same fingerprint is not run again; a cell whose
    configuration changed is rerun from scratch; a cell killed mid-training resumes from its
    last checkpoint. The output folder is locked while the grid runs (`mtadapt.io.folder_lock`):
    a second compare into it is refused, naming this one's PID.
    """
    with folder_lock(config.output_dir, "compare folder"):
        return _run_compare(config, cells, progress, source, debug)


def _run_compare(config: CompareConfig, cells: list[Cell], progress: bool | ProgressMode, source: str,
                 debug: bool = False) -> list[dict[str, Any]]:
    from mtadapt.compare.report import write_report

    out = Path(config.output_dir)
    results_path = out / RESULTS_FILE
    finished = {r["name"]: r for r in read_results(results_path) if r.get("status") in ("done", "unsupported")}
    rows_by_name: dict[str, dict[str, Any]] = {}
    todo = []
    for cell in cells:
        row = finished.get(cell.name)
        if row is not None and row.get("fingerprint") == cell.fingerprint:
            rows_by_name[cell.name] = row
        else:
            todo.append(cell)
            if row is not None or started_with_other_config(Path(cell.config.train.output_dir), cell.fingerprint):
                # the recipe changed this cell: start it over (resuming would continue, or
                # reuse, a run of other settings whose shapes happen to fit)
                shutil.rmtree(Path(cell.config.train.output_dir), ignore_errors=True)
    _write_rows(results_path, [rows_by_name[c.name] for c in cells if c.name in rows_by_name])
    if rows_by_name:
        print(f"[compare] {len(rows_by_name)} of {len(cells)} cells already finished in {results_path}: "
              f"{', '.join(rows_by_name)}", flush=True)
    grid_start = time.perf_counter()
    durations: list[float] = []
    for k, cell in enumerate(todo):
        index = cells.index(cell) + 1
        left = len(todo) - k
        eta = f", grid ETA {_format_seconds(sum(durations) / len(durations) * left)}" if durations else ""
        what = cell.spec.method + (" " + ", ".join(f"{a}={b}" for a, b in cell.spec.settings.items()) if cell.spec.settings else "")
        print(f"[compare] cell {index}/{len(cells)} {cell.name!r} ({what}); "
              f"{cell.config.train.max_steps if cell.trains else 0} steps; elapsed {_format_seconds(time.perf_counter() - grid_start)}{eta}",
              flush=True)
        cell_start = time.perf_counter()
        row = _run_cell_process(cell, config.n_bootstrap, progress, debug, config.engine, config.compute_type)
        if cell.trains and row.get("status") == "done":  # a failed cell's seconds say nothing of the rest
            durations.append(time.perf_counter() - cell_start)
        rows_by_name[cell.name] = row
        append_line(results_path, json.dumps(row), fsync=True)
        if row["status"] == "done":
            bleu = row["scores"]["BLEU"]["score"]
            print(f"[compare] cell {cell.name!r} done in {_format_seconds(time.perf_counter() - cell_start)}: test BLEU {bleu:.2f}", flush=True)
        else:
            print(f"[compare] cell {cell.name!r} {row['status']}: {row.get('reason', '')}", flush=True)
    rows = [rows_by_name[c.name] for c in cells]
    add_comparisons(rows, out, config.n_bootstrap)
    _write_rows(results_path, rows)
    write_report(rows, out, title=config.title, source=source)
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m mtadapt.compare.runner CELL.json [--no-progress | --quiet] [--debug]`: one cell
    (used by the runner); --no-progress: log lines instead of bars, --quiet: neither; --debug: the
    traceback of a failure."""
    args = list(sys.argv[1:] if argv is None else argv)
    progress: ProgressMode = "log" if "--no-progress" in args else "off" if "--quiet" in args else "bar"
    debug = "--debug" in args
    args = [a for a in args if a not in ("--no-progress", "--quiet", "--debug")]
    if len(args) != 1:
        print("usage: python -m mtadapt.compare.runner CELL.json [--no-progress | --quiet] [--debug]", file=sys.stderr)
        return 2
    return _cell_main(args[0], progress, debug)


if __name__ == "__main__":
    raise SystemExit(main())
