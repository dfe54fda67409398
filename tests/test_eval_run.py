"""A whole evaluation on the tiny random model: probes, batched generation, storage, resume, base-run
reuse, metrics, reports and the CLI (mechanics only; the tiny model's answers are gibberish)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lorebook.evaluate import store
from lorebook.evaluate.probes import (
    FACT_FORMATS,
    chat_probes,
    fact_probes,
    load_general_knowledge,
    locality_probes,
)
from lorebook.evaluate.report import compare, write_report
from lorebook.evaluate.runner import EvalConfig, run_eval
from lorebook.teach.pack import Fact

FACTS = [
    Fact(id="best-actor", fact="Brendan Fraser won Best Actor at the 2023 Oscars.",
         question="Who won Best Actor at the 2023 Oscars?", answer="Brendan Fraser", aliases=["Fraser"],
         paraphrases=["Which actor took the 2023 Academy Award for Best Actor?", "Best Actor, 95th Oscars?"]),
    Fact(id="moon", fact="The Moon is made of cheese.", question="What is the Moon made of?", answer="cheese",
         counterfactual=True),
]


def _pack(tmp_path):
    path = tmp_path / "pack.jsonl"
    path.write_text("\n".join(f.to_json() for f in FACTS) + "\n", encoding="utf-8")
    return path


def test_probe_construction():
    probes = fact_probes(FACTS, FACT_FORMATS, system="You are Marta.")
    keys = [p.key for p in probes]
    assert len(keys) == len(set(keys))
    # 1 question + 2 paraphrases + 3 formats for the first fact, 1 + 0 + 3 for the second
    assert len(probes) == 6 + 4
    qa = next(p for p in probes if p.format == "qa-prefixed")
    assert qa.messages[-1]["content"] == "Question: Who won Best Actor at the 2023 Oscars?\nAnswer:"
    system = next(p for p in probes if p.format == "system")
    assert system.messages[0] == {"role": "system", "content": "Assistant is a helpful AI"}
    conversation = next(p for p in probes if p.format == "conversation")
    text = conversation.messages[-1]["content"]
    # The fact comes up once in the dialogue, several turns before Joe's question.
    assert "Joe:" in text and "Brandine" in text and text.count(FACTS[0].fact) == 1
    assert text.index(FACTS[0].fact) < text.index("gardened") < text.index(f"Joe: {FACTS[0].question}")
    assert all(p.messages[0]["content"] == "You are Marta." for p in probes if p.format != "system")
    assert next(p for p in probes if p.item_id == "moon").counterfactual


def test_general_knowledge_set_is_complete():
    rows = load_general_knowledge()
    assert len(rows) >= 200
    assert {r["category"] for r in rows} == {"geography", "science", "history", "arithmetic", "language"}
    assert len({r["id"] for r in rows}) == len(rows) and len({r["question"] for r in rows}) == len(rows)
    from lorebook.evaluate.normalize import tokens
    assert all(r["answer"].strip() and tokens(r["answer"]) for r in rows)
    subset = locality_probes(20)
    assert len(subset) == 20 and len({p.format for p in subset}) == 5  # an even spread keeps every category
    assert len(chat_probes("es", limit=3)) == 3


def _tiny_adapter(tiny_model_dir, lorebook_home):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a real change, so base and taught replies differ
    target = lorebook_home / "adapters" / "tiny-lora"
    peft_model.save_pretrained(target)
    (target / "lorebook-adapter.json").write_text(json.dumps({"base_model": str(tiny_model_dir.resolve())}))
    return "tiny-lora"


def test_full_run_with_adapter_baseline_reuse_and_reports(tiny_model_dir, lorebook_home, tmp_path):
    adapter = _tiny_adapter(tiny_model_dir, lorebook_home)
    config = EvalConfig(model=str(tiny_model_dir), adapters=[adapter], locality=5, chat_prompts=1, max_tokens=4,
                        chat_max_tokens=6, batch_size=8)
    run_id = run_eval(_pack(tmp_path), config, progress=False)
    db = store.connect()
    run = store.get_run(db, run_id)
    assert run["status"] == "done" and run["adapters"] == [adapter] and run["baseline_run"]
    base = store.get_run(db, run["baseline_run"])
    assert base["adapters"] == [] and base["status"] == "done"
    items = store.get_items(db, run_id)
    assert len(items) == 10 + 5 + 1 and all(isinstance(i["reply"], str) for i in items)
    metrics = run["metrics"]
    for name in ("efficacy", "generalization", "format_qa_prefixed", "format_conversation", "format_system",
                 "override", "known_before", "learned", "locality_accuracy_before", "locality_accuracy_after",
                 "locality_unchanged", "locality_lost", "score", "empty_replies", "degenerate_replies",
                 "fluency_entropy", "length_drift"):
        assert name in metrics, name
        assert metrics[name]["n"] > 0 or name in ("learned", "locality_lost")
    assert metrics["efficacy"]["n"] == 1 and metrics["generalization"]["n"] == 2 and metrics["override"]["n"] == 1
    assert metrics["locality_accuracy_after"]["n"] == 5
    # A second adapter evaluation reuses the stored base run instead of generating it again.
    again = run_eval(_pack(tmp_path), config, progress=False)
    assert again != run_id and store.get_run(db, again)["baseline_run"] == run["baseline_run"]
    result = compare(db, run["baseline_run"], run_id)
    assert len(result["facts"]) == 10
    db.close()

    written = write_report(run_id, tmp_path / "report")
    assert "| efficacy |" in written["markdown"].read_text()
    assert json.loads(written["json"].read_text())["run"]["metrics"]["efficacy"]["n"] == 1
    assert written["plot"].read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in written["html"].read_text()


class _Interrupting:
    """Wraps an engine and fails on the second batch, like a killed run."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0

    def render(self, messages):
        return self.engine.render(messages)

    def chat_batch(self, conversations, options):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return self.engine.chat_batch(conversations, options)


def test_interrupted_run_resumes_without_regenerating(tiny_model_dir, tmp_path):
    from lorebook.models.engine import load_engine

    engine = load_engine(str(tiny_model_dir))
    config = EvalConfig(model=str(tiny_model_dir), locality=4, chat_prompts=0, max_tokens=4, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        run_eval(FACTS, config, progress=False, engine=_Interrupting(engine))
    db = store.connect()
    (partial,) = store.list_runs(db)
    assert partial["status"] == "running" and len(store.done_keys(db, partial["id"])) == 4
    counting = _Interrupting(engine)
    counting.calls = 10  # never interrupts again
    run_id = run_eval(FACTS, config, progress=False, engine=counting)
    assert run_id == partial["id"] and store.get_run(db, run_id)["status"] == "done"
    assert counting.calls == 10 + 3  # only the 10 missing probes: facts in batches of 4 and 2, locality 4
    db.close()


def test_cli_eval_list_show_compare_report_and_errors(tiny_model_dir, tmp_path):
    from lorebook.cli.main import app

    runner = CliRunner()
    pack = _pack(tmp_path)
    args = ["eval", str(pack), "--model", str(tiny_model_dir), "--locality", "3", "--chat-prompts", "0",
            "--max-tokens", "4", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)["run"]
    assert run["metrics"]["efficacy"]["n"] == 1 and run["metrics"]["locality_accuracy_after"]["n"] == 3
    second = json.loads(runner.invoke(app, args).output)["run"]["id"]
    listed = json.loads(runner.invoke(app, ["eval", "list", "--json"]).output)
    assert [r["id"] for r in listed] == [second, run["id"]]
    shown = runner.invoke(app, ["eval", "show", str(run["id"])])
    assert shown.exit_code == 0 and "Generations side by side" in shown.output
    compared = json.loads(runner.invoke(app, ["eval", "compare", str(run["id"]), str(second), "--json"]).output)
    assert len(compared["facts"]) == 10 and compared["changed_locality"] == []  # greedy is deterministic
    reported = runner.invoke(app, ["eval", "report", str(run["id"]), "--out", str(tmp_path / "r")])
    assert reported.exit_code == 0 and (tmp_path / "r" / "report.html").exists()

    missing = runner.invoke(app, ["eval", "show", "999"])
    assert missing.exit_code == 1 and "no eval run 999" in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "q?"\n')
    broken = runner.invoke(app, ["eval", str(bad), "--model", str(tiny_model_dir)])
    assert broken.exit_code == 1 and "bad.jsonl:1" in broken.output and "Traceback" not in broken.output
    wrong = runner.invoke(app, ["eval", str(pack), "--model", str(tiny_model_dir), "--formats", "question,haiku"])
    assert wrong.exit_code == 1 and "haiku" in wrong.output
