"""sacreBLEU metrics with signatures, bootstrap confidence intervals and paired tests.

Everything is computed by sacreBLEU itself; this module only chooses settings and shapes
the results into plain dicts that reports and logs can store.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Literal

from sacrebleu.metrics import BLEU, CHRF

from mtadapt.errors import DataError


@dataclass
class Score:
    """One metric on one system.

    Attributes:
        name: "BLEU", "chrF" or "chrF++".
        score: Corpus score.
        signature: sacreBLEU's signature string (how to reproduce the number).
        ci_low / ci_high: 95% bootstrap interval (mean ± 1.96 sd over resamples) when asked.
    """

    name: str
    score: float
    signature: str
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _float_scores(metric: BLEU | CHRF) -> BLEU | CHRF:
    """`metric`, its per-resample scores made Python floats.

    sacreBLEU 2.x scores a bootstrap resample with no matching n-gram as a Python 0.0 and the
    others as NumPy floats, and `statistics.mean` refuses that mix ("TypeError: don't know how
    to coerce float and float32"): small files (2 lines) crash the confidence interval.
    """
    compute = metric._compute_score_from_stats

    def compute_float(stats):  # same score, as a Python float
        result = compute(stats)
        result.score = float(result.score)
        return result

    metric._compute_score_from_stats = compute_float
    return metric


def _metrics() -> dict[str, BLEU | CHRF]:
    return {name: _float_scores(m) for name, m in {"BLEU": BLEU(), "chrF": CHRF(), "chrF++": CHRF(word_order=2)}.items()}


def check_lengths(hypotheses: list[str], references: list[str], where: str = "hypotheses") -> None:
    """Raises DataError unless the two lists are line-aligned (and not empty)."""
    if not references:
        raise DataError("the references are empty: nothing to score")
    if len(hypotheses) != len(references):
        raise DataError(
            f"{where} have {len(hypotheses)} lines but the references have {len(references)}; "
            "they must be line-aligned"
        )


def corpus_scores(
    hypotheses: list[str], references: list[str], n_bootstrap: int = 0, seed: int = 12345
) -> dict[str, Score]:
    """BLEU, chrF and chrF++ of `hypotheses` against one reference each.

    Args:
        n_bootstrap: When > 1, resample this many times for 95% confidence intervals.
        seed: sacreBLEU reads its resampling seed from SACREBLEU_SEED.
    """
    check_lengths(hypotheses, references)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0 (0 = no intervals), got {n_bootstrap}")
    os.environ["SACREBLEU_SEED"] = str(seed)
    out = {}
    for name, metric in _metrics().items():
        result = metric.corpus_score(hypotheses, [references], n_bootstrap=n_bootstrap or 1)
        score = Score(name, float(result.score), str(metric.get_signature()))
        if n_bootstrap > 1:
            score.ci_low = float(result._mean - result._ci)
            score.ci_high = float(result._mean + result._ci)
        out[name] = score
    return out


def paired_bootstrap(
    baseline: list[str],
    systems: dict[str, list[str]],
    references: list[str],
    n_samples: int = 1000,
    seed: int = 12345,
    metrics: tuple[str, ...] = ("BLEU", "chrF"),
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired bootstrap resampling (Koehn 2004) of each system against `baseline`, with
    sacreBLEU's own implementation (`sacrebleu.significance.PairedTest`).

    Args:
        metrics: Any of "BLEU", "chrF", "chrF++" (each adds its resampling cost).

    Returns:
        {system: {"BLEU": {"score", "p_value", "mean", "ci"}, "chrF": {...}}} for `metrics`; p_value is the
        probability that the difference to the baseline arose by chance: 1.0 for a system
        that scores exactly the baseline's score (sacreBLEU counts resampled differences
        strictly larger than the observed one, so it gives a tie its smallest p, 1 / (n + 1)).
    """
    from sacrebleu.significance import PairedTest

    check_lengths(baseline, references, "baseline hypotheses")
    for name, hyps in systems.items():
        check_lengths(hyps, references, f"system {name!r}")
    known = _metrics()
    unknown = [m for m in metrics if m not in known]
    if unknown or not metrics:
        raise ValueError(f"paired_bootstrap metrics {list(metrics)!r}: valid names are {list(known)}")
    os.environ["SACREBLEU_SEED"] = str(seed)
    named = [("baseline", baseline)] + list(systems.items())
    test = PairedTest(named, {m: known[m] for m in metrics}, [references], test_type="bs", n_samples=n_samples)
    _, scores = test()
    # sacreBLEU names its columns "BLEU", "chrF2", "chrF2++", in the order of `metrics`: ours are the keys
    columns = dict(zip(metrics, (c for c in scores if c != "System"), strict=True))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, name in enumerate(scores["System"]):
        out[name] = {
            m: {
                "score": float(r.score),
                "p_value": None if r.p_value is None else float(r.p_value),
                "mean": None if r.mean is None else float(r.mean),
                "ci": None if r.ci is None else float(r.ci),
            }
            for m, column in columns.items() for r in [scores[column][i]]
        }
    for name, metrics_of in out.items():
        for metric, result in metrics_of.items():
            if name != "baseline" and result["p_value"] is not None:
                result["p_value"] = paired_verdict(result["score"] - out["baseline"][metric]["score"], result["p_value"]).p_value
    return out


SIGNIFICANCE_LEVEL = 0.05
"""p below this: the difference to the baseline is called significant."""

MIN_SIGNIFICANT_RESAMPLES = math.ceil(1 / SIGNIFICANCE_LEVEL)
"""Fewest resamples whose smallest p, 1 / (n + 1), is below SIGNIFICANCE_LEVEL (20)."""


@dataclass(frozen=True)
class PairedVerdict:
    """What a paired test says about a system against its baseline (`paired_verdict`).

    Attributes:
        direction: "better", "worse" (system minus baseline above or below 0) or "same" (0).
        significant: the difference is real at the level asked for (never for "same").
        p_value: the test's p; 1.0 for a zero difference; None when there was no test.
    """

    direction: Literal["better", "worse", "same"]
    significant: bool
    p_value: float | None


def paired_verdict(delta: float, p_value: float | None, alpha: float = SIGNIFICANCE_LEVEL) -> PairedVerdict:
    """The one rule by which `evaluate --baseline` and `compare` read a paired test:

        delta == 0               -> "same", not significant, p = 1  (whatever p the test gave)
        delta != 0, p < alpha    -> "better" / "worse", significant
        delta != 0, otherwise    -> "better" / "worse", not significant  (p >= alpha, or no test)

    A zero difference is no evidence of one: sacreBLEU's test gives two identical outputs its
    smallest p, 1 / (n + 1), as no resampled difference is strictly larger than 0.
    """
    if delta == 0:
        return PairedVerdict("same", False, 1.0)
    direction = "better" if delta > 0 else "worse"
    return PairedVerdict(direction, p_value is not None and p_value < alpha, p_value)


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def significance_report(
    paired: dict[str, dict[str, dict[str, float]]],
    n_samples: int,
    system: str = "system",
    alpha: float = SIGNIFICANCE_LEVEL,
) -> dict:
    """What a `paired_bootstrap` result says about one system against the baseline, in
    fields and in plain sentences (the CLI prints the sentences; `--json` carries them all).

    sacreBLEU's test (Koehn 2004, as Moses' bootstrap-hypothesis-difference-significance.pl)
    is two-sided: its statistic is |system - baseline| on each of `n_samples` paired
    resamples of the test set, and p is the share of resampled differences, centred on
    their mean, larger than the observed one, (c + 1) / (n_samples + 1): never below
    1 / (n_samples + 1).

    Returns:
        {"test", "sided", "resamples", "alpha", "min_p_value", "null_hypothesis", "header",
        "metrics": {"BLEU": {"baseline", "system", "delta", "p_value", "significant",
        "verdict" ("better" | "worse" | "same"), "summary"}, "chrF": {...}}}.
    """
    min_p = 1.0 / (n_samples + 1)
    unreachable = (f": no difference can be significant with fewer than {MIN_SIGNIFICANT_RESAMPLES}"
                   if min_p >= alpha else "")
    report: dict = {
        "test": "paired bootstrap resampling (Koehn 2004; sacreBLEU)",
        "sided": "two-sided",
        "resamples": n_samples,
        "alpha": alpha,
        "min_p_value": min_p,
        "null_hypothesis": "the system and the baseline score the same",
        "header": (f"paired bootstrap (sacreBLEU, two-sided, {n_samples} resamples; p < {alpha:g} = significant, "
                   f"smallest possible p {min_p:.4f}{unreachable}):"),
        "metrics": {},
    }
    for metric in ("BLEU", "chrF"):
        base = paired["baseline"][metric]["score"]
        score = paired[system][metric]["score"]
        delta = score - base
        judged = paired_verdict(delta, paired[system][metric]["p_value"], alpha)
        verdict, significant, p = judged.direction, judged.significant, judged.p_value
        numbers = f"baseline {base:.2f} -> system {score:.2f} ({_signed(delta)})"
        p_text = "p = n/a" if p is None else f"p = {p:.4f}"
        if verdict == "same":
            summary = f"{metric}: the system and the baseline score the same, {base:.2f} ({p_text})"
        elif significant:
            word = "WORSE" if verdict == "worse" else "better"
            summary = f"{metric}: the system is {word} than the baseline: {numbers}, {p_text} < {alpha:g}, significant"
        else:
            word = "lower" if verdict == "worse" else "higher"
            why = "no test ran (p = n/a)" if p is None else f"{p_text} >= {alpha:g}"
            summary = (f"{metric}: the system scores {word} than the baseline, {numbers}, but the difference is "
                       f"not significant ({why})")
        report["metrics"][metric] = {"baseline": base, "system": score, "delta": delta, "p_value": p,
                                     "significant": significant, "verdict": verdict, "summary": summary}
    return report
