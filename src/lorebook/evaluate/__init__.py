"""Evaluation by generation: what a model learned and what it forgot (`lorebook eval`).

    from lorebook.evaluate import EvalConfig, run_eval, write_report
    run_id = run_eval("examples/oscars-2023.jsonl", EvalConfig(adapters=["oscars"]))
    write_report(run_id, "report/")

Modules: probes (what is asked), normalize (match grader), judge (LLM grader), behaviour (chat
checks), stats (intervals), metrics, store (SQLite), runner, report.
"""

from lorebook.evaluate.normalize import match, normalize
from lorebook.evaluate.report import compare, write_report
from lorebook.evaluate.runner import EvalConfig, run_eval

__all__ = ["EvalConfig", "compare", "match", "normalize", "run_eval", "write_report"]
