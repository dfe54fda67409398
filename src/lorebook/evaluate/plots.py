"""Plots beyond the metric bars: adapter loss curves, and sweep reports.

A sweep (`lorebook sweep`, results in `sweeps/PREFIX.json`) gets a self-contained HTML page with
  * knowledge gained vs knowledge lost, one point per configuration, the Pareto front marked
    (configurations no other one beats on both axes: the only ones worth choosing between);
  * recall (exact, paraphrase) and locality loss against each swept hyper-parameter.
"Gained" is the sweep's (exact + paraphrase recall) / 2, "lost" the share of general-knowledge answers
the base model got right and the taught model no longer does (see lorebook.teach.sweep).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def adapter_loss_curve(adapter: str) -> list[dict] | None:
    """The loss curve saved beside an adapter (name or path), or None when it has none."""
    from lorebook.teach import store

    try:
        directory = Path(adapter) if Path(adapter).is_dir() else store.find(adapter)
    except Exception:  # an adapter given as a path without lorebook metadata, or removed since
        return None
    curve = directory / store.CURVE_FILE
    return json.loads(curve.read_text()) if curve.exists() else None


def plot_loss_curves(curves: dict[str, list[dict]], path: Path) -> Path:
    """Training loss per optimizer step, one line per adapter."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in curves.items():
        ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gained(row: dict) -> float:
    return (row["exact"] + row["paraphrase"]) / 2


def pareto_front(rows: list[dict]) -> list[int]:
    """Indices of rows no other row dominates (at least as much gained and as little lost, one strictly)."""
    front = []
    for i, row in enumerate(rows):
        dominated = any(
            gained(other) >= gained(row) and other["lost"] <= row["lost"]
            and (gained(other) > gained(row) or other["lost"] < row["lost"])
            for j, other in enumerate(rows) if j != i)
        if not dominated:
            front.append(i)
    return front


def plot_tradeoff(rows: list[dict], path: Path) -> Path:
    """Scatter of knowledge gained vs lost; Pareto-optimal configurations ringed and joined."""
    plt = _pyplot()
    front = pareto_front(rows)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([100 * r["lost"] for r in rows], [100 * gained(r) for r in rows], color="tab:blue")
    for row in rows:
        label = " ".join(f"{k}={v}" for k, v in row["options"].items())
        ax.annotate(label, (100 * row["lost"], 100 * gained(row)), fontsize=7, xytext=(4, 2), textcoords="offset points")
    best = sorted((rows[i] for i in front), key=lambda r: r["lost"])
    ax.plot([100 * r["lost"] for r in best], [100 * gained(r) for r in best], "o--", mfc="none", ms=12,
            color="tab:red", label="Pareto front")
    ax.set_xlabel("knowledge lost (% of general questions, lower is better)")
    ax.set_ylabel("knowledge gained (% recall, higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_by_option(rows: list[dict], path: Path) -> Path:
    """Exact recall, paraphrase recall and locality loss against each swept option (mean over the rest)."""
    plt = _pyplot()
    options = sorted({key for row in rows for key in row["options"]})
    fig, axes = plt.subplots(1, max(1, len(options)), figsize=(4 * max(1, len(options)), 3.5), squeeze=False)
    for ax, option in zip(axes[0], options):
        values = sorted({row["options"][option] for row in rows if option in row["options"]})
        for metric, label in (("exact", "exact recall"), ("paraphrase", "paraphrase recall"), ("lost", "locality lost")):
            means = []
            for value in values:
                chosen = [row[metric] for row in rows if row["options"].get(option) == value]
                means.append(100 * sum(chosen) / len(chosen))
            ax.plot([str(v) for v in values], means, "o-", label=label)
        ax.set_xlabel(option)
        ax.set_ylabel("%")
        ax.set_ylim(-5, 105)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    return f"<img alt='{path.stem}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def write_sweep_report(results: Path, out_dir: Path) -> dict[str, Path]:
    """tradeoff.png, by-option.png and a self-contained sweep.html (table + both plots) for a sweep."""
    rows = json.loads(Path(results).read_text())
    if not rows:
        from lorebook.errors import InputError

        raise InputError(f"sweep results {results} are empty", "run the sweep first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"tradeoff": plot_tradeoff(rows, out_dir / "tradeoff.png"),
               "by_option": plot_by_option(rows, out_dir / "by-option.png"), "html": out_dir / "sweep.html"}
    front = set(pareto_front(rows))
    table = ["<table border=1 cellpadding=4><tr><th>trial</th><th>options</th><th>exact</th><th>paraphrase</th>"
             "<th>lost</th><th>score</th><th>Pareto</th></tr>"]
    for i, row in sorted(enumerate(rows), key=lambda item: -item[1]["score"]):
        options = html.escape(" ".join(f"{k}={v}" for k, v in row["options"].items()))
        table.append(f"<tr><td>{html.escape(row['name'])}</td><td>{options}</td><td>{row['exact']:.0%}</td>"
                     f"<td>{row['paraphrase']:.0%}</td><td>{row['lost']:.0%}</td><td>{row['score']:.3f}</td>"
                     f"<td>{'★' if i in front else ''}</td></tr>")
    title = f"Sweep {Path(results).stem}"
    written["html"].write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}</style>"
        f"<h1>{html.escape(title)}</h1>{''.join(table)}</table>"
        f"<h2>Knowledge gained vs lost</h2>{_img(written['tradeoff'])}"
        f"<h2>Recall and locality by option</h2>{_img(written['by_option'])}", encoding="utf-8")
    return written
