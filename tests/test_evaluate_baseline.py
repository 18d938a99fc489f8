"""`evaluate --baseline`: says which test ran (two-sided paired bootstrap, resamples), says
plainly when the system is worse, and `--json` carries the same fields and sentences."""

from __future__ import annotations

import json

import pytest

from mtadapt.cli import main
from mtadapt.evaluate.metrics import paired_bootstrap, significance_report
from mtadapt.toy import toy_corpus_dir


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path):
    refs = (toy_corpus_dir() / "test.en").read_text(encoding="utf-8").split("\n")[:-1]
    # worse: the last word of 60 of the 100 sentences dropped; slightly worse: of one only
    worse = [" ".join(r.split()[:-1]) if i < 60 else r for i, r in enumerate(refs)]
    slightly = [" ".join(r.split()[:-1]) if i == 0 else r for i, r in enumerate(refs)]
    return {"refs": refs, "ref": write(tmp_path / "ref.en", refs), "good": write(tmp_path / "good.en", refs),
            "worse": write(tmp_path / "worse.en", worse), "slightly": write(tmp_path / "slightly.en", slightly),
            "worse_lines": worse}


def evaluate(capsys, hyp, files, *extra):
    assert main(["evaluate", "--hyp", hyp, "--ref", files["ref"], "--n-bootstrap", "200", *extra]) == 0
    return capsys.readouterr().out


def test_a_significantly_worse_system_is_called_worse(files, capsys):
    out = evaluate(capsys, files["worse"], files, "--baseline", files["good"]).split("\n")
    header = next(i for i, line in enumerate(out) if line.startswith("paired bootstrap"))
    assert out[header] == ("paired bootstrap (sacreBLEU, two-sided, 200 resamples; p < 0.05 = significant, "
                           "smallest possible p 0.0050):")
    pb = paired_bootstrap(files["refs"], {"system": files["worse_lines"]}, files["refs"], n_samples=200)
    bleu, base = pb["system"]["BLEU"], pb["baseline"]["BLEU"]
    assert base["score"] == pytest.approx(100.0) and bleu["score"] < 95 and bleu["p_value"] == pytest.approx(1 / 201)
    assert out[header + 1] == (f"  BLEU: the system is WORSE than the baseline: baseline 100.00 -> system {bleu['score']:.2f} "
                               f"({bleu['score'] - 100:+.2f}), p = 0.0050 < 0.05, significant")
    assert out[header + 2].startswith("  chrF: the system is WORSE than the baseline: baseline 100.00 -> system ")

    data = json.loads(evaluate(capsys, files["worse"], files, "--baseline", files["good"], "--json"))
    sig = data["significance"]
    assert (sig["sided"], sig["resamples"], sig["alpha"]) == ("two-sided", 200, 0.05)
    assert sig["min_p_value"] == pytest.approx(1 / 201)
    m = sig["metrics"]["BLEU"]
    assert (m["verdict"], m["significant"]) == ("worse", True)
    assert m["delta"] == pytest.approx(bleu["score"] - 100.0) and m["p_value"] == pytest.approx(bleu["p_value"])
    assert "  " + m["summary"] == out[header + 1] and sig["header"] == out[header]
    assert data["paired_bootstrap"]["system"]["BLEU"]["p_value"] == pytest.approx(bleu["p_value"])


def test_a_slightly_worse_system_is_lower_but_not_significant(files, capsys):
    out = evaluate(capsys, files["slightly"], files, "--baseline", files["good"])
    line = next(line for line in out.split("\n") if line.startswith("  BLEU:"))
    assert line.startswith("  BLEU: the system scores lower than the baseline, baseline 100.00 -> system 99.")
    assert line.endswith(">= 0.05)") and "but the difference is not significant (p = " in line
    data = json.loads(evaluate(capsys, files["slightly"], files, "--baseline", files["good"], "--json"))
    m = data["significance"]["metrics"]["BLEU"]
    assert (m["verdict"], m["significant"]) == ("worse", False) and m["p_value"] >= 0.05


def test_a_better_system_and_an_equal_one(files, capsys):
    out = evaluate(capsys, files["good"], files, "--baseline", files["worse"])
    assert "  BLEU: the system is better than the baseline: baseline " in out and "WORSE" not in out
    out = evaluate(capsys, files["good"], files, "--baseline", files["good"])
    assert "  BLEU: the system and the baseline score the same, 100.00 (p = " in out


def test_the_issue_example_reads_right():
    paired = {"baseline": {"BLEU": {"score": 71.78, "p_value": None}, "chrF": {"score": 80.0, "p_value": None}},
              "system": {"BLEU": {"score": 71.01, "p_value": 0.0839}, "chrF": {"score": 80.5, "p_value": 0.01}}}
    report = significance_report(paired, 1000)
    assert report["metrics"]["BLEU"]["summary"] == (
        "BLEU: the system scores lower than the baseline, baseline 71.78 -> system 71.01 (-0.77), "
        "but the difference is not significant (p = 0.0839 >= 0.05)")
    assert report["metrics"]["chrF"]["summary"] == (
        "chrF: the system is better than the baseline: baseline 80.00 -> system 80.50 (+0.50), p = 0.0100 < 0.05, significant")
