"""`run_synth`: generate N conversations in batches, filter them, append them to JSONL, resume after a kill.

Files beside OUT (e.g. convs.jsonl): OUT itself (kept conversations, chat JSONL that `lorebook teach`
reads, with the sampled attributes under `metadata`), `convs.drops.jsonl` (dropped ones with the
reason), `convs.synth.json` (the config and scenario fingerprint, checked on resume) and
`convs.report.json` (counts). Conversation i is seeded by (seed, i), and a batch is appended only when
finished, so a killed run regenerates at most its unfinished batch and writes nothing twice. `refilter`
re-applies the filters to a finished file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from lorebook.errors import InputError
from lorebook.synth.dialogue import Conversation, asked_answers, play, to_chat
from lorebook.synth.filters import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DuplicateFilter,
    first_problem,
    trimmed,
    turn_problem,
)
from lorebook.synth.scenario import Scenario, sample_attributes, sample_sampling
from lorebook.synth.teachers import SideTeachers, make_teacher
from lorebook.synth.topics import normalize_words

PRECISIONS = ("auto", "bf16", "fp32")
ENGINES = ("torch", "llamacpp")


@dataclass
class SynthConfig:
    """How to generate; each field's help is the matching `lorebook synth` flag's help."""

    n: int = field(default=100, metadata={"help": "conversations to generate (kept + dropped)"})
    turns: int = field(default=10, metadata={"help": "most turns per conversation (both sides counted)"})
    teacher: str = field(default="gemma3-270m", metadata={
        "help": "who writes the turns: a model name/path (local, batched), an OpenAI-compatible URL "
                "(http://host:port/v1#model), or batch:FOLDER[#model] for OpenAI Batch API files"})
    agent_teacher: str = field(default="", metadata={
        "help": "another teacher for the agent's turns only (the side the fine-tune learns), same forms as "
                "--teacher; the traveller keeps --teacher"})
    min_turns: int = field(default=0, metadata={
        "help": "turns before a closing phrase may end a conversation (0 = the first one ends it); later "
                "turns teach what the agent says after its decision"})
    followups: int = field(default=0, metadata={
        "help": "after the agent's decision, the traveller says this many lines from the scenario's "
                "traveller.followups (the last a goodbye) and the agent answers each; allow 2 --turns per line"})
    scripted_answers: bool = field(default=False, metadata={
        "help": "the traveller answers the agent's questions from the scenario's traveller.answers (no teacher "
                "call there); only its other turns are generated"})
    scripted_agent: bool = field(default=False, metadata={
        "help": "the agent says the scenario's own lines (agent.agenda[].lines, and agent.answers as reactions to "
                "the traveller) wherever one fits; only its other turns are generated"})
    late_answers: float = field(default=0.0, metadata={
        "help": "with --scripted-answers, the share of two-part questions the traveller answers only in part, "
                "saying the rest when next asked something; with --scripted-agent the agent then asks again "
                "(agenda steps' again: lines)"})
    batch_size: int = field(default=16, metadata={"help": "conversations generated together (1 = one at a time)"})
    seed: int = field(default=0, metadata={"help": "seed for attributes, openers and sampling"})
    dedup: float = field(default=DEFAULT_DUPLICATE_THRESHOLD, metadata={
        "help": "drop a conversation whose word 3-gram Jaccard similarity to a kept one reaches this (1 = off)"})
    check_language: bool = field(default=True, metadata={"help": "drop conversations with an agent turn in another language"})
    check_topics: bool = field(default=True, metadata={
        "help": "drop conversations with an agent turn that uses none of the scenario's agent.topics words"})
    trim: bool = field(default=True, metadata={
        "help": "keep the good turns before a bad one (>= 2 agent turns, ending on the agent) instead of dropping "
                "the whole conversation"})
    retries: int = field(default=2, metadata={
        "help": "generate a turn that fails the filters again, up to this many times, before the conversation "
                "is trimmed or dropped there (0 = never)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads for a local teacher (0 = idle cores)"})
    precision: str = field(default="auto", metadata={
        "help": "a local teacher's weights: bf16, fp32, or auto (bf16 where the CPU has AVX512-BF16 or AMX, "
                "2-5x faster there)"})
    engine: str = field(default="torch", metadata={
        "help": "a local teacher's engine: torch (a round's conversations in one batch) or llamacpp (the GGUF "
                "as quantized, one conversation at a time; faster on CPUs without bf16)"})

    def validate(self) -> None:
        if self.n < 1 or self.turns < 1 or self.batch_size < 1:
            raise InputError("-n, --turns and --batch-size must be at least 1", "e.g. -n 100 --turns 10")
        if not 0 <= self.min_turns <= self.turns:
            raise InputError(f"--min-turns {self.min_turns} is outside 0..--turns", "e.g. --turns 14 --min-turns 12")
        if self.followups < 0:
            raise InputError(f"--followups {self.followups} is negative", "use 0 (the decision ends it) or e.g. 3")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision!r} is unknown", "use auto, bf16 or fp32")
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine!r} is unknown", "use torch or llamacpp")
        if self.retries < 0:
            raise InputError(f"--retries {self.retries} is negative", "use 0 (no retries) or more, e.g. --retries 2")
        if not 0 <= self.late_answers <= 1:
            raise InputError(f"--late-answers {self.late_answers} is out of range", "use a share in [0, 1], e.g. 0.5")
        if self.late_answers and not self.scripted_answers:
            raise InputError("--late-answers needs --scripted-answers", "add --scripted-answers or drop --late-answers")
        if not 0 < self.dedup <= 1:
            raise InputError(f"--dedup {self.dedup} is out of range", "use a similarity in (0, 1], e.g. 0.7")


def sidecar(out: Path, suffix: str) -> Path:
    return out.with_name(f"{out.stem}.{suffix}")


def _fingerprint(scenario: Scenario, config: SynthConfig) -> str:
    text = Path(scenario.source).read_bytes() if scenario.source else b""
    kept = {k: v for k, v in asdict(config).items() if k not in ("n", "batch_size", "threads", "precision", "engine")}
    for name in ("min_turns", "followups", "scripted_answers", "scripted_agent", "late_answers"):
        if not kept[name]:
            del kept[name]  # runs started before the option existed still resume
    return hashlib.sha256(text + json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def _read_done(path: Path) -> list[dict]:
    """Records already written; a torn last line (killed mid-write) is cut off so it is regenerated."""
    if not path.exists():
        return []
    records, good_bytes = [], 0
    with path.open("rb") as handle:
        for raw in handle:
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:
                break
            good_bytes += len(raw)
    if good_bytes < path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return records


def _append(path: Path, records: list[dict]) -> None:
    if not records:
        return
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())


def _check_resume(out: Path, fingerprint: str, config: SynthConfig) -> None:
    meta_path = sidecar(out, "synth.json")
    if meta_path.exists():
        previous = json.loads(meta_path.read_text())
        if previous.get("fingerprint") != fingerprint:
            raise InputError(f"{out} was generated with another scenario, teacher, seed or filters",
                             "use a new -o file, or the same options as before to resume")
    meta_path.write_text(json.dumps({"fingerprint": fingerprint, "config": asdict(config)}, indent=2) + "\n")


def _check_again_lines(scenario: Scenario, config: SynthConfig) -> None:
    """With late answers (which `validate` allows only with scripted answers), every `again:` line must ask
    something the scripted traveller answers: one that asks nothing of traveller.answers sends the traveller's
    next line to the teacher, and a small teacher writes nonsense there that the officer's next reaction is then
    taught on."""
    if not config.late_answers:
        return
    for number, step in enumerate(scenario.agent.agenda, 1):
        for line in step.again:
            if not asked_answers(scenario.traveller, line):
                raise InputError(f"agent.agenda[{number}].again line {line!r} asks nothing traveller.answers answer "
                                 f"in {scenario.source or scenario.name}",
                                 "reword it with a word of a traveller.answers asks: list, or add that word there")


def run_synth(scenario: Scenario, config: SynthConfig, out, teacher=None, progress: bool = True) -> dict:
    """Generate until conversations 0..n-1 are all kept or dropped; returns the report (also saved)."""
    config.validate()
    if config.followups > len(scenario.traveller.followups):
        raise InputError(f"--followups {config.followups} needs as many lines under traveller.followups in "
                         f"{scenario.source or scenario.name} (it has {len(scenario.traveller.followups)})",
                         "add follow-up lines to the scenario or lower --followups")
    if config.scripted_answers and not scenario.traveller.answers:
        raise InputError(f"--scripted-answers needs traveller.answers in {scenario.source or scenario.name}",
                         "add answers: [{asks: [pasaport], lines: ['Aquí tiene.']}] or drop the flag")
    agent = scenario.agent
    if config.scripted_agent and not (agent.answers or any(step.lines for step in agent.agenda)):
        raise InputError(f"--scripted-agent needs agent.answers or agent.agenda lines in {scenario.source or scenario.name}",
                         "add lines: ['Su pasaporte, por favor.'] to an agenda step or drop the flag")
    _check_again_lines(scenario, config)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_resume(out, _fingerprint(scenario, config), config)
    drops_path = sidecar(out, "drops.jsonl")
    kept, dropped = _read_done(out), _read_done(drops_path)
    done = {r["id"] for r in kept} | {r["id"] for r in dropped}
    duplicates = DuplicateFilter(config.dedup)
    for record in kept:
        duplicates.add(record["metadata"]["turns"])
    pending = [i for i in range(config.n) if i not in done]
    if teacher is None and pending:
        load = _engine_loader(config)
        teacher = make_teacher(config.teacher, load)
        if config.agent_teacher:
            teacher = SideTeachers(make_teacher(config.agent_teacher, load), teacher)
    reasons = Counter(r["reason"] for r in dropped)
    started, generated = time.perf_counter(), 0
    bar = tqdm(total=len(pending) * config.turns, desc="synth turns", disable=not progress, unit="turn")
    for start in range(0, len(pending), config.batch_size):
        chunk = pending[start : start + config.batch_size]
        sampling = sample_sampling(scenario, config.seed, chunk[0])
        conversations = [Conversation(i, sample_attributes(scenario, config.seed, i), sampling) for i in chunk]
        play(scenario, conversations, teacher, config.turns, config.seed,
             on_turn=functools.partial(bar.update, len(chunk)), accept=_acceptor(scenario, config),
             retries=config.retries, min_turns=config.min_turns, followups=config.followups,
             scripted_answers=config.scripted_answers, scripted_agent=config.scripted_agent,
             late_answers=config.late_answers)
        records = [_record(scenario, conversation, config, teacher) for conversation in conversations]
        keep_records, drop_records = _sort(scenario, config, records, duplicates, reasons)
        _append(out, keep_records)
        _append(drops_path, drop_records)
        kept += keep_records
        generated += len(chunk)
    bar.close()
    return _report(out, kept, reasons, generated, time.perf_counter() - started,
                   getattr(teacher, "name", config.teacher))


def refilter(scenario: Scenario, config: SynthConfig, source, out) -> dict:
    """Apply the filters of `config` to conversations already generated (`source`, a previous -o file) and
    write the ones that pass to `out`: filters can be tightened after the expensive generation."""
    config.validate()
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise InputError(f"--refilter {source} and -o are the same file", "write the filtered conversations to a new -o file")
    if out.exists() and out.stat().st_size:
        raise InputError(f"{out} already exists", "choose a new -o file (refiltering does not append)")
    records = _read_done(source) if source.exists() else None
    if not records or any("turns" not in (r.get("metadata") or {}) for r in records):
        raise InputError(f"{source} holds no conversations written by lorebook synth",
                         "pass the -o file of a lorebook synth run")
    out.parent.mkdir(parents=True, exist_ok=True)
    reasons: Counter = Counter()
    keep, drop = _sort(scenario, config, records, DuplicateFilter(config.dedup), reasons)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), encoding="utf-8")
    sidecar(out, "drops.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in drop),
                                           encoding="utf-8")
    return _report(out, keep, reasons, 0, 0.0, records[0]["metadata"].get("teacher", config.teacher), source=str(source))


def _topics(scenario: Scenario, config: SynthConfig) -> tuple[str, ...]:
    return scenario.agent.topics if config.check_topics else ()


def _heard(scenario: Scenario) -> tuple[str, ...]:
    """The other side's lines in the agent's few-shot examples: the agent saying one of them is parroting."""
    return tuple(line for line, _ in scenario.agent.examples)


def _once(scenario: Scenario) -> tuple[str, ...]:
    """The agent's closing phrases, normalized: said a second time in one conversation, they are a loop."""
    return tuple(" ".join(normalize_words(p)) for phrases in scenario.agent.closings.values() for p in phrases)


def _acceptor(scenario: Scenario, config: SynthConfig):
    """The per-turn filter that decides whether a freshly generated turn is generated again."""
    topics, heard, once = _topics(scenario, config), _heard(scenario), _once(scenario)

    def accept(conversation: Conversation, role: str, text: str) -> bool:
        return turn_problem(conversation.turns, role, text, scenario.language, config.check_language, topics,
                            heard, scenario.agent.out_of_role, once) is None

    return accept


def _sort(scenario: Scenario, config: SynthConfig, records: list[dict], duplicates: DuplicateFilter,
          reasons: Counter) -> tuple[list[dict], list[dict]]:
    """Split records into kept and dropped (with the reason), trimming a conversation spoiled late."""
    topics, heard, once = _topics(scenario, config), _heard(scenario), _once(scenario)
    keep, drop = [], []
    for record in records:
        metadata = record["metadata"]
        found = first_problem(metadata["turns"], scenario.language, config.check_language, topics, heard,
                              scenario.agent.out_of_role, once)
        reason = found[1] if found else None
        # no_agent_turn sits at index 0, so trimming keeps nothing and the conversation is dropped
        if found and config.trim and (shorter := trimmed(metadata["turns"], found[0])):
            metadata["turns"], metadata["ended_by"], reason = shorter, f"trimmed:{reason}", None
        record["messages"] = to_chat(scenario, metadata["attributes"], metadata["turns"])
        if reason is None and config.dedup < 1 and duplicates.is_duplicate(metadata["turns"]):
            reason = "near_duplicate"
        if reason is None:
            duplicates.add(metadata["turns"])
            keep.append(record)
        else:
            reasons[reason] += 1
            drop.append({**record, "reason": reason})
    return keep, drop


def _report(out: Path, kept: list[dict], reasons: Counter, generated: int, elapsed: float, teacher: str,
            **extra) -> dict:
    ended = Counter(r["metadata"]["ended_by"] for r in kept)
    report = {"kept": len(kept), "dropped": sum(reasons.values()), "drop_reasons": dict(reasons),
              "trimmed": {k.split(":", 1)[1]: v for k, v in ended.items() if k.startswith("trimmed:")},
              "generated_this_run": generated, "seconds_this_run": round(elapsed, 1),
              "conversations_per_minute": round(60 * generated / elapsed, 2) if generated and elapsed else None,
              "ended_by": dict(ended), "output": str(out), "teacher": teacher, **extra}
    sidecar(out, "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def _record(scenario: Scenario, conversation: Conversation, config: SynthConfig, teacher) -> dict:
    return {"id": conversation.index, "messages": None,
            "metadata": {"scenario": scenario.name, "attributes": conversation.attributes,
                         "sampling": conversation.sampling, "ended_by": conversation.ended_by,
                         **({"decided": conversation.decided} if conversation.decided else {}),
                         "turns": conversation.turns, "teacher": getattr(teacher, "name", config.teacher),
                         "seed": config.seed}}


def _engine_loader(config: SynthConfig):
    def load(model: str):
        from lorebook.models.engine import load_engine
        from lorebook.models.torch_engine import native_bf16
        from lorebook.teach.config import idle_cores

        threads = config.threads or idle_cores()
        if config.engine == "llamacpp":
            return load_engine(model, engine="llamacpp", threads=threads)
        bf16 = config.precision == "bf16" or (config.precision == "auto" and native_bf16())
        return load_engine(model, threads=threads, **({"quantize": "bf16"} if bf16 else {}))

    return load
