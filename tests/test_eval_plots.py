"""Sweep reports: the Pareto front of gained vs lost, plots embedded in one HTML file; the CLI entry."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lorebook.evaluate.plots import pareto_front, plot_loss_curves, write_sweep_report

ROWS = [
    {"name": "s-1", "options": {"epochs": 2, "rank": 4}, "exact": 0.5, "paraphrase": 0.3, "lost": 0.0, "score": 0.4},
    {"name": "s-2", "options": {"epochs": 4, "rank": 4}, "exact": 0.9, "paraphrase": 0.5, "lost": 0.1, "score": 0.6},
    {"name": "s-3", "options": {"epochs": 4, "rank": 16}, "exact": 0.8, "paraphrase": 0.4, "lost": 0.2, "score": 0.4},
    {"name": "s-4", "options": {"epochs": 8, "rank": 16}, "exact": 1.0, "paraphrase": 0.6, "lost": 0.3, "score": 0.5},
]


def test_pareto_front_keeps_only_undominated_configurations():
    # s-3 gains less than s-2 and loses more: dominated. The others trade gain against loss.
    assert pareto_front(ROWS) == [0, 1, 3]
    assert pareto_front([ROWS[1], dict(ROWS[1], name="copy")]) == [0, 1]  # ties dominate nobody


def test_sweep_report_is_self_contained(tmp_path):
    results = tmp_path / "s.json"
    results.write_text(json.dumps(ROWS))
    written = write_sweep_report(results, tmp_path / "out")
    page = written["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and "★" in page and "epochs=8 rank=16" in page
    assert written["tradeoff"].stat().st_size > 1000 and written["by_option"].stat().st_size > 1000


def test_loss_curve_plot(tmp_path):
    curve = [{"step": i, "loss": 3.0 / i} for i in range(1, 20)]
    assert plot_loss_curves({"a": curve}, tmp_path / "loss.png").stat().st_size > 1000


def test_report_command_finds_sweeps_and_refuses_unknown(lorebook_home, tmp_path):
    from lorebook import paths
    from lorebook.cli.main import app

    (paths.subdir("sweeps") / "demo.json").write_text(json.dumps(ROWS))
    result = CliRunner().invoke(app, ["report", "demo", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "sweep.html").exists()
    result = CliRunner().invoke(app, ["report", "nosuch", "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "no eval run or sweep" in result.output
