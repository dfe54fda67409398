"""Run an evaluation: build probes, generate replies in padded batches, grade, store, compute metrics.

A taught subject (adapters, later a notebook) is always measured against its base model on the same
probes; the base run is stored like any run and reused while model, probes and config are unchanged,
so evaluating ten adapters costs one base run, not ten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lorebook.errors import InputError
from lorebook.evaluate import store
from lorebook.evaluate.metrics import compute_metrics
from lorebook.evaluate.normalize import match
from lorebook.evaluate.probes import (
    FACT_FORMATS,
    Probe,
    chat_probes,
    fact_probes,
    locality_probes,
    probe_set_hash,
)
from lorebook.models.engine import GenerationOptions


@dataclass
class EvalConfig:
    """How to evaluate; each field's help text is the matching CLI flag's help."""

    model: str | None = field(default=None, metadata={"help": "model name or path (default: the persona's, else smollm2-135m)"})
    adapters: list[str] = field(default_factory=list, metadata={"help": "LoRA adapter name or path to evaluate (repeatable)"})
    persona: str | None = field(default=None, metadata={"help": "persona whose model, adapters, system prompt and language to use"})
    notebook: str | None = field(default=None, metadata={"help": "retrieval notebook to evaluate (teach without training)"})
    formats: list[str] = field(default_factory=lambda: list(FACT_FORMATS), metadata={"help": "fact probe formats, comma-separated"})
    locality: int = field(default=210, metadata={"help": "number of general-knowledge questions (0 = skip locality)"})
    chat_prompts: int = field(default=8, metadata={"help": "number of open chat prompts for behaviour metrics (0 = skip)"})
    max_tokens: int = field(default=40, metadata={"help": "reply budget for factual probes (tokens)"})
    chat_max_tokens: int = field(default=96, metadata={"help": "reply budget for open chat prompts (tokens)"})
    batch_size: int = field(default=16, metadata={"help": "probes generated together in one padded batch (1 = one at a time, streaming path)"})
    judge: str | None = field(default=None, metadata={"help": "LLM judge: a model name/path or an OpenAI-compatible URL (URL#model)"})
    baseline: bool = field(default=True, metadata={"help": "also run (or reuse) the base model for known-before and locality"})

    def generation(self, kind: str) -> GenerationOptions:
        """Greedy decoding, no repetition penalty: the model's own most likely answer."""
        budget = self.chat_max_tokens if kind == "chat" else self.max_tokens
        return GenerationOptions(temperature=0, repetition_penalty=1.0, max_tokens=budget)


@dataclass
class Subject:
    """What is evaluated: a model, adapters, and a persona's system prompt and language."""

    model: str
    adapters: list[str]
    persona: str | None = None
    system: str | None = None
    language: str | None = None
    notebook: str | None = None


def resolve_subject(config: EvalConfig) -> Subject:
    from lorebook.models.registry import resolve_model

    system = language = None
    model, adapters, notebook = config.model, list(config.adapters), config.notebook
    if config.persona:
        from lorebook.chat.persona import load_persona

        persona = load_persona(config.persona)
        model = model or persona.model
        adapters = list(persona.adapters) + adapters
        system, language = persona.system or None, persona.language
        notebook = notebook or persona.notebook
    if notebook:
        from lorebook.notebook.store import Notebook

        Notebook.open(notebook)  # an unknown notebook fails now, not after the baseline run
    return Subject(resolve_model(model).name if model is None or not Path(model).exists() else str(Path(model).resolve()),
                   adapters, config.persona, system, language, notebook)


def build_probes(facts, config: EvalConfig, subject: Subject) -> list[Probe]:
    probes = fact_probes(facts, config.formats, subject.system)
    if config.locality:
        probes += locality_probes(config.locality, subject.system)
    if config.chat_prompts:
        probes += chat_probes(subject.language or "en", subject.system, config.chat_prompts)
    return probes


def _fingerprint(subject: Subject, probe_hash: str, config: EvalConfig) -> str:
    generation = {k: v for k, v in dataclasses.asdict(config).items() if k in ("max_tokens", "chat_max_tokens")}
    parts = [subject.model, subject.adapters, subject.persona, probe_hash, generation]
    if subject.adapters:
        from lorebook.models.routed_engine import scope_fingerprint

        parts += scope_fingerprint(subject.adapters)  # scope on or off answers differently
    if subject.notebook:
        from lorebook.notebook.scope import NotebookConfig
        from lorebook.notebook.store import Notebook

        notebook = Notebook.open(subject.notebook)
        parts.append([notebook.name, notebook.threshold, notebook.count(), dataclasses.asdict(NotebookConfig())])
    key = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _generate(db, run_id: int, engine, probes: list[Probe], config: EvalConfig, progress: bool,
              notebook: str | None = None) -> None:
    """Generate replies for probes not yet stored, longest prompts first (less padding per batch)."""
    retriever = None
    if notebook:
        from lorebook.notebook.scope import Retriever
        from lorebook.notebook.store import Notebook

        retriever = Retriever(Notebook.open(notebook), count_tokens=engine.count_tokens)
    todo = [p for p in probes if p.key not in store.done_keys(db, run_id)]
    if not todo:
        return
    todo.sort(key=lambda p: (p.kind == "chat", -len(engine.render(p.messages))))
    bar = tqdm(total=len(todo), desc=f"eval run {run_id}", unit="probe", disable=not progress)
    for kind in ("fact", "locality", "chat"):
        chosen = [p for p in todo if p.kind == kind]
        for start in range(0, len(chosen), config.batch_size):
            batch = chosen[start : start + config.batch_size]
            options = config.generation(kind)
            conversations = [p.messages for p in batch]
            if retriever is not None:  # in-scope questions get notes; the rest keep their exact prompt
                conversations = retriever.augment_many(conversations)[0]
            if config.batch_size == 1:  # the engine's streaming path (int8 fast path on llama models)
                replies = [engine.chat(messages, options).text for messages in conversations]
            else:
                replies = engine.chat_batch(conversations, options)
            grades = [match(reply, p.answers()) if p.kind != "chat" else False for p, reply in zip(batch, replies)]
            store.save_items(db, run_id, batch, replies, grades)
            bar.update(len(batch))
    bar.close()


def _judge(db, run_id: int, target: str, progress: bool, engine=None) -> None:
    from lorebook.evaluate.judge import Judge

    items = [i for i in store.get_items(db, run_id) if i["kind"] != "chat"]
    judge = Judge(target, engine=engine)
    grades: dict[str, bool | None] = {}
    bar = tqdm(total=len(items), desc="judge", unit="reply", disable=not progress)
    for start in range(0, len(items), 32):
        chunk = items[start : start + 32]
        verdicts = judge.grade([(i["question"], i["expected"], i["aliases"], i["reply"]) for i in chunk])
        grades.update({i["key"]: v for i, v in zip(chunk, verdicts)})
        bar.update(len(chunk))
    bar.close()
    store.save_judge_grades(db, run_id, grades)


def run_eval(pack, config: EvalConfig, progress: bool = True, engine=None) -> int:
    """Evaluate `pack` (a path or a list of Facts) under `config`; returns the stored run's id.

    An unfinished run with the same fingerprint is resumed. `engine` lets callers pass an already
    loaded engine for the subject (e.g. right after teaching).
    """
    if isinstance(pack, (str, Path)):
        from lorebook.teach.pack import load_pack

        facts, pack_name = load_pack(pack), str(pack)
    else:
        facts, pack_name = list(pack), "(in memory)"
    if not facts:
        raise InputError(f"knowledge pack {pack_name} has no facts", "add one JSON fact per line")
    subject = resolve_subject(config)
    baseline_run = None
    if config.baseline and (subject.adapters or subject.notebook):
        # Same model, prompt and language without adapters or notebook; reused when already measured.
        base = dataclasses.replace(subject, adapters=[], notebook=None)
        base_config = dataclasses.replace(config, adapters=[], notebook=None, judge=None, baseline=False)
        baseline_run = _run(facts, pack_name, base_config, base, None, progress, reuse=True)
    return _run(facts, pack_name, config, subject, baseline_run, progress, reuse=False, engine=engine)


def _run(facts, pack_name: str, config: EvalConfig, subject: Subject, baseline_run: int | None, progress: bool,
         reuse: bool, engine=None) -> int:
    probes = build_probes(facts, config, subject)
    probe_hash = probe_set_hash(probes)
    fingerprint = _fingerprint(subject, probe_hash, config)
    db = store.connect()
    try:
        if reuse and (done := store.find_run(db, fingerprint, ("done",))) is not None:
            return done
        started = time.perf_counter()
        run_id = store.find_run(db, fingerprint, ("running",))
        if run_id is None:
            run_id = store.create_run(
                db, model=subject.model, adapters=subject.adapters, persona=subject.persona, notebook=subject.notebook,
                pack=pack_name, probe_hash=probe_hash, config=dataclasses.asdict(config), fingerprint=fingerprint,
                baseline_run=baseline_run)
        elif progress:
            tqdm.write(f"resuming eval run {run_id}")
        if len(store.done_keys(db, run_id)) < len(probes):
            if engine is None:
                from lorebook.models.engine import load_engine
                from lorebook.teach.config import idle_cores

                engine = load_engine(subject.model, adapters=subject.adapters, threads=idle_cores())
            _generate(db, run_id, engine, probes, config, progress, subject.notebook)
        if config.judge:  # a base model judging itself reuses the loaded engine instead of loading it again
            same = engine is not None and not subject.adapters and not subject.notebook and (
                config.judge in (subject.model, config.model))
            _judge(db, run_id, config.judge, progress, engine if same else None)
        baseline_items = store.get_items(db, baseline_run) if baseline_run else None
        metrics = compute_metrics(store.get_items(db, run_id), baseline_items, subject.language, bool(subject.persona))
        store.finish_run(db, run_id, metrics, time.perf_counter() - started)
        return run_id
    finally:
        db.close()
