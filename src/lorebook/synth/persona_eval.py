"""Persona evaluation: simulated conversations against a scripted traveller, base vs tuned.

`lorebook eval --persona customs-agent-es --scenario examples/customs-checkpoint-es.yaml` plays each of
the scenario's scripted travellers (ten lines each; `--scripts FILE` plays others written later against the
same scenario) against the persona, one agent reply per line, all conversations batched and decoded greedily
(the persona's repetition penalty kept) so runs are reproducible. Per agent turn: is it in the scenario's
language, is it in character (no AI admission or role break, not empty or looping, not speaking as the
traveller, not parroting the traveller's line, not saying again what it said earlier in the conversation).
With held-out reference conversations (e.g. the tail of a `lorebook synth` file the adapter was not trained
on): chrF of the persona's reply against the reference reply given the reference history (sacrebleu), and the
perplexity of the reference agent turns. The same persona without its adapters is the baseline.

The rule-based in-character check only sees explicit breaks; fluent nonsense passes it. When the scenario
lists the words of the agent's job (`agent.topics`), "on topic" is the share of turns in character that
use one of them, with the rule's own score on the scenario's hand-labelled turns. `--judge MODEL|URL`
adds what rules cannot see: an LLM judge is shown the agent's role, the traveller's line and the reply,
and asked whether the reply is what that agent would say there. Its share comes with its agreement with
the rule check (Cohen's kappa), and it is only as good as the judge: a bundled 135M/270M model is no
judge of role-play; point it at a strong model behind an OpenAI-compatible URL.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from lorebook.errors import InputError
from lorebook.evaluate.behaviour import is_degenerate
from lorebook.evaluate.stats import bootstrap_mean, share
from lorebook.synth.dialogue import LABEL
from lorebook.synth.scenario import load_scenario, load_scripts
from lorebook.synth.topics import begins_any, check_topics, normalize_words, on_topic

TRAVELLER_LABELS = ("viajero", "viajera", "traveller", "traveler", "user")
# Returning a greeting ("Buenas tardes." → "Buenas tardes. Su pasaporte…") is not parroting the traveller.
GREETINGS = ("hola", "buenos", "buenas", "hello", "hi", "good", "bonjour", "adios", "hasta", "gracias", "bye")
ROLE_PROMPT = (
    "You are grading a role-play. The agent plays this role:\n{role}\n\n"
    "The other person said: \"{line}\"\nThe agent replied: \"{reply}\"\n\n"
    "Is the reply what this agent would say here: in role, on topic, and a sensible answer to what was "
    "said? Answer with one word: yes or no."
)


@dataclass
class PersonaEvalConfig:
    """What to evaluate; each field's help is the matching CLI flag's help."""

    persona: str = field(default="customs-agent-es", metadata={"help": "persona to evaluate (model, adapters, prompt)"})
    scenario: str = field(default="examples/customs-checkpoint-es.yaml", metadata={"help": "scenario with eval.script"})
    scripts: str | None = field(default=None, metadata={
        "help": "YAML file of other scripted travellers (script: [[line, …], …]) played instead of the scenario's"})
    adapters: list[str] = field(default_factory=list, metadata={"help": "extra LoRA adapters on top of the persona's"})
    model: str | None = field(default=None, metadata={"help": "model instead of the persona's"})
    references: str | None = field(default=None, metadata={"help": "held-out chat JSONL for chrF and perplexity"})
    conversations: int = field(default=0, metadata={"help": "simulated conversations (0 = one per script)"})
    turns: int = field(default=10, metadata={"help": "agent turns per simulated conversation"})
    max_tokens: int = field(default=48, metadata={"help": "reply budget per agent turn (tokens)"})
    options: list[str] = field(default_factory=list, metadata={"help": "override one of the persona's sampling options, key=value (e.g. dry_multiplier=0.8); repeatable; replies are greedy with seed 0 unless temperature= or seed= is given"})
    baseline: bool = field(default=True, metadata={"help": "also evaluate the persona without adapters"})
    moments: bool = field(default=True, metadata={
        "help": "pick each reply among candidates by the persona's moments, if it has them (--no-moments: greedy)"})
    judge: str | None = field(default=None, metadata={"help": "LLM judge of the role: a model name/path or an OpenAI-compatible URL (URL#model)"})


@dataclass
class Subject:
    label: str
    model: str | None
    adapters: list[str]
    system: str
    options: object
    moments: object = None  # the persona's MomentsConfig when replies are picked among candidates


def subjects(config: PersonaEvalConfig) -> list[Subject]:
    """The tuned subject (persona + adapters) and, when asked and different, its baseline without adapters."""
    from lorebook.chat.persona import load_persona

    persona = load_persona(config.persona)
    model = config.model or persona.model
    adapters = list(persona.adapters) + list(config.adapters)
    from lorebook.models.engine import GenerationOptions

    # Greedy and seeded under the --option pairs: a rerun gives the same turns, so labels read on one run stay
    # valid; an explicit temperature= or seed= is the user's choice and wins.
    greedy = persona.options.updated(temperature=0.0, seed=0)
    options = GenerationOptions.parse_pairs(config.options, greedy).updated(max_tokens=config.max_tokens)
    moments = persona.moments if config.moments else None
    picked = f" (best of {moments.candidates} by moments)" if moments else ""
    tuned = Subject(f"{persona.name}" + (f" + {', '.join(adapters)}" if adapters else "") + picked, model, adapters,
                    persona.system, options, moments)
    if config.baseline and adapters:
        return [Subject(f"{model} untuned{picked}", model, [], persona.system, options, moments), tuned]
    return [tuned]


def scripts(scenario, count: int, turns: int) -> list[list[str]]:
    """`count` traveller scripts of `turns` lines, cycling the scenario's scripts (and their lines)."""
    if not scenario.script:
        raise InputError(f"scenario {scenario.source} has no eval.script", "add eval: {script: [[line, …]]}")
    count = count or len(scenario.script)
    return [[s[t % len(s)] for t in range(turns)] for s in (scenario.script[i % len(scenario.script)] for i in range(count))]


def in_character(text: str) -> bool:
    """An officer's turn: not empty or looping, no AI admission or role break, not the traveller talking."""
    from lorebook.redteam.graders import role_breaks

    if is_degenerate(text) or role_breaks(text, None, True):
        return False
    label = LABEL.match(text)
    return not (label and label.group(1).lower() in TRAVELLER_LABELS)


def character_turns(chat: list[dict]) -> list[bool]:
    """In character for each agent turn of one conversation: `in_character`, and not a turn that parrots
    the traveller's line back or says again what this agent already said (word 3-gram Jaccard >= 0.5 with
    an earlier turn): a tuned small model that answers every line with the same loop passes the per-turn
    rules ten times over."""
    from lorebook.synth.filters import REPEAT_THRESHOLD, jaccard, shingles

    flags, earlier, heard = [], [], ""
    for message in chat:
        if message["role"] == "user":
            heard = " ".join(normalize_words(message["content"]))
            continue
        if message["role"] != "assistant":
            continue
        text = message["content"]
        said = " ".join(normalize_words(text))
        fingerprint = shingles([{"text": text}])
        parrots = len(heard.split()) >= 3 and heard.split()[0] not in GREETINGS and said.startswith(heard)
        repeats = any(jaccard(fingerprint, other) >= REPEAT_THRESHOLD for other in earlier)
        flags.append(in_character(text) and not parrots and not repeats)
        earlier.append(fingerprint)
    return flags


def in_language(text: str, language: str) -> bool:
    """The turn is in `language`, with no letters of another script (the synth filter's rule: "Gracias.
    mantenimiento に通客" is not Spanish); a turn too short to call counts when it has words at all."""
    from lorebook.redteam.graders import reply_language
    from lorebook.synth.filters import foreign_script

    if foreign_script(text, language):
        return False
    found = reply_language(text)
    return found == language or (found == "und" and not is_degenerate(text))


def simulate(engine, subject: Subject, lines: list[list[str]], progress: bool) -> list[list[dict]]:
    """Play every script against the subject, all conversations in one batch per turn."""
    chats = [[{"role": "system", "content": subject.system}] for _ in lines]
    for turn in tqdm(range(len(lines[0])), desc=f"simulate {subject.label}", disable=not progress):
        for chat, script in zip(chats, lines):
            chat.append({"role": "user", "content": script[turn]})
        for chat, reply in zip(chats, replies(engine, subject, chats)):
            chat.append({"role": "assistant", "content": reply.strip()})
    return chats


def replies(engine, subject: Subject, conversations: list[list[dict]]) -> list[str]:
    """The subject's reply to each conversation: greedy in one batch, or picked among candidates by moments."""
    if subject.moments is None:
        return engine.chat_batch(conversations, subject.options)
    from lorebook.chat.moments import picked_replies

    return picked_replies(engine, conversations, subject.options, subject.moments)


def reference_chrf(engine, subject: Subject, references: list[list[dict]]) -> dict:
    """chrF of the subject's reply to each reference history against the reference agent turn."""
    import sacrebleu

    prompts, targets = [], []
    for chat in references:
        history = [{"role": "system", "content": subject.system}] + [m for m in chat if m["role"] != "system"]
        for index, message in enumerate(history):
            if message["role"] == "assistant" and index > 0:
                prompts.append(history[:index])
                targets.append(message["content"])
    if not prompts:
        return {"value": None, "n": 0, "ci": [None, None]}
    said = replies(engine, subject, prompts)
    scores = [sacrebleu.sentence_chrf(reply.strip(), [target]).score for reply, target in zip(said, targets)]
    result = bootstrap_mean(scores)
    result["corpus"] = sacrebleu.corpus_chrf([r.strip() for r in said], [targets]).score
    return result


def reference_perplexity(engine, references: list[list[dict]], system: str) -> dict:
    """Perplexity of the reference agent turns (tokens the persona would say), bootstrapped by conversation."""
    import torch
    from torch.nn import functional

    from lorebook.teach.render import chat_segments

    model, tokenizer = getattr(engine, "model", None), getattr(engine, "tokenizer", None)
    if model is None or tokenizer is None or not hasattr(model, "forward"):
        return {"value": None, "n": 0, "ci": [None, None]}
    totals = []
    for chat in references:
        messages = [{"role": "system", "content": system}] + [m for m in chat if m["role"] != "system"]
        ids, labels = [], []
        for text, trainable in chat_segments(tokenizer, messages):
            piece = tokenizer.encode(text, add_special_tokens=False)
            ids += piece
            labels += piece if trainable else [-100] * len(piece)
        with torch.inference_mode():
            logits = model(torch.tensor([ids])).logits[0, :-1].float()
        target = torch.tensor(labels[1:])
        nll = functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum").item()
        totals.append((nll, int((target != -100).sum())))
    return _perplexity_interval(totals)


def _perplexity_interval(totals: list[tuple[float, int]], samples: int = 1000, seed: int = 0) -> dict:
    tokens = sum(count for _, count in totals)
    if not tokens:
        return {"value": None, "n": 0, "ci": [None, None]}
    rng = random.Random(seed)
    values = []
    for _ in range(samples):
        pick = rng.choices(totals, k=len(totals))
        count = sum(c for _, c in pick)
        if count:
            values.append(math.exp(sum(n for n, _ in pick) / count))
    values.sort()
    return {"value": math.exp(sum(n for n, _ in totals) / tokens), "n": len(totals), "tokens": tokens,
            "ci": [values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]]}


def agenda_steps(chat: list[dict], agenda) -> list[bool]:
    """For each agenda step with done words: did the agent's own turns cover it in this conversation?

    What a shop assistant who speaks fluent Spanish and drops a job word now and then does not do: ask
    for the passport, the purpose, the stay and the declaration. The traveller's words do not count here
    (they do when synth picks the teacher's next step): the persona must ask."""
    said = {word for m in chat if m["role"] == "assistant" for word in normalize_words(m["content"])}
    return [begins_any(said, step.done) for step in agenda if step.done]


def score_conversations(chats: list[list[dict]], language: str, topics: tuple[str, ...] = (), agenda=()) -> dict:
    """Language and character shares over all agent turns, the language share at each turn index and, when
    the scenario lists agent.topics, the share of turns in character that also use one of them; with an
    agent.agenda, the mean share of its steps each conversation covered and each step's share."""
    agent = [[m["content"] for m in chat if m["role"] == "assistant"] for chat in chats]
    flat = [text for replies in agent for text in replies]
    character = [flag for chat in chats for flag in character_turns(chat)]
    per_turn = [share([in_language(replies[t], language) for replies in agent if len(replies) > t])
                for t in range(max(map(len, agent), default=0))]
    scores = {"language": share([in_language(t, language) for t in flat]),
              "in_character": share(character),
              "language_by_turn": [p["value"] for p in per_turn]}
    if topics:
        scores["on_topic"] = share([flag and on_topic(t, topics) for t, flag in zip(flat, character)])
    covered = [agenda_steps(chat, agenda) for chat in chats]
    if covered and covered[0]:
        scores["agenda"] = bootstrap_mean([sum(c) / len(c) for c in covered])
        names = [step.done[0] for step in agenda if step.done]
        scores["agenda_steps"] = {name: share([c[i] for c in covered]) for i, name in enumerate(names)}
    return scores


def role_messages(role: str, chats: list[list[dict]]) -> list[list[dict]]:
    """One judge prompt per agent turn: the role, the traveller's line before it, the reply."""
    prompts = []
    for chat in chats:
        for before, message in itertools.pairwise(chat):
            if message["role"] == "assistant":
                text = ROLE_PROMPT.format(role=role.strip(), line=before["content"].strip()[:400],
                                          reply=message["content"].strip()[:600] or "(empty)")
                prompts.append([{"role": "user", "content": text}])
    return prompts


def check_judge(judge, role: str, labelled: dict[str, list[tuple[str, str]]]) -> dict:
    """The judge on the scenario's hand-labelled turns (eval.judge_check): its accuracy and kappa against
    the labels. A judge that says no (or yes) to everything scores kappa 0 here, whatever it says later."""
    from lorebook.evaluate.judge import agreement

    pairs = [(line, reply, True) for line, reply in labelled.get("in_role", [])]
    pairs += [(line, reply, False) for line, reply in labelled.get("out_of_role", [])]
    chats = [[{"role": "user", "content": line}, {"role": "assistant", "content": reply}] for line, reply, _ in pairs]
    return agreement([label for _, _, label in pairs], judge.ask(role_messages(role, chats)))


def judge_roles(judge, role: str, rows: list[dict]) -> None:
    """Add the judge's `acts_the_role` share and its agreement with the rule check to each row's metrics."""
    from lorebook.evaluate.judge import agreement

    for row in rows:
        verdicts = judge.ask(role_messages(role, row["conversations"]))
        rules = [flag for chat in row["conversations"] for flag in character_turns(chat)]
        shown = share([v for v in verdicts if v is not None])
        row["metrics"]["acts_the_role"] = {**shown, "judge": judge.name, "no_verdict": verdicts.count(None)}
        row["metrics"]["judge_agreement"] = agreement(rules, verdicts)


def load_references(path) -> list[list[dict]]:
    from lorebook.teach.inputs import load_chats

    return load_chats(Path(path))


def run_persona_eval(config: PersonaEvalConfig, progress: bool = True, engine_loader=None, judge=None) -> dict:
    """Evaluate each subject (baseline first); returns {scenario, rows: [{label, metrics, conversations}]}.

    `judge`: an evaluate.judge.Judge to use instead of loading `config.judge` (tests pass a fake one)."""
    scenario = load_scenario(config.scenario)
    if config.scripts:
        scenario = replace(scenario, script=load_scripts(config.scripts))
    if config.turns < 1 or config.max_tokens < 1 or config.conversations < 0:
        raise InputError("--turns and --max-tokens must be positive", "e.g. --turns 10 --max-tokens 48")
    lines = scripts(scenario, config.conversations, config.turns)
    references = load_references(config.references) if config.references else []
    loader = engine_loader or _load_engine
    rows = []
    for subject in subjects(config):
        engine = loader(subject)
        chats = simulate(engine, subject, lines, progress)
        metrics = score_conversations(chats, scenario.language, scenario.agent.topics, scenario.agent.agenda)
        if references:
            metrics["chrf"] = reference_chrf(engine, subject, references)
            metrics["perplexity"] = reference_perplexity(engine, references, subject.system)
        rows.append({"label": subject.label, "model": subject.model, "adapters": subject.adapters,
                     "metrics": metrics, "conversations": chats})
        del engine
    result = {"scenario": scenario.name, "language": scenario.language, "persona": config.persona,
              "scripts": config.scripts, "turns": config.turns, "references": config.references, "rows": rows}
    if scenario.agent.topics and scenario.judge_check:
        result["topic_check"] = check_topics(scenario.agent.topics, scenario.judge_check)
    if judge is not None or config.judge:  # loaded after the subjects: one model in memory at a time
        from lorebook.evaluate.judge import Judge

        judge = judge or Judge(config.judge)
        judge_roles(judge, scenario.agent.system, rows)
        if scenario.judge_check:
            result["judge_check"] = check_judge(judge, scenario.agent.system, scenario.judge_check)
    return result


def _load_engine(subject: Subject):
    from lorebook.models.engine import load_engine
    from lorebook.teach.config import idle_cores

    return load_engine(subject.model, adapters=subject.adapters, threads=idle_cores())
