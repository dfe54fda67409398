"""Hand labels of a persona evaluation: blind order, resume, keys that follow the reply, counts per row."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from lorebook.cli.main import app
from lorebook.errors import InputError
from lorebook.synth.labels import add_label, agent_turns, read_evaluation, read_labels, summarize, to_label


def evaluation(tmp_path, tuned_reply="Su pasaporte, por favor."):
    def chat(first, second):
        return [{"role": "system", "content": "Eres Marta."}, {"role": "user", "content": "Buenos días."},
                {"role": "assistant", "content": first}, {"role": "user", "content": "Vengo de vacaciones."},
                {"role": "assistant", "content": second}]

    rows = [{"label": "base", "conversations": [chat("Hello!", "I love holidays."), chat("Hi.", "Me too.")]},
            {"label": "tuned", "conversations": [chat(tuned_reply, "¿Cuántos días se queda?"),
                                                 chat("Buenos días.", "¿Dónde se aloja?")]}]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"scenario": "x", "rows": rows}), encoding="utf-8")
    return path


def test_turns_are_shuffled_across_rows_and_counted_per_row(tmp_path):
    turns = agent_turns(read_evaluation(evaluation(tmp_path)))
    assert len(turns) == 8 and turns[0].turn == 1 and turns[1].turn == 2
    assert turns[1].before[-1]["content"] == "Vengo de vacaciones."
    order = to_label(turns, {}, seed=0)
    assert sorted(t.key for t in order) == sorted(t.key for t in turns)
    assert [t.row for t in order] != sorted(t.row for t in order)  # rows are mixed, not base first
    labels_path = tmp_path / "labels.jsonl"
    for turn in turns:
        add_label(labels_path, turn, turn.row == "tuned" and turn.reply != "Buenos días.")
    summary = summarize(turns, read_labels(labels_path))
    assert summary["base"]["in_role"]["k"] == 0 and summary["tuned"]["in_role"]["k"] == 3
    assert summary["tuned"]["turns 2-2"] == {"value": 1.0, "k": 2, "n": 2, "ci": pytest.approx([0.34, 1.0], abs=0.01)}
    assert summary["tuned"]["unlabelled"] == 0


def test_a_changed_reply_is_asked_again_and_a_torn_line_is_ignored(tmp_path):
    labels_path = tmp_path / "labels.jsonl"
    for turn in agent_turns(read_evaluation(evaluation(tmp_path))):
        add_label(labels_path, turn, True)
    with labels_path.open("a") as handle:
        handle.write('{"key": "abc", "in_ro')  # a session killed mid-write
    labels = read_labels(labels_path)
    assert len(labels) == 8
    rerun = agent_turns(read_evaluation(evaluation(tmp_path, tuned_reply="Pasaporte.")))
    assert [t.reply for t in to_label(rerun, labels)] == ["Pasaporte."]


def test_cli_resumes_and_prints_the_counts(tmp_path):
    path = evaluation(tmp_path)
    runner = CliRunner()
    first = runner.invoke(app, ["eval", "label", str(path)], input="y\nn off topic\ns\nq\n")
    assert first.exit_code == 0, first.output
    assert "base" not in first.output.split("unlabelled")[0].split("REPLY")[0]  # blind: no row names while asking
    second_turn = first.output.split("agent turn 2")[1].split("REPLY")[0]
    assert "Buenos días." in second_turn and "Vengo de vacaciones." in second_turn  # the whole conversation
    short = runner.invoke(app, ["eval", "label", str(path), "--context", "1"], input="s\n" * 6)  # shows all six
    shown = [block.split("REPLY")[0] for block in short.output.split("agent turn 2")[1:]]
    assert shown and all("Vengo de vacaciones." in lines and "Buenos días." not in lines for lines in shown)
    saved = [json.loads(line) for line in (tmp_path / "eval.labels.jsonl").read_text().splitlines()]
    assert [r["in_role"] for r in saved] == [True, False] and saved[1]["note"] == "off topic"
    second = runner.invoke(app, ["eval", "label", str(path)], input="y\n" * 6)
    assert "6 replies to read (2 labelled before" in second.output
    summary = json.loads(runner.invoke(app, ["eval", "label", str(path), "--summary", "--json"]).output)
    assert summary["base"]["in_role"]["n"] + summary["tuned"]["in_role"]["n"] == 8


def test_list_prints_the_pending_replies_in_the_order_they_are_asked(tmp_path):
    """--list shows a batch to read at once; its y/n answers piped in afterwards label the same replies."""
    path = evaluation(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["eval", "label", str(path), "--seed", "3", "--list", "--context", "1"])
    assert listed.exit_code == 0 and "in role?" not in listed.output
    replies = [block.split("REPLY:")[1].splitlines()[0].strip() for block in listed.output.split("[")[1:]]
    assert len(replies) == 8 and "[1/8]" in listed.output and "base" not in listed.output
    verdicts = "".join("y\n" if reply.startswith(("Su pasaporte", "¿")) else "n\n" for reply in replies)
    assert runner.invoke(app, ["eval", "label", str(path), "--seed", "3"], input=verdicts).exit_code == 0
    saved = read_labels(tmp_path / "eval.labels.jsonl").values()
    assert {label["reply"] for label in saved if label["in_role"]} == {
        "Su pasaporte, por favor.", "¿Cuántos días se queda?", "¿Dónde se aloja?"}
    assert runner.invoke(app, ["eval", "label", str(path), "--list"]).output.strip() == ""  # none left


def test_by_conversation_reads_whole_conversations_blind_and_resumes(tmp_path):
    """--by-conversation shows each conversation whole (rows shuffled, names hidden) and takes one answer per
    conversation; a wrong answer stops with the labels so far kept, and the rest is asked on the next run."""
    path = evaluation(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["eval", "label", str(path), "--seed", "5", "--by-conversation", "--list"])
    assert listed.exit_code == 0 and "in role?" not in listed.output and "base" not in listed.output
    blocks = listed.output.split("== C")[1:]
    assert [block.split()[0] for block in blocks] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(block.count("traveller:") == 2 for block in blocks)  # the whole conversation, lines in order
    answers = ["".join("y" if line.split(": ", 1)[1].startswith(("Su pasaporte", "¿")) else "n"
                       for line in block.splitlines() if line.strip()[:2] in ("1:", "2:")) for block in blocks]
    first = runner.invoke(app, ["eval", "label", str(path), "--seed", "5", "--by-conversation"],
                          input=f"C1 {answers[0]} a note\n{answers[1]}\nC4 yy\n")
    assert first.exit_code != 0 and "the answer for C4 came where C3 was asked" in first.output
    saved = read_labels(tmp_path / "eval.labels.jsonl")
    assert len(saved) == 4 and sum(label.get("note") == "a note" for label in saved.values()) == 2
    bad = runner.invoke(app, ["eval", "label", str(path), "--seed", "5", "--by-conversation"], input="yyy\n")
    assert bad.exit_code != 0 and "needs 2 y/n letters" in bad.output and len(read_labels(
        tmp_path / "eval.labels.jsonl")) == 4
    resumed = runner.invoke(app, ["eval", "label", str(path), "--seed", "5", "--by-conversation", "--list"])
    assert resumed.output.split("== C")[1].startswith("3/4")  # a conversation keeps its number on a resume
    rest = runner.invoke(app, ["eval", "label", str(path), "--seed", "5", "--by-conversation"],
                         input=f"C3 {answers[2]}\n{answers[3]}\n")
    assert rest.exit_code == 0 and "2 conversations to read" in rest.output
    saved = read_labels(tmp_path / "eval.labels.jsonl").values()
    assert {label["reply"] for label in saved if label["in_role"]} == {
        "Su pasaporte, por favor.", "¿Cuántos días se queda?", "¿Dónde se aloja?"}
    assert "tuned: in_role 3/4 (75%" in rest.output and "base: in_role 0/4" in rest.output


def test_a_written_rule_is_shown_and_kept_with_each_label(tmp_path):
    path = evaluation(tmp_path)
    rule = tmp_path / "rule.md"
    rule.write_text("In role: what an officer says at that point.\nOut: an admission before the declaration.\n")
    runner = CliRunner()
    first = runner.invoke(app, ["eval", "label", str(path), "--rule", str(rule)], input="y\nn\nq\n")
    assert first.exit_code == 0, first.output
    assert "Out: an admission before the declaration." in first.output.split("REPLY")[0]
    digest = hashlib.sha256(rule.read_text().strip().encode()).hexdigest()[:12]
    assert [label.get("rule") for label in read_labels(tmp_path / "eval.labels.jsonl").values()] == [digest] * 2
    second = runner.invoke(app, ["eval", "label", str(path)], input="y\n" * 6)  # the rest, read with no rule
    assert f"read under 2 rules ({digest}, none" in second.output
    summary = json.loads(runner.invoke(app, ["eval", "label", str(path), "--summary", "--json"]).output)
    assert sum(counts["rules"].get(digest, 0) for counts in summary.values()) == 2
    assert sum(counts["rules"].get("none", 0) for counts in summary.values()) == 6
    rule.write_text("  \n")
    empty = runner.invoke(app, ["eval", "label", str(path), "--rule", str(rule)])
    assert empty.exit_code != 0 and "is empty" in empty.output
    missing = runner.invoke(app, ["eval", "label", str(path), "--rule", str(tmp_path / "missing.md")])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_bad_files_get_one_line_errors(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="is not JSON"):
        read_evaluation(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"rows": []}')
    with pytest.raises(InputError, match="no persona evaluation rows"):
        read_evaluation(tmp_path / "y.json")
    result = CliRunner().invoke(app, ["eval", "label", str(tmp_path / "missing.json")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_training_data_labels_become_weights(tmp_path):
    """`eval label convs.jsonl --weights out.jsonl`: turns read as out of role stay as context, weight 0."""
    def record(index, replies):
        messages = [{"role": "system", "content": "Eres Marta."}]
        for reply in replies:
            messages += [{"role": "user", "content": "Buenos días."}, {"role": "assistant", "content": reply}]
        return {"id": index, "messages": messages, "metadata": {"seed": index}}

    data = tmp_path / "convs.jsonl"
    data.write_text("\n".join(json.dumps(record(i, r)) for i, r in enumerate(
        [["Su pasaporte, por favor.", "Me encanta el jamón."], ["¿Motivo del viaje?"], ["¡Qué rico!"]])) + "\n",
        encoding="utf-8")
    turns = agent_turns(read_evaluation(data))
    assert [(t.conversation, t.turn) for t in turns] == [(0, 1), (0, 2), (1, 1), (2, 1)]
    runner = CliRunner()
    out = tmp_path / "curated.jsonl"
    answers = "".join("n\n" if t.reply in ("Me encanta el jamón.", "¡Qué rico!") else "y\n"
                      for t in to_label(turns, {}, 0))
    result = runner.invoke(app, ["eval", "label", str(data), "--weights", str(out)], input=answers)
    assert result.exit_code == 0, result.output
    assert "2 agent turns kept, 2 with weight 0" in " ".join(result.output.split())
    assert "1 conversations with no turn kept left out" in " ".join(result.output.split())
    curated = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert curated[0]["messages"][4] == {"role": "assistant", "content": "Me encanta el jamón.", "weight": 0}
    assert "weight" not in curated[0]["messages"][2] and curated[1]["metadata"] == {"seed": 1}
    assert len(curated) == 2  # the third had nothing to learn from
    from lorebook.teach.inputs import load_chats
    assert load_chats(out)[0][4]["weight"] == 0
    with pytest.raises(InputError, match="overwrite"):
        from lorebook.synth.labels import write_weighted
        write_weighted(data, {}, data)
