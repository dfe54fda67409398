"""The CLI end to end on a tiny model: ask, chat commands, logs, models, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorebook.cli.main import app

runner = CliRunner()
EXAMPLE_SCENARIO = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"


def run(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def test_ask_streams_an_answer_and_logs_it(tiny_model_dir):
    result = run("ask", "Hello there", "-m", str(tiny_model_dir), "-o", "max_tokens=6", "-o", "temperature=0")
    assert result.exit_code == 0, result.output
    logs = run("logs", "list", "--json")
    [row] = json.loads(logs.stdout)
    assert row["title"] == "Hello there" and row["messages"] == 3  # system, user, assistant
    messages = json.loads(run("logs", "show", str(row["id"]), "--json").stdout)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[2]["completion_tokens"] == 6
    assert result.stdout == messages[2]["content"] + "\n" or result.stdout.strip() == messages[2]["content"]


def test_chat_repl_commands(tiny_model_dir, tmp_path):
    transcript = tmp_path / "t.json"
    script = f"/system Be brief.\nfirst\n/save {transcript}\n/reset\nsecond\n/nonsense\n/bye\n"
    result = run("chat", "-m", str(tiny_model_dir), "-o", "max_tokens=4", input=script)
    assert result.exit_code == 0, result.output
    saved = json.loads(transcript.read_text())
    assert saved["messages"][0] == {"role": "system", "content": "Be brief."}
    assert saved["messages"][1]["content"] == "first" and len(saved["messages"]) == 3
    assert "unknown command /nonsense" in result.stderr
    assert len(json.loads(run("logs", "list", "--json").stdout)) == 2  # /reset starts a new log entry


def test_no_log_leaves_the_log_empty(tiny_model_dir):
    assert run("ask", "Hi", "-m", str(tiny_model_dir), "-o", "max_tokens=2", "--no-log").exit_code == 0
    assert json.loads(run("logs", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", "hi", "-m", "gpt-17"], "unknown model 'gpt-17'"),
        (["ask", "hi", "-p", "nobody"], "unknown persona 'nobody'"),
        (["ask", "hi", "-o", "warmth=3"], "bad option 'warmth=3'"),
        (["ask", "hi", "-a", "no-such-adapter"], "adapter 'no-such-adapter' not found"),
        (["ask", "hi", "--engine", "warp"], "unknown engine 'warp'"),
        (["logs", "show", "999"], "no conversation with id 999"),
        (["eval", "persona", "-p", "customs-agent-es", "--scenario", str(EXAMPLE_SCENARIO), "--scripts",
          "no-such-scripts.yaml"], "scripts file no-such-scripts.yaml does not exist"),
    ],
)
def test_bad_input_gives_one_line_error(args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert message in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.output


def test_adapter_for_another_base_model_is_refused(tiny_model_dir, lorebook_home):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    adapter = get_peft_model(other, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    target = lorebook_home / "adapters" / "foreign"
    adapter.save_pretrained(target)
    result = run("ask", "hi", "-m", str(tiny_model_dir), "-a", "foreign")
    assert result.exit_code == 1 and "does not fit" in result.stderr, result.output
    (target / "lorebook-adapter.json").write_text(json.dumps({"base_model": "gemma3-270m"}))
    result = run("ask", "hi", "-m", str(tiny_model_dir), "-a", "foreign")
    assert "trained for base model 'gemma3-270m'" in result.stderr


def test_matching_adapter_loads_and_changes_nothing_when_zero(tiny_model_dir, lorebook_home):
    from peft import LoraConfig, get_peft_model

    from lorebook.models.loader import load_model
    from lorebook.models.registry import resolve_model

    spec = resolve_model(str(tiny_model_dir))
    model, _ = load_model(spec)
    adapter = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))  # B starts at zero
    adapter.save_pretrained(lorebook_home / "adapters" / "mine")
    args = ["ask", "Hello", "-m", str(tiny_model_dir), "-o", "temperature=0", "-o", "max_tokens=6", "--no-log"]
    plain, adapted = run(*args), run(*args, "-a", "mine")
    assert adapted.exit_code == 0 and adapted.stdout == plain.stdout


def test_corrupt_gguf_via_cli(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    result = run("ask", "hi", "-m", str(bad))
    assert result.exit_code == 1 and "corrupt or truncated" in result.stderr


def test_models_list_and_show():
    listing = json.loads(run("models", "list", "--json").stdout)
    assert [m["name"] for m in listing] == ["smollm2-135m", "gemma3-270m"]
    assert listing[0]["default"] and listing[0]["installed"]
    assert "llama" in run("models", "show", "smollm2").stdout


def test_personas_cli(tmp_path):
    assert "customs-agent-es" in run("personas", "list").stdout
    created = run("personas", "create", "pirate", "--system", "Arr.", "--language", "en")
    assert created.exit_code == 0
    assert "Arr." in run("personas", "show", "pirate").stdout


def test_errors_have_no_traceback_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "lorebook.cli", "ask", "hi", "-m", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
