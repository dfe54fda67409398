"""Notebooks in PostgreSQL with pgvector: one notebook shared by several machines.

The default store (lorebook.notebook.store) is each machine's own SQLite file, so a notebook imported
on a laptop is invisible to the server that answers the questions. Point every machine at one
PostgreSQL database instead and they all read and write the same notes: what one imports, the others
search at once. Any SQLAlchemy URL selects it, for one command or for every lorebook command:

    lorebook notebook --store postgresql+psycopg2://user:pw@host/db import oscars examples/oscars-2023.jsonl
    LOREBOOK_NOTEBOOK_URL=postgresql+psycopg2://user:pw@host/db lorebook notebook import oscars ...

With the variable set, `Notebook.create/open/all` return a `PgNotebook`, so chat, ask, eval, redteam and
serve use the shared notebook unchanged. It needs `pip install 'lorebook[postgres]'` and the pgvector
extension on the server (README, "Sharing a notebook between machines"); the tables are created on
first use, with `CREATE EXTENSION IF NOT EXISTS vector`.

Search runs on the server: `ORDER BY embedding <#> query LIMIT k` (`<#>` is the negative inner product,
which for MiniLM's unit vectors is minus the cosine) through an HNSW index. Every notebook gets its own
partial index (`WHERE notebook_id = N`): through one index for all notebooks, the graph walk returns the
nearest notes of any notebook and the filter applied afterwards can leave a small notebook with no hits.
HNSW is approximate where the SQLite store is exact; searches raise `hnsw.ef_search` for recall.
"""

from __future__ import annotations

import functools
import time

import numpy as np
from tqdm import tqdm

from lorebook.errors import InputError
from lorebook.notebook.embedder import DIMENSIONS, check_precision, get_embedder
from lorebook.notebook.store import (
    NAME_PATTERN,
    STORE_VARIABLE,
    Hit,
    check_note,
    embed_notes,
    notebook_url,
)

try:
    import sqlalchemy as sa
    from pgvector.sqlalchemy import Vector
    from sqlalchemy.dialects.postgresql import insert
except ImportError as exc:  # the postgres extra is optional; the SQLite store needs none of this
    raise InputError(f"the PostgreSQL notebook store needs the {exc.name} package",
                     "pip install 'lorebook[postgres]'") from None

EF_SEARCH = 100  # HNSW candidates a search keeps (pgvector's default, 40, misses more true neighbours)
QUERY_BATCH = 256  # query vectors per search statement: calibration sends hundreds, one round trip each 256
REBUILD_AT = 1000  # an import of this many new notes that at least doubles a notebook rebuilds its index
KNOWN_BATCH = 5000  # texts per duplicate check, so a 100,000-note import never sends one huge statement
LOCK = 0x6C6F7265  # advisory lock key ("lore"): machines starting at once create tables and indexes once
VECTOR = Vector(DIMENSIONS)

metadata = sa.MetaData()
notebooks = sa.Table(
    "notebooks", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("threshold", sa.Double),
    sa.Column("calibration", sa.Text, nullable=False, server_default="{}"),
    sa.Column("embedding_precision", sa.Text, nullable=False, server_default="float32"),
)
notes = sa.Table(
    "notes", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("notebook_id", sa.BigInteger, sa.ForeignKey("notebooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("embedding", VECTOR, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("question", sa.Text),  # from a knowledge pack: the prompt shows the note as Q/A
    sa.Column("answer", sa.Text),
)
# UNIQUE (notebook_id, text), through a hash of the text: a btree entry holds at most 2,704 bytes, and a
# 2,000-character note in Chinese is 6,000 (PostgreSQL refuses it; SQLite takes it).
sa.Index("notes_unique_text", notes.c.notebook_id, sa.func.md5(notes.c.text), unique=True)


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The server's or driver's own first line, without SQLAlchemy's statement and help link."""
    lines = str(exc.orig or exc).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__


@functools.cache
def engine_for(url: str) -> sa.Engine:
    """A pooled engine for `url` (one per URL per process), with pgvector and the notebook tables in place."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise InputError(f"{STORE_VARIABLE} (or --store) is not a database URL: {url!r}",
                         "use postgresql+psycopg2://user:pw@host/db") from None
    if "+" not in parsed.drivername:  # postgres:// (as hosting services spell it) or postgresql://: SQLAlchemy
        parsed = parsed.set(drivername="postgresql+psycopg2")  # 2.1 would pick psycopg 3, not in the extra
    where = parsed.render_as_string(hide_password=True)
    # An unreachable host would otherwise hang for the operating system's TCP timeout (minutes).
    timeout = {"connect_timeout": 10} if parsed.get_driver_name() in ("psycopg2", "psycopg") else {}
    try:
        engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=timeout)
    except ImportError as exc:
        raise InputError(f"the PostgreSQL notebook store needs the {exc.name} package",
                         "pip install 'lorebook[postgres]'") from None
    try:
        db = engine.connect()
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise InputError(f"cannot reach the notebook database {where}: {_reason(exc)}",
                         f"start PostgreSQL there, or fix the URL (--store or {STORE_VARIABLE})") from None
    with db:
        step = "pgvector is not available in"
        try:
            with db.begin():
                db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK})
                db.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
                step = "cannot create the notebook tables in"
                metadata.create_all(db)
                # Tables made by a lorebook before notebooks had a precision (create_all adds no columns).
                db.execute(sa.text("ALTER TABLE notebooks ADD COLUMN IF NOT EXISTS embedding_precision TEXT "
                                   "NOT NULL DEFAULT 'float32'"))
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            fix = ("install pgvector on the server and run `CREATE EXTENSION vector;` in that database as a "
                   "superuser (README: Sharing a notebook between machines)" if step.startswith("pgvector")
                   else "grant this user CREATE on the schema, or let its owner run the first command")
            raise InputError(f"{step} {where}: {_reason(exc)}", fix) from None
    return engine


class PgNotebook:
    """One named notebook in PostgreSQL: the SQLite Notebook's methods, arguments, results and errors."""

    def __init__(self, engine: sa.Engine, row: sa.Row):
        self.engine = engine
        self.id, self.name, self.threshold = row.id, row.name, row.threshold
        self.precision = row.embedding_precision
        self._index = f"notes_hnsw_{int(self.id)}"

    @property
    def embedder(self):
        """The embedder of this notebook's precision (notes and queries alike)."""
        return get_embedder(self.precision)

    @classmethod
    def create(cls, name: str, url: str | None = None, precision: str = "float32") -> PgNotebook:
        """Create an empty notebook; `url` defaults to $LOREBOOK_NOTEBOOK_URL."""
        if not NAME_PATTERN.match(name):
            raise InputError(f"bad notebook name {name!r}", "use letters, digits, '.', '_' or '-', up to 64")
        check_precision(precision)
        engine = engine_for(url or notebook_url())
        try:
            with engine.begin() as db:
                db.execute(notebooks.insert().values(name=name, created_at=time.time(),
                                                     embedding_precision=precision))
        except sa.exc.IntegrityError:
            raise InputError(f"notebook {name!r} already exists", f"add to it, or `lorebook notebook rm {name}`") from None
        return cls.open(name, url)

    @classmethod
    def open(cls, name: str, url: str | None = None) -> PgNotebook:
        """An existing notebook by name; a one-line error names the fix when there is none."""
        engine = engine_for(url or notebook_url())
        with engine.connect() as db:
            row = db.execute(sa.select(notebooks).where(notebooks.c.name == name)).first()
        if row is None:
            raise InputError(f"unknown notebook {name!r}",
                             f"create it with `lorebook notebook create {name}` (see `lorebook notebook list`)")
        return cls(engine, row)

    @staticmethod
    def all(url: str | None = None) -> list[dict]:
        """Every notebook with its threshold, creation time and note count, by name."""
        query = (sa.select(notebooks.c.name, notebooks.c.threshold, notebooks.c.created_at,
                           notebooks.c.embedding_precision.label("precision"), sa.func.count(notes.c.id).label("notes"))
                 .select_from(notebooks.outerjoin(notes)).group_by(notebooks.c.id)
                 .order_by(notebooks.c.name.collate("C")))  # byte order, as SQLite sorts, whatever the locale
        with engine_for(url or notebook_url()).connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    def delete(self) -> None:
        """Delete the notebook, its notes (ON DELETE CASCADE) and its search index."""
        with self.engine.begin() as db:
            db.execute(sa.text(f"DROP INDEX IF EXISTS {self._index}"))
            db.execute(notebooks.delete().where(notebooks.c.id == self.id))

    def add(self, texts: list[str], source: str | None = None, progress: bool = False,
            batch_size: int = 512, questions: list[str] | None = None,
            answers: list[str] | None = None) -> tuple[int, int]:
        """Embed and store notes; returns (added, skipped duplicates), as Notebook.add. Each batch is one
        multi-row INSERT in its own transaction, so an interrupted import keeps what it stored. ON CONFLICT
        DO NOTHING makes a note another machine adds at the same moment a skip, not an error."""
        texts = [check_note(text, f"note {i + 1}") for i, text in enumerate(texts)]
        asked = dict(zip(texts, zip(questions, answers or [None] * len(texts)))) if questions else {}
        known = self._known(texts)
        fresh = list(dict.fromkeys(t for t in texts if t not in known))
        upgrade = [{"q": asked[t][0], "a": asked[t][1], "t": t} for t in dict.fromkeys(texts) if t in known and t in asked]
        if upgrade:  # notes stored before they kept their pack question get it now
            with self.engine.begin() as db:
                db.execute(sa.text(f"UPDATE notes SET question = :q, answer = :a WHERE notebook_id = {int(self.id)} "
                                   "AND md5(text) = md5(:t) AND text = :t AND question IS NULL"), upgrade)
        if len(fresh) >= REBUILD_AT and len(fresh) > self.count():
            # Inserting into the HNSW graph note by note costs more than embedding the note; building it
            # again afterwards is faster. Meanwhile searches scan the notebook exactly.
            with self.engine.begin() as db:
                db.execute(sa.text(f"DROP INDEX IF EXISTS {self._index}"))
        added = 0
        bar = tqdm(total=len(fresh), desc=f"notebook {self.name}", unit="note", disable=not progress)
        for start in range(0, len(fresh), batch_size):
            chunk = fresh[start : start + batch_size]
            vectors = embed_notes(self.embedder, chunk, [asked.get(t, (None,))[0] for t in chunk])
            now = time.time()
            rows = [{"notebook_id": self.id, "text": t, "source": source, "embedding": v, "created_at": now,
                     "question": asked.get(t, (None, None))[0], "answer": asked.get(t, (None, None))[1]}
                    for t, v in zip(chunk, vectors)]
            try:
                with self.engine.begin() as db:
                    added += len(db.execute(insert(notes).values(rows).on_conflict_do_nothing()
                                            .returning(notes.c.id)).all())
            except sa.exc.IntegrityError:  # the notebook row is gone: deleted from another machine
                raise InputError(f"notebook {self.name!r} was deleted during the import",
                                 f"create it again with `lorebook notebook create {self.name}`") from None
            bar.update(len(chunk))
        if fresh:
            bar.set_postfix_str("search index")
            self._build_index()
        bar.close()
        return added, len(texts) - added

    def _known(self, texts: list[str]) -> set[str]:
        """Which of `texts` the notebook holds already, looked up through the unique (notebook, md5) index."""
        query = sa.text("SELECT n.text FROM notes n JOIN unnest(CAST(:texts AS text[])) AS t(x) "
                        "ON md5(n.text) = md5(t.x) AND n.text = t.x WHERE n.notebook_id = :id")
        known: set[str] = set()
        with self.engine.connect() as db:
            for start in range(0, len(texts), KNOWN_BATCH):
                known.update(db.execute(query, {"texts": texts[start : start + KNOWN_BATCH], "id": self.id}).scalars())
        return known

    def _build_index(self) -> None:
        """Build the notebook's HNSW index when it has none; later inserts keep it current. Built after the
        first import rather than at create: one bulk build of 20,000 notes took 16 s, where inserting them
        one at a time into the graph took 150 s (2 busy cores)."""
        with self.engine.begin() as db:
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key, :id)"), {"key": LOCK, "id": self.id})
            if db.execute(sa.text("SELECT to_regclass(:name)"), {"name": self._index}).scalar():
                return
            db.execute(sa.text("SET LOCAL maintenance_work_mem = '512MB'"))  # build the graph in memory
            db.execute(sa.text(f"CREATE INDEX {self._index} ON notes USING hnsw (embedding vector_ip_ops) "
                               f"WHERE notebook_id = {int(self.id)}"))

    def notes(self, limit: int | None = None) -> list[dict]:
        """The notebook's notes (id, text, source, created_at), oldest first."""
        query = (sa.select(notes.c.id, notes.c.text, notes.c.source, notes.c.created_at)
                 .where(notes.c.notebook_id == self.id).order_by(notes.c.id))
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query.limit(int(limit)) if limit else query)]

    def count(self) -> int:
        """How many notes the notebook holds."""
        with self.engine.connect() as db:
            return db.execute(sa.select(sa.func.count()).where(notes.c.notebook_id == self.id)).scalar_one()

    def remove(self, note_id: int) -> None:
        """Remove one note; a one-line error when the notebook has no such note."""
        with self.engine.begin() as db:
            gone = db.execute(notes.delete().where(notes.c.id == note_id, notes.c.notebook_id == self.id)).rowcount
        if not gone:
            raise InputError(f"notebook {self.name!r} has no note {note_id}", f"see `lorebook notebook list {self.name}`")

    def set_threshold(self, threshold: float, calibration: str = "{}") -> None:
        """Store the calibrated scope threshold and the calibration report (JSON)."""
        with self.engine.begin() as db:
            db.execute(notebooks.update().where(notebooks.c.id == self.id)
                       .values(threshold=threshold, calibration=calibration))
        self.threshold = threshold

    def _nearest(self, queries: np.ndarray, k: int) -> list[list[tuple]]:
        """Top-k (id, text, cosine, question, answer) for each query vector, best first, found by the server."""
        results: list[list[tuple]] = []
        with self.engine.begin() as db:
            db.execute(sa.text(f"SET LOCAL hnsw.ef_search = {min(1000, max(EF_SEARCH, int(k)))}"))
            for start in range(0, len(queries), QUERY_BATCH):
                chunk = queries[start : start + QUERY_BATCH]
                values = ", ".join(f"({i}, CAST(:q{i} AS vector))" for i in range(len(chunk)))
                # Each VALUES row walks the index in a LATERAL subquery. The notebook id is written into the
                # SQL, not bound, so the planner matches the partial index even when a driver prepares it.
                query = sa.text(
                    f"SELECT q.i, n.id, n.text, n.score, n.question, n.answer FROM (VALUES {values}) AS q(i, v) "
                    f"CROSS JOIN LATERAL (SELECT id, text, -(embedding <#> q.v) AS score, question, answer "
                    f"FROM notes WHERE notebook_id = {int(self.id)} "
                    f"ORDER BY embedding <#> q.v LIMIT {int(k)}) AS n ORDER BY q.i, n.score DESC"
                ).bindparams(*(sa.bindparam(f"q{i}", vector, type_=VECTOR) for i, vector in enumerate(chunk)))
                found: list[list[tuple]] = [[] for _ in chunk]
                for i, note_id, text, score, question, answer in db.execute(query):
                    found[i].append((note_id, text, float(score), question, answer))
                results.extend(found)
        return results

    def search_vectors(self, queries: np.ndarray, k: int = 3) -> list[list[tuple[int, float]]]:
        """Top-k (note id, score) for each query vector, best first."""
        return [[(hit[0], hit[2]) for hit in hits] for hits in self._nearest(queries, k)]

    def search(self, queries: list[str], k: int = 3) -> list[list[Hit]]:
        """Top-k notes for each query text."""
        found = self._nearest(self.embedder.embed(queries), k)
        return [[Hit(*hit) for hit in hits] for hits in found]
