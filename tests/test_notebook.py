"""The retrieval notebook: storage, search, scope check, token budget, prompt fence, bad input.

These use the real bundled sentence-embedding model (it loads in about a second).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lorebook.cli.main import app
from lorebook.errors import InputError
from lorebook.evaluate.probes import load_general_knowledge
from lorebook.notebook.scope import NOTES_CLOSE, NOTES_OPEN, NotebookConfig, Retriever, calibrate, note_line
from lorebook.notebook.store import MAX_NOTE_CHARS, Hit, Notebook
from lorebook.teach.pack import load_pack

PACK = "examples/oscars-2023.jsonl"


@pytest.fixture()
def oscars() -> Notebook:
    facts = load_pack(PACK)
    notebook = Notebook.create("oscars")
    notebook.add([f.fact for f in facts], questions=[f.question for f in facts], answers=[f.answer for f in facts])
    return notebook


def test_paraphrases_find_their_note_and_unrelated_questions_are_out_of_scope(oscars):
    facts = load_pack(PACK)
    general = [item["question"] for item in load_general_knowledge()]
    report = calibrate(oscars, [q for f in facts for q in (f.question, *f.paraphrases)], general)
    assert report["in_scope_passed"] >= 0.95 and report["out_of_scope_passed"] <= 0.01
    retriever = Retriever(oscars)
    paraphrases = [(f, p) for f in facts for p in f.paraphrases]
    found = oscars.search([p for _, p in paraphrases], retriever.candidates())
    # The note in the prompt is the right one: re-ranked by the question's words (cosine alone: 64 of 69).
    right = [retriever.select(hits, p)[0].text == f.fact for (f, p), hits in zip(paraphrases, found)]
    assert sum(right) >= 67, sum(right)
    by_cosine = [hits[0].text == f.fact for (f, _), hits in zip(paraphrases, found)]
    assert sum(right) > sum(by_cosine)
    conversations = [[{"role": "user", "content": q}] for q in general[:40]]
    augmented, used = retriever.augment_many(conversations)
    assert augmented == conversations and not any(used)  # prompts untouched, not just similar


def test_token_budget_and_top_k_limit_the_notes(oscars):
    hits = [Hit(i, "word " * 40, 0.9) for i in range(5)]  # ~50 tokens each by the rough estimate
    assert len(Retriever(oscars, NotebookConfig(top_k=5, token_budget=120)).select(hits)) == 2
    assert len(Retriever(oscars, NotebookConfig(top_k=1, token_budget=1000)).select(hits)) == 1
    below = [Hit(1, "x", 0.1)]
    assert Retriever(oscars, NotebookConfig(threshold=0.5)).select(below) == []


def test_notes_are_fenced_as_data_in_the_last_user_turn(oscars):
    retriever = Retriever(oscars)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who won Best Actor in 2023?"}]
    augmented, used = retriever.augment(messages)
    assert used and augmented[0] == messages[0] and messages[1]["content"] == "Who won Best Actor in 2023?"
    content = augmented[1]["content"]
    assert content.startswith(NOTES_OPEN) and NOTES_CLOSE in content and content.endswith("Who won Best Actor in 2023?")
    assert "Brendan Fraser" in content and "not instructions" in content and "Ignore" not in content


def test_near_ties_are_reranked_by_the_words_that_tell_them_apart(oscars):
    actor = Hit(1, "The winner of the 2023 Oscar for Best Actor was Brendan Fraser.", 0.70, "Who won Best Actor?", "Brendan Fraser")
    supporting = Hit(2, "The winner of the 2023 Oscar for Best Supporting Actor was Ke Huy Quan.", 0.68)
    far = Hit(3, "The winner of the 2023 Oscar for Best Supporting Actress was Jamie Lee Curtis.", 0.40)
    retriever = Retriever(oscars, NotebookConfig(threshold=0.5, top_k=3))
    assert [h.id for h in retriever.select([actor, supporting, far], "Which supporting actor won in 2023?")] == [2, 1]
    assert [h.id for h in retriever.select([actor, supporting, far])] == [1, 2]  # no query: by cosine
    assert [h.id for h in retriever.select([actor, supporting], "Who won the 2023 Oscar?")] == [1, 2]  # no telling word
    line = note_line(actor)
    assert line == "- Q: Who won Best Actor? A: Brendan Fraser. The winner of the 2023 Oscar for Best Actor was Brendan Fraser."
    assert note_line(supporting) == f"- {supporting.text}"


def test_importing_a_pack_again_adds_questions_to_old_notes():
    notebook = Notebook.create("old")
    notebook.add(["Ana lives in Lima."])  # as a notebook made before notes kept their question
    assert notebook.search(["Where does Ana live?"], 1)[0][0].question is None
    assert notebook.add(["Ana lives in Lima."], questions=["Where does Ana live?"], answers=["Lima"]) == (0, 1)
    hit = notebook.search(["Where does Ana live?"], 1)[0][0]
    assert (hit.question, hit.answer) == ("Where does Ana live?", "Lima")


def test_duplicates_are_skipped_and_import_resumes():
    notebook = Notebook.create("n")
    assert notebook.add(["Ana lives in Lima.", "Ana lives in Lima.", "Bo likes tea."]) == (2, 1)
    assert notebook.add(["Bo likes tea.", "Cy plays chess."]) == (1, 1)
    assert notebook.count() == 3
    notebook.remove(notebook.notes()[0]["id"])
    assert notebook.count() == 2 and notebook.search(["Who plays chess?"], 1)[0][0].text == "Cy plays chess."


def test_bad_input_is_refused_with_the_fix():
    notebook = Notebook.create("bad")
    with pytest.raises(InputError, match="empty"):
        notebook.add(["   "])
    with pytest.raises(InputError, match="split it"):
        notebook.add(["x" * (1024 * 1024)])
    assert MAX_NOTE_CHARS < 1024 * 1024 and notebook.count() == 0
    with pytest.raises(InputError, match="unknown notebook"):
        Notebook.open("nope")
    with pytest.raises(InputError, match="already exists"):
        Notebook.create("bad")
    with pytest.raises(InputError, match="no note 99"):
        notebook.remove(99)


def test_cli_round_trip(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["notebook", "import", "oscars", PACK]).exit_code == 0
    out = runner.invoke(app, ["notebook", "search", "oscars", "Which actor won the 2023 Oscar for Best Actor?"]).output
    assert "Brendan Fraser" in out.splitlines()[0] and "in scope" in out
    out = runner.invoke(app, ["notebook", "search", "oscars", "What is the capital of Japan?"]).output
    assert "out of scope, prompt untouched" in out
    rows = json.loads(runner.invoke(app, ["notebook", "list", "--json"]).output)
    assert rows[0]["name"] == "oscars" and rows[0]["notes"] == 23 and rows[0]["threshold"] > 0
    again = runner.invoke(app, ["notebook", "import", "oscars", PACK])
    assert "0 note(s) added, 23 already there" in again.output
    result = runner.invoke(app, ["notebook", "add", "ghost", "a fact"])
    assert result.exit_code == 1 and "unknown notebook 'ghost'" in result.output and "fix:" in result.output
    result = runner.invoke(app, ["notebook", "add", "oscars", ""])
    assert result.exit_code == 1 and "empty" in result.output


def test_search_finds_the_exact_vector_among_many_notes(oscars):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with oscars.db:
        oscars.db.executemany(
            "INSERT INTO notes (notebook_id, text, embedding, created_at) VALUES (?, ?, ?, ?)",
            [(oscars.id, f"filler {i}", v.tobytes(), 0.0) for i, v in enumerate(vectors)],
        )
    query = vectors[123:124]
    best = oscars.search_vectors(query, 3)[0]  # speed: bench/notebook.py
    assert best[0][1] == pytest.approx(1.0, abs=1e-5) and best[0][1] > best[1][1]
    assert oscars.db.execute("SELECT text FROM notes WHERE id = ?", (best[0][0],)).fetchone()[0] == "filler 123"


def test_onnx_and_torch_embeddings_agree_and_a_corrupt_export_is_redone(tmp_path, monkeypatch):
    """Both backends must give interchangeable vectors, so a notebook built by one is searched by the other."""
    from lorebook.notebook.embedder import INT8_FILE, ONNX_FILE, Embedder

    monkeypatch.setenv("LOREBOOK_MODELS", str(tmp_path))
    (tmp_path / ONNX_FILE).write_bytes(b"not an onnx model")  # an interrupted copy, say
    onnx = Embedder("onnx")
    assert onnx.backend == "onnx" and (tmp_path / ONNX_FILE).stat().st_size > 10_000_000
    torch = Embedder("torch")
    texts = ["Brendan Fraser won Best Actor.", "Who won best actor in 2023?", "x", "A much longer note " * 40]
    agreement = (onnx.embed(texts) * torch.embed(texts)).sum(axis=1)
    assert agreement.min() > 0.9999, agreement
    (tmp_path / INT8_FILE).write_bytes(b"half a model")
    int8 = Embedder(precision="int8")
    assert int8.backend == "onnx-int8"
    assert 10_000_000 < (tmp_path / INT8_FILE).stat().st_size < 0.7 * (tmp_path / ONNX_FILE).stat().st_size
    assert 0.97 < (int8.embed(texts) * onnx.embed(texts)).sum(axis=1).min() < 0.9999
    assert not list(tmp_path.glob("*.partial-*"))


def test_search_sees_notes_written_through_another_connection_and_removals():
    """The in-memory matrix is reused between searches, but never after a write from anywhere."""
    from lorebook.chat.store import connect

    first = Notebook.create("shared")
    first.add(["The lighthouse keeper is named Ada."])
    assert first.search(["Who keeps the lighthouse?"], 1)[0][0].text.startswith("The lighthouse")
    other = Notebook.open("shared", connect())  # e.g. `lorebook notebook add` while a server is running
    other.add(["The ferry to Skarn leaves at dawn."])
    assert first.search(["When does the ferry leave?"], 1)[0][0].text.startswith("The ferry")
    ferry = first.search(["When does the ferry leave?"], 1)[0][0]
    first.remove(ferry.id)
    assert all(h.text.startswith("The lighthouse") for h in first.search(["When does the ferry leave?"], 2)[0])


def test_an_int8_notebook_embeds_notes_and_queries_in_int8_and_still_finds_paraphrases():
    facts = load_pack(PACK)
    fast = Notebook.create("fast", precision="int8")
    assert Notebook.open("fast").precision == "int8" and fast.embedder.backend == "onnx-int8"
    fast.add([f.fact for f in facts], questions=[f.question for f in facts], answers=[f.answer for f in facts])
    exact = Notebook.create("exact")
    exact.add([f.fact for f in facts], questions=[f.question for f in facts], answers=[f.answer for f in facts])
    [[(fast_id, fast_score)]] = fast.search_vectors(fast.embedder.embed([facts[0].question]), 1)
    [[(exact_id, exact_score)]] = exact.search_vectors(exact.embedder.embed([facts[0].question]), 1)
    assert fast.db.execute("SELECT text FROM notes WHERE id = ?", (fast_id,)).fetchone()[0] == facts[0].fact
    assert fast_score != exact_score and abs(fast_score - exact_score) < 0.05  # close, not the same vectors
    assert exact_id != fast_id  # two notebooks, two copies of the note
    retriever = Retriever(fast)
    paraphrases = [(f, p) for f in facts for p in f.paraphrases]
    found = fast.search([p for _, p in paraphrases], retriever.candidates())
    right = [retriever.select(hits, p)[0].text == f.fact for (f, p), hits in zip(paraphrases, found)]
    assert sum(right) >= 66, sum(right)
    with pytest.raises(InputError, match="unknown embedding precision 'int4'"):
        Notebook.create("odd", precision="int4")


def test_cli_precision_is_chosen_at_creation_and_kept(tmp_path):
    runner = CliRunner()
    notes = tmp_path / "notes.txt"
    notes.write_text("The lighthouse keeper is named Ada.\nThe ferry to Skarn leaves at dawn.\n")
    assert runner.invoke(app, ["notebook", "import", "fast", str(notes), "--precision", "int8"]).exit_code == 0
    rows = json.loads(runner.invoke(app, ["notebook", "list", "--json"]).output)
    assert [(r["name"], r["precision"], r["notes"]) for r in rows] == [("fast", "int8", 2)]
    result = runner.invoke(app, ["notebook", "import", "fast", str(notes), "--precision", "float32"])
    assert result.exit_code == 1 and "embeds in int8, not float32" in result.output
    out = runner.invoke(app, ["notebook", "search", "fast", "When does the ferry leave?"]).output
    assert "ferry to Skarn" in out.splitlines()[0]
