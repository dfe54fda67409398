"""Reports of stored runs: a metrics table (markdown / JSON), side-by-side generations, plots, HTML.

`write_report` produces a folder with report.md, report.json, metrics.png (and loss.png, the training
curve of each evaluated adapter) and a self-contained report.html (plots embedded as base64), so a
report can be mailed or attached to an issue. Sweep reports live in `plots.py`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from lorebook.evaluate import store
from lorebook.evaluate.normalize import normalize

# Metric display order; the rest (judge, override…) follow when present.
ORDER = (
    "efficacy", "generalization", "format_qa_prefixed", "format_conversation", "format_system", "override",
    "known_before", "learned", "locality_accuracy_before", "locality_accuracy_after", "locality_unchanged",
    "locality_identical_text", "locality_lost", "score", "empty_replies", "degenerate_replies",
    "fluency_entropy", "reply_words", "length_drift", "language_share", "in_character", "judge_agreement",
    "efficacy_by_judge",
)
SHARES = {"fluency_entropy", "reply_words", "length_drift", "score"}  # not percentages


def ordered(metrics: dict) -> list[str]:
    return [k for k in ORDER if k in metrics] + sorted(k for k in metrics if k not in ORDER)


def fmt_metric(name: str, metric: dict) -> str:
    """"93.1% [86.4, 96.6] n=58" for shares, "5.94 [5.67, 6.37] n=8" for means."""
    value, (lo, hi) = metric.get("value"), metric.get("ci", [None, None])
    if value is None:
        return f"n/a n={metric.get('n', 0)}"
    percent = name not in SHARES
    scale, unit = (100, "%") if percent else (1, "")
    text = f"{value * scale:.1f}{unit}" if percent else f"{value:.2f}"
    if lo is not None and hi is not None:
        text += f" [{lo * scale:.1f}, {hi * scale:.1f}]" if percent else f" [{lo:.2f}, {hi:.2f}]"
    if "kappa" in metric and metric["kappa"] is not None:
        text += f" κ={metric['kappa']:.2f}"
    return text + f" n={metric.get('n', 0)}"


def describe(run: dict) -> str:
    adapters = ", ".join(run["adapters"]) or "none"
    persona = f", persona {run['persona']}" if run["persona"] else ""
    notebook = f", notebook {run['notebook']}" if run.get("notebook") else ""
    return f"run {run['id']}: {Path(run['model']).name} + adapters: {adapters}{persona}{notebook} on {run['pack']}"


def run_label(run: dict) -> str:
    """`run N (what it adds to the base model)`: its adapters and notebook, or `base`."""
    parts = list(run["adapters"]) + ([f"notebook {run['notebook']}"] if run.get("notebook") else [])
    return f"run {run['id']} ({', '.join(parts) or 'base'})"


def metrics_table(runs: list[dict]) -> str:
    """A markdown table, one column per run, one row per metric."""
    names: list[str] = []
    for run in runs:
        names += [n for n in ordered(run["metrics"] or {}) if n not in names]
    head = "| metric | " + " | ".join(run_label(r) for r in runs) + " |"
    lines = [head, "|---|" + "---|" * len(runs)]
    for name in names:
        cells = [fmt_metric(name, r["metrics"][name]) if name in (r["metrics"] or {}) else "" for r in runs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def side_by_side(db, run: dict, limit: int | None = None) -> list[dict]:
    """Per probe: expected answer, base reply and grade, this run's reply and grade."""
    base = {i["key"]: i for i in store.get_items(db, run["baseline_run"])} if run["baseline_run"] else {}
    rows = []
    for item in store.get_items(db, run["id"]):
        if item["kind"] == "chat":
            continue
        before = base.get(item["key"])
        rows.append({"key": item["key"], "question": item["question"], "expected": item["expected"],
                     "before": before["reply"] if before else None,
                     "before_correct": bool(before["match_grade"]) if before else None,
                     "after": item["reply"], "after_correct": bool(item["match_grade"]),
                     "judge": item["judge_grade"]})
    return rows[:limit]


def compare(db, run_a: int, run_b: int) -> dict:
    """Two runs on the same probes: per-fact answers side by side and the locality answers that changed."""
    a, b = store.get_run(db, run_a), store.get_run(db, run_b)
    items_a = {i["key"]: i for i in store.get_items(db, run_a)}
    facts, changed = [], []
    for item in store.get_items(db, run_b):
        other = items_a.get(item["key"])
        if other is None or item["kind"] == "chat":
            continue
        row = {"key": item["key"], "question": item["question"], "expected": item["expected"],
               "a": other["reply"], "a_correct": bool(other["match_grade"]),
               "b": item["reply"], "b_correct": bool(item["match_grade"])}
        if item["kind"] == "fact":
            facts.append(row)
        elif normalize(other["reply"]) != normalize(item["reply"]):
            changed.append(row)
    return {"a": a, "b": b, "facts": facts, "changed_locality": changed}


def plot_metrics(runs: list[dict], path: Path) -> Path:
    """Bar chart of share metrics with 95% interval whiskers, one bar group per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    for run in runs:
        names += [n for n in ordered(run["metrics"] or {}) if n not in SHARES and n not in names
                  and (run["metrics"][n].get("value") is not None)]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names) * max(1, len(runs))), 4))
    width = 0.8 / max(1, len(runs))
    for r, run in enumerate(runs):
        xs, values, errors = [], [], [[], []]
        for x, name in enumerate(names):
            metric = (run["metrics"] or {}).get(name)
            if not metric or metric.get("value") is None:
                continue
            lo, hi = metric.get("ci") or [None, None]
            xs.append(x + r * width)
            values.append(100 * metric["value"])
            errors[0].append(max(0.0, 100 * (metric["value"] - lo)) if lo is not None else 0)
            errors[1].append(max(0.0, 100 * (hi - metric["value"])) if hi is not None else 0)
        ax.bar(xs, values, width, yerr=errors, capsize=3, label=run_label(run))
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(names))])
    ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("% (95% CI)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(db, run: dict, examples: int = 20) -> str:
    runs = [store.get_run(db, run["baseline_run"]), run] if run["baseline_run"] else [run]
    lines = [f"# Evaluation {describe(run)}", "", metrics_table(runs), "",
             "Shares in %, 95% Wilson interval in brackets; means with a bootstrap interval.", "",
             "## Generations side by side", "", "| probe | expected | before | after |", "|---|---|---|---|"]
    for row in side_by_side(db, run, examples):
        def cell(text, ok):
            if text is None:
                return ""
            mark = "✓" if ok else "✗"
            return f"{mark} " + text.replace("|", "\\|").replace("\n", " ")[:120]
        lines.append(f"| {row['key']} | {row['expected']} | {cell(row['before'], row['before_correct'])} | "
                     f"{cell(row['after'], row['after_correct'])} |")
    return "\n".join(lines) + "\n"


def write_report(run_id: int, out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.json, metrics.png and a self-contained report.html for one run."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db = store.connect()
    try:
        run = store.get_run(db, run_id)
        runs = [store.get_run(db, run["baseline_run"]), run] if run["baseline_run"] else [run]
        text = markdown(db, run)
        data = {"run": run, "baseline": runs[0] if len(runs) > 1 else None, "generations": side_by_side(db, run)}
    finally:
        db.close()
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json",
             "plot": out_dir / "metrics.png", "html": out_dir / "report.html"}
    paths["markdown"].write_text(text, encoding="utf-8")
    paths["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    plot_metrics(runs, paths["plot"])
    image = base64.b64encode(paths["plot"].read_bytes()).decode()
    buffer = io.StringIO()
    buffer.write(f"<!doctype html><meta charset='utf-8'><title>{html.escape(describe(run))}</title>")
    buffer.write("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{white-space:pre-wrap}</style>")
    buffer.write(f"<h1>{html.escape(describe(run))}</h1><img alt='metrics' src='data:image/png;base64,{image}'>")
    from lorebook.evaluate.plots import adapter_loss_curve, plot_loss_curves

    curves = {name: curve for name in run["adapters"] if (curve := adapter_loss_curve(name))}
    if curves:  # how each evaluated adapter trained, beside what it learned
        paths["loss_plot"] = plot_loss_curves(curves, out_dir / "loss.png")
        loss_image = base64.b64encode(paths["loss_plot"].read_bytes()).decode()
        buffer.write(f"<h2>Training loss</h2><img alt='loss curve' src='data:image/png;base64,{loss_image}'>")
    buffer.write(f"<pre>{html.escape(text)}</pre>")
    paths["html"].write_text(buffer.getvalue(), encoding="utf-8")
    return paths
