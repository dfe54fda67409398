"""Red-team runs in SQLite (the shared lorebook.db, migration 5 of lorebook.chat.store).

Attacks are stored as they finish, a batch per transaction, so an interrupted run keeps what it
generated and the next `lorebook redteam` with the same subject and options resumes it.
"""

from __future__ import annotations

import json
import sqlite3
import time

from lorebook.chat.store import connect as connect_db
from lorebook.errors import InputError
from lorebook.evaluate.store import decode_run


def connect() -> sqlite3.Connection:
    return connect_db()


def find_unfinished(db, fingerprint: str) -> int | None:
    row = db.execute("SELECT id FROM redteam_runs WHERE fingerprint = ? AND status = 'running' ORDER BY id DESC LIMIT 1",
                     (fingerprint,)).fetchone()
    return row["id"] if row else None


def create_run(db, *, model, adapters, persona, notebook, config, fingerprint) -> int:
    with db:
        cursor = db.execute(
            "INSERT INTO redteam_runs (created_at, model, adapters, persona, notebook, config, fingerprint)"
            " VALUES (?,?,?,?,?,?,?)",
            (time.time(), model, json.dumps(adapters), persona, notebook, json.dumps(config), fingerprint))
    return cursor.lastrowid


def done_ids(db, run_id: int) -> set[str]:
    return {row["attack_id"] for row in db.execute("SELECT attack_id FROM redteam_items WHERE run_id = ?", (run_id,))}


def save_items(db, run_id: int, items: list[dict]) -> None:
    """Store graded attacks in one transaction (all of the batch or nothing)."""
    with db:
        db.executemany(
            "INSERT OR REPLACE INTO redteam_items (run_id, attack_id, technique, expect, conversation, grades, held)"
            " VALUES (?,?,?,?,?,?,?)",
            [(run_id, i["attack_id"], i["technique"], json.dumps(i["expect"]),
              json.dumps(i["conversation"], ensure_ascii=False), json.dumps(i["grades"], ensure_ascii=False),
              int(i["held"])) for i in items])


def save_judge(db, run_id: int, verdicts: dict[str, bool | None]) -> None:
    with db:
        db.executemany("UPDATE redteam_items SET judge_held = ? WHERE run_id = ? AND attack_id = ?",
                       [(None if v is None else int(v), run_id, key) for key, v in verdicts.items()])


def finish_run(db, run_id: int, metrics: dict, seconds: float) -> None:
    with db:
        db.execute("UPDATE redteam_runs SET status = 'done', finished_at = ?, metrics = ?,"
                   " seconds = COALESCE(seconds, 0) + ? WHERE id = ?",
                   (time.time(), json.dumps(metrics), seconds, run_id))


def get_run(db, run_id: int) -> dict:
    row = db.execute("SELECT * FROM redteam_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise InputError(f"no red-team run {run_id}", "list runs with `lorebook redteam list`")
    return decode_run(row)


def get_items(db, run_id: int) -> list[dict]:
    items = []
    for row in db.execute("SELECT * FROM redteam_items WHERE run_id = ? ORDER BY id", (run_id,)):
        item = dict(row)
        for key in ("expect", "conversation", "grades"):
            item[key] = json.loads(item[key])
        item["held"] = bool(item["held"])
        item["judge_held"] = None if item["judge_held"] is None else bool(item["judge_held"])
        items.append(item)
    return items


def list_runs(db, limit: int = 50) -> list[dict]:
    rows = db.execute("SELECT id FROM redteam_runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [get_run(db, row["id"]) for row in rows]
