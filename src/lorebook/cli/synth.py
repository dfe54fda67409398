"""`lorebook synth SCENARIO.yaml -n 1000 --turns 10 -o convs.jsonl`: synthetic role-play conversations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from lorebook.cli.common import console, friendly_errors
from lorebook.synth.persona_eval import PersonaEvalConfig
from lorebook.synth.runner import SynthConfig

HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(SynthConfig)}
EVAL_HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(PersonaEvalConfig)}
DEFAULTS = SynthConfig()


@friendly_errors
def synth_command(
    scenario_path: Path = typer.Argument(..., help="scenario YAML (e.g. examples/customs-checkpoint-es.yaml)"),
    out: Path = typer.Option(..., "--out", "-o", help="output chat JSONL; rerun the same command to resume"),
    n: int = typer.Option(DEFAULTS.n, "-n", help=HELP["n"]),
    turns: int = typer.Option(DEFAULTS.turns, "--turns", help=HELP["turns"]),
    teacher: str = typer.Option(DEFAULTS.teacher, "--teacher", "-t", help=HELP["teacher"]),
    agent_teacher: str = typer.Option(DEFAULTS.agent_teacher, "--agent-teacher", help=HELP["agent_teacher"]),
    min_turns: int = typer.Option(DEFAULTS.min_turns, "--min-turns", help=HELP["min_turns"]),
    followups: int = typer.Option(DEFAULTS.followups, "--followups", help=HELP["followups"]),
    scripted_answers: bool = typer.Option(DEFAULTS.scripted_answers, "--scripted-answers",
                                          help=HELP["scripted_answers"]),
    scripted_agent: bool = typer.Option(DEFAULTS.scripted_agent, "--scripted-agent", help=HELP["scripted_agent"]),
    late_answers: float = typer.Option(DEFAULTS.late_answers, "--late-answers", help=HELP["late_answers"]),
    batch_size: int = typer.Option(DEFAULTS.batch_size, "--batch-size", help=HELP["batch_size"]),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help=HELP["seed"]),
    dedup: float = typer.Option(DEFAULTS.dedup, "--dedup", help=HELP["dedup"]),
    check_language: bool = typer.Option(True, "--check-language/--no-check-language", help=HELP["check_language"]),
    check_topics: bool = typer.Option(True, "--check-topics/--no-check-topics", help=HELP["check_topics"]),
    trim: bool = typer.Option(DEFAULTS.trim, "--trim/--no-trim", help=HELP["trim"]),
    refilter_path: Path = typer.Option(None, "--refilter", help="filter the conversations of an earlier -o file "
                                       "into -o instead of generating (filters tightened after the fact)"),
    retries: int = typer.Option(DEFAULTS.retries, "--retries", help=HELP["retries"]),
    threads: int = typer.Option(0, "--threads", help=HELP["threads"]),
    precision: str = typer.Option(DEFAULTS.precision, "--precision", help=HELP["precision"]),
    engine: str = typer.Option(DEFAULTS.engine, "--engine", help=HELP["engine"]),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Generate role-play conversations with a teacher playing both sides; filter, dedupe, resume."""
    from lorebook.synth.runner import refilter, run_synth
    from lorebook.synth.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    if teacher.startswith("batch:") or agent_teacher.startswith("batch:"):
        batch_size = n  # one Batch API file per turn covers every conversation
    config = SynthConfig(n=n, turns=turns, teacher=teacher, agent_teacher=agent_teacher, batch_size=batch_size, seed=seed, dedup=dedup,
                         check_language=check_language, check_topics=check_topics, trim=trim, retries=retries, threads=threads,
                         precision=precision, engine=engine, min_turns=min_turns,
                         followups=followups, scripted_answers=scripted_answers, scripted_agent=scripted_agent,
                         late_answers=late_answers)
    if refilter_path:
        report = refilter(scenario, config, refilter_path, out)
    else:
        report = run_synth(scenario, config, out, progress=not as_json)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report["drop_reasons"].items())) or "none"
    console.print(f"kept {report['kept']} conversations in {out}; dropped {report['dropped']} ({reasons})", markup=False)
    if report["trimmed"]:
        trims = ", ".join(f"{k} {v}" for k, v in sorted(report["trimmed"].items()))
        console.print(f"trimmed before a bad turn and kept: {sum(report['trimmed'].values())} ({trims})", markup=False)
    console.print("ended by: " + ", ".join(f"{k} {v}" for k, v in sorted(report["ended_by"].items())), markup=False)
    if report["conversations_per_minute"]:
        console.print(f"{report['generated_this_run']} generated in {report['seconds_this_run']} s "
                      f"({report['conversations_per_minute']} conversations/min)", markup=False)
    console.print(f"train on it: lorebook teach {out} --format chat --base gemma3-270m --name customs-es --cutoff-len 768", markup=False)


def _interval(metric: dict | None, percent: bool = True) -> str:
    if not metric or metric.get("value") is None:
        return "-"
    scale, unit = (100, "%") if percent else (1, "")
    low, high = metric["ci"]
    return f"{scale * metric['value']:.1f}{unit} [{scale * low:.1f}–{scale * high:.1f}]"


def persona_table(result: dict):
    """Base vs tuned side by side, 95% intervals (Wilson for shares, bootstrap for chrF and perplexity)."""
    from rich.table import Table

    table = Table("", *[row["label"] for row in result["rows"]],
                  title=f"persona {result['persona']} on scenario {result['scenario']} ({result['turns']} agent turns per conversation)")
    first = result["rows"][0]["metrics"]
    table.add_row("agent turns", *[str(row["metrics"]["language"]["n"]) for row in result["rows"]])
    table.add_row(f"in {result['language']} [95% CI]", *[_interval(row["metrics"]["language"]) for row in result["rows"]])
    table.add_row("in character by the rules [95% CI]", *[_interval(row["metrics"]["in_character"]) for row in result["rows"]])
    if "on_topic" in first:
        table.add_row("answers as the agent: in character and on topic (agent.topics) [95% CI]",
                      *[_interval(row["metrics"]["on_topic"]) for row in result["rows"]])
    if "agenda" in first:
        table.add_row("interview steps the agent asked, per conversation (agent.agenda) [95% CI]",
                      *[_interval(row["metrics"]["agenda"]) for row in result["rows"]])
        table.add_row("conversations that asked each step", *[", ".join(
            f"{name} {step['k']}/{step['n']}" for name, step in row["metrics"]["agenda_steps"].items())
            for row in result["rows"]])
    if check := result.get("topic_check"):
        table.add_row(f"topic rule on the scenario's {check['n']} labelled turns",
                      *[f"{check['value']:.0%} right, κ {check['kappa']:.2f}" for _ in result["rows"]])
    if "chrf" in first:
        table.add_row("chrF vs held-out [95% CI]", *[_interval(row["metrics"]["chrf"], False) for row in result["rows"]])
        table.add_row("perplexity held-out [95% CI]",
                      *[_interval(row["metrics"]["perplexity"], False) for row in result["rows"]])
    if "acts_the_role" in first:
        table.add_row(f"acts the role (judge {first['acts_the_role']['judge']}) [95% CI]",
                      *[_interval(row["metrics"]["acts_the_role"]) for row in result["rows"]])
        table.add_row("judge agrees with the rule check (kappa)", *[
            f"{row['metrics']['judge_agreement']['value']:.0%} (κ {row['metrics']['judge_agreement']['kappa']:.2f})"
            if row["metrics"]["judge_agreement"]["value"] is not None else "no verdicts" for row in result["rows"]])
    if check := result.get("judge_check"):
        verdict = (f"{check['value']:.0%} right, κ {check['kappa']:.2f}" if check["value"] is not None
                   else "no verdicts")
        table.add_row(f"judge on the scenario's {check['n'] + check['no_verdict']} labelled turns",
                      *[verdict for _ in result["rows"]])
    table.add_row(f"in {result['language']} by turn", *[
        " ".join(f"{100 * v:.0f}" for v in row["metrics"]["language_by_turn"]) for row in result["rows"]])
    return table


@friendly_errors
def persona_eval_command(
    persona: str = typer.Option(..., "--persona", "-p", help=EVAL_HELP["persona"]),
    scenario: Path = typer.Option(..., "--scenario", help=EVAL_HELP["scenario"]),
    scripts_path: Path = typer.Option(None, "--scripts", help=EVAL_HELP["scripts"]),
    adapter: list[str] = typer.Option([], "--adapter", "-a", help=EVAL_HELP["adapters"]),
    model: str = typer.Option(None, "--model", "-m", help=EVAL_HELP["model"]),
    references: Path = typer.Option(None, "--references", help=EVAL_HELP["references"]),
    conversations: int = typer.Option(0, "--conversations", help=EVAL_HELP["conversations"]),
    turns: int = typer.Option(10, "--turns", help=EVAL_HELP["turns"]),
    max_tokens: int = typer.Option(48, "--max-tokens", help=EVAL_HELP["max_tokens"]),
    option: list[str] = typer.Option([], "--option", help=EVAL_HELP["options"]),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help=EVAL_HELP["baseline"]),
    moments: bool = typer.Option(True, "--moments/--no-moments", help=EVAL_HELP["moments"]),
    judge: str = typer.Option(None, "--judge", help=EVAL_HELP["judge"]),
    out: Path = typer.Option(None, "--out", "-o", help="also save the result (metrics and every conversation) as JSON"),
    examples: int = typer.Option(1, "--examples", help="conversations to print per subject"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Simulated conversations against the scenario's scripted travellers: language, character, chrF, perplexity
    (and, with --judge, whether an LLM judge finds each reply in role)."""
    from lorebook.synth.persona_eval import run_persona_eval

    config = PersonaEvalConfig(persona=persona, scenario=str(scenario),
                               scripts=str(scripts_path) if scripts_path else None, adapters=list(adapter), model=model,
                               references=str(references) if references else None, conversations=conversations,
                               turns=turns, max_tokens=max_tokens, options=list(option), baseline=baseline,
                               moments=moments, judge=judge)
    result = run_persona_eval(config, progress=not as_json)
    if out:
        out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    console.print(persona_table(result), markup=False)
    for row in result["rows"]:
        for chat in row["conversations"][:examples]:
            console.print(f"--- {row['label']}", markup=False)
            for message in chat[1:]:
                who = "agent" if message["role"] == "assistant" else "traveller"
                console.print(f"{who:>9}: {' '.join(message['content'].split())[:160]}", markup=False)


def _show_message(message: dict) -> None:
    """A line of the conversation before a reply to read, on one line, with who said it."""
    who = "agent" if message["role"] == "assistant" else "traveller"
    console.print(f"  {who:>9}: {' '.join(message['content'].split())}", markup=False)


def _show_turn(turn, number: str, context: int) -> None:
    """One reply to read, after the `context` lines before it (0: the whole conversation)."""
    console.print(f"\n[{number}] agent turn {turn.turn}", markup=False)
    for message in turn.before[-context:] if context else turn.before:
        _show_message(message)
    console.print(f"  {'REPLY':>9}: {' '.join(turn.reply.split())}", markup=False)


@friendly_errors
def label_command(
    evaluation_path: Path = typer.Argument(..., help="the -o file of `lorebook eval persona`, or a chat JSONL "
                                           "file (training data, e.g. `lorebook synth` output)"),
    labels_path: Path = typer.Option(None, "--labels", help="where labels are kept (default: EVAL.labels.jsonl)"),
    context: int = typer.Option(0, "--context", help="lines shown before each reply (0: the whole conversation, "
                                "which a rule such as 'no admission before the declaration' needs)"),
    seed: int = typer.Option(0, "--seed", help="seed of the blind order"),
    summary_only: bool = typer.Option(False, "--summary", help="print the counts of the labels so far; ask nothing"),
    list_only: bool = typer.Option(False, "--list", help="print the replies still to read, numbered in the blind "
                                   "order, and ask nothing: read a batch, then pipe its y/n answers in that order"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    weights_path: Path = typer.Option(None, "--weights", help="for a chat JSONL: write a copy with weight 0 on "
                                      "the turns labelled out of role, for `lorebook teach`"),
    rule_path: Path = typer.Option(None, "--rule", help="text file of the reading rule: shown before the first "
                                   "turn, its digest kept with each label"),
    by_conversation: bool = typer.Option(False, "--by-conversation", help="show whole conversations (still blind, "
                                         "shuffled across rows) and take one answer per conversation: a y or n per "
                                         "reply in turn order, e.g. 'yyyyn' (with --list: print them all, then pipe "
                                         "the answers in that order)"),
) -> None:
    """Read every agent turn of a persona evaluation, blind (rows shuffled together, names hidden), and say
    whether it is what the agent would say there; prints the share in role per row with 95% intervals.
    On training data, `--weights OUT.jsonl` keeps the rejected turns as context only."""
    from lorebook.synth.labels import (
        VERDICTS,
        add_label,
        agent_turns,
        conversation_verdicts,
        conversations_to_label,
        read_evaluation,
        read_labels,
        read_rule,
        summarize,
        to_label,
        write_weighted,
    )

    rule, digest = read_rule(rule_path) if rule_path else ("", "")
    turns = agent_turns(read_evaluation(evaluation_path))
    labels_path = labels_path or evaluation_path.with_name(f"{evaluation_path.stem}.labels.jsonl")
    labels = read_labels(labels_path)
    if by_conversation:  # a whole conversation a time, one y/n letter per reply not read yet
        chats = [] if summary_only else conversations_to_label(turns, labels, seed)
        total = len({(turn.row, turn.conversation) for turn in turns})
        pending = [(number, f"{number}/{total}", chat) for number, chat in chats]
        unit, before = "conversations", "replies labelled"
        answer_help = "a y (in role) or n per reply not read yet, in turn order"
    else:
        replies = [] if summary_only else to_label(turns, labels, seed)
        pending = [(number, f"{number}/{len(replies)}", turn) for number, turn in enumerate(replies, 1)]
        unit, before, answer_help = "replies", "labelled", "y (in role) or n"

    def show(item, number: str) -> None:
        if by_conversation:
            _show_conversation(item, number, labels)
        else:
            _show_turn(item, number, context)

    if list_only:
        for _, shown, item in pending:
            show(item, shown)
        return
    if pending:
        console.print(f"{len(pending)} {unit} to read ({len(labels)} {before} before, kept in {labels_path}). "
                      f"Answer {answer_help}, optionally followed by a note; s skips, q stops.", markup=False)
        if rule:
            console.print(f"\nThe rule (digest {digest}):\n{rule}", markup=False)
    for number, shown, item in pending:
        show(item, shown)
        try:
            answer = input("in role? [y/n/s/q] ").strip()
        except EOFError:
            break
        verdict, _, note = answer.partition(" ")
        if verdict.lower() == "q":
            break
        if by_conversation and verdict.lower() != "s":
            unread = [turn for turn in item if turn.key not in labels]
            verdicts, note = conversation_verdicts(answer, number, len(unread))
            for turn, in_role in zip(unread, verdicts, strict=True):
                labels[turn.key] = add_label(labels_path, turn, in_role, note, digest)
        elif not by_conversation and verdict.lower() in VERDICTS:
            labels[item.key] = add_label(labels_path, item, VERDICTS[verdict.lower()], note.strip(), digest)
    summary = summarize(turns, labels)
    if pending:
        print()  # the last prompt's line
    if weights_path:
        counts = write_weighted(evaluation_path, labels, weights_path)
        console.print(f"wrote {weights_path}: {counts['kept']} agent turns kept, {counts['zeroed']} with weight 0 "
                      f"(context only), {counts['unlabelled']} unlabelled (kept); "
                      f"{counts['conversations_left_out']} conversations with no turn kept left out", markup=False)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    for row, counts in summary.items():
        parts = [f"{name} {c['k']}/{c['n']}" + (f" ({100 * c['value']:.0f}% [{100 * c['ci'][0]:.0f}-"
                                                f"{100 * c['ci'][1]:.0f}])" if c["n"] else "")
                 for name, c in counts.items() if name not in ("unlabelled", "rules")]
        console.print(f"{row}: " + "; ".join(parts) + f"; unlabelled {counts['unlabelled']}", markup=False)
    rules = sorted({rule for counts in summary.values() for rule in counts["rules"]})
    if len(rules) > 1:
        console.print(f"these labels were read under {len(rules)} rules ({', '.join(rules)}; per row: "
                      + "; ".join(f"{row} {counts['rules']}" for row, counts in summary.items())
                      + "): counts read under different rules do not compare closely", markup=False)


def _show_conversation(chat, number: str, labels: dict) -> None:
    """A whole conversation to read: each reply numbered by its turn, the ones read before marked with their label."""
    console.print(f"\n== C{number}", markup=False)
    shown = 0
    for turn in chat:
        for message in turn.before[shown:]:
            _show_message(message)
        done = labels.get(turn.key)
        mark = f"{turn.turn:>2}" if done is None else ("y" if done["in_role"] else "n") + " read"
        console.print(f"  {mark:>9}: {' '.join(turn.reply.split())}", markup=False)
        shown = len(turn.before) + 1


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)
