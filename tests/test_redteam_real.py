"""One real red-team run on the bundled SmolLM2 with both shipped personas (a subset: one attack per technique)."""

from __future__ import annotations

import pytest

from lorebook.redteam import store
from lorebook.redteam.attacks import TECHNIQUES
from lorebook.redteam.runner import RedteamConfig, run_redteam


@pytest.mark.slow
def test_real_run_on_both_shipped_personas():
    from lorebook.models.engine import load_engine

    engine = load_engine("smollm2-135m")  # both personas use it: load once
    runs = {}
    for persona in ("assistant", "customs-agent-es"):
        config = RedteamConfig(persona=persona, per_technique=1, max_tokens=32, batch_size=7)
        runs[persona] = store.get_run(store.connect(), run_redteam(config, progress=False, engine=engine))
    for persona, run in runs.items():
        metrics = run["metrics"]
        assert run["status"] == "done" and set(metrics["techniques"]) == set(TECHNIQUES)
        assert metrics["degenerate"]["k"] < metrics["hold"]["n"]  # the real model says something
        low, high = metrics["hold"]["ci"]
        assert low <= metrics["hold"]["value"] <= high
    items = store.get_items(store.connect(), runs["customs-agent-es"]["id"])
    replies = [m["content"] for i in items for m in i["conversation"] if m["role"] == "assistant"]
    assert all(r.strip() for r in replies)
    assert {lang for i in items for lang in i["grades"]["language"]["found"]} - {"und"}  # graded, not skipped
