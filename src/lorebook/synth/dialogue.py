"""The two-agent loop: conversations advance in lockstep, one batched generation per turn.

Each side sees the conversation from its own point of view: its own turns as `assistant`, the other
side's as `user`, under its own system prompt (filled with the sampled attributes) and few-shot
examples, and its teacher-only hints with the first step of its agenda that no turn has covered yet
(small teachers asked to "play an officer" drift into a shop assistant's small talk; a concrete next
step keeps them on the job; `{step}` in the hints places it). The hints follow the other side's last
line rather than sit in the system prompt: next to the reply they are followed, and the system prompt
and examples stay one prefix that llama.cpp evaluates once for all conversations, not once per call.
Every conversation of a batch has the same speaker at the same turn, so one round is one
`Teacher.generate` call. A conversation ends when a side says one of its closing phrases (the outcome
is recorded) or at the turn limit; with `followups`, the agent's decision is recorded instead and the
traveller says that many scripted lines (its `followups` pool, the last one a goodbye) that the agent
answers, so the persona also learns what comes after "bienvenido a España". With `scripted_answers`
(an agenda-based user simulator), the traveller answers the agent's questions from its scripted `answers`
lines, and only a turn that asks none of them goes to the teacher. With `scripted_agent` the agent, too,
says the scenario's lines (its agenda steps' `lines` and its reactions in `answers`); together the two give
outlines in the manner of M2M self-play (Shah et al., 2018), every agent turn in role by construction.
With `late_answers`, the traveller answers a two-part question only in part and says the rest when it is
next asked something, as people do; the agent then asks its question again (its step's `again` lines).
A reaction line with `{rule}` says the agent's last standalone reaction again in another wording, so a
question about goods that does not name them ("¿Me va a costar algo?") gets the rule just stated. A reaction
that `holds` leaves the goods pending: the traveller answers it before any followup, and from then on the
agent's reactions and agenda steps with `pending` lines say those (the referral again, not the way out).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from lorebook.models.engine import GenerationOptions
from lorebook.synth.scenario import AgendaStep, Scenario, Side, fill
from lorebook.synth.topics import begins_any, normalize_words

LABEL = re.compile(r"^\s*(agente|agent|officer|oficial|viajero|viajera|traveller|traveler|model|user|marta)\s*:\s*",
                   re.IGNORECASE)
SENTENCE_END = re.compile(r"[.?!…](?=[^.?!…]*$)")


@dataclass
class Conversation:
    """One conversation being generated: its sampled attributes and the turns so far."""

    index: int
    attributes: dict[str, str]
    sampling: dict[str, float]
    turns: list[dict] = field(default_factory=list)  # {"role": "agent"|"traveller", "text": …}
    ended_by: str | None = None
    decided: str | None = None  # the first closing, when the conversation went on (min_turns, followups)
    pending: list[str] = field(default_factory=list)  # scripted follow-up lines the traveller has still to say
    held: str | None = None  # the part of a two-part answer the traveller keeps for later (late_answers)
    late_at: int | None = None  # the turn where it said that part instead of answering the agent
    rule: list[str] | None = None  # the lines of the agent's last reaction that stood alone, for `{rule}`
    ruled_at: int | None = None  # the turn of the agent's last reaction that `holds` (the traveller answers it next)

    @property
    def done(self) -> bool:
        return self.ended_by is not None

    @property
    def holding(self) -> bool:
        """Whether the agent has said a reaction that `holds`: goods are pending, `pending` lines apply."""
        return self.ruled_at is not None


def speaker(scenario: Scenario, turn: int) -> str:
    """Who speaks at turn `turn` (0-based)."""
    first, second = ("traveller", "agent") if scenario.opening == "traveller" else ("agent", "traveller")
    return first if turn % 2 == 0 else second


def view(scenario: Scenario, conversation: Conversation, role: str) -> list[dict]:
    """The chat messages `role` sees before speaking: prompt, hints, few-shot examples, then the turns."""
    side: Side = getattr(scenario, role)
    step = next_step(side, conversation)
    if "{step}" in side.hints:
        hints = fill(side.hints, {**conversation.attributes, "step": step})
    else:
        hints = " ".join(h for h in (fill(side.hints, conversation.attributes), step) if h)
    messages = [{"role": "system", "content": fill(side.system, conversation.attributes)}]
    for other_line, own_line in side.examples:
        messages += [{"role": "user", "content": other_line}, {"role": "assistant", "content": own_line}]
    for turn in conversation.turns:
        messages.append({"role": "assistant" if turn["role"] == role else "user", "content": turn["text"]})
    if hints and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n{hints}"}
    elif hints:
        messages[0]["content"] += f"\n{hints}"
    return messages


def next_step(side: Side, conversation: Conversation) -> str:
    """The first agenda step that no turn of either side has covered yet ('' without an agenda).

    Both sides count: a traveller who opens with "here is my passport" has covered the passport step,
    and an officer asking for it again would sound scripted."""
    step = first_uncovered(side, conversation)
    return fill(step.step, conversation.attributes) if step else ""


def first_uncovered(side: Side, conversation: Conversation, also: str = "") -> AgendaStep | None:
    """The first agenda step no turn (nor `also`, a turn being written) has covered, or None."""
    said = {word for text in [*(t["text"] for t in conversation.turns), also] for word in normalize_words(text)}
    return next((step for step in side.agenda if not step.done or not begins_any(said, step.done)), None)


def clean_turn(text: str) -> str:
    """One turn out of raw model text: the first line, no speaker label, no junk after the last sentence.

    Base models keep writing the other side on the next line ("Viajero: …") and small models often
    trail a stray token after a finished sentence; neither belongs to the turn.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = LABEL.sub("", lines[0]).strip() if lines else ""
    end = SENTENCE_END.search(line)
    if end and end.end() < len(line):
        line = line[: end.end()]
    return line.strip()


def closing(side: Side, text: str) -> str | None:
    """The outcome a turn closes the conversation with (e.g. 'admitted'), or None."""
    lowered = " ".join(text.lower().split())
    for outcome, phrases in side.closings.items():
        if any(phrase in lowered for phrase in phrases):
            return outcome
    return None


def opener(scenario: Scenario, conversation: Conversation, seed: int) -> str | None:
    """A scripted first line for the opening side, when the scenario lists openers."""
    side: Side = getattr(scenario, scenario.opening)
    if not side.openers:
        return None
    rng = random.Random(f"{seed}:opener:{conversation.index}")
    return fill(rng.choice(side.openers), conversation.attributes)


def followup_lines(side: Side, conversation: Conversation, seed: int, count: int) -> list[str]:
    """`count` lines from the side's `followups` pool, seeded per conversation; the last one closes (uses one of
    the side's closing phrases) when the pool has such lines, since real interviews end on a goodbye."""
    rng = random.Random(f"{seed}:followups:{conversation.index}")
    goodbyes = [line for line in side.followups if closing(side, line)]
    others = [line for line in side.followups if line not in goodbyes]
    if goodbyes and others:
        lines = rng.sample(others, min(count - 1, len(others))) + [rng.choice(goodbyes)]
    else:
        lines = rng.sample(side.followups, min(count, len(side.followups)))
    return [fill(line, conversation.attributes) for line in lines]


def answer_parts(matched: list[list[str]], conversation: Conversation, seed: int, turn: int) -> list[str]:
    """The scripted answers to each thing a turn asks, from `matched` (`asked_answers` of that turn: the
    lines of each `answers` entry it asks, in the order it asked them); none when it asks none of them.

    A small model playing the traveller drifts within a few turns (Russian, the officer's own question
    back, a trip to India), and every officer turn after that is taught on nonsense; scripted answers keep
    the other side sane and cost no teacher call.

    A turn asking two things ("¿Cuánto tiempo se queda y dónde se aloja?") gets both answers (at most two: a
    traveller answers briefly). When one of two agent reactions stands alone (has no `{step}`), the other
    loses its `{step}`: to "Gracias por todo, adiós" the officer says "De nada. Adiós, que disfrute de su
    viaje.", not "De nada. ¿Algo más? Siga por el pasillo… Adiós…", which taught the persona to answer a
    goodbye with "¿Algo más?". Lines are picked seeded per conversation and turn, so a resumed run says the
    same."""
    asked_first = [lines for lines in matched if conversation.rule or not says_rule(lines)][:2]
    if not asked_first:
        return []
    rng = random.Random(f"{seed}:answer:{conversation.index}:{turn}")
    values = {**conversation.attributes, "step": "{step}"}  # an agent's reaction may place its next step
    if any(says_rule(lines) for lines in asked_first):
        values["rule"] = fresh_line(rng, conversation.rule, conversation.attributes, conversation)
    parts = [fresh_line(rng, lines, values, conversation) for lines in asked_first]
    if any("{step}" not in part for part in parts):  # one part stands alone, so the whole turn does
        parts = [" ".join(part.replace("{step}", "").split()) for part in parts]
    return parts


def says_rule(lines: list[str]) -> bool:
    """Whether an agent reaction's lines say its last rule again (`{rule}`)."""
    return any("{rule}" in line for line in lines)


def standing_rule(matched: list[list[str]]) -> list[str] | None:
    """Of the agent's reactions `matched` to a line (`asked_answers`), the lines of the one that stands alone
    (no `{step}`: a rule, a direction), which a later `{rule}` reaction says again in another of its wordings."""
    alone = (lines for lines in matched if not says_rule(lines) and not any("{step}" in line for line in lines))
    return next(alone, None)


def asked_answers(side: Side, asked: str, holding: bool = False) -> list[list[str]]:
    """The lines of the side's `answers` entries that `asked` asks for, in the order `asked` asks them (by the
    position of each entry's first asking word; entries asked at the same word in the scenario's order); while
    goods are `holding`, an entry's `pending` lines where it has them."""
    words = normalize_words(asked)
    found = []
    for answer in side.answers:
        first = next((i for i, word in enumerate(words) if word.startswith(answer.asks)), None)
        if first is not None and not any(word.startswith(answer.unless) for word in words):
            found.append((first, list(answer.pending) if holding and answer.pending else answer.lines))
    return [lines for _, lines in sorted(found, key=lambda f: f[0])]


def holds(side: Side, lines: list[str] | None) -> bool:
    """Whether `lines` are those of one of the side's answers that `holds` goods pending."""
    return lines is not None and any(answer.holds and answer.lines == lines for answer in side.answers)


def asks_question(side: Side, turn: str) -> bool:
    """Whether the other side's `turn` asks (a question, or a request with "por favor") something the side
    answers: a followup waits for its answer, while a statement that only names such a thing ("Sí, tome su
    pasaporte.", "Esa cantidad no se declara.") does not hold it up."""
    return ("?" in turn or "por favor" in turn.lower()) and bool(asked_answers(side, turn))


def awaits_answer(side: Side, conversation: Conversation) -> bool:
    """Whether the traveller (`side`) answers the agent's last turn before saying its next followup: a
    question it answers (`asks_question`), or goods the agent just held pending with a rule it answers
    (a followup that goes on to "¿Está todo bien?" taught the persona to show the way out after a rule)."""
    last = conversation.turns[-1]["text"]
    just_ruled = conversation.ruled_at == len(conversation.turns) - 1
    return asks_question(side, last) or (just_ruled and bool(asked_answers(side, last)))


def traveller_answer(side: Side, conversation: Conversation, seed: int, turn: int, late_answers: float = 0.0) -> str | None:
    """The traveller's scripted turn (synth --scripted-answers): its answer to the agent's last turn, or None.

    With `late_answers`, that share of two-part questions gets only its first part answered; the traveller
    says the other part the next time the agent asks it something, instead of answering that. Scripted
    travellers of the evaluation answer "¿Cuánto tiempo se queda y dónde se aloja?" one part per line, so the
    address arrives after "¿Lleva algo que declarar?", and a persona that had only seen that question answered
    took the address for the answer and admitted the traveller (14 of 62 misses read on 2026-12-07)."""
    asked = conversation.turns[-1]["text"]
    if conversation.held and asked_answers(side, asked):
        line, conversation.held, conversation.late_at = conversation.held, None, len(conversation.turns)
        return line
    parts = answer_parts(asked_answers(side, asked), conversation, seed, turn)
    if len(parts) == 2 and random.Random(f"{seed}:late:{conversation.index}:{turn}").random() < late_answers:
        conversation.held = parts[1]
        return parts[0]
    return " ".join(parts) or None


def ask_again(side: Side, conversation: Conversation, seed: int, turn: int) -> str | None:
    """The agent's last question once more, after the traveller answered something asked before instead: a
    line of the latest agenda step that question covers (the step's `again` lines, else its `lines`), or None."""
    asked = normalize_words(next(t["text"] for t in reversed(conversation.turns) if t["role"] == "agent"))
    step = next((s for s in reversed(side.agenda) if s.done and begins_any(asked, s.done) and (s.again or s.lines)),
                None)
    if step is None:
        return None
    rng = random.Random(f"{seed}:again:{conversation.index}:{turn}")
    return fresh_line(rng, list(step.again or step.lines), conversation.attributes, conversation)


def fresh_line(rng: random.Random, lines: list[str], values: dict[str, str], conversation: Conversation) -> str:
    """One of `lines`, filled, preferring those no turn of the conversation contains yet: a side that says the
    same line twice reads as a loop (and synth's filters cut the conversation there)."""
    filled = [fill(line, values) for line in lines]
    said = " ".join(turn["text"] for turn in conversation.turns)
    return rng.choice([line for line in filled if line.replace("{step}", "").strip() not in said] or filled)


def scripted_turn(side: Side, conversation: Conversation, seed: int, turn: int) -> str | None:
    """The agent's own line for this turn (synth --scripted-agent), or None where the scenario has none.

    First its reaction to the other side's last line (its `answers`, matched like the traveller's); then,
    where the reaction says `{step}` or there is none, a line of the first agenda step not covered yet,
    counting what the reaction says. A reaction without `{step}` stands alone: after "Llevo un jamón" the
    officer states the rule and waits for the answer instead of admitting the traveller in the same breath.
    The scenario's lines make every agent turn in role by construction, which a 1.5B teacher manages in about
    half of its turns; the teacher still writes the turns no line fits. After a late answer (`traveller_answer`)
    the agent asks its question again."""
    if conversation.late_at == len(conversation.turns) - 1:
        again = ask_again(side, conversation, seed, turn)
        if again:
            return again
    heard = conversation.turns[-1]["text"] if conversation.turns else ""
    matched = asked_answers(side, heard, conversation.holding) if heard else []
    reaction = " ".join(answer_parts(matched, conversation, seed, turn)) or None
    if reaction is not None and "{step}" not in reaction:
        standing = standing_rule(matched)
        held = holds(side, standing)
        if standing and (held or not conversation.holding):  # a direction does not replace the rule that
            conversation.rule = standing  # holds goods pending: `{rule}` keeps saying that
        if held:
            conversation.ruled_at = len(conversation.turns)
        return reaction
    step = first_uncovered(side, conversation, also=reaction or "")
    rng = random.Random(f"{seed}:step:{conversation.index}:{turn}")
    lines = step.pending if step and conversation.holding and step.pending else step.lines if step else []
    values = conversation.attributes
    if says_rule(lines) and conversation.rule:
        values = {**values, "rule": fresh_line(rng, conversation.rule, conversation.attributes, conversation)}
    line = fresh_line(rng, list(lines), values, conversation) if lines else ""
    if reaction is None:
        return line or None
    head, _, tail = reaction.partition("{step}")
    return " ".join(" ".join((head, line, tail.replace("{step}", ""))).split())


def play(scenario: Scenario, conversations: list[Conversation], teacher, max_turns: int, seed: int,
         on_turn=None, accept=None, retries: int = 0, min_turns: int = 0, followups: int = 0,
         scripted_answers: bool = False, scripted_agent: bool = False, late_answers: float = 0.0) -> None:
    """Advance every conversation until it closes or reaches `max_turns`; one teacher call per turn.

    A closing phrase said before `min_turns` turns is recorded as `decided` and the conversation goes on:
    a persona taught only on conversations that stop at the decision has never seen what comes after it
    (the traveller's "where do I fill in the form?"), and says nonsense there.

    `teacher` is one teacher for both sides or a `SideTeachers` with one per side. `accept(conversation,
    role, text)` judges each generated turn; a rejected one is generated again (other seed, only the
    rejected conversations in the call) up to `retries` times, and the last try stands.

    With `followups`, the agent's first closing is recorded as `decided`; the traveller then says
    `followup_lines` instead of generated turns, and the conversation ends after the agent answers the last.
    Scripted followups take no teacher call, so a small traveller model cannot parrot there; with
    `scripted_answers`, the traveller's other turns are `traveller_answer`s where the agent asked one of them
    (`late_answers`: the share of two-part questions answered late), and a followup waits while the agent's
    last turn is a question or a held rule the traveller answers (`awaits_answer`); with `scripted_agent`, the agent says
    its `scripted_turn` wherever the scenario has one."""
    for turn in range(max_turns):
        active = [c for c in conversations if not c.done]
        if not active:
            return
        role = speaker(scenario, turn)
        side: Side = getattr(scenario, role)
        if turn == 0:
            scripted = [opener(scenario, c, seed) for c in active]
        else:
            scripted = [c.pending.pop(0) if c.pending and role != "agent" and not (
                scripted_answers and awaits_answer(side, c)) else None for c in active]
            if scripted_answers and role != "agent":
                scripted = [line if line is not None else traveller_answer(side, c, seed, turn, late_answers)
                            for c, line in zip(active, scripted)]
            if scripted_agent and role == "agent":
                scripted = [scripted_turn(side, c, seed, turn) for c in active]
        needed = [c for c, line in zip(active, scripted) if line is None]
        writer = teacher.for_role(role) if hasattr(teacher, "for_role") else teacher
        texts = _round(scenario, writer, needed, role, seed, turn, 0)
        for attempt in range(1, retries + 1 if accept else 1):
            redo = [i for i, (c, text) in enumerate(zip(needed, texts)) if not accept(c, role, text)]
            if not redo:
                break
            for i, text in zip(redo, _round(scenario, writer, [needed[i] for i in redo], role, seed, turn, attempt)):
                texts[i] = text
        generated = iter(texts)
        for conversation, line in zip(active, scripted):
            text = line if line is not None else next(generated)
            conversation.turns.append({"role": role, "text": text})
            scripted_goodbye = line is not None and role != "agent"  # the agent still answers it
            outcome = closing(side, text) if text and not scripted_goodbye else None
            if followups and role == "agent" and (outcome or conversation.decided):
                if not conversation.decided:
                    conversation.decided = f"{role}:{outcome}"
                    conversation.pending = followup_lines(scenario.traveller, conversation, seed, followups)
                elif not conversation.pending:
                    conversation.ended_by = conversation.decided
            elif outcome and len(conversation.turns) >= min_turns:
                conversation.ended_by = f"{role}:{outcome}"
            elif outcome and not conversation.decided:
                conversation.decided = f"{role}:{outcome}"
        if on_turn:
            on_turn()
    for conversation in conversations:
        if not conversation.done:
            conversation.ended_by = "max_turns"


def _round(scenario: Scenario, writer, needed: list[Conversation], role: str, seed: int, turn: int,
           attempt: int) -> list[str]:
    """One teacher call: the cleaned next turn of `role` in each conversation of `needed`."""
    if not needed:
        return []
    side: Side = getattr(scenario, role)
    options = GenerationOptions(
        temperature=needed[0].sampling.get("temperature", 0.7), top_p=needed[0].sampling.get("top_p", 0.95),
        max_tokens=side.max_tokens, repetition_penalty=1.15,
        seed=seed * 1_000_003 + needed[0].index * 101 + turn + 50_021 * attempt,
    )
    key = f"c{needed[0].index}-t{turn}-{role}" + (f"-retry{attempt}" if attempt else "")
    replies = writer.generate([view(scenario, c, role) for c in needed], options, key=key, ids=[c.index for c in needed])
    return [clean_turn(reply) for reply in replies]


def to_chat(scenario: Scenario, attributes: dict[str, str], turns: list[dict]) -> list[dict]:
    """The agent's side as chat messages for fine-tuning: the persona's system prompt, no teacher hints."""
    messages = [{"role": "system", "content": fill(scenario.agent.system, attributes)}]
    for turn in turns:
        messages.append({"role": "assistant" if turn["role"] == "agent" else "user", "content": turn["text"]})
    return messages
