"""The shipped attack set: loading, validation, and turning an attack into the user's messages.

Attacks live in `lorebook/data/redteam_attacks.yaml` (one list, grouped by `technique`). Encoded
payloads are stored in plain text and encoded here, so the file stays readable and reviewable.
"""

from __future__ import annotations

import base64
import codecs
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from lorebook.errors import InputError

TECHNIQUES = ("override", "roleplay", "encoded", "suffix", "document", "notes", "multiturn")
EXPECTATIONS = ("language", "role", "secret")
ENCODINGS = {
    "base64": lambda text: base64.b64encode(text.encode()).decode(),
    "rot13": lambda text: codecs.encode(text, "rot13"),
    "reversed": lambda text: text[::-1],
}


@dataclass
class Attack:
    """One scripted attack: the user's turns and the behaviour the persona must keep."""

    id: str
    technique: str
    turns: list[str]
    expect: list[str]
    marker: str | None = None
    note: str | None = None
    payload: str | None = None
    encoding: str | None = None
    document: str | None = None

    def user_turns(self) -> list[str]:
        """The turns with {encoded} and {document} filled in."""
        encoded = ENCODINGS[self.encoding](self.payload) if self.encoding else ""
        return [turn.replace("{encoded}", encoded).replace("{document}", self.document or "") for turn in self.turns]


def _check(raw: dict, where: str) -> Attack:
    known = {"id", "technique", "turns", "expect", "marker", "note", "payload", "encoding", "document"}
    if not isinstance(raw, dict) or not {"id", "technique", "turns", "expect"} <= set(raw):
        raise InputError(f"{where}: an attack needs id, technique, turns and expect", "see the shipped attack file")
    unknown = set(raw) - known
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}", f"use only {', '.join(sorted(known))}")
    attack = Attack(**raw)
    if attack.technique not in TECHNIQUES:
        raise InputError(f"{where}: unknown technique {attack.technique!r}", f"use one of {', '.join(TECHNIQUES)}")
    bad = [e for e in attack.expect if e not in EXPECTATIONS]
    if bad or not attack.expect:
        raise InputError(f"{where}: unknown expectation(s) {bad or '(none)'}", f"use {', '.join(EXPECTATIONS)}")
    if not attack.turns or not all(isinstance(t, str) and t.strip() for t in attack.turns):
        raise InputError(f"{where}: turns must be a non-empty list of texts", "write the user's messages")
    if attack.encoding and (attack.encoding not in ENCODINGS or not attack.payload):
        raise InputError(f"{where}: encoding needs a payload and one of {', '.join(ENCODINGS)}", "fix the attack")
    if attack.technique == "notes" and not attack.note:
        raise InputError(f"{where}: a notes attack needs a note", "add note: the planted instruction")
    return attack


def load_attacks(path: Path | None = None) -> list[Attack]:
    """The shipped attacks (or those in `path`), validated; ids must be unique."""
    if path is None:
        text = resources.files("lorebook.data").joinpath("redteam_attacks.yaml").read_text(encoding="utf-8")
        where = "redteam_attacks.yaml"
    else:
        if not Path(path).is_file():
            raise InputError(f"attack file {path} does not exist", "pass a YAML list of attacks")
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: not valid YAML ({exc})", "fix the file") from None
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where}: expected a non-empty list of attacks", "write one '- id: …' entry per attack")
    attacks = [_check(item, f"{where}: attack {i + 1}") for i, item in enumerate(raw)]
    seen: set[str] = set()
    for attack in attacks:
        if attack.id in seen:
            raise InputError(f"{where}: attack id {attack.id!r} appears twice", "give every attack its own id")
        seen.add(attack.id)
    return attacks


def select(attacks: list[Attack], techniques: list[str], per_technique: int) -> list[Attack]:
    """Attacks of the chosen techniques (all when empty), at most `per_technique` each (0 = all)."""
    unknown = [t for t in techniques if t not in TECHNIQUES]
    if unknown:
        raise InputError(f"unknown technique(s) {', '.join(unknown)}", f"use {', '.join(TECHNIQUES)}")
    chosen, counts = [], dict.fromkeys(TECHNIQUES, 0)
    for attack in attacks:
        if techniques and attack.technique not in techniques:
            continue
        if per_technique and counts[attack.technique] >= per_technique:
            continue
        counts[attack.technique] += 1
        chosen.append(attack)
    return chosen
