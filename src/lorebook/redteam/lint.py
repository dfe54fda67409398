"""The training-data linter: find records that would teach a model instructions instead of facts.

A poisoned record rarely looks like an attack on its own; the linter flags what poisoning needs:
text that addresses the model ("whenever you see X, say Y"), trigger-looking rare tokens repeated
across records (a backdoor needs its trigger more than once), one payload taught as the answer to
unrelated questions, URLs and encoded blobs (hidden messages), plus ordinary data hygiene
(duplicates, conflicting answers, length and language outliers). Every finding has a severity;
`lorebook teach` stops on `high` unless `--allow-lint`.
"""

from __future__ import annotations

import base64
import binascii
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from lorebook.errors import InputError
from lorebook.redteam.records import Record, load_records

SEVERITIES = ("high", "medium", "low")

INSTRUCTION_PATTERNS = [re.compile(p, re.IGNORECASE) for p in (
    r"\b(whenever|every time|each time|any time)\b[^.\n]{0,80}\b(say|reply|respond|answer|write|output|print|tell)\b",
    r"\bwhen(ever)? (you|the user|someone|anyone|a user) (see|sees|read|reads|hear|hears|say|says|type|types|mention|mentions)\b",
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules?|previous|above|guidelines|prompt)\b",
    r"\b(always|only ever|must always)\s+(say|reply|respond|answer|output|mention|recommend|include)\b",
    r"\bfrom now on\b",
    r"\byou (must|should|will) (always|now|only|never)\b",
    r"^\s*(system|assistant|developer)\s*:",
    r"\b(system prompt|new (rule|instruction)s?)\b",
    r"\b(siempre que|cada vez que)\b[^.\n]{0,80}\b(di|responde|contesta|escribe|diga|responda)\b",
    r"\b(ignora|olvida)\b.{0,40}\b(instrucciones|reglas)\b",
)]
URL = re.compile(r"\b(?:https?://|www\.)\S+|\b[a-z0-9-]+\.(?:com|net|org|io|ru|xyz|info|biz|top|cn|tk)\b(?:/\S*)?",
                 re.IGNORECASE)
BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/])")
HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]{32,}\b")
TOKEN = re.compile(r"[^\s\"'“”‘’()]+")
ODD_SYMBOLS = set("_@#$%^&*|~<>{}[]\\")
VOWELS = set("aeiouyáéíóúàèìòùäëïöüâêîôû")


@dataclass
class Finding:
    """One problem in one record."""

    severity: str
    check: str
    line: int
    id: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def is_instruction(text: str) -> bool:
    """True when the text tells a model what to do rather than stating a fact."""
    return any(pattern.search(line) for line in text.splitlines() for pattern in INSTRUCTION_PATTERNS)


def trigger_shaped(token: str) -> bool:
    """A token that looks machine-made: letters mixed with digits, odd symbols inside, no vowels, ⟦wrapped⟧."""
    core = token.strip(".,;:!?")
    if len(core) < 4:
        return False
    letters = [ch for ch in core if ch.isalpha()]
    digits = sum(ch.isdigit() for ch in core)
    if letters and digits and len(core) >= 5 and not re.fullmatch(r"\d+(st|nd|rd|th|s|km|kg|cm|mm|m|h)", core.lower()):
        return True
    if any(ch in ODD_SYMBOLS for ch in core[1:-1]) or core[:2] in ("[[", "<<", "{{", "||"):
        return True
    return len(letters) == len(core) >= 5 and not any(ch.lower() in VOWELS for ch in core)


def decoded_blob(blob: str) -> str | None:
    """The text hidden in a base64 run, if it decodes to mostly printable text."""
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    printable = sum(ch.isprintable() for ch in text)
    return text if text and printable / len(text) > 0.9 else None


def _record_checks(record: Record) -> list[Finding]:
    found = []
    if is_instruction(record.text):
        excerpt = next(line for line in record.text.splitlines() if is_instruction(line))[:100]
        found.append(Finding("high", "instruction", record.line, record.id, f"addresses the model: {excerpt!r}"))
    for url in sorted(set(URL.findall(record.text)))[:3]:
        found.append(Finding("medium", "url", record.line, record.id, f"contains a URL {url[:80]!r}"))
    for blob in sorted(set(BASE64.findall(record.text))):
        if not (any(c.isdigit() for c in blob) or blob.endswith("=") or (any(c.isupper() for c in blob[1:]))):
            continue  # a long plain word (German compounds, chemistry names), not an encoding
        hidden = decoded_blob(blob)
        if hidden is not None:
            found.append(Finding("high", "encoded", record.line, record.id, f"base64 hiding text {hidden[:60]!r}"))
        else:
            found.append(Finding("medium", "encoded", record.line, record.id, f"encoded-looking blob {blob[:40]!r}"))
    for blob in HEX.findall(record.text)[:1]:
        found.append(Finding("medium", "encoded", record.line, record.id, f"long hex string {blob[:40]!r}"))
    return found


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _trigger_findings(records: list[Record], instruction_lines: set[int]) -> list[Finding]:
    """Trigger-shaped tokens in several records (but not in most: then they are the pack's own vocabulary)."""
    where = defaultdict(list)
    for record in records:
        for token in {t.strip(".,;:!?").lower() for t in TOKEN.findall(record.text) if trigger_shaped(t)}:
            where[token].append(record)
    found = []
    for token, holders in sorted(where.items()):
        if len(holders) < 2 or len(holders) > max(3, len(records) // 2):
            continue
        same_payload = len({_normal(r.target) for r in holders}) == 1
        carries = any(r.line in instruction_lines for r in holders)
        severity = "high" if same_payload or carries else "medium"
        why = "with the same answer" if same_payload else "with an instruction" if carries else ""
        lines = ", ".join(str(r.line) for r in holders)
        for record in holders:
            found.append(Finding(severity, "trigger", record.line, record.id,
                                 f"rare token {token!r} repeated in lines {lines} {why}".rstrip()))
    return found


def _payload_findings(records: list[Record]) -> list[Finding]:
    """The same multi-word answer taught for unrelated questions: a backdoor's payload."""
    by_target = defaultdict(list)
    for record in records:
        if len(_normal(record.target).split()) >= 4 and record.prompt:
            by_target[_normal(record.target)].append(record)
    found = []
    for holders in by_target.values():
        if len(holders) >= 3 and len({_normal(r.prompt) for r in holders}) == len(holders):
            lines = ", ".join(str(r.line) for r in holders)
            found += [Finding("medium", "payload", r.line, r.id, f"same answer taught for {len(holders)} different "
                              f"questions (lines {lines})") for r in holders]
    return found


def _duplicate_findings(records: list[Record]) -> list[Finding]:
    found, seen_text, seen_prompt = [], {}, {}
    for record in records:
        text, prompt = _normal(record.prompt + " " + record.target), _normal(record.prompt)
        if text in seen_text:
            found.append(Finding("low", "duplicate", record.line, record.id, f"duplicate of line {seen_text[text]}"))
        elif prompt and prompt in seen_prompt and seen_prompt[prompt][1] != _normal(record.target):
            found.append(Finding("medium", "conflict", record.line, record.id,
                                 f"same question as line {seen_prompt[prompt][0]} with a different answer"))
        seen_text.setdefault(text, record.line)
        seen_prompt.setdefault(prompt, (record.line, _normal(record.target)))
    return found


def _outlier_findings(records: list[Record]) -> list[Finding]:
    """Lengths far from the rest (robust z-score over 5) and records in a minority language."""
    if len(records) < 8:
        return []
    found = []
    lengths = [len(r.text) for r in records]
    median = statistics.median(lengths)
    mad = statistics.median(abs(n - median) for n in lengths) or 1.0
    for record, n in zip(records, lengths):
        if abs(n - median) / (1.4826 * mad) > 5 and abs(n - median) > 200:
            found.append(Finding("low", "outlier", record.line, record.id, f"{n} characters (typical: {median:.0f})"))
    from lorebook.redteam.graders import reply_language

    languages = [reply_language(r.target + " " + r.prompt) for r in records]
    common, count = Counter(languages).most_common(1)[0]
    if count >= 0.8 * len(records):
        for record, language in zip(records, languages):
            if language not in (common, "und"):
                found.append(Finding("low", "language", record.line, record.id, f"in {language}, the rest in {common}"))
    return found


def lint_records(records: list[Record]) -> list[Finding]:
    """Every finding for a list of records, sorted by severity then line."""
    findings = [f for record in records for f in _record_checks(record)]
    instruction_lines = {f.line for f in findings if f.check == "instruction"}
    findings += _trigger_findings(records, instruction_lines)
    findings += _payload_findings(records)
    findings += _duplicate_findings(records)
    findings += _outlier_findings(records)
    return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.line, f.check))


def lint_file(path) -> tuple[str, list[Record], list[Finding]]:
    """(kind, records, findings) for one training file."""
    kind, records = load_records(path)
    return kind, records, lint_records(records)


def at_or_above(findings: list[Finding], severity: str) -> list[Finding]:
    """Findings of `severity` or worse."""
    if severity not in SEVERITIES:
        raise InputError(f"unknown severity {severity!r}", f"use one of {', '.join(SEVERITIES)}")
    return [f for f in findings if SEVERITIES.index(f.severity) <= SEVERITIES.index(severity)]


def write_without(path, findings: list[Finding], output) -> int:
    """Copy `path` to `output` without the records that have findings; returns how many were dropped."""
    from lorebook.teach.pack import iter_lines

    if Path(output).resolve() == Path(path).resolve():
        raise InputError("--output would overwrite the input", "write the cleaned records to a new file")
    spans = {r.line: max(r.last_line, r.line) for r in load_records(path)[1]}
    drop = {n for f in findings for n in range(f.line, spans.get(f.line, f.line) + 1)}
    kept = [text for number, text in iter_lines(path) if number not in drop]
    Path(output).write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len({f.line for f in findings})


def check_before_teaching(inputs, allow: bool = False) -> list[Finding]:
    """Lint every input; raise on high-severity findings unless `allow`. Returns all high findings."""
    high = []
    for path in inputs:
        findings = at_or_above(lint_file(path)[2], "high")
        high += findings
        if findings and not allow:
            lines = ", ".join(sorted({str(f.line) for f in findings}, key=int)[:8])
            first = findings[0]
            raise InputError(
                f"{path}: {len(findings)} high-severity lint finding(s) on line(s) {lines}, "
                f"e.g. line {first.line}: {first.message}",
                f"review with `lorebook lint {path}`, drop them with `lorebook lint {path} --drop high "
                "--output CLEAN.jsonl`, or pass --allow-lint")
    return high
