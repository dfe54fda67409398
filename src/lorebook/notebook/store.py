"""Notebooks and notes in the lorebook SQLite database, searched through an in-memory matrix.

Each note is stored with its embedding (384 float32 values as a BLOB, migration 4 of
lorebook.chat.store). Search loads a notebook's vectors once into one contiguous matrix and scores a
query with a single matrix-vector product: for 100,000 notes that is 38M multiply-adds, a few
milliseconds on two cores, so no approximate index is needed at this scale. The matrix is rebuilt
when the notebook's notes change. Checking that with a count/max-id query costs 15–20 ms at 100,000 notes
(more than the search), so a search first asks SQLite whether anything was written at all since the
matrix was checked (this connection's change counter and `PRAGMA data_version`, which moves when another
connection commits: microseconds) and counts only when something was.

When $LOREBOOK_NOTEBOOK_URL names a PostgreSQL server, `Notebook.create/open/all` hand over to
lorebook.notebook.pg_store instead: one notebook shared by several machines.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from lorebook.chat.store import connect
from lorebook.errors import InputError
from lorebook.notebook.embedder import DIMENSIONS, check_precision, get_embedder

MAX_NOTE_CHARS = 2000  # a note is a fact or two; longer text is a document to split, not a note
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STORE_VARIABLE = "LOREBOOK_NOTEBOOK_URL"  # `lorebook notebook --store URL` sets it for one command


@dataclass
class _Matrix:
    """A notebook's vectors in memory, with what proves they are current."""

    version: tuple  # (database file, note count, max note id) when loaded
    db: sqlite3.Connection  # the connection that last checked it (held, so its identity cannot be reused)
    writes: tuple  # (db.total_changes, PRAGMA data_version) at that check
    ids: np.ndarray
    vectors: np.ndarray


_MATRICES: dict[int, _Matrix] = {}  # notebook id -> its matrix


@dataclass
class Hit:
    """A note found by search, with its cosine similarity to the query."""

    id: int
    text: str
    score: float
    question: str | None = None  # the pack question the note answers, when it came from a pack
    answer: str | None = None


def check_note(text: str, where: str = "note") -> str:
    """The note's text, stripped; one-line errors for empty or oversized notes."""
    text = text.strip()
    if not text:
        raise InputError(f"{where} is empty", "write the fact as one sentence")
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"{where} is {len(text):,} characters (the limit is {MAX_NOTE_CHARS:,})",
                         "split it into several short notes, one fact each")
    return text


def notebook_url() -> str:
    """Where notebooks live: $LOREBOOK_NOTEBOOK_URL, a SQLAlchemy URL; empty or sqlite:// means this module."""
    return os.environ.get(STORE_VARIABLE, "").strip()


def _server():
    """PgNotebook when notebook_url() names a PostgreSQL server (lorebook.notebook.pg_store), else None."""
    url = notebook_url()
    scheme = url.partition(":")[0].partition("+")[0].lower()
    if scheme in ("postgresql", "postgres"):
        from lorebook.notebook.pg_store import PgNotebook

        return PgNotebook
    if url and url.rstrip(":/").lower() != "sqlite":
        raise InputError(f"{STORE_VARIABLE} is {url!r}: notebooks live in PostgreSQL or the lorebook database",
                         "use postgresql+psycopg2://user:pw@host/db, or sqlite:// (or nothing) for the local "
                         "database (LOREBOOK_HOME moves it)")
    return None


def embed_notes(embedder, texts: list[str], questions: list[str | None]) -> np.ndarray:
    """Unit vectors for notes; a note with a question gets the normalised mean of both embeddings."""
    vectors = embedder.embed(texts)
    with_question = [i for i, question in enumerate(questions) if question]
    if with_question:
        mixed = vectors[with_question] + embedder.embed([questions[i] for i in with_question])
        vectors[with_question] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return vectors


class Notebook:
    """One named notebook: add, list, remove and search its notes."""

    def __init__(self, db: sqlite3.Connection, row: sqlite3.Row):
        self.db = db
        self.id, self.name = row["id"], row["name"]
        self.threshold = row["threshold"]
        self.precision = row["embedding_precision"]

    @property
    def embedder(self):
        """The embedder of this notebook's precision: its notes and its queries are embedded alike."""
        return get_embedder(self.precision)

    @classmethod
    def create(cls, name: str, db: sqlite3.Connection | None = None, precision: str = "float32") -> Notebook:
        if not NAME_PATTERN.match(name):
            raise InputError(f"bad notebook name {name!r}", "use letters, digits, '.', '_' or '-', up to 64")
        check_precision(precision)
        if db is None and (server := _server()):
            return server.create(name, precision=precision)
        db = db or connect()
        try:
            with db:
                db.execute("INSERT INTO notebooks (name, created_at, embedding_precision) VALUES (?, ?, ?)",
                           (name, time.time(), precision))
        except sqlite3.IntegrityError:
            raise InputError(f"notebook {name!r} already exists", f"add to it, or `lorebook notebook rm {name}`") from None
        return cls.open(name, db)

    @classmethod
    def open(cls, name: str, db: sqlite3.Connection | None = None) -> Notebook:
        if db is None and (server := _server()):
            return server.open(name)
        db = db or connect()
        row = db.execute("SELECT * FROM notebooks WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise InputError(f"unknown notebook {name!r}",
                             f"create it with `lorebook notebook create {name}` (see `lorebook notebook list`)")
        return cls(db, row)

    @staticmethod
    def all(db: sqlite3.Connection | None = None) -> list[dict]:
        if db is None and (server := _server()):
            return server.all()
        db = db or connect()
        rows = db.execute(
            "SELECT n.name, n.threshold, n.created_at, n.embedding_precision AS precision, COUNT(t.id) AS notes "
            "FROM notebooks n "
            "LEFT JOIN notes t ON t.notebook_id = n.id GROUP BY n.id ORDER BY n.name"
        ).fetchall()
        return [dict(row) for row in rows]

    def delete(self) -> None:
        with self.db:
            self.db.execute("DELETE FROM notebooks WHERE id = ?", (self.id,))
        _MATRICES.pop(self.id, None)

    def add(self, texts: list[str], source: str | None = None, progress: bool = False,
            batch_size: int = 512, questions: list[str] | None = None,
            answers: list[str] | None = None) -> tuple[int, int]:
        """Embed and store notes; returns (added, skipped duplicates). Each batch commits on its own,
        so an interrupted import keeps what it stored and a rerun skips it as duplicates.

        `questions` (one per note, from a knowledge pack) are averaged into the note's vector: a
        statement and a question about it embed differently, and the mean finds the right note for
        held-out paraphrases far more often (top-1 93% vs 75% on the Oscars pack). They are kept with
        `answers`, which the prompt shows as Q/A (see scope.with_notes); a duplicate note without them
        gets them, so importing a pack again upgrades a notebook made before they were stored.
        """
        texts = [check_note(text, f"note {i + 1}") for i, text in enumerate(texts)]
        asked = dict(zip(texts, zip(questions, answers or [None] * len(texts)))) if questions else {}
        known = {row[0] for row in self.db.execute("SELECT text FROM notes WHERE notebook_id = ?", (self.id,))}
        fresh = list(dict.fromkeys(t for t in texts if t not in known))
        skipped = len(texts) - len(fresh)
        if asked and skipped:
            with self.db:
                self.db.executemany(
                    "UPDATE notes SET question = ?, answer = ? WHERE notebook_id = ? AND text = ? AND question IS NULL",
                    [(*asked[t], self.id, t) for t in dict.fromkeys(texts) if t in known and t in asked])
        embedder = self.embedder
        bar = tqdm(total=len(fresh), desc=f"notebook {self.name}", unit="note", disable=not progress)
        for start in range(0, len(fresh), batch_size):
            chunk = fresh[start : start + batch_size]
            vectors = embed_notes(embedder, chunk, [asked.get(t, (None,))[0] for t in chunk])
            now = time.time()
            with self.db:
                self.db.executemany(
                    "INSERT INTO notes (notebook_id, text, source, embedding, created_at, question, answer) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(self.id, t, source, v.tobytes(), now, *asked.get(t, (None, None)))
                     for t, v in zip(chunk, vectors)],
                )
            bar.update(len(chunk))
        bar.close()
        return len(fresh), skipped

    def notes(self, limit: int | None = None) -> list[dict]:
        sql = "SELECT id, text, source, created_at FROM notes WHERE notebook_id = ? ORDER BY id"
        rows = self.db.execute(sql + (f" LIMIT {int(limit)}" if limit else ""), (self.id,)).fetchall()
        return [dict(row) for row in rows]

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM notes WHERE notebook_id = ?", (self.id,)).fetchone()[0]

    def remove(self, note_id: int) -> None:
        with self.db:
            gone = self.db.execute("DELETE FROM notes WHERE id = ? AND notebook_id = ?", (note_id, self.id)).rowcount
        if not gone:
            raise InputError(f"notebook {self.name!r} has no note {note_id}", f"see `lorebook notebook list {self.name}`")

    def set_threshold(self, threshold: float, calibration: str = "{}") -> None:
        with self.db:
            self.db.execute("UPDATE notebooks SET threshold = ?, calibration = ? WHERE id = ?",
                            (threshold, calibration, self.id))
        self.threshold = threshold

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        writes = (self.db.total_changes, self.db.execute("PRAGMA data_version").fetchone()[0])
        cached = _MATRICES.get(self.id)
        if cached is not None and cached.db is self.db and cached.writes == writes:
            return cached.ids, cached.vectors
        # The file is part of the version: two data homes can hold notebooks with the same id and counts.
        where = self.db.execute("PRAGMA database_list").fetchone()[2]
        version = (where, *self.db.execute(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM notes WHERE notebook_id = ?", (self.id,)).fetchone())
        if cached is None or cached.version != version:
            rows = self.db.execute("SELECT id, embedding FROM notes WHERE notebook_id = ? ORDER BY id",
                                   (self.id,)).fetchall()
            ids = np.array([row[0] for row in rows], dtype=np.int64)
            vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(-1, DIMENSIONS)
            cached = _Matrix(version, self.db, writes, ids, np.ascontiguousarray(vectors))
        _MATRICES[self.id] = _Matrix(version, self.db, writes, cached.ids, cached.vectors)
        return cached.ids, cached.vectors

    def search_vectors(self, queries: np.ndarray, k: int = 3) -> list[list[tuple[int, float]]]:
        """Top-k (note id, score) for each query vector, best first."""
        ids, matrix = self._matrix()
        if not len(ids):
            return [[] for _ in queries]
        scores = queries @ matrix.T
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        results = []
        for row, candidates in zip(scores, top):
            best = candidates[np.argsort(-row[candidates])]
            results.append([(int(ids[i]), float(row[i])) for i in best])
        return results

    def search(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        """Top-k notes for each query text."""
        found = self.search_vectors(self.embedder.embed(queries), k)
        wanted = {note_id for hits in found for note_id, _ in hits}
        rows = {}
        if wanted:
            marks = ",".join("?" * len(wanted))
            rows = {row[0]: row[1:] for row in self.db.execute(
                f"SELECT id, text, question, answer FROM notes WHERE id IN ({marks})", tuple(wanted))}
        return [[Hit(note_id, rows[note_id][0], score, *rows[note_id][1:]) for note_id, score in hits]
                for hits in found]
