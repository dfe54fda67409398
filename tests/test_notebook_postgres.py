"""The PostgreSQL + pgvector notebook store (lorebook.notebook.pg_store) against a real server.

The server is $LOREBOOK_TEST_PG_URL when set (any PostgreSQL with pgvector; each test works in a schema of
its own and drops it), else a throwaway PostgreSQL 16 + pgvector started from the `pgserver` wheel (a dev
dependency). Embeddings come from the real bundled MiniLM, as in tests/test_notebook.py.
"""

from __future__ import annotations

import inspect
import json
import os
import uuid
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("sqlalchemy", reason="needs the postgres extra: pip install 'lorebook[postgres]'")
pytest.importorskip("pgvector", reason="needs the postgres extra: pip install 'lorebook[postgres]'")
pytest.importorskip("psycopg2", reason="needs the postgres extra: pip install 'lorebook[postgres]'")

import sqlalchemy as sa

from lorebook.cli.main import app
from lorebook.errors import InputError
from lorebook.evaluate.probes import load_general_knowledge
from lorebook.notebook.pg_store import PgNotebook, engine_for, notes
from lorebook.notebook.scope import Retriever, calibrate
from lorebook.notebook.store import STORE_VARIABLE, Notebook
from lorebook.teach.pack import load_pack

PACK = "examples/oscars-2023.jsonl"
SKIP_REASON = ("needs PostgreSQL with pgvector: pip install pgserver (bundles both; it is in the dev extra), "
               "or set LOREBOOK_TEST_PG_URL=postgresql+psycopg2://user:pw@host/db")


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory) -> str:
    """The base URL of a PostgreSQL server with pgvector: $LOREBOOK_TEST_PG_URL, or a pgserver started here."""
    if url := os.environ.get("LOREBOOK_TEST_PG_URL"):
        yield url
        return
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR in CI containers
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError:
            pytest.skip(SKIP_REASON)
        try:
            server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
        except Exception as exc:  # noqa: BLE001 - any failure to start is a reason to skip, with the cause
            pytest.skip(f"pgserver could not start PostgreSQL ({exc}); {SKIP_REASON}")
    url = server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
    engine = sa.create_engine(url)
    with engine.begin() as db:  # in public, so dropping a test's schema never drops the extension
        db.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public"))
    engine.dispose()
    yield url
    engine_for.cache_clear()
    server.cleanup()


def _with(url: str, **query: str) -> str:
    return sa.make_url(url).update_query_dict(query).render_as_string(hide_password=False)


@pytest.fixture()
def pg_url(pg_server) -> str:
    """A URL whose tables live in a fresh schema, dropped after the test: every test starts empty."""
    schema = f"lorebook_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server)
    with admin.begin() as db:
        db.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield _with(pg_server, options=f"-csearch_path={schema},public")
    engine_for.cache_clear()  # the test's pools go with their engines
    with admin.begin() as db:
        db.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _oscars(notebook):
    facts = load_pack(PACK)
    notebook.add([f.fact for f in facts], questions=[f.question for f in facts])
    return notebook


def test_import_search_duplicates_and_remove(pg_url):
    oscars = _oscars(PgNotebook.create("oscars", pg_url))
    assert oscars.count() == 23 and oscars.add([load_pack(PACK)[0].fact]) == (0, 1)
    hits = oscars.search(["Which actor won the 2023 Oscar for Best Actor?"], 3)[0]
    assert "Brendan Fraser" in hits[0].text and hits[0].score > hits[1].score > hits[2].score
    notebook = PgNotebook.create("n", pg_url)
    assert notebook.add(["Ana lives in Lima.", "Ana lives in Lima.", "Bo likes tea."]) == (2, 1)
    assert notebook.add(["Bo likes tea.", "Cy plays chess."]) == (1, 1)
    assert [row["text"] for row in notebook.notes(2)] == ["Ana lives in Lima.", "Bo likes tea."]
    notebook.remove(notebook.notes()[0]["id"])
    assert notebook.count() == 2 and notebook.search(["Who plays chess?"], 1)[0][0].text == "Cy plays chess."
    found = notebook.search(["Who plays chess?"], 10)[0]  # this notebook's notes only, the removed one gone
    assert [h.text for h in found] == ["Cy plays chess.", "Bo likes tea."]
    assert notebook.add(["東京" * 1000]) == (1, 0)  # 6,000 bytes: past a btree entry, fine through md5
    rows = PgNotebook.all(pg_url)
    assert [(r["name"], r["notes"]) for r in rows] == [("n", 3), ("oscars", 23)] and rows[0]["threshold"] is None
    notebook.delete()
    assert [r["name"] for r in PgNotebook.all(pg_url)] == ["oscars"]


def _error(call) -> str:
    with pytest.raises(InputError) as caught:
        call()
    return caught.value.one_line()


def test_bad_input_gets_the_same_errors_as_sqlite(pg_url):
    sqlite, pg = Notebook.create("bad"), PgNotebook.create("bad", pg_url)
    megabyte = "x" * (1024 * 1024)
    same = [
        (lambda: sqlite.add(["   "]), lambda: pg.add(["   "])),
        (lambda: sqlite.add(["ok", megabyte]), lambda: pg.add(["ok", megabyte])),
        (lambda: sqlite.remove(99), lambda: pg.remove(99)),
        (lambda: Notebook.open("nope"), lambda: PgNotebook.open("nope", pg_url)),
        (lambda: Notebook.create("bad"), lambda: PgNotebook.create("bad", pg_url)),
        (lambda: Notebook.create("../etc"), lambda: PgNotebook.create("../etc", pg_url)),
    ]
    for on_sqlite, on_pg in same:
        assert _error(on_sqlite) == _error(on_pg)
    assert "empty" in _error(lambda: pg.add([""])) and "split it" in _error(lambda: pg.add([megabyte]))
    assert "unknown notebook 'nope'" in _error(lambda: PgNotebook.open("nope", pg_url))
    assert pg.count() == 0  # a bad note refuses the whole batch before anything is stored


def test_same_public_methods_as_the_sqlite_notebook():
    """A keyword added to Notebook.add (or any method) must be added to PgNotebook too."""
    for name, method in vars(Notebook).items():
        if not name.startswith("_") and callable(method):
            assert list(inspect.signature(getattr(PgNotebook, name)).parameters) == list(
                inspect.signature(getattr(Notebook, name)).parameters
            ) or name in ("create", "open", "all"), name
    for name in ("create", "open", "all"):  # a SQLite connection there, a URL here
        sqlite = list(inspect.signature(getattr(Notebook, name)).parameters)
        assert list(inspect.signature(getattr(PgNotebook, name)).parameters) == [
            "url" if p == "db" else p for p in sqlite], name


def test_two_machines_share_one_notebook(pg_url, monkeypatch):
    laptop_url = _with(pg_url, application_name="laptop")
    server_url = _with(pg_url.replace("+psycopg2", "", 1), application_name="server")  # the default driver
    laptop = PgNotebook.create("shared", laptop_url)
    laptop.add(["The lighthouse keeper is named Ada."])
    server = PgNotebook.open("shared", server_url)
    assert server.engine is not laptop.engine  # separate pools, separate connections
    assert server.search(["Who keeps the lighthouse?"], 1)[0][0].text.startswith("The lighthouse")
    server.add(["The ferry to Skarn leaves at dawn."])
    ferry = laptop.search(["When does the ferry leave?"], 1)[0][0]
    assert ferry.text.startswith("The ferry")
    laptop.remove(ferry.id)
    assert all(h.text.startswith("The lighthouse") for h in server.search(["When does the ferry leave?"], 2)[0])
    laptop.set_threshold(0.5, "{}")
    assert PgNotebook.open("shared", server_url).threshold == 0.5
    # Both add the same note at once: the slower one's insert meets the other's row and counts a skip.
    monkeypatch.setattr(PgNotebook, "_known", lambda self, texts: set())
    assert laptop.add(["Tide tables hang in the harbour office."]) == (1, 0)
    assert server.add(["Tide tables hang in the harbour office."]) == (0, 1)
    server.delete()
    assert "unknown notebook" in _error(lambda: PgNotebook.open("shared", laptop_url))
    assert "was deleted" in _error(lambda: laptop.add(["One more note."]))


def test_cli_store_option_end_to_end(pg_url, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(app, ["notebook", "--store", pg_url, "import", "oscars", PACK])
    assert result.exit_code == 0, result.output
    assert "23 note(s) added" in result.output and "scope threshold" in result.output
    assert STORE_VARIABLE not in os.environ  # --store lasts one command
    out = runner.invoke(app, ["notebook", "--store", pg_url, "search", "oscars",
                              "Which actor won the 2023 Oscar for Best Actor?"]).output
    assert "Brendan Fraser" in out.splitlines()[0] and "in scope" in out
    again = runner.invoke(app, ["notebook", "--store", pg_url, "import", "oscars", PACK])
    assert "0 note(s) added, 23 already there" in again.output
    assert json.loads(runner.invoke(app, ["notebook", "list", "--json"]).output) == []  # SQLite untouched
    monkeypatch.setenv(STORE_VARIABLE, pg_url)  # the variable alone: what chat, eval and serve see
    rows = json.loads(runner.invoke(app, ["notebook", "list", "--json"]).output)
    assert rows[0]["name"] == "oscars" and rows[0]["notes"] == 23 and rows[0]["threshold"] > 0
    assert isinstance(Notebook.open("oscars"), PgNotebook) and Notebook.all() == rows
    result = runner.invoke(app, ["notebook", "rm", "oscars", "99999"])
    assert result.exit_code == 1 and "no note 99999" in result.output and "fix:" in result.output
    monkeypatch.delenv(STORE_VARIABLE)
    assert "--store" in runner.invoke(app, ["notebook", "--help"]).output
    from lorebook.cli import notebook as cli

    assert cli.STORE_VARIABLE == STORE_VARIABLE  # the CLI names it without importing the store


def test_sqlite_and_postgres_agree_on_the_top_hit(pg_url):
    sqlite, pg = _oscars(Notebook.create("oscars")), _oscars(PgNotebook.create("oscars", pg_url))
    facts = load_pack(PACK)
    queries = [q for f in facts for q in (f.question, *f.paraphrases)]
    queries += [item["question"] for item in load_general_knowledge()[:60]]
    for a, b in zip(sqlite.search(queries, 3), pg.search(queries, 3)):
        assert [h.text for h in a] == [h.text for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_an_int8_notebook_keeps_its_precision_and_old_tables_get_the_column(pg_url):
    sqlite = _oscars(Notebook.create("fast", precision="int8"))
    pg = _oscars(PgNotebook.create("fast", pg_url, precision="int8"))
    assert PgNotebook.open("fast", pg_url).precision == "int8" and PgNotebook.all(pg_url)[0]["precision"] == "int8"
    queries = [p for f in load_pack(PACK) for p in f.paraphrases]
    for a, b in zip(sqlite.search(queries, 1), pg.search(queries, 1)):  # both embed the queries in int8
        assert a[0].text == b[0].text and a[0].score == pytest.approx(b[0].score, abs=1e-5)
    engine = sa.create_engine(pg_url)
    with engine.begin() as db:  # a notebook table from before precisions existed
        db.execute(sa.text("ALTER TABLE notebooks DROP COLUMN embedding_precision"))
    engine.dispose()
    engine_for.cache_clear()
    assert PgNotebook.open("fast", pg_url).precision == "float32"


def test_scope_calibration_and_retriever_on_postgres(pg_url, monkeypatch):
    monkeypatch.setenv(STORE_VARIABLE, pg_url)
    notebook = _oscars(Notebook.create("oscars"))
    assert isinstance(notebook, PgNotebook)
    facts = load_pack(PACK)
    general = [item["question"] for item in load_general_knowledge()]
    report = calibrate(notebook, [q for f in facts for q in (f.question, *f.paraphrases)], general)
    assert report["in_scope_passed"] >= 0.95 and report["out_of_scope_passed"] <= 0.01
    retriever = Retriever(Notebook.open("oscars"))  # the threshold came back from the server
    assert retriever.threshold == pytest.approx(report["threshold"], abs=1e-4)
    augmented, used = retriever.augment([{"role": "user", "content": "Who won Best Actor in 2023?"}])
    assert used and "Brendan Fraser" in augmented[0]["content"]
    conversations = [[{"role": "user", "content": q}] for q in general[:40]]
    assert retriever.augment_many(conversations) == (conversations, [[] for _ in conversations])


def test_the_hnsw_index_finds_the_exact_vector_and_small_notebooks_keep_their_hits(pg_url):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    big, small = PgNotebook.create("big", pg_url), PgNotebook.create("small", pg_url)
    with big.engine.begin() as db:
        db.execute(notes.insert(), [{"notebook_id": big.id, "text": f"filler {i}", "embedding": v, "created_at": 0.0}
                                    for i, v in enumerate(vectors)])
    big.add(["The lighthouse keeper is named Ada."])  # the first real import builds the index
    small.add(["Ana lives in Lima.", "Bo likes tea.", "Cy plays chess."])
    best = big.search_vectors(vectors[123:125], 3)
    assert [hits[0][0] for hits in best] == [124, 125] and best[0][0][1] == pytest.approx(1.0, abs=1e-5)
    assert best[0][0][1] > best[0][1][1]
    assert len(small.search_vectors(vectors[:2], 3)[0]) == 3  # 5,000 nearer notes elsewhere filter nothing away
    with big.engine.connect() as db:
        plan = db.execute(sa.text(f"EXPLAIN SELECT id FROM notes WHERE notebook_id = {big.id} "
                                  "ORDER BY embedding <#> CAST(:q AS vector) LIMIT 3"),
                          {"q": str(vectors[0].tolist())}).scalars().all()
    assert any(f"notes_hnsw_{big.id}" in line for line in plan), plan


def test_a_large_import_rebuilds_the_index_instead_of_growing_it(pg_url, monkeypatch):
    from lorebook.notebook import pg_store

    notebook = PgNotebook.create("grow", pg_url)
    notebook.add(["Ana lives in Lima."])
    monkeypatch.setattr(pg_store, "REBUILD_AT", 2)
    dropped = []
    with notebook.engine.connect() as db:
        oid = db.execute(sa.text(f"SELECT to_regclass('notes_hnsw_{notebook.id}')::oid")).scalar()
    sa.event.listen(notebook.engine, "before_cursor_execute",
                    lambda conn, cursor, sql, *rest: dropped.append(sql) if sql.startswith("DROP INDEX") else None)
    assert notebook.add(["Bo likes tea.", "Cy plays chess."]) == (2, 0)  # doubles it: drop, insert, build
    assert notebook.add(["Di sings."]) == (1, 0)  # does not: the index takes the note
    with notebook.engine.connect() as db:
        rebuilt = db.execute(sa.text(f"SELECT to_regclass('notes_hnsw_{notebook.id}')::oid")).scalar()
    assert len(dropped) == 1 and oid and rebuilt and rebuilt != oid
    assert notebook.search(["Who sings?"], 1)[0][0].text == "Di sings."


def test_unreachable_server_and_missing_pgvector_are_one_line_errors(pg_server, monkeypatch):
    message = _error(lambda: PgNotebook.open("x", "postgresql+psycopg2://someone:secret@127.0.0.1:1/lore"))
    assert message.startswith("cannot reach the notebook database") and "secret" not in message
    assert "\n" not in message and "fix: start PostgreSQL" in message
    assert "not a database URL" in _error(lambda: PgNotebook.open("x", "no url here"))
    monkeypatch.setenv(STORE_VARIABLE, "mysql://x/y")
    assert "LOREBOOK_NOTEBOOK_URL is 'mysql://x/y'" in _error(Notebook.all)
    monkeypatch.setenv(STORE_VARIABLE, "sqlite://")
    assert Notebook.all() == []  # the lorebook database, as with the variable unset
    # A role that may not create extensions, in a database without pgvector: what a stock server says.
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    database = f"lorebook_novector_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as db:
            db.execute(sa.text("CREATE ROLE lorebook_plain LOGIN") if not db.execute(sa.text(
                "SELECT 1 FROM pg_roles WHERE rolname = 'lorebook_plain'")).first() else sa.text("SELECT 1"))
            db.execute(sa.text(f"CREATE DATABASE {database}"))
    except sa.exc.DBAPIError as exc:
        pytest.skip(f"the test server's user cannot create roles or databases ({exc.orig})")
    try:
        url = sa.make_url(pg_server).set(username="lorebook_plain", password=None, database=database)
        message = _error(lambda: PgNotebook.all(url.render_as_string(hide_password=False)))
        assert message.startswith(f"pgvector is not available in {url.render_as_string()}")
        assert "permission denied" in message and "CREATE EXTENSION vector" in message and "\n" not in message
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f"DROP DATABASE {database} WITH (FORCE)"))
        admin.dispose()
