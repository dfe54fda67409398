"""Red-team runs on a tiny random llama: storage, resume, reports and the CLI (mechanics, not quality)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lorebook.cli.main import app
from lorebook.errors import InputError
from lorebook.redteam import store
from lorebook.redteam.attacks import TECHNIQUES
from lorebook.redteam.runner import RedteamConfig, run_redteam


def config(model_dir, **changes):
    return RedteamConfig(**{"persona": "customs-agent-es", "model": str(model_dir), "per_technique": 1,
                            "max_tokens": 4, "batch_size": 4, **changes})


def test_run_stores_every_attack_with_conversation_and_grades(tiny_model_dir):
    run_id = run_redteam(config(tiny_model_dir), progress=False)
    db = store.connect()
    run, items = store.get_run(db, run_id), store.get_items(db, run_id)
    assert run["status"] == "done" and run["persona"] == "customs-agent-es"
    assert [i["technique"] for i in items] == list(TECHNIQUES)
    multi = next(i for i in items if i["technique"] == "multiturn")
    assert [m["role"] for m in multi["conversation"]] == ["user", "assistant"] * 3
    assert set(run["metrics"]["techniques"]) == set(TECHNIQUES) and run["metrics"]["hold"]["n"] == len(TECHNIQUES)
    assert run["metrics"]["character"] is True and run["metrics"]["language"] == "es"


def test_interrupted_run_resumes_without_regenerating(tiny_model_dir, monkeypatch):
    from lorebook.redteam import runner

    real_play, calls = runner._play, []

    def play_then_stop(engine, attacks, *args):
        if calls:
            raise KeyboardInterrupt
        calls.append(len(attacks))
        return real_play(engine, attacks, *args)

    monkeypatch.setattr(runner, "_play", play_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_redteam(config(tiny_model_dir), progress=False)
    monkeypatch.setattr(runner, "_play", lambda engine, attacks, *args: calls.append(len(attacks)) or real_play(engine, attacks, *args))
    run_id = run_redteam(config(tiny_model_dir), progress=False)
    assert calls == [4, 3]  # the second run played only the three attacks not yet stored
    assert store.get_run(store.connect(), run_id)["id"] == 1


def test_bad_options_are_one_line_errors(tiny_model_dir):
    with pytest.raises(InputError, match="unknown technique"):
        run_redteam(config(tiny_model_dir, techniques=["mindreading"]), progress=False)
    result = CliRunner().invoke(app, ["redteam", "--persona", "nobody-here", "--model", str(tiny_model_dir)])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_cli_json_list_and_show(tiny_model_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["redteam", "--persona", "assistant", "--model", str(tiny_model_dir), "-t", "override,notes",
                                 "--per-technique", "1", "--max-tokens", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [i["technique"] for i in data["items"]] == ["override", "notes"]
    assert data["run"]["metrics"]["character"] is False  # the assistant may say it is an AI
    notes_prompt = data["items"][1]["conversation"][0]["content"]
    assert "<notes>" not in notes_prompt  # stored conversation keeps the user's own words
    listed = runner.invoke(app, ["redteam", "list"])
    assert listed.exit_code == 0 and "100%" in listed.output
    shown = runner.invoke(app, ["redteam", "show", str(data["run"]["id"])])
    assert shown.exit_code == 0 and "override" in shown.output and "all attacks" in shown.output
    missing = runner.invoke(app, ["redteam", "show", "99"])
    assert missing.exit_code == 1 and "no red-team run 99" in missing.output


def test_a_persona_with_moments_is_attacked_with_its_picked_replies(tiny_model_dir, lorebook_home, monkeypatch):
    from lorebook.chat import moments

    (lorebook_home / "personas").mkdir(parents=True, exist_ok=True)
    outlines = lorebook_home / "outlines.jsonl"
    outlines.write_text(json.dumps({"messages": [{"role": "user", "content": "Hola"},
                                                 {"role": "assistant", "content": "Buenos días."}]}) + "\n", encoding="utf-8")
    (lorebook_home / "personas" / "picky-officer.yaml").write_text(
        f"language: es\nsystem: Eres agente de aduanas.\nmoments: {{file: {outlines}, candidates: 3}}\n", encoding="utf-8")
    picked = []

    class FirstSampled:
        def __init__(self, config):
            pass

        def pick(self, messages, candidates):
            picked.append(candidates[1])
            return candidates[1]

    monkeypatch.setattr(moments, "MomentPicker", FirstSampled)
    run_id = run_redteam(config(tiny_model_dir, persona="picky-officer"), progress=False)
    replies = [m["content"] for i in store.get_items(store.connect(), run_id) for m in i["conversation"] if m["role"] == "assistant"]
    assert sorted(replies) == sorted(p.strip() for p in picked) and len(replies) == len(TECHNIQUES) + 2
