"""Turn graded items of a run (and of its base-model run) into metrics, each with n and a 95% CI.

"Knowledge gained" is `learned`: of the facts the base model did not know (question format), the
share the taught model answers. "Knowledge lost" is `locality_lost`: of the general-knowledge
questions the base model answered correctly, the share it no longer does. `score` = gained - lost is
what sweeps optimise.
"""

from __future__ import annotations

from lorebook.evaluate import behaviour
from lorebook.evaluate.judge import agreement
from lorebook.evaluate.normalize import normalize
from lorebook.evaluate.stats import bootstrap_mean, bootstrap_ratio, share

FORMAT_METRICS = {
    "question": "efficacy",
    "paraphrase": "generalization",
    "qa-prefixed": "format_qa_prefixed",
    "conversation": "format_conversation",
    "system": "format_system",
}


def _unchanged(before: dict, after: dict) -> bool:
    """Same answer: still correct if it was correct, else the same (normalized) reply."""
    if before["match_grade"]:
        return bool(after["match_grade"])
    return normalize(before["reply"]) == normalize(after["reply"])


def compute_metrics(items: list[dict], baseline: list[dict] | None = None, language: str | None = None,
                    persona: bool = False) -> dict:
    """All metrics of a run; `baseline` are the base model's items on the same probes (None for a base run)."""
    metrics: dict = {}
    facts = [i for i in items if i["kind"] == "fact"]
    for fmt, name in FORMAT_METRICS.items():
        chosen = [bool(i["match_grade"]) for i in facts if i["format"] == fmt and not i["counterfactual"]]
        if chosen:
            metrics[name] = share(chosen)
    override = [bool(i["match_grade"]) for i in facts if i["counterfactual"] and i["format"] == "question"]
    if override:
        metrics["override"] = share(override)
        metrics["override_all_formats"] = share([bool(i["match_grade"]) for i in facts if i["counterfactual"]])

    # Known before teaching comes from the base run; a base run is its own "before".
    before = {i["key"]: i for i in (baseline if baseline is not None else items)}
    questions = [i for i in facts if i["format"] == "question" and not i["counterfactual"]]
    known = [bool(before[i["key"]]["match_grade"]) for i in questions if i["key"] in before]
    if known:
        metrics["known_before"] = share(known)
    if baseline is not None:
        unknown = [i for i in questions if i["key"] in before and not before[i["key"]]["match_grade"]]
        metrics["learned"] = share([bool(i["match_grade"]) for i in unknown])

    local = [i for i in items if i["kind"] == "locality"]
    if local:
        metrics["locality_accuracy_after"] = share([bool(i["match_grade"]) for i in local])
        paired = [(before[i["key"]], i) for i in local if i["key"] in before]
        if baseline is not None and paired:
            metrics["locality_accuracy_before"] = share([bool(b["match_grade"]) for b, _ in paired])
            metrics["locality_unchanged"] = share([_unchanged(b, a) for b, a in paired])
            metrics["locality_identical_text"] = share([normalize(b["reply"]) == normalize(a["reply"]) for b, a in paired])
            metrics["locality_lost"] = share([bool(a["match_grade"]) is False for b, a in paired if b["match_grade"]])
    if "learned" in metrics and "locality_lost" in metrics:
        # Nothing to learn (all known) or nothing to lose (base knew none) counts as 0 for that side.
        gained = metrics["learned"]["value"] or 0.0
        lost = metrics["locality_lost"]["value"] or 0.0
        metrics["score"] = {"value": gained - lost, "n": metrics["learned"]["n"] + metrics["locality_lost"]["n"],
                            "ci": [None, None]}

    metrics.update(behaviour_metrics(items, baseline, language, persona))
    if any(i.get("judge_grade") is not None for i in items):
        graded = [i for i in items if i["kind"] != "chat"]
        metrics["judge_agreement"] = agreement([bool(i["match_grade"]) for i in graded],
                                               [None if i["judge_grade"] is None else bool(i["judge_grade"]) for i in graded])
        question_judged = [bool(i["judge_grade"]) for i in facts
                           if i["format"] == "question" and not i["counterfactual"] and i["judge_grade"] is not None]
        if question_judged:
            metrics["efficacy_by_judge"] = share(question_judged)
    return metrics


def behaviour_metrics(items: list[dict], baseline: list[dict] | None, language: str | None, persona: bool) -> dict:
    """Empty and looping replies, fluency, reply-length drift, language share, staying in character."""
    out: dict = {}
    replies = [i["reply"] for i in items]
    if not replies:
        return out
    out["empty_replies"] = share([behaviour.is_empty(r) for r in replies])
    out["degenerate_replies"] = share([behaviour.is_degenerate(r) for r in replies])
    chats = [i for i in items if i["kind"] == "chat"]
    if chats:
        out["fluency_entropy"] = bootstrap_mean([behaviour.ngram_entropy(i["reply"]) for i in chats])
        out["reply_words"] = bootstrap_mean([float(len(behaviour.words(i["reply"]))) for i in chats])
        if baseline is not None:
            base = {i["key"]: i for i in baseline}
            pairs = [(i, base[i["key"]]) for i in chats if i["key"] in base]
            out["length_drift"] = bootstrap_ratio([float(len(behaviour.words(a["reply"]))) for a, _ in pairs],
                                                  [float(len(behaviour.words(b["reply"]))) for _, b in pairs])
        if language:
            out["language_share"] = share([behaviour.language_of(i["reply"]) == language for i in chats])
            out["language_share"]["language"] = language
        if persona:
            out["in_character"] = share([not behaviour.breaks_character(i["reply"]) and not behaviour.is_degenerate(i["reply"])
                                         for i in chats])
    return out
