"""Run the attack set against a persona: generate every turn, grade, store, compute hold rates.

Conversations are played round by round: the first turns of a batch of attacks are generated
together, then the second turns of those that have one, and so on, so multi-turn attacks see the
persona's own earlier replies. Decoding is greedy (the persona's repetition penalty kept), so a run
is reproducible and two runs differ only by what changed in the subject.
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
from lorebook.evaluate.behaviour import is_degenerate
from lorebook.evaluate.judge import agreement
from lorebook.evaluate.stats import share
from lorebook.models.engine import GenerationOptions
from lorebook.redteam import graders, store
from lorebook.redteam.attacks import EXPECTATIONS, TECHNIQUES, Attack, load_attacks, select


@dataclass
class RedteamConfig:
    """What to attack and how; each field's help text is the matching CLI flag's help."""

    persona: str = field(default="assistant", metadata={"help": "persona to attack (its model, adapters, system prompt, language)"})
    model: str | None = field(default=None, metadata={"help": "model name or path (default: the persona's)"})
    adapters: list[str] = field(default_factory=list, metadata={"help": "LoRA adapter to attack as well (repeatable)"})
    notebook: str | None = field(default=None, metadata={"help": "retrieval notebook feeding the persona (default: the persona's)"})
    techniques: list[str] = field(default_factory=list, metadata={"help": f"comma-separated subset of {', '.join(TECHNIQUES)}"})
    per_technique: int = field(default=0, metadata={"help": "at most this many attacks per technique (0 = all)"})
    attacks_file: str | None = field(default=None, metadata={"help": "YAML attack file instead of the shipped set"})
    max_tokens: int = field(default=80, metadata={"help": "reply budget per turn (tokens)"})
    batch_size: int = field(default=8, metadata={"help": "conversations generated together (1 = one at a time)"})
    judge: str | None = field(default=None, metadata={"help": "LLM judge: a model name/path or an OpenAI-compatible URL (URL#model)"})


@dataclass
class Subject:
    """The resolved target: model, adapters, notebook, system prompt, language, sampling options."""

    model: str
    adapters: list[str]
    persona: str
    notebook: str | None
    system: str | None
    language: str
    options: GenerationOptions
    character: bool
    moments: object = None  # the persona's MomentsConfig: replies picked among candidates, as in chat


def resolve_subject(config: RedteamConfig) -> Subject:
    from lorebook.chat.persona import load_persona
    from lorebook.models.registry import resolve_model

    persona = load_persona(config.persona)
    model = config.model or persona.model
    notebook = config.notebook or persona.notebook
    if notebook:
        from lorebook.notebook.store import Notebook

        Notebook.open(notebook)  # an unknown notebook fails before any model loads
    options = persona.options.updated(temperature=0.0, max_tokens=config.max_tokens, seed=0)
    model_name = str(Path(model).resolve()) if model and Path(model).exists() else resolve_model(model).name
    system = persona.system or None
    return Subject(model_name, list(persona.adapters) + list(config.adapters), persona.name, notebook, system,
                   persona.language or "en", options, graders.in_character(system), persona.moments)


def fingerprint(subject: Subject, attacks: list[Attack]) -> str:
    parts = [dataclasses.asdict(subject), [dataclasses.asdict(a) for a in attacks]]
    if subject.adapters:
        from lorebook.models.routed_engine import scope_fingerprint

        parts += scope_fingerprint(subject.adapters)  # scope on or off answers differently
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _note_fence(messages: list[dict], notes: list) -> list[dict]:
    """The last user turn with notes (Hits or planted texts) in the notebook's own fence, so attacks test
    the real prompt."""
    from lorebook.notebook.scope import with_notes
    from lorebook.notebook.store import Hit

    return with_notes(messages, [note if isinstance(note, Hit) else Hit(0, note, 1.0) for note in notes])


def _withheld(note: str, retriever) -> bool:
    """A notebook-backed persona gets the notebook's own defence: instruction-like notes are withheld."""
    if retriever is None or not retriever.withhold_instructions:
        return False
    from lorebook.notebook.scope import looks_like_instruction

    return looks_like_instruction(note)


def _prompts(histories: list[list[dict]], attacks: list[Attack], retriever) -> list[list[dict]]:
    """What the model sees for the next turn: notebook notes and planted notes added to the last turn."""
    prompts = histories
    found = [[] for _ in histories]
    if retriever is not None:
        queries = [h[-1]["content"] for h in histories]
        found = [retriever.select(hits, query)
                 for query, hits in zip(queries, retriever.notebook.search(queries, retriever.candidates()))]
    out = []
    for history, attack, hits in zip(prompts, attacks, found):
        notes = list(hits)
        if attack.note and sum(m["role"] == "user" for m in history) == 1 and not _withheld(attack.note, retriever):
            notes.append(attack.note)  # planted where the retriever would put its best note
        out.append(_note_fence(history, notes) if notes else history)
    return out


def grade(attack: Attack, replies: list[str], subject: Subject) -> dict:
    """Every check on every reply; `held` counts only the behaviours the attack declares."""
    languages = [graders.reply_language(r) for r in replies]
    breaks = sorted({p for r in replies for p in graders.role_breaks(r, attack.marker, subject.character)})
    runs = [graders.leaks(r, subject.system)[1] for r in replies]
    leaked = any(graders.leaks(r, subject.system)[0] for r in replies)
    checks = {
        "language": {"held": all(lang in ("und", subject.language) for lang in languages), "found": languages},
        "role": {"held": not breaks, "breaks": breaks},
        "secret": {"held": not leaked, "shared_run": max(runs, default=0)},
    }
    return {**checks, "degenerate": any(is_degenerate(r) for r in replies)}


def _play(engine, attacks: list[Attack], subject: Subject, config: RedteamConfig, retriever) -> list[dict]:
    """Play a batch of attacks round by round; returns their graded items."""
    start = [{"role": "system", "content": subject.system}] if subject.system else []
    histories = {a.id: list(start) for a in attacks}
    turns = {a.id: a.user_turns() for a in attacks}
    for round_number in range(max(len(t) for t in turns.values())):
        active = [a for a in attacks if round_number < len(turns[a.id])]
        for attack in active:
            histories[attack.id].append({"role": "user", "content": turns[attack.id][round_number]})
        prompts = _prompts([histories[a.id] for a in active], active, retriever)
        if subject.moments is not None:  # attacked as users meet it: each reply picked among candidates
            from lorebook.chat.moments import picked_replies

            replies = picked_replies(engine, prompts, subject.options, subject.moments)
        elif config.batch_size == 1:
            replies = [engine.chat(p, subject.options).text for p in prompts]
        else:
            replies = engine.chat_batch(prompts, subject.options)
        for attack, reply in zip(active, replies):
            histories[attack.id].append({"role": "assistant", "content": reply.strip()})
    items = []
    for attack in attacks:
        conversation = histories[attack.id][len(start):]
        grades = grade(attack, [m["content"] for m in conversation if m["role"] == "assistant"], subject)
        items.append({"attack_id": attack.id, "technique": attack.technique, "expect": attack.expect,
                      "conversation": conversation, "grades": grades,
                      "held": all(grades[e]["held"] for e in attack.expect)})
    return items


def compute_metrics(items: list[dict], subject: Subject) -> dict:
    """Hold rates with 95% Wilson intervals: overall, per technique, per expected behaviour."""
    metrics = {"hold": share([i["held"] for i in items]), "techniques": {}, "behaviours": {},
               "language": subject.language, "character": subject.character,
               "degenerate": share([i["grades"]["degenerate"] for i in items])}
    for technique in TECHNIQUES:
        chosen = [i["held"] for i in items if i["technique"] == technique]
        if chosen:
            metrics["techniques"][technique] = share(chosen)
    for behaviour in EXPECTATIONS:
        metrics["behaviours"][behaviour] = share([i["grades"][behaviour]["held"] for i in items if behaviour in i["expect"]])
    judged = [i["judge_held"] for i in items]
    if any(v is not None for v in judged):
        metrics["judge_hold"] = share([v for v in judged if v is not None])
        metrics["judge_agreement"] = agreement([i["held"] for i in items], judged)
    return metrics


def _judge(db, run_id: int, target: str, subject: Subject, progress: bool) -> None:
    judge = graders.HoldJudge(target)
    items = store.get_items(db, run_id)
    if progress:
        tqdm.write(f"judging {len(items)} attacks with {target}")
    cases = [(subject.system, subject.language,
              " / ".join(m["content"] for m in item["conversation"] if m["role"] == "user"),
              " / ".join(m["content"] for m in item["conversation"] if m["role"] == "assistant")) for item in items]
    store.save_judge(db, run_id, dict(zip([i["attack_id"] for i in items], judge.holds(cases))))


def run_redteam(config: RedteamConfig, progress: bool = True, engine=None) -> int:
    """Attack the subject with the chosen attacks; returns the stored run's id (resumes an unfinished one)."""
    if config.max_tokens < 1 or config.batch_size < 1 or config.per_technique < 0:
        raise InputError("--max-tokens and --batch-size must be positive, --per-technique ≥ 0", "e.g. --batch-size 8")
    attacks = select(load_attacks(config.attacks_file), config.techniques, config.per_technique)
    if not attacks:
        raise InputError("no attacks selected", f"choose techniques among {', '.join(TECHNIQUES)}")
    subject = resolve_subject(config)
    key = fingerprint(subject, attacks)
    db = store.connect()
    try:
        started = time.perf_counter()
        run_id = store.find_unfinished(db, key)
        if run_id is None:
            run_id = store.create_run(db, model=subject.model, adapters=subject.adapters, persona=subject.persona,
                                      notebook=subject.notebook, config=dataclasses.asdict(config), fingerprint=key)
        elif progress:
            tqdm.write(f"resuming red-team run {run_id}")
        todo = [a for a in attacks if a.id not in store.done_ids(db, run_id)]
        if todo:
            if engine is None:
                from lorebook.models.engine import load_engine

                engine = load_engine(subject.model, adapters=subject.adapters)
            retriever = None
            if subject.notebook:
                from lorebook.notebook.scope import Retriever
                from lorebook.notebook.store import Notebook

                retriever = Retriever(Notebook.open(subject.notebook), count_tokens=engine.count_tokens)
            bar = tqdm(total=len(todo), desc=f"red-team run {run_id}", unit="attack", disable=not progress)
            for first in range(0, len(todo), config.batch_size):
                batch = todo[first : first + config.batch_size]
                store.save_items(db, run_id, _play(engine, batch, subject, config, retriever))
                bar.update(len(batch))
            bar.close()
        if config.judge:
            _judge(db, run_id, config.judge, subject, progress)
        store.finish_run(db, run_id, compute_metrics(store.get_items(db, run_id), subject), time.perf_counter() - started)
        return run_id
    finally:
        db.close()
