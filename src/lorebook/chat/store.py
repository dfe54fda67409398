"""The SQLite log of conversations, with numbered schema migrations.

Schema changes are appended to MIGRATIONS and never edited; `PRAGMA user_version` records how many
have run, so an old database upgrades in place on first open and nothing is lost. Other packages add
their tables by appending migrations here, keeping one schema history for the whole database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from lorebook import paths
from lorebook.errors import LorebookError

MIGRATIONS: list[str] = [
    # 1: conversations and their messages
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        model TEXT NOT NULL,
        persona TEXT,
        adapters TEXT NOT NULL DEFAULT '[]',
        engine TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """,
    # 2: generation statistics per reply (for speed and length-drift reports)
    """
    ALTER TABLE messages ADD COLUMN prompt_tokens INTEGER;
    ALTER TABLE messages ADD COLUMN completion_tokens INTEGER;
    ALTER TABLE messages ADD COLUMN seconds REAL;
    """,
    # 3: evaluation runs and every graded reply (lorebook.evaluate.store); IF NOT EXISTS
    # because builds before this migration created these tables on their own
    """
    CREATE TABLE IF NOT EXISTS eval_runs (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL DEFAULT 'running',
        model TEXT NOT NULL,
        adapters TEXT NOT NULL DEFAULT '[]',
        persona TEXT,
        notebook TEXT,
        pack TEXT NOT NULL,
        probe_hash TEXT NOT NULL,
        config TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        baseline_run INTEGER REFERENCES eval_runs(id),
        metrics TEXT,
        seconds REAL
    );
    CREATE INDEX IF NOT EXISTS eval_runs_by_fingerprint ON eval_runs(fingerprint, status);
    CREATE TABLE IF NOT EXISTS eval_items (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        item_id TEXT NOT NULL,
        format TEXT NOT NULL,
        question TEXT NOT NULL,
        prompt TEXT NOT NULL,
        expected TEXT NOT NULL,
        aliases TEXT NOT NULL,
        counterfactual INTEGER NOT NULL DEFAULT 0,
        reply TEXT NOT NULL,
        match_grade INTEGER,
        judge_grade INTEGER,
        UNIQUE(run_id, key)
    );
    """,
    # 4: retrieval notebooks and their notes, with embeddings (lorebook.notebook.store)
    """
    CREATE TABLE notebooks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        threshold REAL,
        calibration TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        notebook_id INTEGER NOT NULL REFERENCES notebooks(id) ON DELETE CASCADE,
        text TEXT NOT NULL,
        source TEXT,
        embedding BLOB NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE(notebook_id, text)
    );
    """,
    # 5: red-team runs and every graded attack (lorebook.redteam.store)
    """
    CREATE TABLE redteam_runs (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL DEFAULT 'running',
        model TEXT NOT NULL,
        adapters TEXT NOT NULL DEFAULT '[]',
        persona TEXT,
        notebook TEXT,
        config TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        metrics TEXT,
        seconds REAL
    );
    CREATE INDEX redteam_runs_by_fingerprint ON redteam_runs(fingerprint, status);
    CREATE TABLE redteam_items (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES redteam_runs(id) ON DELETE CASCADE,
        attack_id TEXT NOT NULL,
        technique TEXT NOT NULL,
        expect TEXT NOT NULL,
        conversation TEXT NOT NULL,
        grades TEXT NOT NULL,
        held INTEGER NOT NULL,
        judge_held INTEGER,
        UNIQUE(run_id, attack_id)
    );
    """,
    # 6: a note imported from a knowledge pack keeps its question and answer (the prompt shows them as Q/A)
    """
    ALTER TABLE notes ADD COLUMN question TEXT;
    ALTER TABLE notes ADD COLUMN answer TEXT;
    """,
    # 7: a notebook's embedding precision (float32, or int8 for fast imports), fixed at creation
    """
    ALTER TABLE notebooks ADD COLUMN embedding_precision TEXT NOT NULL DEFAULT 'float32';
    """,
]


def connect(path: Path | None = None) -> sqlite3.Connection:
    """Open the database, run pending migrations, and return the connection."""
    path = path or paths.database()
    try:
        db = sqlite3.connect(path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA journal_mode = WAL")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise LorebookError(
            f"database {path} is unreadable ({exc})",
            "move the file aside (it will be recreated) or restore it from a backup",
        ) from None
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Apply migrations newer than the database's user_version; returns the new version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise LorebookError(
            f"database schema version {version} is newer than this lorebook ({len(MIGRATIONS)})",
            "upgrade lorebook",
        )
    for number in range(version, len(MIGRATIONS)):
        with db:  # each migration is one transaction: it runs whole or not at all
            db.executescript("BEGIN;" + MIGRATIONS[number] + f";PRAGMA user_version = {number + 1};COMMIT;")
    return len(MIGRATIONS)


@dataclass
class ConversationRow:
    id: int
    started_at: float
    model: str
    persona: str | None
    adapters: list[str]
    engine: str
    title: str
    messages: int


class ConversationLog:
    """Writes one conversation as it happens (each message committed at once, so a crash loses nothing)."""

    def __init__(self, db: sqlite3.Connection, model: str, engine: str, persona: str | None, adapters: list[str]):
        self.db = db
        with db:
            cur = db.execute(
                "INSERT INTO conversations (started_at, model, persona, adapters, engine) VALUES (?, ?, ?, ?, ?)",
                (time.time(), model, persona, json.dumps(adapters), engine),
            )
        self.id = cur.lastrowid

    def add(self, role: str, content: str, prompt_tokens=None, completion_tokens=None, seconds=None) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, prompt_tokens, completion_tokens,"
                " seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.id, role, content, time.time(), prompt_tokens, completion_tokens, seconds),
            )
            if role == "user":
                self.db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title = ''", (content[:60], self.id)
                )


def list_conversations(db: sqlite3.Connection, limit: int = 20) -> list[ConversationRow]:
    rows = db.execute(
        "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS n "
        "FROM conversations c ORDER BY c.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        ConversationRow(r["id"], r["started_at"], r["model"], r["persona"], json.loads(r["adapters"]), r["engine"],
                        r["title"], r["n"])
        for r in rows
    ]


def conversation_messages(db: sqlite3.Connection, conversation_id: int) -> list[sqlite3.Row]:
    if db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
        raise LorebookError(f"no conversation with id {conversation_id}", "see `lorebook logs list`")
    return db.execute(
        "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
    ).fetchall()
