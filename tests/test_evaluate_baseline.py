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


# ---------------------------------------------- a zero difference, and the resamples asked for


def test_identical_outputs_score_the_same_never_significantly(files, capsys):
    # sacreBLEU gives a system identical to its baseline its smallest p, 1 / (n + 1): every
    # resampled difference is 0, none "larger" than the observed 0. That is no evidence of a
    # difference; a zero difference has p = 1.
    out = evaluate(capsys, files["good"], files, "--baseline", files["good"]).splitlines()
    assert "  BLEU: the system and the baseline score the same, 100.00 (p = 1.0000)" in out
    assert "  chrF: the system and the baseline score the same, 100.00 (p = 1.0000)" in out
    data = json.loads(evaluate(capsys, files["good"], files, "--baseline", files["good"], "--json"))
    m = data["significance"]["metrics"]["BLEU"]
    assert (m["verdict"], m["significant"], m["delta"], m["p_value"]) == ("same", False, 0.0, 1.0)
    assert data["paired_bootstrap"]["system"]["BLEU"]["p_value"] == 1.0


def test_one_verdict_rule_for_evaluate_and_compare():
    from mtadapt.compare.report import verdict
    from mtadapt.evaluate.metrics import PairedVerdict, paired_verdict

    assert paired_verdict(0.0, 1 / 101) == PairedVerdict("same", False, 1.0)
    assert paired_verdict(-0.5, 0.001) == PairedVerdict("worse", True, 0.001)
    assert paired_verdict(0.5, 0.2) == PairedVerdict("better", False, 0.2)
    assert paired_verdict(0.5, 0.05) == PairedVerdict("better", False, 0.05)  # p < alpha, strictly
    assert paired_verdict(0.5, None) == PairedVerdict("better", False, None)
    # results stored before the fix carry sacreBLEU's p for a tie: still "the same", p = 1
    paired = {"baseline": {"BLEU": {"score": 30.0}, "chrF": {"score": 50.0}},
              "system": {"BLEU": {"score": 30.0, "p_value": 1 / 101}, "chrF": {"score": 50.0, "p_value": 1 / 101}}}
    report = significance_report(paired, 100)
    assert report["metrics"]["BLEU"]["summary"] == "BLEU: the system and the baseline score the same, 30.00 (p = 1.0000)"
    assert (report["metrics"]["BLEU"]["significant"], report["metrics"]["BLEU"]["p_value"]) == (False, 1.0)
    row = {"name": "lora", "method": "lora", "status": "done",
           "vs_baseline": {"BLEU": {"delta": 0.0, "p_value": 1 / 101}}, "vs_full": {"BLEU": {"delta": 0.0, "p_value": 1 / 101}}}
    assert verdict(row) == "the same as the untuned model (+0.00 BLEU, p=1.000); the same as full (+0.00, p=1.000)"


def test_the_resamples_asked_for_are_the_resamples_used(files, capsys):
    argv = ["evaluate", "--hyp", files["worse"], "--ref", files["ref"], "--baseline", files["good"], "--n-bootstrap", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("paired bootstrap"))
    assert out[header] == ("paired bootstrap (sacreBLEU, two-sided, 10 resamples; p < 0.05 = significant, "
                           "smallest possible p 0.0909: no difference can be significant with fewer than 20):")
    assert out[header + 1].startswith("  BLEU: the system scores lower than the baseline, baseline 100.00 -> system ")
    assert out[header + 1].endswith("but the difference is not significant (p = 0.0909 >= 0.05)")
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["significance"]["resamples"] == 10
    assert data["paired_bootstrap"]["system"]["BLEU"]["p_value"] == pytest.approx(1 / 11)  # 10 resamples, not 100


def test_a_baseline_without_resamples_is_refused(files, capsys):
    argv = ["evaluate", "--hyp", files["worse"], "--ref", files["ref"], "--baseline", files["good"], "--n-bootstrap", "0"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "error: --baseline runs a paired bootstrap, which needs resamples: --n-bootstrap 0 turns them off; "
        "give --n-bootstrap N (from N = 20 a difference can reach p < 0.05; default 1000)\n")


def test_paired_bootstrap_can_test_chrf_plus_plus_and_names_the_valid_metrics(files):
    from mtadapt.evaluate.metrics import corpus_scores

    pb = paired_bootstrap(files["refs"], {"system": files["worse_lines"]}, files["refs"], n_samples=100,
                          metrics=("BLEU", "chrF", "chrF++"))
    scores = corpus_scores(files["worse_lines"], files["refs"])
    assert list(pb["system"]) == ["BLEU", "chrF", "chrF++"]
    for metric in ("BLEU", "chrF", "chrF++"):  # the same corpus scores as corpus_scores, under our names
        assert pb["system"][metric]["score"] == pytest.approx(scores[metric].score)
        assert pb["system"][metric]["p_value"] == pytest.approx(1 / 101)
    assert scores["chrF++"].score != pytest.approx(scores["chrF"].score)
    with pytest.raises(ValueError, match=r"\['TER'\]: valid names are \['BLEU', 'chrF', 'chrF\+\+'\]"):
        paired_bootstrap(files["refs"], {"system": files["worse_lines"]}, files["refs"], metrics=("TER",))
