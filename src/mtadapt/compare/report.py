"""The comparison report: a Markdown table, plots, and one self-contained HTML page.

    rows (results.jsonl) -> report.md   table + notes + links to the PNGs
                         -> report.html the same table, plots embedded as base64 PNG
                         -> bleu_vs_params.png, dev_bleu.png, memory_time.png

Every number shown is read from the rows; nothing is measured here.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from pathlib import Path
from typing import Any

from mtadapt.evaluate.metrics import MIN_SIGNIFICANT_RESAMPLES, SIGNIFICANCE_LEVEL, paired_verdict
from mtadapt.methods.registry import METHOD_NAMES
from mtadapt.io import atomic_write_bytes, atomic_write_lines, atomic_write_text

COLUMNS = [
    "cell", "method", "settings", "trainable", "trainable %", "adapter file", "peak RSS", "train time", "tokens/s",
    "test BLEU [95% CI]", "test chrF [95% CI]", "ΔBLEU vs base (p)", "ΔBLEU vs full (p)", "verdict",
]
SIGNIFICANCE = SIGNIFICANCE_LEVEL  # p below this counts as a difference in the verdicts (evaluate's level)


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _bytes_text(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _score_text(score: dict[str, Any]) -> str:
    if score.get("ci_low") is None:
        return f"{score['score']:.2f}"
    return f"{score['score']:.2f} [{score['ci_low']:.2f}, {score['ci_high']:.2f}]"


def _delta_text(comparison: dict[str, Any] | None) -> str:
    if not comparison:
        return "-"
    b = comparison["BLEU"]
    p = paired_verdict(b["delta"], b["p_value"]).p_value  # a tie reads p = 1, as in the verdict
    return f"{b['delta']:+.2f} (p={'n/a' if p is None else f'{p:.3f}'})"


def verdict(row: dict[str, Any], alpha: float = SIGNIFICANCE) -> str:
    """One line saying what the cell did, from its paired tests (BLEU) alone, read by
    `evaluate.metrics.paired_verdict` (the rule `evaluate --baseline` uses):

        delta == 0                -> "the same as the untuned model (+0.00 BLEU, p=1.000)"
        p < alpha and delta > 0   -> "better than the untuned model (+2.31 BLEU, p=0.001)"
        p < alpha and delta < 0   -> "worse than ..."      otherwise -> "no significant change ..."
        then, for cells other than `full`: "; the same as full (...)", "; level with full (...)"
        or "; below/above full by ..."
    """
    if row.get("status") != "done":
        return f"not measured ({row.get('status')})"
    if row["method"] == "none":
        return "the untuned model: the reference"
    vs = row.get("vs_baseline")
    if not vs:
        return "no untuned baseline in the grid to compare with"
    delta = vs["BLEU"]["delta"]
    judged = paired_verdict(delta, vs["BLEU"]["p_value"], alpha)
    numbers = f"({delta:+.2f} BLEU, {_p_text(judged.p_value)})"
    if judged.direction == "same":
        text = f"the same as the untuned model {numbers}"
    elif judged.significant:
        text = f"{judged.direction} than the untuned model {numbers}"
    else:
        text = f"no significant change from the untuned model {numbers}"
    full = row.get("vs_full")
    if full and row["method"] != "full":
        d = full["BLEU"]["delta"]
        judged = paired_verdict(d, full["BLEU"]["p_value"], alpha)
        if judged.direction == "same":
            text += f"; the same as full ({d:+.2f}, {_p_text(judged.p_value)})"
        elif judged.significant:
            text += f"; {'above' if d > 0 else 'below'} full by {abs(d):.2f} ({_p_text(judged.p_value)})"
        else:
            text += f"; level with full ({d:+.2f}, {_p_text(judged.p_value)})"
    return text


def _p_text(p: float | None) -> str:
    return "p=n/a" if p is None else f"p={p:.3f}"


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One list of cell texts per row, in `COLUMNS` order."""
    out = []
    for r in rows:
        if r.get("status") != "done":
            out.append([r["name"], r["method"], _settings_text(r.get("settings", {})), f"{r.get('status')}: {r.get('reason', '')}"]
                       + ["-"] * (len(COLUMNS) - 5) + [verdict(r)])
            continue
        memory = f"{r['peak_rss_mb']:.0f} MB" + (f" (GPU {r['peak_gpu_mb']:.0f} MB)" if r.get("peak_gpu_mb") else "")
        out.append([
            r["name"], r["method"], _settings_text(r.get("settings", {})), f"{r['trainable']:,}",
            f"{100.0 * r['trainable'] / r['total']:.3f}" if r["total"] else "-", _bytes_text(r["adapter_bytes"]), memory,
            f"{r['train_seconds']:.0f} s" if r["steps"] else "-",
            f"{r['tokens_per_second']:.0f}" if r.get("tokens_per_second") else "-",
            _score_text(r["scores"]["BLEU"]), _score_text(r["scores"]["chrF"]),
            _delta_text(r.get("vs_baseline")), _delta_text(r.get("vs_full")), verdict(r),
        ])
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    body = table_rows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    return "\n".join(lines)


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    done = [r for r in rows if r.get("status") == "done"]
    notes = []
    if done:
        r = done[0]
        notes.append(f"Test set: {r['test_sentences']} sentences; BLEU/chrF by sacreBLEU ({r['scores']['BLEU']['signature']}); "
                     "95% CIs by bootstrap resampling; p-values by sacreBLEU's paired bootstrap against the untuned "
                     "baseline (`none`) and full fine-tuning (`full`); a cell that scores exactly its reference's "
                     "score is the same as it (p = 1).")
    resamples = sorted({vs["resamples"] for r in done for vs in (r.get("vs_baseline"), r.get("vs_full")) if vs and "resamples" in vs})
    if resamples and resamples[0] < MIN_SIGNIFICANT_RESAMPLES:
        notes.append(f"The paired tests used {resamples[0]} resamples (n_bootstrap): their smallest possible p, "
                     f"{1 / (resamples[0] + 1):.3f}, is not below {SIGNIFICANCE_LEVEL:g}, so no difference can be "
                     f"significant; {MIN_SIGNIFICANT_RESAMPLES} or more can.")
    notes.append("Trainable % is of the base model's parameters; adapter file is the saved method folder on disk "
                 "(the whole trained model for `full`); peak RSS is the cell process's maximum resident memory "
                 "(model loading and test decoding included); train time and tokens/s are the training loop's own "
                 "accounting (`TrainResult`), which also counts the dev evaluations and checkpoint writes made "
                 "before the last step.")
    trained = [r for r in done if r.get("steps")]
    if trained:
        notes.append("Each trained cell is scored with the adapter of its best dev BLEU (else its final one).")
    return notes


def _plots(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes of the three plots (empty when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    done = [r for r in rows if r.get("status") == "done"]
    trained = [r for r in done if r.get("steps")]
    pngs: dict[str, bytes] = {}

    def save(fig: Any, name: str) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        pngs[name] = buffer.getvalue()

    markers = dict(zip(METHOD_NAMES, itertools.cycle("os^DvPX<>")))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in dict.fromkeys(r["method"] for r in trained):
        mine = [r for r in trained if r["method"] == method]
        ax.scatter([max(r["trainable"], 1) for r in mine], [r["scores"]["BLEU"]["score"] for r in mine],
                   marker=markers.get(method, "o"), s=60, label=method)
        for r in mine:
            ax.annotate(r["name"], (max(r["trainable"], 1), r["scores"]["BLEU"]["score"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    for r in done:
        if r["method"] == "none":
            ax.axhline(r["scores"]["BLEU"]["score"], linestyle="--", color="grey", label=f"{r['name']} (untuned)")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel("test BLEU")
    ax.legend(fontsize=8)
    save(fig, "bleu_vs_params.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    untuned = next((r["dev_history"][0] for r in done if r["method"] == "none" and r.get("dev_history")), None)
    for r in trained:
        own = r.get("dev_history") or []
        starts = untuned is not None and not (own and own[0]["step"] == 0)  # a cell's own step 0 wins
        history = ([untuned] if starts else []) + own  # curves start at the untuned score
        if history:
            ax.plot([h["step"] for h in history], [h["bleu"] for h in history], marker="o", label=r["name"])
    ax.set_xlabel("step")
    ax.set_ylabel("dev BLEU")
    ax.legend(fontsize=8)
    save(fig, "dev_bleu.png")

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    names = [r["name"] for r in done]
    left.barh(names, [r["peak_rss_mb"] for r in done])
    left.set_xlabel("peak RSS (MB)")
    right.barh(names, [r["train_seconds"] for r in done])
    right.set_xlabel("training time (s)")
    save(fig, "memory_time.png")
    return pngs


def write_report(rows: list[dict[str, Any]], output_dir: Path, title: str = "mtadapt compare", source: str = "") -> Path:
    """Write report.md, report.html and the PNGs into `output_dir`; returns report.md."""
    output_dir = Path(output_dir)
    pngs = _plots(rows)
    for name, data in pngs.items():
        atomic_write_bytes(output_dir / name, data)
    notes = _notes(rows)
    origin = f"Recipe: `{source}`. " if source else ""
    # test scores depend on the precision they were translated in (and the machine's speed on the rest)
    precisions = sorted({str(r["precision"]) for r in rows if r.get("precision")})
    machines = sorted({str(r["machine"]) for r in rows if r.get("machine")})
    if precisions:
        origin += f"Test sets translated in {' / '.join(precisions)}. "
    if machines:
        origin += f"Machine: {' / '.join(machines)}. "
    md = [f"# {title}", "", f"{origin}Rows: `results.jsonl` in this folder.", "", markdown_table(rows), ""]
    md += [f"- {n}" for n in notes] + [""]
    md += [f"![{name}]({name})" for name in pngs]
    report_md = output_dir / "report.md"
    atomic_write_lines(report_md, md)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>\n" for cells in table_rows(rows))
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}"></figure>\n'
        for name, data in pngs.items()
    )
    page = (
        f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}"
        "img{max-width:100%}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(origin)}Rows: results.jsonl in this folder.</p>\n"
        f"<table><tr>{head}</tr>\n{body}</table>\n<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        + f"</ul>\n{images}</body></html>\n"
    )
    atomic_write_text(output_dir / "report.html", page)
    return report_md
