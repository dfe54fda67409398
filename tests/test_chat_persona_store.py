"""Personas, conversation fitting and the SQLite log with migrations."""

from __future__ import annotations

import sqlite3

import pytest

from lorebook.chat import store
from lorebook.chat.conversation import Conversation
from lorebook.chat.persona import list_personas, load_persona, save_persona
from lorebook.errors import InputError, LorebookError, PersonaError


def test_shipped_personas_load():
    names = {p.name for p in list_personas()}
    assert {"assistant", "customs-agent-es"} <= names
    customs = load_persona("customs-agent-es")
    assert customs.language == "es" and "español" in customs.system and customs.options.max_tokens == 120


def test_user_persona_shadows_shipped_one():
    persona = load_persona("assistant")
    persona.system = "You are a pirate."
    save_persona(persona)
    assert load_persona("assistant").system == "You are a pirate."


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nsystem: [unclosed", "not valid YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: x\ncolour: blue\n", "unknown keys: colour"),
        ("name: x\noptions: {temperature: hot}\n", "needs a number"),
    ],
)
def test_bad_persona_files_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PersonaError, match=message) as err:
        load_persona(str(path))
    assert "\n" not in str(err.value)


def test_non_utf8_persona(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("system: año".encode("latin-1"))
    with pytest.raises(PersonaError, match="not UTF-8"):
        load_persona(str(path))


def test_unknown_persona_lists_choices():
    with pytest.raises(PersonaError, match="customs-agent-es"):
        load_persona("pirate")


def test_migrations_upgrade_an_old_database_without_losing_data(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(store.MIGRATIONS[0] + ";PRAGMA user_version = 1;")
    old.execute("INSERT INTO conversations (started_at, model, engine) VALUES (1, 'm', 'torch')")
    old.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', 'hi', 1)")
    old.commit()
    old.close()
    db = store.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
    [message] = store.conversation_messages(db, 1)
    assert message["content"] == "hi" and message["completion_tokens"] is None


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {len(store.MIGRATIONS) + 5}")
    with pytest.raises(LorebookError, match="newer than this lorebook"):
        store.connect(path)


def test_corrupt_database_gives_a_fix(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LorebookError, match="unreadable"):
        store.connect(path)


def test_log_records_messages_in_order():
    db = store.connect()
    log = store.ConversationLog(db, "tiny", "torch", "assistant", [])
    log.add("user", "first question")
    log.add("assistant", "answer", 10, 3, 0.5)
    [row] = store.list_conversations(db)
    assert row.title == "first question" and row.messages == 2
    assert [m["role"] for m in store.conversation_messages(db, row.id)] == ["user", "assistant"]


class FakeEngine:
    """Counts characters as tokens: enough to test fitting without a model."""

    context_length = 100

    def render(self, messages, add_generation_prompt=True):
        return "".join(m["content"] for m in messages)

    def count_tokens(self, text):
        return len(text)


def test_fit_drops_oldest_turns_but_keeps_system_and_latest():
    conversation = Conversation(system="S" * 10)
    for i in range(5):
        conversation.add("user", f"q{i}" + "x" * 8)
        conversation.add("assistant", f"a{i}" + "y" * 8)
    conversation.add("user", "latest")
    dropped = conversation.fit(FakeEngine(), reply_tokens=40)
    messages = conversation.messages()
    assert dropped > 0 and messages[0]["content"] == "S" * 10 and messages[-1]["content"] == "latest"
    assert messages[1]["role"] == "user"
    assert sum(len(m["content"]) for m in messages) <= 60


def test_fit_refuses_a_single_message_too_long():
    conversation = Conversation()
    conversation.add("user", "z" * 500)
    with pytest.raises(InputError, match="shorten the message"):
        conversation.fit(FakeEngine(), reply_tokens=10)
