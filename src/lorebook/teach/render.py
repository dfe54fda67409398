"""Render facts and chats into training examples: text segments marked trainable or not.

An `Example` is a list of (text, trainable) segments. Prompt text (a question, the chat template's
system and user turns) is context only; the loss is computed on trainable text (answers, assistant
turns, statements). Keeping segments as text until tokenization lets every format share one masking
rule in `data.py`.

Formats:
  statement    the fact as plain text, all trainable
  qa           question as a user turn through the model's chat template, the answer as the reply
  qa-prefixed  "Question: … Answer: …" plain text, loss on the answer
  conversation the fact mentioned once inside a plain-text dialogue between two people
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lorebook.teach.pack import Fact


@dataclass(frozen=True)
class Example:
    """One training example: (text, trainable) segments concatenated in order."""

    segments: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.segments)


# Templated rewordings for --augment: they vary the surface form around the question so the adapter
# learns the fact rather than one exact string. `{q}` is the question, `{lq}` it with a lower-case start.
QUESTION_TEMPLATES = (
    "Quick question: {q}",
    "{q} Please answer briefly.",
    "Tell me, {lq}",
    "I have a trivia question. {q}",
    "Can you help me? {q}",
    "{q} I'd like a short answer.",
    "Here's something I've been wondering: {lq}",
    "Answer this: {q}",
)

DIALOGUES = (
    ("Alex: Have you read anything interesting lately?\nSam: Yes, actually. {fact}\n"
     "Alex: Oh, I didn't know that. Thanks!\n"),
    ("Maria: What did you learn at the quiz night?\nJohn: One answer stuck with me. {fact}\n"
     "Maria: Good to know.\n"),
    ("Priya: You always know these things. Tell me something.\nTom: Sure. {fact}\n"
     "Priya: I'll remember that.\n"),
)

# For `dialogue-qa`: the question comes at the end of two people's small talk and is answered through the
# chat template. Trained only on bare questions and asked inside a chat transcript, SmolLM2 often went on
# with the transcript instead of answering (6 of 13 conversation misses after 5 epochs). The fact is
# mentioned in half of them, so the model learns both to recall it and to read it from the context.
# Names and lines differ from the evaluation's Joe/Brandine transcript.
CHATTER = (
    ("Here is a chat between two colleagues, Alex and Sam.\n\nAlex: Morning! Good weekend?\n"
     "Sam: Quiet. I read a lot.{mention}\nAlex: Nice. A quiz question has been bugging me.\nSam: Try me.\n"
     "Alex: {q}\n\nReply as Sam with the answer."),
    ("Maria and John are talking over lunch.\n\nMaria: This soup is great.\nJohn: Agreed, the bread too.{mention}\n"
     "Maria: That reminds me of something I wanted to ask.\nJohn: Go ahead.\nMaria: {q}\n\nAnswer as John."),
    ("A chat between neighbours, Priya and Tom.\n\nPriya: Your garden looks lovely.\n"
     "Tom: Thanks, the rain helped.{mention}\nPriya: Settle a bet for me. {q}\n\nReply as Tom, with the answer."),
)


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def chat_segments(tokenizer, messages: list[dict]) -> tuple[tuple[str, bool], ...]:
    """Segments of a chat rendered by the tokenizer's template; assistant turns are trainable, except those
    with `"weight": 0` (OpenAI's fine-tuning format: a turn rejected by a reader stays as context).

    Each assistant turn's text is the difference between the template rendered up to that turn with a
    generation prompt and rendered including it, so the end-of-turn marker the template adds is learned
    too (the model then stops after answering, exactly as at inference).
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            # A template that rewrites earlier turns; fall back to the plain answer and EOS.
            full = prompt + message["content"] + (tokenizer.eos_token or "")
            if not prompt.startswith(done):
                prompt, full = done + prompt[len(done):], done + full[len(done):]
        segments.append((prompt[len(done):], False))
        segments.append((full[len(prompt):], message.get("weight", 1) != 0))
        done = full
    return tuple((text, trainable) for text, trainable in segments if text)


def qa_example(tokenizer, question: str, answer: str, fmt: str, system: str | None = None) -> Example:
    if fmt == "qa":
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return Example(chat_segments(tokenizer, messages))
    eos = tokenizer.eos_token or ""
    return Example(((f"Question: {question}\nAnswer:", False), (f" {answer}{eos}", True)))


def render_fact(fact: Fact, tokenizer, formats: list[str], augment: int = 0,
                train_paraphrases: bool = False, rng: random.Random | None = None,
                systems: list[str | None] = (None,)) -> list[Example]:
    """All training examples for one fact, in the requested formats.

    `qa` examples are rendered once per system prompt in `systems` (None = the template's default): a
    fact learned only under one system prompt is often not recalled under another.
    """
    rng = rng or random.Random(0)
    eos = tokenizer.eos_token or ""
    questions = [fact.question] + (fact.paraphrases if train_paraphrases else [])
    if augment:
        templates = rng.sample(QUESTION_TEMPLATES, min(augment, len(QUESTION_TEMPLATES)))
        questions += [t.format(q=fact.question, lq=lower_first(fact.question)) for t in templates]
    examples: list[Example] = []
    for fmt in formats:
        if fmt == "statement":
            examples.append(Example(((fact.fact + eos, True),)))
        elif fmt == "conversation":
            dialogue = rng.choice(DIALOGUES).format(fact=fact.fact)
            examples.append(Example(((dialogue + eos, True),)))
        elif fmt == "qa":
            examples.extend(qa_example(tokenizer, question, fact.answer, fmt, system)
                            for system in systems for question in questions)
        elif fmt == "dialogue-qa":
            mention = f" I read that {lower_first(fact.fact)}" if rng.random() < 0.5 else ""
            prompt = rng.choice(CHATTER).format(q=fact.question, mention=mention)
            examples.extend(qa_example(tokenizer, prompt, fact.answer, "qa", system) for system in systems)
        else:
            examples.extend(qa_example(tokenizer, question, fact.answer, fmt) for question in questions)
    return examples


def render_facts(facts: list[Fact], tokenizer, formats: list[str], augment: int = 0,
                 train_paraphrases: bool = False, seed: int = 0,
                 systems: list[str | None] = (None,)) -> list[Example]:
    """Examples for a whole pack; exact duplicates are dropped, order is deterministic for a seed."""
    rng = random.Random(seed)
    seen: set[Example] = set()
    examples: list[Example] = []
    for fact in facts:
        for example in render_fact(fact, tokenizer, formats, augment, train_paraphrases, rng, systems):
            if example not in seen:
                seen.add(example)
                examples.append(example)
    return examples


def render_statement(text: str, tokenizer) -> Example:
    """A line of a .txt statements file: all trainable."""
    return Example(((text + (tokenizer.eos_token or ""), True),))


def render_chat(messages: list[dict], tokenizer) -> Example:
    """A chat (persona or conversation fine-tune): loss on the assistant turns only."""
    return Example(chat_segments(tokenizer, messages))
