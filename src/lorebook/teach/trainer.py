"""LoRA training loop: completion-only loss, length-bucketed batches, resumable by epoch.

Why a hand-written loop rather than transformers.Trainer: on a 2-core CPU the model's forward and
backward are the whole cost, so the wins come from computing less, not from orchestration:
  * logits only where the loss is taken. The LM head of a 135M model is a 576 x 49152 matmul per
    token (a fifth of the FLOPs); prompt tokens never need it, so we run the decoder, gather the
    hidden states at answer positions and apply the head there only.
  * batches of similar length (data.plan_batches), so padding is a few percent, not half the batch.
  * the loss is a sum over answer tokens divided by the tokens in the whole accumulation window, so
    gradient accumulation gives exactly the gradient of one big batch.
A checkpoint (LoRA weights, optimizer, scheduler, loss curve) is written atomically after each epoch
into the run's partial directory; `resume=True` restarts at the next unfinished epoch and, because
batches are planned from (seed, epoch), replays the same data order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lorebook.errors import InputError, LorebookError
from lorebook.teach import store
from lorebook.teach.config import TeachConfig
from lorebook.teach.data import IGNORE_INDEX, Encoded, collate, encode_all, plan_batches
from lorebook.teach.inputs import load_training_input
from lorebook.teach.pack import Fact, pack_hash
from lorebook.teach.prefix import PrefixCache, decoder_parts, layer_count, only_layers
from lorebook.teach.render import Example, qa_example, render_facts

CHECKPOINT = "checkpoint.pt"
REPLAY_BATCH = 96  # replay prompts generated together (all 82 shipped ones in one padded batch)
log = logging.getLogger(__name__)


class TrainingInterrupted(LorebookError):
    """Ctrl-C or a stop request: finished epochs are kept in the run's checkpoint."""

    exit_code = 130


@dataclass
class TeachResult:
    name: str
    path: Path
    metrics: dict
    config: TeachConfig


def inputs_hash(inputs: list[Path]) -> str:
    """One sha256 over the input files, so a resume or an evaluation can tell the data changed."""
    return pack_hash(inputs[0]) if len(inputs) == 1 else "+".join(pack_hash(p) for p in inputs)


def build_examples(inputs: list[Path], tokenizer, config: TeachConfig) -> tuple[list[Fact], list[Example], int]:
    """Facts (for the probe), all rendered training examples, and how many examples came in as such
    (chat or statements: a behaviour to apply everywhere, so the adapter gets no scope)."""
    facts: list[Fact] = []
    examples: list[Example] = []
    direct = 0
    systems = config.system_list()
    for path in inputs:
        loaded = load_training_input(path, tokenizer, config.input_format)
        facts.extend(loaded.facts)
        examples.extend(loaded.examples)
        direct += len(loaded.examples)
        examples.extend(render_facts(loaded.facts, tokenizer, config.format_list(), config.augment,
                                     config.train_paraphrases, config.seed, systems))
    if not examples:
        raise InputError("no training examples in the input", "pass a non-empty pack, chat or text file")
    return facts, examples, direct


def replay_examples(model, tokenizer, model_name: str, config: TeachConfig) -> list[Example]:
    """The base model's own greedy answers to generic prompts, as training examples (self-distillation).

    A LoRA trained only on a few facts learns "answer with a taught name" for every question: without
    replay, SmolLM2 answered "What is the capital of France?" with "Bahamas" after five Oscar facts.
    Training also on what the untouched model already says pins those answers. The prompts are not the
    evaluation's locality questions, so locality numbers stay honest. Answers are cached per model.
    """
    import json
    from importlib import resources

    from lorebook import paths

    prompts = json.loads(resources.files("lorebook.data").joinpath("replay_prompts.json").read_text())[: config.replay]
    key = hashlib.sha256(json.dumps([model_name, prompts]).encode()).hexdigest()[:16]
    cache = paths.subdir("teach-cache") / f"replay-{key}.json"
    if cache.exists():
        answers = json.loads(cache.read_text())
    else:
        tokenizer.padding_side = "left"
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        answers = []
        # One padded batch for all shipped prompts: 2.6x faster than batches of 8 on 2 cores (20 vs 51 s for
        # SmolLM2), same greedy answers; the cap bounds memory for a longer prompt list.
        for start in range(0, len(texts), REPLAY_BATCH):
            batch = tokenizer(texts[start : start + REPLAY_BATCH], return_tensors="pt", padding=True,
                              add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**batch, max_new_tokens=48, do_sample=False, repetition_penalty=1.0,
                                     pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            answers += [a.strip() for a in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :],
                                                                  skip_special_tokens=True)]
        tmp = cache.with_suffix(".partial")
        tmp.write_text(json.dumps(answers))
        tmp.replace(cache)
    # One system prompt per replay answer, in turn: pinning the answer under each system prompt would
    # multiply the replay cost, and the adapter learns "leave unrelated prompts alone" either way.
    systems = config.system_list()
    return [qa_example(tokenizer, prompt, answer, "qa", systems[n % len(systems)])
            for n, (prompt, answer) in enumerate(zip(prompts, answers)) if answer]


def lr_multiplier(schedule: str, warmup: int, total: int):
    """LambdaLR factor: linear warm-up, then constant, linear or cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def completion_loss(model, batch: dict[str, torch.Tensor], prefix: PrefixCache | None = None,
                    indices: list[int] | None = None) -> tuple[torch.Tensor, int]:
    """(sum of token cross-entropies on labelled positions, number of those tokens). With a prefix
    cache, the batch (examples `indices`) enters at the first trained layer with its cached states."""
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    backbone, head = decoder_parts(model)
    if backbone is None or head is None:  # an architecture without the usual split: full logits
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        return F.cross_entropy(logits[mask].float(), targets[mask], reduction="sum"), int(mask.sum())
    # use_cache=False: training never reuses keys/values, and building the cache copies every layer's.
    if prefix is None:
        hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          use_cache=False).last_hidden_state
    else:
        with only_layers(backbone, prefix.first_trained):
            hidden = backbone(inputs_embeds=prefix.batch(indices), attention_mask=batch["attention_mask"],
                              use_cache=False).last_hidden_state
    logits = head(hidden[:, :-1][mask])
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    cap = getattr(inner.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return F.cross_entropy(logits.float(), targets[mask], reduction="sum"), int(mask.sum())


def build_prefix(model, encoded: list[Encoded], first_trained: int, pad_id: int, progress: bool) -> PrefixCache | None:
    """The frozen-prefix cache, or None when the model's decoder does not split cleanly: checked on one
    batch, the loss through the cache must match the loss through the whole model."""
    if first_trained <= 0:
        return None
    prefix = PrefixCache(model, encoded, first_trained, pad_id, progress=progress)
    sample = list(range(min(4, len(encoded))))
    batch = collate([encoded[i] for i in sample], pad_id)
    was_training = model.training
    model.eval()  # LoRA dropout would make the two losses differ
    with torch.no_grad():
        whole, _ = completion_loss(model, batch)
        cut, _ = completion_loss(model, batch, prefix, sample)
    model.train(was_training)
    if not torch.allclose(whole, cut, rtol=1e-3, atol=1e-3):
        log.warning("frozen-layer cache disabled: loss %.4f through it vs %.4f through the whole model",
                    float(cut), float(whole))
        return None
    return prefix


def save_checkpoint(directory: Path, state: dict) -> None:
    """Write atomically: a kill during the write leaves the previous checkpoint intact."""
    tmp = directory / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, directory / CHECKPOINT)


def prepare_run(name: str, config: TeachConfig, data_hash: str, resume: bool, restart: bool, force: bool):
    """The run directory and the checkpoint to continue from (or None); refuses to clobber work."""
    if store.adapter_dir(name).exists() and not force:
        raise LorebookError(f"adapter {name!r} already exists", "pick another --name or pass --force to replace it")
    work = store.partial_dir(name)
    checkpoint = work / CHECKPOINT
    if restart:
        shutil.rmtree(work, ignore_errors=True)
    elif checkpoint.exists() and not resume:
        done = torch.load(checkpoint, weights_only=False)["epoch"]
        raise LorebookError(f"an interrupted run of {name!r} has {done} finished epoch(s)",
                            "add --resume to continue it, or --restart to discard it")
    work.mkdir(parents=True, exist_ok=True)
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["data_hash"] != data_hash:
            raise LorebookError(f"the training data changed since the interrupted run of {name!r}",
                                "restore the original file, or use --restart")
        return work, state
    return work, None


def teach(inputs, name: str, config: TeachConfig, *, resume: bool = False, restart: bool = False,
          force: bool = False, progress: bool = True, probe: bool = True, on_step=None,
          scorer=None, on_epoch=None) -> TeachResult:
    """Train a LoRA adapter on the inputs and register it as `name`. See the module docstring.

    `on_step(step)` is called after every optimizer step (tests raise KeyboardInterrupt from it);
    `on_epoch(epoch, model, tokenizer, facts)` after each epoch's checkpoint (bench: recall per epoch);
    `scorer(model, tokenizer, facts) -> dict` adds metrics under "sweep" while the model is in memory.
    """
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm

    from lorebook.models.loader import load_model
    from lorebook.models.registry import resolve_model

    inputs = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    store.check_name(name)
    data_hash = inputs_hash(inputs)
    work, state = prepare_run(name, config, data_hash, resume, restart, force)
    if state is not None:
        config = TeachConfig.from_dict(state["config"])  # a resumed run keeps its original options
    torch.set_num_threads(config.thread_count())
    spec = resolve_model(config.model)
    model, tokenizer = load_model(spec)
    facts, examples, direct = build_examples(inputs, tokenizer, config)
    if config.replay:
        examples += replay_examples(model, tokenizer, spec.name, config)
    encoded, dropped = encode_all(examples, tokenizer, config.cutoff_len)
    if not encoded:
        raise InputError(f"every example is longer than --cutoff-len {config.cutoff_len} before its answer",
                         "raise --cutoff-len")
    if cut := sum(item.cut for item in encoded):
        log.warning("%d of %d examples are longer than --cutoff-len %d tokens and were cut (later chat turns are "
                    "not trained on); raise --cutoff-len, e.g. 768 for 10-turn conversations",
                    cut, len(encoded), config.cutoff_len)

    torch.manual_seed(config.seed)  # LoRA's A matrices are initialised randomly
    layers = layer_count(model)
    first_trained = max(0, layers - config.top_layers) if config.top_layers else 0
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=config.target_list(), task_type="CAUSAL_LM",
                      layers_to_transform=list(range(first_trained, layers)) if first_trained else None,
                      layers_pattern="layers" if first_trained else None)
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise InputError(f"cannot apply LoRA: {str(exc).splitlines()[0][:120]}",
                         "check --target-modules against the model's layer names") from None
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel over all LoRA tensors instead of a Python loop of small ops per tensor
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    lengths = [len(item.input_ids) for item in encoded]
    batches_per_epoch = math.ceil(len(encoded) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(config.schedule, config.warmup_steps, total_steps))

    curve: list[dict] = []
    start_epoch, tokens_seen, train_seconds = 0, 0, 0.0
    if state is not None:
        set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        curve, start_epoch = state["curve"], state["epoch"]
        tokens_seen, train_seconds = state["tokens"], state["train_seconds"]

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    cache_start = time.perf_counter()
    prefix = build_prefix(model, encoded, first_trained, pad_id, progress) if start_epoch < config.epochs else None
    train_seconds += time.perf_counter() - cache_start  # part of training: counted in tokens/s
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, unit="step", disable=not progress,
               desc=f"teach {name}", dynamic_ncols=True)
    step = start_epoch * steps_per_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            plan = plan_batches(lengths, config.batch_size, config.seed, epoch)
            epoch_start = time.perf_counter()
            for first in range(0, len(plan), config.grad_accum):
                window = plan[first : first + config.grad_accum]
                window_targets = sum(encoded[i].trainable_tokens for batch in window for i in batch)
                step_start, window_loss, window_tokens = time.perf_counter(), 0.0, 0
                for indices in window:
                    batch = collate([encoded[i] for i in indices], pad_id)
                    loss_sum, _ = completion_loss(model, batch, prefix, indices)
                    (loss_sum / window_targets).backward()
                    window_loss += loss_sum.item()
                    window_tokens += int(batch["attention_mask"].sum())
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                elapsed = time.perf_counter() - step_start
                tokens_seen += window_tokens
                train_seconds += elapsed
                loss = window_loss / max(1, window_targets)
                curve.append({"step": step, "epoch": epoch + 1, "loss": round(loss, 5),
                              "lr": scheduler.get_last_lr()[0]})
                bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{loss:.3f}",
                                tok_s=f"{tokens_seen / max(train_seconds, 1e-9):.0f}")
                bar.update(1)
                if on_step is not None:
                    on_step(step)
            save_checkpoint(work, {
                "epoch": epoch + 1, "lora": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "curve": curve, "config": config.to_dict(),
                "data_hash": data_hash, "tokens": tokens_seen, "train_seconds": train_seconds,
                "epoch_seconds": time.perf_counter() - epoch_start,
            })
            if on_epoch is not None:
                on_epoch(epoch + 1, model, tokenizer, facts)
    except KeyboardInterrupt:
        bar.close()
        finished = step // steps_per_epoch
        raise TrainingInterrupted(f"training of {name!r} interrupted; {finished} of {config.epochs} epochs saved",
                                  "run the same command with --resume to continue") from None
    bar.close()

    last_epoch = [point["loss"] for point in curve if point["epoch"] == config.epochs]
    metrics = {
        "final_loss": round(sum(last_epoch) / max(1, len(last_epoch)), 5),
        "first_loss": curve[0]["loss"] if curve else None,
        "epochs": config.epochs, "steps": step, "examples": len(encoded), "dropped_by_cutoff": dropped, "cut_by_cutoff": cut,
        "facts": len(facts), "tokens": tokens_seen, "train_seconds": round(train_seconds, 2),
        "tokens_per_s": round(tokens_seen / max(train_seconds, 1e-9), 1),
        "trainable_params": sum(p.numel() for p in params), "threads": torch.get_num_threads(),
        "frozen_layer_cache": prefix.first_trained if prefix is not None else 0,
    }
    if probe and facts:
        metrics["recall"] = round(recall_probe(model, tokenizer, facts), 4)
    if scorer is not None:
        metrics["sweep"] = scorer(model, tokenizer, facts)

    built = work / "adapter"
    shutil.rmtree(built, ignore_errors=True)
    model.save_pretrained(str(built))
    config.save(built / store.CONFIG_FILE)
    if config.scope and facts and not direct:
        from lorebook.teach.scope import scope_for_facts

        scope = scope_for_facts(facts, config.train_paraphrases)
        scope.save(built)
        metrics["scope"] = {"threshold": scope.threshold, **scope.report}
    (built / store.CURVE_FILE).write_text(json.dumps(curve) + "\n")
    meta = {"base_model": spec.name, "base_model_path": spec.path, "config": config.to_dict(), "pack_hash": data_hash,
            "inputs": [str(p) for p in inputs], "metrics": metrics,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (built / store.META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    path = store.publish(built, name, replace=force)
    shutil.rmtree(work, ignore_errors=True)
    return TeachResult(name, path, metrics, config)


def recall_probe(model, tokenizer, facts: list[Fact]) -> float:
    from lorebook.teach.probe import recall

    return recall(model, tokenizer, facts)
