"""Compare attention variants: every variant × seed trained with the same budget, then a table and plots.

A variant is `LABEL:field=value,field=value` on top of the base config, e.g. `metric-sym:attention=metric,
metric_form=symmetric`. `--match-params` adds `metric-shared-matched`: metric-shared widened (n_embd, a
multiple of n_head) until its parameter count is the closest to the `dot` model's, so metric-shared is
compared both at the same width (fewer parameters) and at the same parameter count.

Each run lives in OUT/LABEL/sSEED and is skipped when it already has metrics.json (and resumed when it has
only a checkpoint), so an interrupted comparison continues where it stopped. Results: OUT/results.json,
OUT/results.md (mean ± std over seeds) and OUT/loss_vs_steps.png, OUT/loss_vs_time.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from lorebook.errors import InputError
from lorebook.lab.config import LabConfig, parse_overrides

DEFAULT_VARIANTS = (
    "dot:attention=dot",
    "metric-full:attention=metric,metric_form=full",
    "metric-sym:attention=metric,metric_form=symmetric",
    "metric-lowrank:attention=metric,metric_form=lowrank",
    "metric-shared:attention=metric-shared",
)


def parse_variant(text: str) -> tuple[str, dict]:
    label, _, spec = text.partition(":")
    if not label.strip():
        raise InputError(f"variant '{text}' has no label", "write it as LABEL:field=value,field=value")
    return label.strip(), parse_overrides([p for p in spec.split(",") if p.strip()])


def count_params(config: LabConfig, vocab_size: int) -> int:
    """Total parameters of the model a config describes (built on the meta device: no memory, no time)."""
    from lorebook.lab.model import GPT

    with torch.device("meta"):
        return sum(p.numel() for p in GPT(config, vocab_size).parameters())


def matched_width(base: LabConfig, vocab_size: int) -> int:
    """n_embd for metric-shared whose parameter count is closest to the dot model of the base config."""
    target = count_params(base.replace(attention="dot"), vocab_size)
    widths = range(base.n_head, 4 * base.n_embd + 1, base.n_head)
    shared = base.replace(attention="metric-shared")
    return min(widths, key=lambda w: abs(count_params(shared.replace(n_embd=w), vocab_size) - target))


def vocab_size_of(config: LabConfig) -> int:
    from lorebook.lab.tasks import make_task

    return make_task(config).vocab_size


def plan(
    base: LabConfig, variants: list[str], seeds: list[int], match_params: bool
) -> list[tuple[str, LabConfig]]:
    """(label, config) for every run of the comparison."""
    parsed = [parse_variant(v) for v in variants]
    if match_params:
        width = matched_width(base, vocab_size_of(base))
        parsed.append(("metric-shared-matched", {"attention": "metric-shared", "n_embd": width}))
    return [(label, base.replace(**overrides, seed=seed)) for label, overrides in parsed for seed in seeds]


def run_all(runs: list[tuple[str, LabConfig]], out: Path, parallel: int = 1, progress: bool = True) -> None:
    """Train every run not finished yet, `parallel` worker processes at a time (CPU threads split evenly)."""
    pending = []
    for label, config in runs:
        run_dir = out / label / f"s{config.seed}"
        if (run_dir / "metrics.json").exists():
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "request.json").write_text(json.dumps(config.to_dict(), indent=2))
        cmd = [
            sys.executable,
            "-m",
            "lorebook.lab.train",
            "--out",
            str(run_dir),
            "--config",
            str(run_dir / "request.json"),
        ]
        if (run_dir / "ckpt.pt").exists():
            cmd.append("--resume")
        if not progress or parallel > 1:
            cmd.append("--no-progress")
        pending.append((run_dir, cmd))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="runs", disable=not progress or parallel == 1)
    running: list[tuple[Path, subprocess.Popen]] = []
    failures = []
    while pending or running:
        while pending and len(running) < parallel:
            run_dir, cmd = pending.pop(0)
            log = open(run_dir / "train.log", "w")  # noqa: SIM115 - closed when the process ends
            running.append((run_dir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        run_dir, proc = running.pop(0)
        if proc.wait() != 0:
            failures.append(str(run_dir))
        bar.update(1)
    bar.close()
    if failures:
        raise InputError(
            f"{len(failures)} runs failed: {', '.join(failures)}", "read train.log in each run directory"
        )


def summarize(out: Path) -> dict:
    """Aggregate OUT/*/s*/metrics.json into results.json, results.md and the plots."""
    groups: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*/s*/metrics.json")):
        groups.setdefault(path.parent.parent.name, []).append(json.loads(path.read_text()))
    if not groups:
        raise InputError(f"no finished runs under {out}", "run lorebook lab compare first")
    rows = []
    for label, runs in groups.items():
        final_key = "val_loss_full" if "val_loss_full" in runs[0]["final"] else "val_loss"
        losses = [r["final"][final_key] for r in runs]
        row = {
            "variant": label,
            "attention": runs[0]["config"]["attention"],
            "n_embd": runs[0]["config"]["n_embd"],
            "params": runs[0]["params"]["total"],
            "attention_params": runs[0]["params"]["attention"],
            "seeds": len(runs),
            "loss_key": final_key,
            "loss_mean": statistics.fmean(losses),
            "loss_std": statistics.stdev(losses) if len(losses) > 1 else 0.0,
            "tokens_per_s": statistics.fmean(r["tokens_per_s"] for r in runs),
            "train_seconds": statistics.fmean(r["train_seconds"] for r in runs),
            "device": runs[0]["device"],
        }
        for key in runs[0]["final"]:
            if key.startswith("acc_"):
                row[key] = statistics.fmean(r["final"][key] for r in runs)
        rows.append(row)
    results = {"rows": rows, "task": next(iter(groups.values()))[0]["config"]["task"]}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(rows) + "\n")
    plot(groups, out)
    return results


def table(rows: list[dict]) -> str:
    acc_keys = sorted({k for r in rows for k in r if k.startswith("acc_len")}, key=lambda k: int(k[7:]))
    head = ["variant", "n_embd", "params", "attn params", "seeds", "final val loss", *acc_keys, "tokens/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["variant"],
            str(r["n_embd"]),
            f"{r['params']:,}",
            f"{r['attention_params']:,}",
            str(r["seeds"]),
            f"{r['loss_mean']:.4f} ± {r['loss_std']:.4f}",
            *(f"{r.get(k, float('nan')):.3f}" for k in acc_keys),
            f"{r['tokens_per_s']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups: dict[str, list[dict]], out: Path) -> None:
    """Validation loss against steps and against training seconds, one line per run, one colour per variant."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install 'lorebook[lab]')", file=sys.stderr)
        return
    for x_key, name in (("step", "loss_vs_steps"), ("train_seconds", "loss_vs_time")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for colour, (label, runs) in enumerate(groups.items()):
            for i, run in enumerate(runs):
                hist = run["history"]
                ax.plot(
                    [h[x_key] for h in hist],
                    [h["val_loss"] for h in hist],
                    color=f"C{colour}",
                    alpha=0.8,
                    label=label if i == 0 else None,
                )
        ax.set_xlabel("training step" if x_key == "step" else "training time (s)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{runs[0]['config']['task']}: validation loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """`python -m lorebook.lab.compare --out DIR --seeds 0,1,2 [--variant L:f=v] [--set f=v] [--match-params]`."""
    parser = argparse.ArgumentParser(
        prog="python -m lorebook.lab.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variant", action="append", default=[], help="LABEL:field=value,... (repeatable)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="base config override"
    )
    parser.add_argument(
        "--match-params", action="store_true", help="add metric-shared at dot's parameter count"
    )
    parser.add_argument("--parallel", type=int, default=1, help="runs trained at the same time")
    args = parser.parse_args(argv)
    try:
        base = LabConfig.from_dict(parse_overrides(args.set))
        seeds = [int(s) for s in args.seeds.split(",")]
        runs = plan(base, args.variant or list(DEFAULT_VARIANTS), seeds, args.match_params)
        run_all(runs, args.out, parallel=args.parallel)
        print(table(summarize(args.out)["rows"]))
    except InputError as exc:
        raise SystemExit(f"error: {exc.one_line()}") from None


if __name__ == "__main__":
    main()
