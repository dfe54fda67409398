"""Scenarios: a YAML description of a two-sided role-play, and seeded sampling of its attributes.

    name: customs-checkpoint-es
    language: es                       # the language every agent turn must be in
    opening: traveller                 # who speaks first: traveller | agent
    agent:
      system: "Eres Marta García…"     # kept in the training data (the persona will chat under it)
      hints: "[Hoy eres {strictness}. {step}]"  # teacher-only, after the other side's line; {step}: the agenda's
      examples: [[user, reply], …]     # teacher-only few-shot exchanges (base models need them)
      closings: ["bienvenido a españa", …]   # phrases that end the conversation, by outcome
      topics: [pasaporte, viaj, declarar, …] # word beginnings of the job: a turn with none is off topic
      out_of_role: [llevo, en qué puedo ayudarle]  # phrases the agent never says: synth generates the turn again
      agenda:                          # teacher-only: the next step not yet covered is added to the hints
        - {step: "Pide el pasaporte.", done: [pasaport, passport]}   # covered once a turn uses a done word
        - {step: "Cierra la entrevista."}                            # no done words: stays until the end
        - {step: "…", done: […], lines: ["Su pasaporte, por favor."]}  # with `synth --scripted-agent`: said as is
        - {step: "…", done: [declar], lines: [...], again: ["Anotado. ¿Y lleva algo que declarar?"]}  # asked
          # again after a late answer (synth --late-answers); no again: lines: a line of `lines`
      answers:                         # with `synth --scripted-agent`: the agent's reactions to the other side's
        - {asks: [jamon], lines: ["La carne está prohibida."]}    # words; {step} there: the next step's line
        - {asks: [euros], unless: [mil], lines: ["Rellene este formulario."]}  # not when a word begins "mil"
        - {asks: [pagar], lines: ["Se lo repito: {rule}"]}  # {rule}: another wording of the last reaction that
          # stood alone (no {step}); such an entry is used only after one
        - {asks: [salchichon], holds: true, lines: ["Pase por la mesa de inspección."]}  # holds: once said, the
          # goods are pending, and entries and agenda steps with `pending` lines say those instead of `lines`
        - {asks: [necesito], lines: ["Puede seguir."], pending: ["Como le decía: {rule}"]}
    traveller:
      system: "You are a traveller from {nationality}…"
      examples: […]
      openers: ["Buenos días.", …]     # first lines, sampled (formatted with the attributes)
      followups: ["¿Dónde recojo…?", …]  # with `synth --followups N`: N lines said after the agent's decision
      answers:                         # with `synth --scripted-answers`: what the traveller says when asked
        - {asks: [pasaport, passport], lines: ["Aquí tiene.", "Here you are."]}  # asks: words of the question
      closings: [...]
    attributes: {nationality: [...], purpose: [...], …}   # one value sampled per conversation
    sampling: {temperature: [0.6, 0.9], top_p: [0.85, 0.95]}
    eval: {script: [[line, …], …]}     # scripted traveller lines for `lorebook eval --scenario`
    # eval.judge_check: {in_role: [[line, reply], …], out_of_role: […]}: labelled turns a --judge must get right

Every problem is a one-line InputError naming the key and the fix.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml

from lorebook.errors import InputError
from lorebook.synth.topics import normalize_words

OPENINGS = ("traveller", "agent")
TOP_KEYS = {"name", "description", "language", "opening", "agent", "traveller", "attributes", "sampling", "eval"}
SIDE_KEYS = {"system", "hints", "examples", "closings", "openers", "followups", "language", "max_tokens", "topics",
             "agenda", "out_of_role", "answers"}


class AgendaStep(NamedTuple):
    """One step of a side's agenda: the teacher's instruction, the words that mark it covered, the lines
    the side says for it itself with `synth --scripted-agent` (none: the teacher writes that turn), and the
    lines it asks again with when the other side answered something else (`synth --late-answers`), and the
    lines it says instead while goods are pending (after a `holds` answer; `{rule}` says that answer again)."""

    step: str
    done: tuple[str, ...]  # normalized word beginnings
    lines: list[str]
    again: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


class Answer(NamedTuple):
    """A scripted answer: said when a word of the other side's turn begins with one of `asks`, unless one
    begins with one of `unless` ("tres mil euros" is not the "euros" of a sum to declare). An agent's answer
    that `holds` leaves goods pending once said (a rule, a referral to the inspection desk); from then on
    answers with `pending` lines say those instead: "¿Necesito enseñar algo más?" gets the referral again, not
    the way out."""

    asks: tuple[str, ...]
    lines: list[str]
    unless: tuple[str, ...] = ()
    holds: bool = False
    pending: tuple[str, ...] = ()


@dataclass
class Side:
    """One role of the scenario: its prompts, few-shot examples and the phrases that close a conversation."""

    system: str
    hints: str = ""
    examples: list[tuple[str, str]] = field(default_factory=list)
    closings: dict[str, list[str]] = field(default_factory=dict)
    openers: list[str] = field(default_factory=list)
    language: str | None = None
    max_tokens: int = 48
    topics: tuple[str, ...] = ()  # normalized word beginnings (see synth.topics)
    agenda: list[AgendaStep] = field(default_factory=list)
    out_of_role: tuple[str, ...] = ()  # normalized phrases this side never says (synth regenerates the turn)
    followups: list[str] = field(default_factory=list)  # scripted lines after the agent's decision (synth --followups)
    answers: list[Answer] = field(default_factory=list)  # what this side answers when asked (--scripted-answers)


@dataclass
class Scenario:
    name: str
    language: str
    opening: str
    agent: Side
    traveller: Side
    attributes: dict[str, list[str]]
    sampling: dict[str, tuple[float, float]]
    script: list[list[str]] = field(default_factory=list)
    description: str = ""
    source: str = ""
    judge_check: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # in_role / out_of_role pairs


def _fail(path, key: str, problem: str, fix: str) -> InputError:
    return InputError(f"scenario {path}: {key}: {problem}", fix)


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _side(path, key: str, raw, attributes: dict) -> Side:
    if not isinstance(raw, dict):
        raise _fail(path, key, "must be a mapping", f"e.g. {key}: {{system: '…'}}")
    unknown = sorted(set(raw) - SIDE_KEYS)
    if unknown:
        raise _fail(path, key, f"unknown keys {', '.join(unknown)}", f"allowed: {', '.join(sorted(SIDE_KEYS))}")
    system = raw.get("system")
    if not isinstance(system, str) or not system.strip():
        raise _fail(path, f"{key}.system", "is missing or empty", "write the role prompt for this side")
    examples = []
    for number, pair in enumerate(raw.get("examples") or [], 1):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) and t.strip() for t in pair)):
            raise _fail(path, f"{key}.examples[{number}]", "must be a pair [other side's line, this side's reply]",
                        'e.g. - ["Buenos días.", "Su pasaporte, por favor."]')
        examples.append((pair[0], pair[1]))
    closings = raw.get("closings") or {}
    if not isinstance(closings, dict) or not all(
        isinstance(v, list) and v and all(isinstance(p, str) and p.strip() for p in v) for v in closings.values()
    ):
        raise _fail(path, f"{key}.closings", "must map an outcome to a list of phrases",
                    "e.g. closings: {admitted: ['bienvenido a españa']}")
    openers, followups = _lines(path, f"{key}.openers", raw), _lines(path, f"{key}.followups", raw)
    answers = _answers(path, f"{key}.answers", raw.get("answers"))
    texts = {"system": system, "hints": raw.get("hints") or "",
             **{f"{name}[{n}]": line for name, lines in (("openers", openers), ("followups", followups))
                for n, line in enumerate(lines, 1)},
             **{f"answers[{n}].lines": " ".join(answer.lines + list(answer.pending)) for n, answer in enumerate(answers, 1)}}
    for name, text in texts.items():
        own = {"step", "rule"} if key == "agent" and name.startswith("answers") else {"step"} if name == "hints" else set()
        missing = _placeholders(text) - set(attributes) - own
        if missing:
            raise _fail(path, f"{key}.{name}", f"uses undefined attribute(s) {', '.join(sorted(missing))}",
                        "add them under attributes: or remove the {placeholders}")
    max_tokens = raw.get("max_tokens", 48)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise _fail(path, f"{key}.max_tokens", "must be a positive integer", "e.g. max_tokens: 48")
    topics = _beginnings(path, f"{key}.topics", raw.get("topics"), "e.g. topics: [pasaporte, viaj, declarar]")
    return Side(system.strip(), (raw.get("hints") or "").strip(), examples,
                {k: [p.lower() for p in v] for k, v in closings.items()}, openers, raw.get("language"), max_tokens,
                topics, _agenda(path, key, raw, attributes),
                _phrases(path, f"{key}.out_of_role", raw.get("out_of_role")), followups, answers)


def _lines(path, key: str, raw: dict) -> list[str]:
    """A side's list of scripted lines (openers, followups)."""
    name = key.rsplit(".", 1)[1]
    lines = raw.get(name) or []
    if not isinstance(lines, list) or not all(isinstance(line, str) and line.strip() for line in lines):
        raise _fail(path, key, "must be a list of lines", f"e.g. {name}: ['Buenos días.']")
    return [line.strip() for line in lines]


def _answers(path, key: str, raw) -> list[Answer]:
    """A side's scripted answers: each entry names the words of a question (`asks`, one word or word
    beginning per entry: the traveller answers when a word of the agent's turn begins with one), optionally
    words that rule it out (`unless`), and the lines to answer with; an agent's entry may hold goods pending
    (`holds: true`) or say other lines while they are (`pending`)."""
    answers = []
    if raw is not None and not isinstance(raw, list):
        raise _fail(path, key, "must be a list of {asks, lines} entries",
                    'e.g. answers: [{asks: [pasaport], lines: ["Aquí tiene."]}]')
    for number, item in enumerate(raw or [], 1):
        where = f"{key}[{number}]"
        if not (isinstance(item, dict) and {"asks", "lines"} <= set(item) <= {"asks", "lines", "unless", "holds", "pending"}
                and isinstance(item.get("holds", False), bool)):
            raise _fail(path, where, "must be a mapping with asks and lines (and optionally unless, holds: true|false, pending)",
                        'e.g. - {asks: [pasaport], lines: ["Aquí tiene."]}')
        asks = _single_words(path, f"{where}.asks", item["asks"], "asks: [pasaport, passport]", required=True)
        unless = _single_words(path, f"{where}.unless", item.get("unless", []), "unless: [mil]")
        lines = _lines(path, f"{where}.lines", item)
        if not lines:
            raise _fail(path, f"{where}.lines", "is empty", 'e.g. lines: ["Aquí tiene."]')
        answers.append(Answer(asks, lines, unless, item.get("holds", False), tuple(_lines(path, f"{where}.pending", item))))
    return answers


def _single_words(path, key: str, value, example: str, required: bool = False) -> tuple[str, ...]:
    """A list of single words or word beginnings, normalized; a phrase is refused, since it would match each
    of its words."""
    if not (isinstance(value, list) and (value or not required)
            and all(isinstance(w, str) and len(normalize_words(w)) == 1 for w in value)):
        raise _fail(path, key, "must be a list of single words or word beginnings",
                    f"e.g. {example} (a phrase would match each of its words)")
    return tuple(normalize_words(w)[0] for w in value)


def _beginnings(path, key: str, raw, fix: str) -> tuple[str, ...]:
    """A list of words or word beginnings, normalized (synth.topics): each entry may hold several words."""
    raw = raw or []
    if not isinstance(raw, list) or not all(isinstance(w, str) and normalize_words(w) for w in raw):
        raise _fail(path, key, "must be a list of words or word beginnings", fix)
    return tuple(word for w in raw for word in normalize_words(w))


def _phrases(path, key: str, raw) -> tuple[str, ...]:
    """A list of phrases, normalized like synth.topics (lower case, no accents, words joined by spaces)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, str) and normalize_words(p) for p in raw):
        raise _fail(path, key, "must be a list of phrases", "e.g. out_of_role: [en qué puedo ayudarle]")
    return tuple(" ".join(normalize_words(p)) for p in raw)


def _agenda(path, key: str, raw: dict, attributes: dict) -> list[AgendaStep]:
    """agent.agenda: ordered steps, each with the word beginnings that mark it covered and its own lines."""
    agenda = []
    for number, item in enumerate(raw.get("agenda") or [], 1):
        where = f"{key}.agenda[{number}]"
        if not (isinstance(item, dict) and isinstance(item.get("step"), str) and item["step"].strip()
                and not set(item) - {"step", "done", "lines", "again", "pending"}):
            raise _fail(path, where, "must be a mapping with a step and optional done words, lines, again and pending",
                        'e.g. - {step: "Pide el pasaporte.", done: [pasaport]}')
        done = _beginnings(path, f"{where}.done", item.get("done"), "e.g. done: [pasaport]")
        lines, again = _lines(path, f"{where}.lines", item), _lines(path, f"{where}.again", item)
        pending = _lines(path, f"{where}.pending", item)
        for name, text in (("step", item["step"]), ("lines", " ".join(lines)), ("again", " ".join(again)),
                           ("pending", " ".join(pending))):
            missing = _placeholders(text) - set(attributes) - ({"rule"} if name == "pending" else set())
            if missing:
                raise _fail(path, f"{where}.{name}", f"uses undefined attribute(s) {', '.join(sorted(missing))}",
                            "add them under attributes: or remove the {placeholders}")
        agenda.append(AgendaStep(item["step"].strip(), done, lines, tuple(again), tuple(pending)))
    return agenda


def _read_yaml(path: Path, what: str, example: str):
    """A YAML file's data, or a one-line error naming `what` it should have been."""
    if not path.exists():
        raise InputError(f"{what} {path} does not exist", f"check the path, e.g. {example}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise InputError(f"{what} {path} is not valid UTF-8 YAML", "fix the YAML syntax") from None


def load_scenario(path) -> Scenario:
    """Read and validate a scenario YAML file."""
    path = Path(path)
    data = _read_yaml(path, "scenario", "examples/customs-checkpoint-es.yaml")
    if not isinstance(data, dict):
        raise InputError(f"scenario {path} must be a YAML mapping", "start from examples/customs-checkpoint-es.yaml")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _fail(path, "top level", f"unknown keys {', '.join(unknown)}", f"allowed: {', '.join(sorted(TOP_KEYS))}")
    language = data.get("language")
    if not isinstance(language, str) or len(language) != 2:
        raise _fail(path, "language", "must be a two-letter ISO code", "e.g. language: es")
    opening = data.get("opening", "traveller")
    if opening not in OPENINGS:
        raise _fail(path, "opening", f"unknown value {opening!r}", f"use one of {', '.join(OPENINGS)}")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, (str, int, float)) for x in v) for v in attributes.values()
    ):
        raise _fail(path, "attributes", "must map each name to a non-empty list of values",
                    "e.g. attributes: {mood: [tranquilo, nervioso]}")
    attributes = {k: [str(x) for x in v] for k, v in attributes.items()}
    agent = _side(path, "agent", data.get("agent"), attributes)
    traveller = _side(path, "traveller", data.get("traveller"), attributes)
    if opening == "traveller" and not traveller.openers and not traveller.examples:
        raise _fail(path, "traveller.openers", "the traveller opens but has no openers or examples",
                    "add openers: ['Buenos días.']")
    sampling = {}
    for name, default in (("temperature", [0.7, 0.7]), ("top_p", [0.95, 0.95])):
        bounds = (data.get("sampling") or {}).get(name, default)
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)
                and 0 <= bounds[0] <= bounds[1]):
            raise _fail(path, f"sampling.{name}", "must be a range [low, high] with 0 ≤ low ≤ high",
                        f"e.g. {name}: {default}")
        sampling[name] = (float(bounds[0]), float(bounds[1]))
    script = _scripts(path, "eval.script", (data.get("eval") or {}).get("script") or [])
    return Scenario(str(data.get("name") or path.stem), language, opening, agent, traveller, attributes,
                    sampling, script, str(data.get("description") or ""), str(path), _judge_check(path, data))


def _scripts(path, key: str, script) -> list[list[str]]:
    """A list of scripts, each a list of the other side's lines."""
    if not isinstance(script, list) or not all(isinstance(s, list) and all(isinstance(t, str) for t in s) for s in script):
        raise _fail(path, key, "must be a list of scripts (lists of traveller lines)",
                    "e.g. script: [[Buenos días., Vengo de vacaciones.]]")
    return script


def load_scripts(path) -> list[list[str]]:
    """Scripted traveller lines kept apart from a scenario (`eval persona --scripts`): a YAML file whose
    `script:` (or a scenario's `eval: {script: …}`) lists the scripts, so new travellers can be written for a
    scenario without copying it."""
    path = Path(path)
    data = _read_yaml(path, "scripts file", "docs/runs/customs-2026-12-07-kinds/fresh4-scripts.yaml")
    if isinstance(data, dict) and "script" in data:
        script, key = data["script"], "script"
    elif isinstance(data, dict) and isinstance(data.get("eval"), dict) and "script" in data["eval"]:
        script, key = data["eval"]["script"], "eval.script"
    else:
        raise InputError(f"scripts file {path} has no script: list",
                         "write script: [[Buenos días., Vengo de vacaciones.], …]")
    script = _scripts(path, key, script)
    if not script or not all(script):
        raise _fail(path, key, "needs at least one script, none of them empty",
                    "e.g. script: [[Buenos días., Vengo de vacaciones.]]")
    return script


def _judge_check(path, data: dict) -> dict[str, list[tuple[str, str]]]:
    """eval.judge_check: hand-labelled (traveller line, agent reply) pairs, in role and out of role."""
    raw = (data.get("eval") or {}).get("judge_check") or {}
    if not isinstance(raw, dict) or set(raw) - {"in_role", "out_of_role"}:
        raise _fail(path, "eval.judge_check", "must be a mapping with in_role and out_of_role",
                    "e.g. judge_check: {in_role: [[Buenos días., Su pasaporte, por favor.]], out_of_role: […]}")
    checked = {}
    for label, pairs in raw.items():
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in pairs):
            raise _fail(path, f"eval.judge_check.{label}", "must be a list of [traveller line, agent reply] pairs",
                        "e.g. [[Buenos días., Su pasaporte, por favor.]]")
        checked[label] = [(line, reply) for line, reply in pairs]
    return checked


def sample_attributes(scenario: Scenario, seed: int, index: int) -> dict[str, str]:
    """The attributes of conversation `index`: one value per pool, the same for the same (seed, index).

    Seeding by (seed, index) rather than by a running generator keeps a resumed run identical to an
    uninterrupted one: conversation 57 gets the same traveller however many were generated before it.
    """
    rng = random.Random(f"{seed}:{index}")
    return {name: rng.choice(values) for name, values in sorted(scenario.attributes.items())}


def sample_sampling(scenario: Scenario, seed: int, batch: int) -> dict[str, float]:
    """Temperature and top_p for one batch (a batched generate call shares one sampler), seeded likewise."""
    rng = random.Random(f"{seed}:sampling:{batch}")
    return {name: round(rng.uniform(low, high), 3) for name, (low, high) in scenario.sampling.items()}


def fill(text: str, attributes: dict[str, str]) -> str:
    """A prompt with its {attribute} placeholders filled in."""
    return text.format(**attributes) if text else ""
