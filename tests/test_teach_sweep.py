"""Sweeps on the tiny model: a grid runs every combination, Optuna shares a study in SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorebook import paths
from lorebook.errors import InputError
from lorebook.teach import store
from lorebook.teach.config import TeachConfig
from lorebook.teach.pack import Fact
from lorebook.teach.sweep import parse_grid, run_grid, run_optuna

FACTS = [Fact("zorbo", "The capital of Zorbo is Quendle.", "What is the capital of Zorbo?", "Quendle", [],
              ["Which city is Zorbo's capital?"])]


@pytest.fixture(autouse=True)
def small_control_set(monkeypatch):
    monkeypatch.setattr("lorebook.teach.sweep.LOCALITY_SAMPLE", 4)  # keep the tiny-model tests fast


@pytest.fixture
def pack(tmp_path) -> Path:
    path = tmp_path / "zorbo.jsonl"
    path.write_text(FACTS[0].to_json() + "\n")
    return path


def test_parse_grid():
    assert parse_grid(["epochs=1,3", "lr=1e-4,1e-3", "train-paraphrases=true"]) == {
        "epochs": [1, 3], "lr": [1e-4, 1e-3], "train_paraphrases": [True]}
    with pytest.raises(InputError, match="unknown teach option"):
        parse_grid(["epoch=1"])
    with pytest.raises(InputError, match="not a valid"):
        parse_grid(["rank=four"])
    with pytest.raises(InputError, match="bad grid entry"):
        parse_grid(["rank"])


def test_grid_runs_every_combination_and_keeps_only_what_is_asked(tiny_model_dir, pack):
    base = TeachConfig(model=str(tiny_model_dir), epochs=1, rank=2, batch_size=2)
    rows = run_grid(pack, base, {"rank": [2, 4], "epochs": [1]}, "g", keep=False)
    assert sorted((r["options"]["rank"], r["options"]["epochs"]) for r in rows) == [(2, 1), (4, 1)]
    for row in rows:
        assert 0 <= row["exact"] <= 1 and 0 <= row["lost"] <= 1
        assert row["score"] == pytest.approx((row["exact"] + row["paraphrase"]) / 2 - row["lost"], abs=1e-4)
    assert store.list_adapters() == []  # trial adapters removed without --keep
    assert len(json.loads((paths.subdir("sweeps") / "g.json").read_text())) == 2


def test_optuna_study_in_sqlite(tiny_model_dir, pack):
    base = TeachConfig(model=str(tiny_model_dir), epochs=1, rank=2, batch_size=2)
    rows = run_optuna(pack, base, {"rank": [2, 4]}, 2, "", "s1", "o", keep=True)
    assert len(rows) == 2 and {r["name"] for r in rows} == {"o-0", "o-1"}
    assert (paths.home() / "sweeps.db").exists()
    assert {a["name"] for a in store.list_adapters()} == {"o-0", "o-1"}
