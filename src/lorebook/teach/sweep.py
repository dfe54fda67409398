"""Hyper-parameter sweeps: a full grid, or Optuna TPE trials sharing a study through any SQL storage.

Each trial trains an adapter and is scored in the same process, on the model it just trained:
  score = (exact-question recall + held-out paraphrase recall) / 2 - share of general-knowledge answers lost
"Lost" counts general-knowledge questions (the evaluation package's locality set) the base model
answered correctly and the taught model no longer does. That is the evaluation issue's "knowledge gained
minus knowledge lost" on a small, fast sample; run `lorebook evaluate` on the winner for the full report.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from lorebook import paths
from lorebook.errors import InputError
from lorebook.teach import store
from lorebook.teach.config import TeachConfig, coerce
from lorebook.teach.pack import Fact
from lorebook.teach.probe import answer_questions, is_correct

LOCALITY_SAMPLE = 30


def parse_grid(items: list[str]) -> dict[str, list]:
    """["epochs=1,3", "rank=4,16"] -> {"epochs": [1, 3], "rank": [4, 16]} with types checked."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values.strip():
            raise InputError(f"bad grid entry {item!r}", "write --grid option=v1,v2 (e.g. --grid rank=4,16)")
        grid[key] = [coerce(key, value.strip()) for value in values.split(",") if value.strip()]
    return grid


def locality_facts() -> list[Fact]:
    """A spread sample of the shipped general-knowledge questions (empty if evaluation is not installed)."""
    try:
        from lorebook.evaluate.probes import load_general_knowledge
    except ImportError:
        return []
    return [Fact(id=row["id"], fact="", question=row["question"], answer=row["answer"],
                 aliases=list(row.get("aliases", [])), paraphrases=[]) for row in load_general_knowledge(LOCALITY_SAMPLE)]


def correct_flags(model, tokenizer, questions: list[str], facts: list[Fact]) -> list[bool]:
    return [is_correct(reply, fact) for reply, fact in zip(answer_questions(model, tokenizer, questions), facts)]


class Scorer:
    """Scores a freshly trained model; remembers what the base model knew (computed once)."""

    def __init__(self, base_model: str):
        self.base_model = base_model
        self.control = locality_facts()
        self.base_known: list[bool] | None = None

    def baseline(self) -> None:
        if self.base_known is not None or not self.control:
            return
        from lorebook.models.loader import load_model
        from lorebook.models.registry import resolve_model

        model, tokenizer = load_model(resolve_model(self.base_model))
        self.base_known = correct_flags(model, tokenizer, [f.question for f in self.control], self.control)

    def __call__(self, model, tokenizer, facts: list[Fact]) -> dict:
        exact = correct_flags(model, tokenizer, [f.question for f in facts], facts)
        pairs = [(p, f) for f in facts for p in f.paraphrases]
        para = correct_flags(model, tokenizer, [p for p, _ in pairs], [f for _, f in pairs]) if pairs else exact
        lost = 0.0
        if self.control and self.base_known is not None:
            now = correct_flags(model, tokenizer, [f.question for f in self.control], self.control)
            known = sum(self.base_known)
            lost = sum(b and not n for b, n in zip(self.base_known, now)) / max(1, known)
        exact_rate, para_rate = sum(exact) / len(exact), sum(para) / len(para)
        return {"exact": exact_rate, "paraphrase": para_rate, "lost": lost,
                "score": round((exact_rate + para_rate) / 2 - lost, 4)}


def run_trial(pack: Path, config: TeachConfig, name: str, options: dict, scorer: Scorer, keep: bool) -> dict:
    from lorebook.teach.trainer import teach

    started = time.perf_counter()
    result = teach(pack, name, config, force=True, probe=False, progress=True, scorer=scorer)
    row = {"name": name, "options": options, "seconds": time.perf_counter() - started, **result.metrics["sweep"]}
    if not keep:
        store.remove(name)
    return row


def run_grid(pack: Path, base: TeachConfig, grid: dict[str, list], prefix: str, keep: bool) -> list[dict]:
    """Every combination of the grid's values; returns one result row per trial."""
    if not grid:
        raise InputError("the grid is empty", "pass e.g. --grid epochs=3,6 --grid rank=4,16")
    scorer = Scorer(base.model)
    scorer.baseline()
    keys = list(grid)
    rows = []
    for index, values in enumerate(itertools.product(*(grid[k] for k in keys)), start=1):
        options = dict(zip(keys, values))
        rows.append(run_trial(pack, base.with_values(**options), f"{prefix}-{index}", options, scorer, keep))
    write_results(prefix, rows)
    return rows


def run_optuna(pack: Path, base: TeachConfig, space: dict[str, list], trials: int, storage: str,
               study_name: str, prefix: str, keep: bool) -> list[dict]:
    """TPE search over the given choices (or a default space); several workers may share `storage`."""
    try:
        import optuna
    except ImportError:
        raise InputError("--trials needs Optuna", "pip install 'lorebook[teach]' (or optuna), or use --grid") from None
    space = space or {"epochs": [3, 5, 8], "rank": [4, 8, 16], "lr": [3e-4, 1e-3, 2e-3]}
    storage = storage or f"sqlite:///{paths.home() / 'sweeps.db'}"
    study = optuna.create_study(study_name=study_name or f"{prefix}-{Path(pack).stem}", storage=storage,
                                direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=base.seed))
    scorer = Scorer(base.model)
    scorer.baseline()
    rows = []

    def objective(trial) -> float:
        options = {key: trial.suggest_categorical(key, values) for key, values in space.items()}
        row = run_trial(pack, base.with_values(**options), f"{prefix}-{trial.number}", options, scorer, keep)
        rows.append(row)
        for key in ("exact", "paraphrase", "lost"):
            trial.set_user_attr(key, row[key])
        return row["score"]

    study.optimize(objective, n_trials=trials)
    write_results(prefix, rows)
    return rows


def write_results(prefix: str, rows: list[dict]) -> Path:
    path = paths.subdir("sweeps") / f"{prefix}.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return path
