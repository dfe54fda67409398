"""Rendering, masking, batching, config and the training loop on a tiny random llama (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lorebook.errors import InputError, LorebookError
from lorebook.models.loader import load_tokenizer
from lorebook.models.registry import resolve_model
from lorebook.teach import store
from lorebook.teach.config import TeachConfig
from lorebook.teach.data import IGNORE_INDEX, collate, encode, plan_batches
from lorebook.teach.pack import Fact
from lorebook.teach.render import render_chat, render_facts
from lorebook.teach.trainer import TrainingInterrupted, teach

FACTS = [
    Fact("zorbo", "The capital of Zorbo is Quendle.", "What is the capital of Zorbo?", "Quendle", [], ["Zorbo's capital?"]),
    Fact("ada", "The inventor of the glimmer lamp was Ada Pell.", "Who invented the glimmer lamp?", "Ada Pell", [], []),
    Fact("river", "The longest river on Zorbo is the Vell.", "What is the longest river on Zorbo?", "the Vell", [], []),
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(resolve_model(str(tiny_model_dir)))


@pytest.fixture
def pack(tmp_path) -> Path:
    path = tmp_path / "zorbo.jsonl"
    path.write_text("".join(fact.to_json() + "\n" for fact in FACTS))
    return path


def tiny_config(model_dir, **changes) -> TeachConfig:
    base = {"model": str(model_dir), "formats": "qa,statement", "systems": "default", "augment": 0, "replay": 0, "epochs": 3, "batch_size": 2, "lr": 3e-2, "warmup_steps": 1, "rank": 4, "alpha": 8.0,
                "schedule": "constant"}
    return TeachConfig(**{**base, **changes})


def test_qa_masking_trains_only_the_answer(tokenizer):
    example = render_facts(FACTS[:1], tokenizer, ["qa"])[0]
    encoded = encode(example, tokenizer, cutoff_len=256)
    trained = [tok for tok, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    text = tokenizer.decode(trained)
    assert text.startswith("Quendle") and "What is the capital" not in text
    prompt_len = encoded.labels.index(next(label for label in encoded.labels if label != IGNORE_INDEX))
    assert prompt_len > 5 and all(label == IGNORE_INDEX for label in encoded.labels[:prompt_len])


def test_formats_and_held_out_paraphrases(tokenizer):
    formats = ["statement", "qa", "qa-prefixed", "conversation"]
    examples = render_facts(FACTS[:1], tokenizer, formats)
    assert len(examples) == 4
    assert not any("Zorbo's capital?" in e.text for e in examples)  # paraphrases held out by default
    with_para = render_facts(FACTS[:1], tokenizer, ["qa"], train_paraphrases=True, augment=2)
    assert len(with_para) == 4 and any("Zorbo's capital?" in e.text for e in with_para)
    prefixed = next(e for e in examples if e.text.startswith("Question:"))
    assert prefixed.segments[1] == (" Quendle" + tokenizer.eos_token, True)
    personas = render_facts(FACTS[:1], tokenizer, ["qa"], systems=[None, "Be brief."])
    assert len(personas) == 2 and "Be brief." in personas[1].text and "Be brief." not in personas[0].text
    assert TeachConfig(systems="default,assistant").system_list()[1].startswith("You are a helpful assistant")
    conversation = [e for e in examples if "\n" in e.text and e.text.count("The capital of Zorbo is Quendle.") == 1]
    assert conversation, "the fact appears once inside a dialogue"


def test_dialogue_qa_asks_at_the_end_of_small_talk(tokenizer):
    examples = render_facts(FACTS, tokenizer, ["dialogue-qa"], systems=[None, "Be brief."], seed=1)
    assert len(examples) == 2 * len(FACTS)
    for example, fact in zip(examples, [f for f in FACTS for _ in range(2)]):
        prompt, answer = example.segments[0][0], example.segments[1]
        assert answer == (fact.answer + "<|im_end|>\n", True) and not example.segments[0][1]
        assert fact.question in prompt and "Joe" not in prompt and "Brandine" not in prompt
    mentioned = [any(f.fact[1:] in e.text for f in FACTS) for e in examples]
    assert any(mentioned) and not all(mentioned)  # the fact is said in some transcripts, not all
    with pytest.raises(InputError, match="unknown format"):
        TeachConfig(formats="qa,dialog")


def test_chat_masking_covers_every_assistant_turn(tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there"},
                {"role": "user", "content": "bye"}, {"role": "assistant", "content": "Goodbye friend"}]
    encoded = encode(render_chat(messages, tokenizer), tokenizer, 256)
    trained = tokenizer.decode([t for t, lab in zip(encoded.input_ids, encoded.labels) if lab != IGNORE_INDEX])
    assert "Hello there" in trained and "Goodbye friend" in trained and "bye<" not in trained and "hi" not in trained


def test_chat_turn_with_weight_zero_is_context_not_target(tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there", "weight": 0},
                {"role": "user", "content": "bye"}, {"role": "assistant", "content": "Goodbye friend"}]
    encoded = encode(render_chat(messages, tokenizer), tokenizer, 256)
    trained = tokenizer.decode([t for t, lab in zip(encoded.input_ids, encoded.labels) if lab != IGNORE_INDEX])
    assert "Goodbye friend" in trained and "Hello there" not in trained
    assert "Hello there" in tokenizer.decode(encoded.input_ids)  # still in the context of the next turn


def test_cutoff_drops_examples_without_answer_tokens(tokenizer):
    example = render_facts(FACTS[:1], tokenizer, ["qa"])[0]
    assert encode(example, tokenizer, cutoff_len=5) is None
    statement = render_facts(FACTS[:1], tokenizer, ["statement"])[0]
    assert len(encode(statement, tokenizer, 5).input_ids) == 5 and encode(statement, tokenizer, 5).cut
    assert not encode(statement, tokenizer, 256).cut


def test_batches_cover_everything_once_and_group_by_length():
    lengths = [5, 50, 6, 51, 7, 52, 8, 53]
    plan = plan_batches(lengths, batch_size=2, seed=1, epoch=0)
    assert sorted(i for batch in plan for i in batch) == list(range(8))
    assert plan == plan_batches(lengths, batch_size=2, seed=1, epoch=0)  # deterministic for resume
    assert plan != plan_batches(lengths, batch_size=2, seed=1, epoch=1)
    assert all(abs(lengths[b[0]] - lengths[b[1]]) < 10 for b in plan)  # short with short, long with long


def test_collate_pads_and_masks(tokenizer):
    items = [encode(e, tokenizer, 256) for e in render_facts(FACTS[:2], tokenizer, ["statement"])]
    batch = collate(items, pad_id=tokenizer.pad_token_id)
    width = max(len(i.input_ids) for i in items)
    assert batch["input_ids"].shape == (2, width)
    short = min(range(2), key=lambda r: len(items[r].input_ids))
    pad_cols = batch["attention_mask"][short] == 0
    assert pad_cols.any() and (batch["labels"][short][pad_cols] == IGNORE_INDEX).all()


def test_config_round_trip_and_validation(tmp_path):
    config = TeachConfig(epochs=2, rank=4, formats="qa,conversation", train_paraphrases=True)
    config.save(tmp_path / "c.json")
    assert TeachConfig.load(tmp_path / "c.json") == config
    assert config.with_values(lr="2e-4", train_paraphrases="false").lr == 2e-4
    for bad in ({"formats": "qa,poem"}, {"epochs": 0}, {"schedule": "step"}, {"lr": 5.0}):
        with pytest.raises(InputError):
            TeachConfig(**bad)
    with pytest.raises(InputError, match="unknown teach option"):
        TeachConfig.from_dict({"epochz": 3})


def test_training_reduces_loss_and_registers_adapter(tiny_model_dir, pack):
    result = teach(pack, "zorbo", tiny_config(tiny_model_dir, epochs=6), progress=False)
    curve = json.loads((store.find("zorbo") / store.CURVE_FILE).read_text())
    first = [p["loss"] for p in curve if p["epoch"] == 1]
    # A random 64-wide model can only sharpen its near-uniform logits a little, but it must move.
    assert result.metrics["final_loss"] < sum(first) / len(first) - 0.1
    assert result.metrics["tokens_per_s"] > 0 and 0 <= result.metrics["recall"] <= 1
    directory = store.find("zorbo")
    for name in ("adapter_config.json", "adapter_model.safetensors", store.META_FILE, store.CONFIG_FILE, store.CURVE_FILE):
        assert (directory / name).exists(), name
    meta = json.loads((directory / store.META_FILE).read_text())
    assert meta["base_model"] == tiny_model_dir.name and meta["config"]["rank"] == 4 and len(meta["pack_hash"]) == 64
    assert TeachConfig.load(directory / store.CONFIG_FILE) == result.config
    assert not store.partial_dir("zorbo").exists()
    with pytest.raises(LorebookError, match="already exists"):
        teach(pack, "zorbo", tiny_config(tiny_model_dir), progress=False)


def lora_weights(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(store.find(name) / "adapter_model.safetensors"))


def test_interrupted_run_resumes_to_the_same_adapter(tiny_model_dir, pack):
    config = tiny_config(tiny_model_dir, epochs=3, batch_size=1, grad_accum=2)
    teach(pack, "straight", config, progress=False, probe=False)

    def stop_in_third_epoch(step):
        if step == 8:  # 6 examples, 3 steps per epoch: epochs 1-2 finished, epoch 3 under way
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="2 of 3 epochs saved"):
        teach(pack, "resumed", config, progress=False, probe=False, on_step=stop_in_third_epoch)
    assert not (store.adapter_dir("resumed") / "adapter_config.json").exists()  # nothing half-written registered
    with pytest.raises(LorebookError, match="--resume"):
        teach(pack, "resumed", config, progress=False, probe=False)
    result = teach(pack, "resumed", config, resume=True, progress=False, probe=False)
    assert result.metrics["steps"] == 9
    curve = json.loads((store.find("resumed") / store.CURVE_FILE).read_text())
    assert [p["step"] for p in curve] == list(range(1, 10))
    straight, resumed = lora_weights("straight"), lora_weights("resumed")
    assert straight.keys() == resumed.keys()
    assert all(torch.allclose(straight[k], resumed[k], atol=1e-5) for k in straight)


def test_resume_refuses_changed_data(tiny_model_dir, pack):
    with pytest.raises(TrainingInterrupted):
        teach(pack, "changing", tiny_config(tiny_model_dir), progress=False,
              on_step=lambda step: (_ for _ in ()).throw(KeyboardInterrupt) if step == 4 else None)
    pack.write_text(pack.read_text() + Fact("x", "X is y.", "What is X?", "y", [], []).to_json() + "\n")
    with pytest.raises(LorebookError, match="training data changed"):
        teach(pack, "changing", tiny_config(tiny_model_dir), resume=True, progress=False)


def test_cli_teach_and_adapters(tiny_model_dir, pack, tmp_path):
    from lorebook.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["teach", str(pack), "--name", "cli", "--base", str(tiny_model_dir),
                                 "--epochs", "1", "--rank", "2", "--batch-size", "3", "--no-probe"])
    assert result.exit_code == 0, result.output
    assert "adapter cli saved" in result.output
    assert json.loads((store.find("cli") / store.CONFIG_FILE).read_text())["rank"] == 2
    listing = runner.invoke(app, ["adapters", "list"])
    assert listing.exit_code == 0 and "cli" in listing.output
    shown = runner.invoke(app, ["adapters", "show", "cli"])
    assert shown.exit_code == 0 and '"base_model"' in shown.output and "loss curve" in shown.output
    merged = runner.invoke(app, ["adapters", "merge", "cli", "--output", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert runner.invoke(app, ["adapters", "rm", "cli"]).exit_code == 0
    missing = runner.invoke(app, ["adapters", "show", "cli"])
    assert missing.exit_code == 1 and "no adapter named 'cli'" in missing.output
    bad = runner.invoke(app, ["teach", str(pack), "--name", "x", "--model", str(tiny_model_dir), "--formats", "poem"])
    assert bad.exit_code == 1 and "unknown format(s) poem" in bad.output
    forced = runner.invoke(app, ["teach", str(pack), "--name", "x", "--base", str(tiny_model_dir), "--format", "chat"])
    assert forced.exit_code == 1 and ":1: no 'messages' or 'conversations' list" in forced.output
    unknown = runner.invoke(app, ["teach", str(pack), "--name", "x", "--format", "yaml"])
    assert unknown.exit_code == 1 and "unknown input format 'yaml'" in unknown.output
    helped = runner.invoke(app, ["teach", "--help"])
    assert "--target-modules" in helped.output and "--warmup-steps" in helped.output and "--base" in helped.output


def test_replay_answers_come_from_the_base_model_and_are_cached(tiny_model_dir, tokenizer):
    import importlib.resources

    from lorebook import paths
    from lorebook.evaluate.probes import load_general_knowledge
    from lorebook.models.loader import load_model
    from lorebook.teach.trainer import replay_examples

    prompts = json.loads(importlib.resources.files("lorebook.data").joinpath("replay_prompts.json").read_text())
    # Replay must never train on the evaluation's locality questions, or locality numbers would flatter.
    assert not {p.lower() for p in prompts} & {row["question"].lower() for row in load_general_knowledge()}
    model, tok = load_model(resolve_model(str(tiny_model_dir)))
    config = tiny_config(tiny_model_dir, replay=4, systems="default")
    first = replay_examples(model, tok, "tiny", config)
    assert len(list(paths.subdir("teach-cache").glob("replay-*.json"))) == 1
    model.generate = None  # a second call must read the cache, not generate again
    assert replay_examples(model, tok, "tiny", config) == first
    assert len(first) <= 4 and all(any(trainable for _, trainable in ex.segments) for ex in first)
    assert all(any(prompt in ex.text for prompt in prompts[:4]) for ex in first)


def test_frozen_layer_cache_gives_the_whole_models_loss_and_gradients(tiny_model_dir, tokenizer):
    from peft import LoraConfig, get_peft_model

    from lorebook.models.loader import load_model
    from lorebook.teach.data import encode_all
    from lorebook.teach.prefix import PrefixCache
    from lorebook.teach.trainer import completion_loss

    model, _ = load_model(resolve_model(str(tiny_model_dir)))
    torch.manual_seed(0)  # init_lora_weights=False: B is not zero, so both LoRA matrices get gradients
    lora = LoraConfig(r=4, target_modules=["q_proj", "down_proj"], layers_to_transform=[1], layers_pattern="layers",
                      init_lora_weights=False)
    model = get_peft_model(model, lora)
    encoded, _ = encode_all(render_facts(FACTS, tokenizer, ["qa", "statement"]), tokenizer, 256)
    prefix = PrefixCache(model, encoded, 1, tokenizer.pad_token_id)
    indices = [0, 3, 5]
    batch = collate([encoded[i] for i in indices], tokenizer.pad_token_id)
    losses, grads = [], []
    for cache in (None, prefix):
        model.zero_grad()
        loss, _ = completion_loss(model, batch, cache, indices)
        loss.backward()
        losses.append(loss.item())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad})
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 4  # A and B of two modules in layer 1
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])


def test_top_layers_train_only_those_layers(tiny_model_dir, pack):
    result = teach(pack, "top", tiny_config(tiny_model_dir, epochs=6, top_layers=1), progress=False)
    assert result.metrics["frozen_layer_cache"] == 1  # layer 0 ran once per example, layer 1 trained
    names = lora_weights("top").keys()
    assert names and all(".layers.1." in name for name in names)
    curve = json.loads((store.find("top") / store.CURVE_FILE).read_text())
    first = [p["loss"] for p in curve if p["epoch"] == 1]
    assert result.metrics["final_loss"] < sum(first) / len(first) - 0.1


def test_a_decoder_that_does_not_split_cleanly_trains_without_the_cache(tiny_model_dir, pack, monkeypatch, caplog):
    from lorebook.teach.prefix import PrefixCache

    monkeypatch.setattr(PrefixCache, "batch", lambda self, indices: torch.zeros(len(indices), 1, 1).expand(
        len(indices), max(len(self.states[i]) for i in indices), self.states[0].shape[-1]).contiguous())
    result = teach(pack, "nocache", tiny_config(tiny_model_dir, top_layers=1), progress=False, probe=False)
    assert result.metrics["frozen_layer_cache"] == 0 and "cache disabled" in caplog.text
    assert all(".layers.1." in name for name in lora_weights("nocache"))


def test_busy_cores_sees_a_spinning_process_at_once():
    import os
    import subprocess
    import sys
    import time

    from lorebook.teach.config import busy_cores, idle_cores

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        assert busy_cores(os.cpu_count(), seconds=0.5) >= 0.8  # now, not a minute later like the load average
    finally:
        spinner.kill()
    assert 1 <= idle_cores() <= os.cpu_count()
