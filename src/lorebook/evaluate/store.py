"""Evaluation runs in SQLite (the shared lorebook.db): every prompt, reply, grade, model, adapter, config.

The tables are migration 3 of lorebook.chat.store, the one schema history of the database.
Replies are written batch by batch, so an interrupted run keeps what it generated and `lorebook eval` resumes it (same model, adapters, pack and config).
"""

from __future__ import annotations

import json
import sqlite3
import time

from lorebook.chat.store import connect as connect_db
from lorebook.errors import InputError


def connect() -> sqlite3.Connection:
    """The lorebook database (its migrations create the eval tables)."""
    return connect_db()


def find_run(db: sqlite3.Connection, fingerprint: str, statuses: tuple[str, ...]) -> int | None:
    """Newest run with this fingerprint (model, adapters, persona, probes, config) in one of the statuses."""
    marks = ",".join("?" * len(statuses))
    row = db.execute(
        f"SELECT id FROM eval_runs WHERE fingerprint = ? AND status IN ({marks}) ORDER BY id DESC LIMIT 1",
        (fingerprint, *statuses),
    ).fetchone()
    return row["id"] if row else None


def create_run(db, *, model, adapters, persona, notebook, pack, probe_hash, config, fingerprint, baseline_run) -> int:
    with db:
        cursor = db.execute(
            "INSERT INTO eval_runs (created_at, model, adapters, persona, notebook, pack, probe_hash, config,"
            " fingerprint, baseline_run) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (time.time(), model, json.dumps(adapters), persona, notebook, pack, probe_hash, json.dumps(config),
             fingerprint, baseline_run),
        )
    return cursor.lastrowid


def done_keys(db, run_id: int) -> set[str]:
    return {row["key"] for row in db.execute("SELECT key FROM eval_items WHERE run_id = ?", (run_id,))}


def save_items(db, run_id: int, probes, replies: list[str], grades: list[bool]) -> None:
    """Store one generated batch in a single transaction (all of it or nothing)."""
    with db:
        db.executemany(
            "INSERT OR REPLACE INTO eval_items (run_id, key, kind, item_id, format, question, prompt, expected,"
            " aliases, counterfactual, reply, match_grade) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(run_id, p.key, p.kind, p.item_id, p.format, p.question, json.dumps(p.messages, ensure_ascii=False),
              p.expected, json.dumps(p.aliases, ensure_ascii=False), int(p.counterfactual), reply,
              None if p.kind == "chat" else int(grade))
             for p, reply, grade in zip(probes, replies, grades)],
        )


def save_judge_grades(db, run_id: int, grades: dict[str, bool | None]) -> None:
    with db:
        db.executemany(
            "UPDATE eval_items SET judge_grade = ? WHERE run_id = ? AND key = ?",
            [(None if g is None else int(g), run_id, key) for key, g in grades.items()],
        )


def finish_run(db, run_id: int, metrics: dict, seconds: float) -> None:
    with db:
        db.execute(
            "UPDATE eval_runs SET status = 'done', finished_at = ?, metrics = ?, seconds = ? WHERE id = ?",
            (time.time(), json.dumps(metrics), seconds, run_id),
        )


def get_run(db, run_id: int) -> dict:
    """A run's row as a dict (config and metrics parsed); a one-line error when it does not exist."""
    row = db.execute("SELECT * FROM eval_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise InputError(f"no eval run {run_id}", "list runs with `lorebook eval list`")
    return decode_run(row)


def decode_run(row) -> dict:
    """A stored run row (eval or red-team) as a dict with its JSON columns parsed."""
    run = dict(row)
    run["adapters"] = json.loads(run["adapters"])
    run["config"] = json.loads(run["config"])
    run["metrics"] = json.loads(run["metrics"]) if run["metrics"] else None
    return run


def get_items(db, run_id: int) -> list[dict]:
    rows = db.execute("SELECT * FROM eval_items WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
    items = []
    for row in rows:
        item = dict(row)
        item["aliases"] = json.loads(item["aliases"])
        item["prompt"] = json.loads(item["prompt"])
        items.append(item)
    return items


def list_runs(db, limit: int = 50) -> list[dict]:
    rows = db.execute("SELECT id FROM eval_runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [get_run(db, row["id"]) for row in rows]
