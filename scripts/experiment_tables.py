"""Markdown tables of the issue 6 (back-translation) and issue 7 (multi-task) experiments,
recomputed from the saved test hypotheses (sacreBLEU BLEU/chrF, paired bootstrap with 1,000
resamples, sacreBLEU's implementation) and the runs' own result.json / metrics.jsonl.

    python scripts/experiment_tables.py bt [--root .]      # runs/bt-*, data/bible-bt
    python scripts/experiment_tables.py multitask [--root .]  # runs/mt-*
    python scripts/experiment_tables.py multitask27 [--root .] [--max-steps N] [--seed N | --over-seeds 0,1] [--plot PNG]  # runs/mt27-* (issue 27, item 3)
    python scripts/experiment_tables.py bt-scale --root . --runs runs/bt25k --data data/bible-bt-25k [--seed N | --over-seeds 0,1,2]  # items 1-2
    python scripts/experiment_tables.py noise --root . --runs runs/ui --data data/ui-pt-en [--seed N | --over-seeds 0,1]  # item 4
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from mtadapt.evaluate.metrics import corpus_scores, paired_bootstrap

BT_SYSTEMS = [
    ("bt-base", "untuned student", "-"),
    ("bt-real", "real pairs only", "2,000"),
    ("bt-real-noise", "real, source noise on the fly", "2,000"),
    ("bt-beam", "+ beam BT", "2 x 2,000 + BT"),
    ("bt-tagged", "+ tagged beam BT", "2 x 2,000 + BT"),
    ("bt-sample", "+ sampled BT (top-10)", "2 x 2,000 + BT"),
    ("bt-noised", "+ noised beam BT", "2 x 2,000 + BT"),
]
LANGS = ["pt", "es", "fr", "it"]
MT_SYSTEMS = ["mt-base", "mt-single-pt", "mt-single-es", "mt-single-fr", "mt-single-it", "mt-multi-T1", "mt-multi-T5"]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _best_dev(run: Path, key: str = "dev_bleu") -> str:
    path = run / "metrics.jsonl"
    if not path.exists():
        return "-"
    values = [json.loads(line).get(key) for line in _lines(path)]
    values = [v for v in values if v is not None]
    return f"{max(values):.2f}" if values else "-"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _delta(hyps: list[str], base: list[str], refs: list[str]) -> str:
    result = paired_bootstrap(base, {"s": hyps}, refs)["s"]["BLEU"]
    base_score = corpus_scores(base, refs)["BLEU"].score
    return f"{result['score'] - base_score:+.2f} (p={_p(result['p_value'])})"


def bt_table(root: Path, suffix: str = "") -> str:
    """One row per system; `suffix` "-s1" reads the seed-1 runs (`SEED=1`), whose untuned row
    is the same model and so is taken from `bt-base`."""
    refs = _lines(root / "data/bible-bt/test.en")
    hyps = {}
    for name, _, _ in BT_SYSTEMS:
        path = root / "runs" / (name if name == "bt-base" else name + suffix) / "test.hyp"
        if path.exists():
            hyps[name] = _lines(path)
    rows = ["| system | training pairs | best dev BLEU | test BLEU [95% CI] | test chrF | ΔBLEU vs untuned (p) | ΔBLEU vs real only (p) |",
            "|---|---|---|---|---|---|---|"]
    synthetic = {kind: len(_lines(root / f"data/bible-bt/bt-{kind}.pt")) for kind in ("beam", "sample")
                 if (root / f"data/bible-bt/bt-{kind}.pt").exists()}
    for name, label, pairs in BT_SYSTEMS:
        kind = "sample" if name == "bt-sample" else "beam"
        if pairs.endswith("BT") and kind in synthetic:
            pairs = f"2 x 2,000 + {synthetic[kind]:,} BT"
        if name not in hyps:
            rows.append(f"| {label} | {pairs} | not run | | | | |")
            continue
        s = corpus_scores(hyps[name], refs, n_bootstrap=1000)
        bleu, chrf = s["BLEU"], s["chrF"]
        vs_base = "-" if name == "bt-base" else _delta(hyps[name], hyps["bt-base"], refs)
        vs_real = "-" if name in ("bt-base", "bt-real") else _delta(hyps[name], hyps["bt-real"], refs)
        run = name if name == "bt-base" else name + suffix
        rows.append(f"| {label} (`{run}`) | {pairs} | {_best_dev(root / 'runs' / run)} | {bleu.score:.2f} "
                    f"[{bleu.ci_low:.2f}, {bleu.ci_high:.2f}] | {chrf.score:.2f} | {vs_base} | {vs_real} |")
    return "\n".join(rows)


@functools.lru_cache(maxsize=None)
def _test_refs(src: str, tgt: str) -> list[str]:
    from mtadapt.data.bible import parse_corpus_path, write_splits

    return _lines(write_splits(parse_corpus_path(f"bible:{src}-{tgt}:test")[0])["test"][1])


CODE = {"pt": "a", "es": "v", "fr": "l", "it": "d"}


def _direction_cells(hyp, system: str, refs: dict[str, list[str]]) -> list[str]:
    """'BLEU / chrF' of `system` on each direction's test set ('-' where it has no output)."""
    cells = []
    for lang in LANGS:
        h = hyp(system, lang)
        if h is None:
            cells.append("-")
            continue
        scores = corpus_scores(h, refs[lang])
        cells.append(f"{scores['BLEU'].score:.2f} / {scores['chrF'].score:.2f}")
    return cells


def multitask_tables(root: Path) -> str:
    runs = root / "runs"
    refs = {lang: _test_refs(CODE[lang], "4") for lang in LANGS}

    def hyp(system: str, src: str, tgt: str = "en") -> list[str] | None:
        path = runs / system / f"test-{src}-{tgt}.hyp"
        return _lines(path) if path.exists() else None

    out = ["Test BLEU / chrF per direction (501 verses each; greedy, no shortlist):", "",
           "| system | " + " | ".join(f"{lang}->en" for lang in LANGS) + " | it verses seen | best macro dev BLEU |",
           "|---|" + "---|" * (len(LANGS) + 2)]
    for system in MT_SYSTEMS:
        cells = _direction_cells(hyp, system, refs)
        result = runs / system / "result.json"
        seen = json.loads(result.read_text()).get("pairs_seen", {}).get("it-en", 0) if result.exists() else "-"
        out.append(f"| `{system}` | " + " | ".join(cells) + f" | {seen} | {_best_dev(runs / system)} |")
    out += ["", "ΔBLEU (paired bootstrap p) on each direction's test set:", "",
            "| comparison | " + " | ".join(f"{lang}->en" for lang in LANGS) + " |", "|---|" + "---|" * len(LANGS)]
    comparisons = [(f"{m} vs untuned", m, lambda lang: "mt-base") for m in ("mt-multi-T1", "mt-multi-T5")]
    comparisons += [(f"{m} vs single-pair", m, lambda lang: f"mt-single-{lang}") for m in ("mt-multi-T1", "mt-multi-T5")]
    comparisons += [("mt-single-<lang> vs untuned", None, lambda lang: "mt-base"), ("T=5 vs T=1", "mt-multi-T5", lambda lang: "mt-multi-T1")]
    for label, system, against in comparisons:
        cells = []
        for lang in LANGS:
            s = hyp(system or f"mt-single-{lang}", lang)
            b = hyp(against(lang), lang)
            cells.append("-" if s is None or b is None else _delta(s, b, refs[lang]))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    bidir = runs / "mt-bidir"
    if bidir.exists():
        out += ["", "pt<->en in one model (`mt-bidir`):", "", "| direction | untuned | single pt->en | pt<->en | ΔBLEU vs untuned (p) |", "|---|---|---|---|---|"]
        for src, tgt, s_code, t_code in (("pt", "en", "a", "4"), ("en", "pt", "4", "a")):
            r = _test_refs(s_code, t_code)
            h = hyp("mt-bidir", src, tgt)
            if h is None:
                continue
            base = hyp("mt-base", src, tgt)  # en->pt: the untuned pt->en student asked for Portuguese
            single = hyp("mt-single-pt", src, tgt)
            fmt = lambda x: "-" if x is None else f"{corpus_scores(x, r)['BLEU'].score:.2f}"
            out.append(f"| {src}->{tgt} | {fmt(base)} | {fmt(single)} | {fmt(h)} | {'-' if base is None else _delta(h, base, r)} |")
    return "\n".join(out)


MT27_ARRANGEMENTS = {"shared": "one shared LoRA", "lang": "per-language LoRA", "both": "shared + per-language LoRA"}


def _steps(run: Path) -> str:
    """'steps (best step)' of a run: its result.json and the dev BLEU history in metrics.jsonl."""
    result, metrics = run / "result.json", run / "metrics.jsonl"
    if not result.exists() or not metrics.exists():
        return "-"
    best = _best_step(run)
    return f"{json.loads(result.read_text())['steps']} ({'-' if best is None else best})"


def _best_step(run: Path) -> int | None:
    """The step of the best macro dev BLEU in the run's metrics.jsonl (the adapter in `best/`).
    Step 0, the score before training, is no candidate: the trainer keeps the best trained
    adapter even when none beats the untuned model."""
    dev = [(r["step"], r["dev_bleu"]) for r in map(json.loads, _lines(run / "metrics.jsonl"))
           if r.get("dev_bleu") is not None and r["step"] > 0]
    return max(dev, key=lambda x: x[1])[0] if dev else None


@functools.lru_cache(maxsize=None)
def _mt27_deltas(runs: Path, system: str, suffix: str) -> dict[str, tuple[float, float | None]] | None:
    """{lang: (ΔBLEU of `system+suffix` against mt27-single-<lang>+suffix, paired bootstrap p)},
    or None when either side lacks a direction's hypotheses. Cached: the tables and the plot
    ask for the same bootstraps."""
    refs = {lang: _test_refs(CODE[lang], "4") for lang in LANGS}
    out = {}
    for lang in LANGS:
        s, b = runs / f"{system}{suffix}" / f"test-{lang}-en.hyp", runs / f"mt27-single-{lang}{suffix}" / f"test-{lang}-en.hyp"
        if not s.exists() or not b.exists():
            return None
        ref, base = refs[lang], _lines(b)
        result = paired_bootstrap(base, {"s": _lines(s)}, ref)["s"]["BLEU"]
        out[lang] = (result["score"] - corpus_scores(base, ref)["BLEU"].score, result["p_value"])
    return out


def _mt27_goal(deltas: dict[str, tuple[float, float | None]]) -> bool:
    """Issue 27's goal: it at least +1 BLEU with p < 0.05, no other direction below -0.5."""
    return all(d >= 1.0 and (p or 1.0) < 0.05 if lang == "it" else d >= -0.5 for lang, (d, p) in deltas.items())


def multitask27_tables(root: Path, suffix: str = "") -> str:
    """Issue 27, item 3: single-pair runs and shared / per-language / both at each temperature,
    every run trained until dev BLEU stopped rising; the goal per multi-task system: the
    low-resource pair (it) at least +1 BLEU over its single-pair run with p < 0.05, and no
    other direction more than 0.5 below its single-pair run. `suffix` "-s1" reads the seed-1
    runs (`SEED=1`), each compared with the single-pair runs of its own seed; the untuned row
    is the same model at every seed (`mt-base`)."""
    runs = root / "runs"
    refs = {lang: _test_refs(CODE[lang], "4") for lang in LANGS}

    def hyp(system: str, lang: str) -> list[str] | None:
        path = runs / system / f"test-{lang}-en.hyp"
        return _lines(path) if path.exists() else None

    multi = [f"mt27-{a}-T{t}" for t in (1, 2, 5) for a in MT27_ARRANGEMENTS]
    systems = ["mt-base"] + [f"mt27-single-{lang}{suffix}" for lang in LANGS] + [m + suffix for m in multi]
    out = ["Test BLEU / chrF per direction (501 verses each; greedy, no shortlist):", "",
           "| system | " + " | ".join(f"{lang}->en" for lang in LANGS) + " | steps (best) | examples drawn pt / es / fr / it |",
           "|---|" + "---|" * (len(LANGS) + 2)]
    for system in systems:
        if system != "mt-base" and not (runs / system / "result.json").exists():
            out.append(f"| `{system}` | " + " | ".join("not run" for _ in LANGS) + " | - | - |")
            continue
        cells = _direction_cells(hyp, system, refs)
        seen = "-"
        if (runs / system / "result.json").exists():
            drawn = json.loads((runs / system / "result.json").read_text()).get("pairs_seen") or {}
            seen = " / ".join(f"{drawn.get(f'{lang}-en', 0):,}" for lang in LANGS)
        out.append(f"| `{system}` | " + " | ".join(cells) + f" | {_steps(runs / system)} | {seen} |")
    out += ["", "ΔBLEU against each direction's single-pair run (paired bootstrap p), and the goal "
            "(it +1 with p < 0.05, no other direction below -0.5):", "",
            "| system | " + " | ".join(f"{lang}->en" for lang in LANGS) + " | goal |", "|---|" + "---|" * (len(LANGS) + 1)]
    for system in multi:
        deltas = _mt27_deltas(runs, system, suffix)
        if deltas is not None:
            cells = [f"{d:+.2f} (p={_p(p)})" for d, p in deltas.values()]
            out.append(f"| `{system}{suffix}` | " + " | ".join(cells) + f" | {'met' if _mt27_goal(deltas) else 'missed'} |")
    return "\n".join(out)


def _dev_curve(run: Path, lang: str) -> list[tuple[int, float, int]]:
    """[(step, dev BLEU of lang->en, examples of lang-en drawn by that step)] from metrics.jsonl:
    the dev rows carry the scores, the training rows of the same step the `seen/<pair>` counts."""
    rows = [json.loads(line) for line in _lines(run / "metrics.jsonl")]
    seen = {r["step"]: r.get(f"seen/{lang}-en", 0) for r in rows if "loss" in r and "seen/" + lang + "-en" in r}
    seen[0] = 0
    return [(r["step"], r[f"dev_{lang}-en/bleu"], seen[r["step"]]) for r in rows
            if f"dev_{lang}-en/bleu" in r and r["step"] in seen]


def _at_examples(curve: list[tuple[int, float, int]], examples: int) -> float | None:
    """Dev BLEU linearly interpolated at `examples` drawn; None past the curve's last point."""
    for (_, b0, e0), (_, b1, e1) in zip(curve, curve[1:]):
        if e0 <= examples <= e1:
            return b0 if e1 == e0 else b0 + (b1 - b0) * (examples - e0) / (e1 - e0)
    return None


def multitask27_equal_examples(root: Path, suffix: str = "") -> str:
    """Each multi-task system against the single-pair runs at equal examples of each pair, read
    from the dev curves (100 verses per direction, no test set, no bootstrap: coarse): the
    multi-task dev BLEU at its best step (the adapter tested) and the single-pair run's dev BLEU
    interpolated at the number of examples of that pair the multi-task run had drawn by then."""
    runs = root / "runs"
    out = ["Equal examples per pair, from the dev curves (100 verses each): multi-task dev BLEU at its "
           "tested step / the single-pair run's at the same examples of that pair (interpolated), the difference:", "",
           "| system (step) | " + " | ".join(f"{lang}->en" for lang in LANGS) + " |", "|---|" + "---|" * len(LANGS)]
    for system in (f"mt27-{a}-T{t}{suffix}" for t in (1, 2, 5) for a in MT27_ARRANGEMENTS):
        singles = [runs / f"mt27-single-{lang}{suffix}" for lang in LANGS]
        if not all((run / "metrics.jsonl").exists() for run in [runs / system, *singles]):
            continue
        best = _best_step(runs / system)  # the step of the adapter tested
        cells = []
        for lang, single in zip(LANGS, singles):
            point = next((p for p in _dev_curve(runs / system, lang) if p[0] == best), None)
            reference = None if point is None else _at_examples(_dev_curve(single, lang), point[2])
            cells.append("-" if point is None else
                         f"{point[1]:.2f} / - at {point[2]:,} (past the single-pair run)" if reference is None else
                         f"{point[1]:.2f} / {reference:.2f} at {point[2]:,} ({point[1] - reference:+.2f})")
        out.append(f"| `{system}` ({best}) | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _seeds_cell(values: list[tuple[float, float | None]], with_p: bool = False) -> str:
    """One Δ per seed and their mean: '+1.23* / +0.40 (mean +0.82)' (* p < 0.05), or with
    `with_p` '+1.23 (p=0.010) / ...'; no mean for one seed."""
    shown = " / ".join(f"{d:+.2f} (p={_p(p)})" if with_p else f"{d:+.2f}{'*' if (p or 1.0) < 0.05 else ''}" for d, p in values)
    return shown + (f" (mean {sum(d for d, _ in values) / len(values):+.2f})" if len(values) > 1 else "")


def mt27_suffix(seed: int, max_steps: int = 800) -> str:
    """The run-name suffix scripts/multitask_bible_experiment.sh gives SEED / MAX_STEPS:
    `-m<MAX_STEPS>` unless 800, then `-s<SEED>` unless 0."""
    return (f"-m{max_steps}" if max_steps != 800 else "") + (f"-s{seed}" if seed else "")


def multitask27_over_seeds(root: Path, seeds: list[int], max_steps: int = 800) -> str:
    """The verdict over seeds: for each multi-task system run at every seed in `seeds`, each
    direction's ΔBLEU against the single-pair run of the same seed, per seed and their mean,
    and the goal per seed; a system meets the goal only if it meets it in every seed."""
    runs = root / "runs"
    suffixes = [mt27_suffix(seed, max_steps) for seed in seeds]
    out = [f"ΔBLEU against the single-pair run of the same seed, seeds {', '.join(map(str, seeds))} "
           "(per seed, * p < 0.05; mean), and the goal per seed:", "",
           "| system | " + " | ".join(f"{lang}->en" for lang in LANGS) + " | goal per seed | verdict |",
           "|---|" + "---|" * (len(LANGS) + 2)]
    for system in (f"mt27-{a}-T{t}" for t in (1, 2, 5) for a in MT27_ARRANGEMENTS):
        per_seed = [_mt27_deltas(runs, system, suffix) for suffix in suffixes]
        if any(d is None for d in per_seed):
            continue
        cells = []
        for lang in LANGS:
            values = [d[lang] for d in per_seed]
            cells.append(_seeds_cell(values))
        goals = [_mt27_goal(d) for d in per_seed]
        verdict = "met in every seed" if all(goals) else f"missed ({goals.count(True)} of {len(goals)} seeds met)"
        out.append(f"| `{system}` | " + " | ".join(cells) + " | " + " / ".join("met" if g else "missed" for g in goals)
                   + f" | {verdict} |")
    return "\n".join(out)


def plot_multitask27(root: Path, seeds: list[int], out: Path, max_steps: int = 800) -> str:
    """A PNG of each multi-task arrangement's ΔBLEU against the single-pair runs, per direction,
    against the sampling temperature (the mean over those of `seeds` the system ran at; each
    seed a dot), with the goal's lines (it +1, the others -0.5); the points as text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = root / "runs"
    suffixes = [mt27_suffix(seed, max_steps) for seed in seeds]
    fig, axes = plt.subplots(1, len(MT27_ARRANGEMENTS), figsize=(4.2 * len(MT27_ARRANGEMENTS), 3.6), sharey=True)
    text = []
    for ax, (arrangement, label) in zip(axes, MT27_ARRANGEMENTS.items()):
        for lang in LANGS:
            xs, means = [], []
            for t in (1, 2, 5):
                per_seed = [_mt27_deltas(runs, f"mt27-{arrangement}-T{t}", suffix) for suffix in suffixes]
                values = [d[lang][0] for d in per_seed if d is not None]  # the seeds this system ran at
                if not values:
                    continue
                xs.append(t)
                means.append(sum(values) / len(values))
                ax.scatter([t] * len(values), values, s=10, alpha=0.5, color=f"C{LANGS.index(lang)}")
                text.append(f"{arrangement}\tT={t}\t{lang}->en\t" + " ".join(f"{v:+.2f}" for v in values))
            if xs:
                ax.plot(xs, means, marker="o", color=f"C{LANGS.index(lang)}", label=f"{lang}->en")
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.axhline(-0.5, color="grey", linestyle="--", linewidth=1)
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_title(label)
        ax.set_xlabel("sampling temperature T")
        ax.set_xticks([1, 2, 5])
    axes[0].set_ylabel("ΔBLEU vs the single-pair run")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return "\n".join(text + [f"wrote {out}"])


NOISE_SYSTEMS = [
    ("bt-base", "untuned student"),
    ("bt-real", "real strings only"),
    ("bt-beam", "+ beam BT"),
    ("bt-noised20", "+ beam BT, a fifth noised (deletion 0.1, shuffle 3)"),
    ("bt-weak", "+ beam BT, all weakly noised (deletion 0.05, shuffle 2)"),
    ("bt-typo10", "+ beam BT, a tenth with typos and casing"),
    ("bt-typo", "+ beam BT, a fifth with typos and casing"),
    ("bt-typo30", "+ beam BT, three tenths with typos and casing"),
]


def noise_table(runs: Path, data: Path, suffix: str = "") -> str:
    """Each system on the clean test sources and on their typo/casing-noised copy
    (test-typo.pt): BLEU, chrF, and ΔBLEU against plain beam BT on each."""
    refs = _lines(data / "test.en")
    rows = ["| system | clean BLEU / chrF | ΔBLEU vs beam BT (p) | typo test BLEU / chrF | ΔBLEU vs beam BT (p) | clean -> typo |",
            "|---|---|---|---|---|---|"]
    for name, label in NOISE_SYSTEMS:
        run = runs / (name if name == "bt-base" else name + suffix)
        cells, scores = [], []
        for test in ("test", "test-typo"):
            path, beam = run / f"{test}.hyp", runs / f"bt-beam{suffix}" / f"{test}.hyp"
            if not path.exists():
                cells += ["not run", ""]
                scores.append(None)
                continue
            h = _lines(path)
            s = corpus_scores(h, refs)
            scores.append(s["BLEU"].score)
            cells.append(f"{s['BLEU'].score:.2f} / {s['chrF'].score:.2f}")
            cells.append("-" if name == "bt-beam" or not beam.exists() else _delta(h, _lines(beam), refs))
        drop = "-" if None in scores else f"{scores[1] - scores[0]:+.2f}"
        rows.append(f"| {label} (`{run.name}`) | " + " | ".join(cells) + f" | {drop} |")
    return "\n".join(rows)


def noise_over_seeds(runs: Path, data: Path, seeds: list[int]) -> str:
    """The verdict over seeds: for each noised system run at every seed in `seeds`, its ΔBLEU
    against plain beam BT of the same seed on the clean and on the typo test, per seed (* p <
    0.05) and the mean; "better" / "worse" only where every seed is significant that way."""
    refs = _lines(data / "test.en")
    suffixes = ["" if seed == 0 else f"-s{seed}" for seed in seeds]
    rows = [f"ΔBLEU against beam BT of the same seed, seeds {', '.join(map(str, seeds))} (per seed, * p < 0.05; mean):", "",
            "| system | clean test | verdict | typo test | verdict |", "|---|---|---|---|---|"]
    for name, label in NOISE_SYSTEMS:
        if name in ("bt-base", "bt-beam"):
            continue
        cells = []
        for test in ("test", "test-typo"):
            pairs = [(runs / f"{name}{x}" / f"{test}.hyp", runs / f"bt-beam{x}" / f"{test}.hyp") for x in suffixes]
            if not all(h.exists() and b.exists() for h, b in pairs):
                cells = []
                break
            values = []
            for h, b in pairs:
                base = _lines(b)
                result = paired_bootstrap(base, {"s": _lines(h)}, refs)["s"]["BLEU"]
                values.append((result["score"] - corpus_scores(base, refs)["BLEU"].score, result["p_value"] or 1.0))
            cells.append(_seeds_cell(values))
            significant = [p < 0.05 for _, p in values]
            cells.append("better in every seed" if all(significant) and all(d > 0 for d, _ in values) else
                         "worse in every seed" if all(significant) and all(d < 0 for d, _ in values) else "no verdict")
        if cells:
            rows.append(f"| {label} (`{name}`) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


BT_SCALE_SYSTEMS = [
    ("bt-base", "untuned student", None),
    ("bt-real", "real pairs only", None),
    ("bt-beam", "+ beam BT", "beam"),
    ("bt-tagged", "+ tagged beam BT", "tagged"),
    ("bt-sample", "+ sampled BT (top-10)", "sample"),
    ("bt-real-full", "real pairs only, full fine-tuning", None),
    ("bt-beam-full", "+ beam BT, full fine-tuning", "beam"),
]


def _real_only(name: str) -> str | None:
    """The run a BT system is tested against: the real-only run of the same method (None for
    the untuned student and the real-only runs themselves)."""
    real = "bt-real-full" if name.endswith("-full") else "bt-real"
    return None if name in ("bt-base", real) else real


SCALE_METRICS = ("BLEU", "chrF", "chrF++")


def _pairs(data: Path, kind: str | None) -> str:
    """'real x k + N BT' of a mixture (k: how often the real pairs were repeated), from the files."""
    real = len(_lines(data / "real.pt"))
    if kind is None:
        return f"{real:,}"
    mix, bt = data / f"mix-{kind}.pt", data / f"bt-{kind}.pt"
    if not mix.exists() or not bt.exists():
        return "-"
    synthetic = len(_lines(bt))
    return f"{(len(_lines(mix)) - synthetic) // real} x {real:,} + {synthetic:,} BT"


@functools.lru_cache(maxsize=None)
def _scale_test(runs: Path, data: Path, run: str, against: str) -> dict[str, tuple[float, float | None]] | None:
    """{metric: (Δ of runs/<run> against runs/<against> on the test set, paired bootstrap p)}."""
    s, b = runs / run / "test.hyp", runs / against / "test.hyp"
    if not s.exists() or not b.exists():
        return None
    refs, base = _lines(data / "test.en"), _lines(b)
    tested = paired_bootstrap(base, {"s": _lines(s)}, refs, metrics=SCALE_METRICS)
    return {m: (tested["s"][m]["score"] - tested["baseline"][m]["score"], tested["s"][m]["p_value"]) for m in SCALE_METRICS}


def bt_scale_table(runs: Path, data: Path, seed: int = 0, systems: list[str] | None = None) -> str:
    """Issue 27, items 1-2, one seed: each system's test BLEU [95% CI], chrF and chrF++, and its
    paired test against the real-only run of the same seed and method in all three
    (`runs/<system>-s<seed>`; the untuned row is the same model at every seed); `systems`: only
    these rows."""
    suffix = f"-s{seed}" if seed else ""
    refs = _lines(data / "test.en")
    rows = ["| system | training pairs | steps (best) | test BLEU [95% CI] | chrF | chrF++ | "
            "vs real only, same method: ΔBLEU (p) | ΔchrF (p) | ΔchrF++ (p) |", "|---|" + "---|" * 8]
    for name, label, kind in BT_SCALE_SYSTEMS:
        if systems is not None and name not in systems:  # --systems: the rows of a setting run with fewer systems
            continue
        run = name if name == "bt-base" else name + suffix
        if not (runs / run / "test.hyp").exists():
            rows.append(f"| {label} (`{run}`) | {_pairs(data, kind)} | not run |" + " |" * 6)
            continue
        scores = corpus_scores(_lines(runs / run / "test.hyp"), refs, n_bootstrap=1000)
        bleu = scores["BLEU"]
        real = _real_only(name)
        tested = None if real is None else _scale_test(runs, data, run, real + suffix)
        deltas = ["-"] * 3 if tested is None else [f"{d:+.2f} (p={_p(p)})" for d, p in tested.values()]
        rows.append(f"| {label} (`{run}`) | {_pairs(data, kind) if name != 'bt-base' else '-'} | "
                    f"{_steps(runs / run) if name != 'bt-base' else '-'} | {bleu.score:.2f} [{bleu.ci_low:.2f}, "
                    f"{bleu.ci_high:.2f}] | {scores['chrF'].score:.2f} | {scores['chrF++'].score:.2f} | " + " | ".join(deltas) + " |")
    return "\n".join(rows)


def bt_scale_over_seeds(runs: Path, data: Path, seeds: list[int]) -> str:
    """The verdict over seeds for each BT system run at every seed in `seeds`: Δ against the
    real-only run of the same seed in BLEU, chrF and chrF++ (per seed, * p < 0.05; mean), and
    issue 27's target (at least +2 BLEU with p < 0.05) per seed."""
    suffixes = [f"-s{seed}" if seed else "" for seed in seeds]
    rows = [f"Against real pairs only of the same seed and method, seeds {', '.join(map(str, seeds))} (per seed, * p < 0.05; mean):", "",
            "| system | ΔBLEU | ΔchrF | ΔchrF++ | better in every seed (BLEU) | +2 BLEU with p < 0.05 |", "|---|---|---|---|---|---|"]
    for name, label, kind in BT_SCALE_SYSTEMS:
        real = _real_only(name)
        if real is None:
            continue
        tested = [_scale_test(runs, data, name + x, real + x) for x in suffixes]
        if any(t is None for t in tested):
            continue
        cells = [_seeds_cell([t[metric] for t in tested]) for metric in SCALE_METRICS]
        bleu = [t["BLEU"] for t in tested]
        better = all(d > 0 and (p or 1.0) < 0.05 for d, p in bleu)
        target = sum(d >= 2.0 and (p or 1.0) < 0.05 for d, p in bleu)
        rows.append(f"| {label} (`{name}`) | " + " | ".join(cells) + f" | {'yes' if better else 'no'} | "
                    f"{target} of {len(bleu)} seeds |")
    return "\n".join(rows)


def bt_full_vs_lora(runs: Path, data: Path, seeds: list[int]) -> str:
    """Full fine-tuning against LoRA on the same data, per seed (ΔBLEU, paired bootstrap p) and
    the mean; only pairs run at every seed in `seeds` (empty when none)."""
    suffixes = [f"-s{seed}" if seed else "" for seed in seeds]
    rows = []
    for name, label, _ in BT_SCALE_SYSTEMS:
        if not name.endswith("-full"):
            continue
        lora = name.removesuffix("-full")
        tested = [_scale_test(runs, data, name + x, lora + x) for x in suffixes]
        if any(t is None for t in tested):
            continue
        cells = [_seeds_cell([t[metric] for t in tested], with_p=True) for metric in SCALE_METRICS]
        rows.append(f"| {label} (`{name}` vs `{lora}`) | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    return "\n".join([f"Full fine-tuning against LoRA on the same data, seeds {', '.join(map(str, seeds))}:", "",
                      "| system | ΔBLEU (p) | ΔchrF (p) | ΔchrF++ (p) |", "|---|---|---|---|", *rows])


def _seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        parser.error(f"--over-seeds {text!r}: expected seeds separated by commas, e.g. 0,1")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["bt", "bt-scale", "multitask", "multitask27", "noise"])
    parser.add_argument("--root", default=".", help="folder holding runs/ (and data/bible-bt for bt)")
    parser.add_argument("--runs", default="runs/bt-ui", help="noise, bt-scale: the runs, relative to --root")
    parser.add_argument("--data", default="data/ui-pt-en", help="noise, bt-scale: the data, relative to --root")
    parser.add_argument("--seed", type=int, default=0,
                        help="bt-scale, noise, multitask27: the SEED=N runs (<system>-sN; 0: the plain names)")
    parser.add_argument("--max-steps", type=int, default=800,
                        help="multitask27: the MAX_STEPS=N runs (<system>-mN; 800: the plain names)")
    parser.add_argument("--over-seeds", default=None, metavar="0,1",
                        help="multitask27, noise, bt-scale: the verdict over these seeds (bt-scale: after each seed's table)")
    parser.add_argument("--systems", default=None, metavar="bt-base,bt-real,bt-beam",
                        help="bt-scale: only these rows in the per-seed tables (default: every system, those not run marked)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="multitask27: also draw ΔBLEU per direction against the temperature (the --over-seeds seeds, "
                             "else --seed) into this PNG")
    args = parser.parse_args()
    root = Path(args.root)
    if args.which == "multitask27":
        seeds = [args.seed]
        if args.over_seeds:
            seeds = _seeds(parser, args.over_seeds)
            print(multitask27_over_seeds(root, seeds, args.max_steps))
        else:
            print(multitask27_tables(root, mt27_suffix(args.seed, args.max_steps)))
            print()
            print(multitask27_equal_examples(root, mt27_suffix(args.seed, args.max_steps)))
        if args.plot is not None:
            print(plot_multitask27(root, seeds, args.plot, args.max_steps))
        return
    if args.which == "bt-scale":
        seeds = _seeds(parser, args.over_seeds) if args.over_seeds else [args.seed]
        systems = None
        if args.systems is not None:
            systems = args.systems.split(",")
            known = [name for name, _, _ in BT_SCALE_SYSTEMS]
            if unknown := [name for name in systems if name not in known]:
                parser.error(f"--systems: unknown {', '.join(unknown)}; valid: {', '.join(known)}")
        for seed in seeds:
            print(f"Seed {seed}:\n\n{bt_scale_table(root / args.runs, root / args.data, seed, systems)}\n")
        if args.over_seeds:
            print(bt_scale_over_seeds(root / args.runs, root / args.data, seeds))
        full = bt_full_vs_lora(root / args.runs, root / args.data, seeds)
        if full:
            print(f"\n{full}")
        return
    if args.which == "noise":
        if args.over_seeds:
            print(noise_over_seeds(root / args.runs, root / args.data, _seeds(parser, args.over_seeds)))
        else:
            print(noise_table(root / args.runs, root / args.data, f"-s{args.seed}" if args.seed else ""))
        return
    if args.which == "multitask":
        print(multitask_tables(root))
        return
    print(bt_table(root))
    for suffix in sorted({p.name[p.name.rindex("-s"):] for p in (root / "runs").glob("bt-*-s[0-9]*")}):
        print(f"\nSeed {suffix[2:]} (`SEED={suffix[2:]}`; systems not run at this seed are marked):\n")
        print(bt_table(root, suffix))


if __name__ == "__main__":
    main()
