"""`mtadapt compare`: a two-cell grid on a tiny model, killed mid-grid and resumed; the report
shows exactly the numbers in results.jsonl; recipe errors are collected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mtadapt.compare.grid import load_compare_recipe
from mtadapt.compare.report import COLUMNS, verdict
from mtadapt.config import ConfigError
from mtadapt.models.loading import load_model
from mtadapt.train.loop import apply_method

# one worker runs the whole module: its expensive module-scoped fixture is built once (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_compare")

BASE = {
    "model": {"name_or_path": "tiny:m2m100"},
    "data": {
        "src_lang": "de", "tgt_lang": "en",
        "train": {"paths": ["toy:train"]}, "dev": {"paths": ["toy:dev"]}, "test": {"paths": ["toy:test"], "limit": 30},
        "max_tokens": 128, "max_dev_sentences": 10,
    },
    "train": {"max_steps": 20, "warmup_steps": 2, "eval_every": 10, "save_every": 2, "log_every": 2,
              "learning_rate": 3.0e-3, "keep_checkpoints": 1},
    "generation": {"max_length_factor": 1.5},
}


def _recipe(tmp_path: Path, cells: list[dict], **extra) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "n_bootstrap": 100, "base": BASE,
                                    "cells": cells, **extra}), encoding="utf-8")
    return path


def _compare(recipe: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtadapt.cli", "compare", str(recipe), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """Run [baseline, lora], SIGKILL the whole process group once the LoRA cell has
    written a checkpoint, run again to completion, then once more (nothing left to run)."""
    tmp_path = tmp_path_factory.mktemp("compare")
    recipe = _recipe(tmp_path, [{"name": "baseline", "method": "none"},
                                {"name": "lora", "method": "lora", "settings": {"rank": 4}}])
    out = tmp_path / "out"
    first = _compare(recipe, start_new_session=True)  # own group: the kill reaches the cell process too
    checkpoints = out / "cells" / "lora" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        if checkpoints.exists() and any(p.name.startswith("step-") and not p.name.endswith(".tmp") for p in checkpoints.iterdir()):
            break
        time.sleep(0.05)
    assert first.poll() is None, f"the grid ended before it could be killed:\n{first.stdout.read()}"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    rows_after_kill = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    second = _compare(recipe)
    log, _ = second.communicate(timeout=300)
    assert second.returncode == 0, log
    third = _compare(recipe)
    log3, _ = third.communicate(timeout=120)
    assert third.returncode == 0, log3
    return out, rows_after_kill, log, log3


def test_killed_grid_resumes_without_rerunning_finished_cells(killed_and_resumed):
    out, rows_after_kill, log, log3 = killed_and_resumed
    assert [r["name"] for r in rows_after_kill] == ["baseline"]  # killed inside the LoRA cell
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in rows] == [("baseline", "done"), ("lora", "done")]
    # the finished baseline is not run again: same row, same measured seconds
    assert rows[0]["cell_seconds"] == rows_after_kill[0]["cell_seconds"]
    assert "1 of 2 cells already finished" in log and "cell 2/2 'lora'" in log and "cell 1/2" not in log
    assert "resumed from" in log and rows[1]["steps"] == 20  # the LoRA cell continued from its checkpoint
    assert "2 of 2 cells already finished" in log3 and "[compare] cell " not in log3
    lora = rows[1]
    loaded = load_model("tiny:m2m100")
    apply_method(loaded, "lora", {"rank": 4})
    assert lora["trainable"] == sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    assert lora["total"] == sum(p.numel() for p in loaded.model.parameters())
    assert lora["adapter_bytes"] > lora["trainable"] * 4  # fp32 tensors + header + config
    assert lora["peak_rss_mb"] > 50 and lora["tokens_per_second"] > 0
    assert [h["step"] for h in lora["dev_history"]] == [10, 20]
    assert [h["step"] for h in rows[0]["dev_history"]] == [0]  # the untuned dev score starts the curves


def test_report_shows_the_numbers_of_results_jsonl(killed_and_resumed):
    out, *_ = killed_and_resumed
    rows = {r["name"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    lines = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    table = {cells[0]: dict(zip(COLUMNS, cells)) for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}
    assert set(table) == {"baseline", "lora"}
    for name, row in rows.items():
        shown = table[name]
        bleu, chrf = row["scores"]["BLEU"], row["scores"]["chrF"]
        assert shown["test BLEU [95% CI]"] == f"{bleu['score']:.2f} [{bleu['ci_low']:.2f}, {bleu['ci_high']:.2f}]"
        assert shown["test chrF [95% CI]"] == f"{chrf['score']:.2f} [{chrf['ci_low']:.2f}, {chrf['ci_high']:.2f}]"
        assert shown["trainable"] == f"{row['trainable']:,}"
    # the paired test: LoRA against the untuned baseline, with the score difference
    vs = rows["lora"]["vs_baseline"]
    assert vs["reference"] == "baseline" and 0 <= vs["BLEU"]["p_value"] <= 1
    assert vs["BLEU"]["delta"] == pytest.approx(rows["lora"]["scores"]["BLEU"]["score"] - rows["baseline"]["scores"]["BLEU"]["score"], abs=1e-6)
    assert table["lora"]["ΔBLEU vs base (p)"] == f"{vs['BLEU']['delta']:+.2f} (p={vs['BLEU']['p_value']:.3f})"
    assert table["lora"]["verdict"] == verdict(rows["lora"]) and table["baseline"]["verdict"] == verdict(rows["baseline"])
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<td>lora</td>" in page


def _row(method: str, vs_base: tuple[float, float] | None, vs_full: tuple[float, float] | None = None) -> dict:
    row = {"name": method, "method": method, "status": "done"}
    for key, pair in (("vs_baseline", vs_base), ("vs_full", vs_full)):
        if pair is not None:
            row[key] = {"BLEU": {"delta": pair[0], "p_value": pair[1]}}
    return row


def test_verdict_reads_the_paired_tests():
    assert verdict(_row("full", (2.314, 0.001))) == "better than the untuned model (+2.31 BLEU, p=0.001)"
    assert verdict(_row("lora", (1.9, 0.004), (-0.41, 0.2))) == (
        "better than the untuned model (+1.90 BLEU, p=0.004); level with full (-0.41, p=0.200)")
    assert verdict(_row("prefix", (-9.9, 0.001), (-12.2, 0.001))) == (
        "worse than the untuned model (-9.90 BLEU, p=0.001); below full by 12.20 (p=0.001)")
    assert verdict(_row("houlsby", (0.3, 0.05))).startswith("no significant change from the untuned model (+0.30 BLEU, p=0.050)")
    assert verdict(_row("none", None)) == "the untuned model: the reference"
    assert verdict({"name": "x", "method": "bitfit", "status": "unsupported"}) == "not measured (unsupported)"
    assert verdict(_row("lora", None)) == "no untuned baseline in the grid to compare with"


def test_recipe_errors_are_collected_per_cell(tmp_path):
    recipe = _recipe(tmp_path, [
        {"name": "a", "method": "lora", "settings": {"rnak": 8}},
        {"name": "a", "method": "full"},
        {"name": "b", "method": "adapterz"},
        {"name": "c", "method": "full", "train": {"learning_rate": -1}},
    ])
    with pytest.raises(ConfigError) as err:
        load_compare_recipe(recipe)
    text = str(err.value)
    assert "rnak" in text and "used twice" in text and "'adapterz' is not one of" in text
    line = next(i for i, text_line in enumerate(recipe.read_text().splitlines(), 1) if "learning_rate: -1" in text_line)
    assert f"{recipe}:{line}: cells[3].train.learning_rate must be > 0" in text  # the cell's own key, at its line


def test_a_cell_folder_of_other_settings_is_not_resumed(tmp_path):
    # A cell missing from results.jsonl (a killed grid, or a results file of another cell
    # list) is resumed from its folder, unless that folder was started with other settings.
    from mtadapt.compare.runner import CELL_FILE, started_with_other_config

    assert not started_with_other_config(tmp_path / "absent", "abc")
    (tmp_path / CELL_FILE).write_text(json.dumps({"name": "p", "fingerprint": "abc"}), encoding="utf-8")
    assert not started_with_other_config(tmp_path, "abc")
    assert started_with_other_config(tmp_path, "abd")
    (tmp_path / CELL_FILE).write_text('{"fingerprint": "ab', encoding="utf-8")  # cut short by a kill
    assert started_with_other_config(tmp_path, "abc")


def test_tied_cells_are_the_same_and_the_resamples_asked_for_are_used(tmp_path):
    from mtadapt.compare.report import table_rows
    from mtadapt.compare.runner import add_comparisons
    from mtadapt.toy import toy_corpus_dir

    refs = (toy_corpus_dir() / "test.en").read_text(encoding="utf-8").splitlines()[:40]
    worse = [" ".join(r.split()[:-1]) if i < 30 else r for i, r in enumerate(refs)]
    for name, hyps in {"base": worse, "full": refs, "lora": worse}.items():  # lora's output is the untuned model's
        folder = tmp_path / "cells" / name
        folder.mkdir(parents=True)
        (folder / "test.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        (folder / "test.ref").write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    rows = [{"name": name, "method": method, "status": "done"} for name, method in
            (("base", "none"), ("full", "full"), ("lora", "lora"))]
    add_comparisons(rows, tmp_path, n_bootstrap=10)
    base, full, lora = rows
    assert lora["vs_baseline"]["BLEU"] == {"delta": 0.0, "p_value": 1.0}  # sacreBLEU alone says 1 / 11 for a tie
    assert full["vs_baseline"]["BLEU"]["delta"] > 5
    assert full["vs_baseline"]["BLEU"]["p_value"] == pytest.approx(1 / 11)  # 10 resamples, as asked (not 100)
    assert lora["vs_baseline"]["resamples"] == full["vs_baseline"]["resamples"] == 10
    below = lora["vs_full"]["BLEU"]["delta"]
    assert verdict(lora) == f"the same as the untuned model (+0.00 BLEU, p=1.000); level with full ({below:+.2f}, p=0.091)"
    score = {"score": 1.0, "signature": "-"}
    for r in rows:  # what a finished cell's row holds besides its tests
        r.update(trainable=0, total=1, adapter_bytes=0, peak_rss_mb=1.0, train_seconds=0.0, steps=0,
                 scores={"BLEU": score, "chrF": score})
    assert dict(zip(COLUMNS, table_rows(rows)[2]))["ΔBLEU vs base (p)"] == "+0.00 (p=1.000)"


def test_paired_tests_without_resamples_are_refused(tmp_path):
    recipe = _recipe(tmp_path, [{"name": "baseline", "method": "none"}, {"name": "lora", "method": "lora"}], n_bootstrap=0)
    with pytest.raises(ConfigError) as err:
        load_compare_recipe(recipe)
    line = recipe.read_text().splitlines().index("n_bootstrap: 0") + 1
    assert (f"{recipe}:{line}: n_bootstrap is 0, but the paired tests against the untuned (none) and full cells need "
            "resamples; give n_bootstrap >= 1 (from 20 a difference can reach p < 0.05; 1000 is usual)") in str(err.value)


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(tmp_path):
    """Issue 29 item 9: a cell whose loss becomes NaN stopped the whole grid with a traceback and
    "internal error", no later cell ran and no report was written. Now it is a "failed" row with
    its one-line error, the next cell runs, the report shows both, and the exit status is 2."""
    recipe = _recipe(tmp_path, [
        {"name": "diverges", "method": "lora", "settings": {"rank": 2}, "train": {"learning_rate": 1.0e30, "max_steps": 4}},
        {"name": "baseline", "method": "none"},
    ])
    process = _compare(recipe)
    log, _ = process.communicate(timeout=300)
    assert process.returncode == 2, log
    assert "Traceback" not in log and "internal error" not in log
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in rows] == [("diverges", "failed"), ("baseline", "done")]
    reason = rows[0]["reason"]
    assert "\n" not in reason and rows[0]["internal"] is False
    assert reason.startswith("step ") and "the training loss is nan" in reason and "Lower train.learning_rate (now 1e+30)" in reason
    assert f"error: cell 'diverges' failed: {reason}\n" in log and "error: 1 of 2 cells failed" in log
    report = (out / "report.md").read_text()
    assert f"| diverges | lora | rank=2 | failed: {reason} | -" in report and "| baseline | none |" in report
    assert "not measured (failed)" in report


def test_a_cell_that_raises_a_bug_or_dies_is_a_failed_row(tmp_path, monkeypatch, capsys):
    """Inside the cell process an unexpected exception becomes a row marked internal (the traceback
    only with --debug); a process killed without a row (the OOM killer) is a failed row too."""
    from mtadapt.compare import runner

    spec = {"name": "c", "method": "lora", "settings": {}, "fingerprint": "f"}
    (tmp_path / runner.CELL_FILE).write_text(json.dumps(spec), encoding="utf-8")

    def broken(spec, progress):
        raise RuntimeError("probability tensor contains\neither inf or nan")

    monkeypatch.setattr(runner, "run_cell", broken)
    assert runner.main([str(tmp_path / runner.CELL_FILE), "--quiet"]) == 0
    row = json.loads((tmp_path / runner.CELL_RESULT_FILE).read_text())
    assert row["status"] == "failed" and row["internal"] is True
    assert row["reason"] == ("internal error: RuntimeError: probability tensor contains either inf or nan; "
                             "rerun with --debug for the traceback")
    assert "Traceback" not in capsys.readouterr().err
    assert runner.main([str(tmp_path / runner.CELL_FILE), "--quiet", "--debug"]) == 0
    assert "Traceback" in capsys.readouterr().err

    config, cells = load_compare_recipe(_recipe(tmp_path, [{"name": "lora", "method": "lora"}]))
    monkeypatch.setattr(runner.subprocess, "call", lambda command, env: -signal.SIGKILL)
    row = runner._run_cell_process(cells[0], 10, "off")
    assert row["status"] == "failed" and row["internal"] is False
    assert row["reason"].startswith("the cell process was killed by SIGKILL (out of memory?) without a result")
    assert runner.failed_cells([row, {"status": "done"}]) == [row]


@pytest.mark.skipif(__import__("importlib").util.find_spec("ctranslate2") is None, reason="ctranslate2 not installed")
def test_ctranslate2_test_decoding_gives_pytorchs_float32_output(killed_and_resumed, tmp_path):
    """`engine: ctranslate2` in the recipe: the cell's test set is decoded by CTranslate2
    (float32 here), whose greedy output is PyTorch float32's; its row says which engine."""
    out, *_ = killed_and_resumed
    recipe = _recipe(tmp_path, [{"name": "baseline", "method": "none"}], engine="ctranslate2", compute_type="float32")
    done = _compare(recipe, env={**os.environ, "MTADAPT_CACHE": str(tmp_path / "cache")})
    log, _ = done.communicate(timeout=300)
    assert done.returncode == 0, log
    pytorch = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    assert (pytorch.get("engine", "pytorch"), pytorch["precision"]) == ("pytorch", "float32")
    assert (row["engine"], row["precision"]) == ("ctranslate2", "float32")
    ours = (tmp_path / "out" / "cells" / "baseline" / "test.hyp").read_text(encoding="utf-8")
    assert ours == (out / "cells" / "baseline" / "test.hyp").read_text(encoding="utf-8") and len(ours.splitlines()) == 30
    assert row["fingerprint"] != pytorch["fingerprint"]  # another engine: another result
