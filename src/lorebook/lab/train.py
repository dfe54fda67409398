"""Training loop: AdamW with warm-up + cosine decay, periodic evaluation, checkpoints that resume exactly.

A run lives in one directory: `ckpt.pt` (config, weights, optimizer, step, batch-generator and RNG states,
history), `config.json` (the LabConfig, readable) and, when finished, `metrics.json` (final evaluation,
parameter counts, throughput, history). Checkpoints are written atomically at every evaluation and when
the run is interrupted, so Ctrl-C loses at most the steps since the last one — and none with `--resume`.
The same code runs on CPU and CUDA; on CUDA the forward pass uses bf16 autocast.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lorebook.errors import InputError
from lorebook.lab.config import LabConfig
from lorebook.lab.model import GPT, optimizer_groups, parameter_counts
from lorebook.lab.tasks import make_task

# Fields that define the model and data; a resumed run must keep them.
ARCHITECTURE_FIELDS = (
    "task",
    "attention",
    "metric_form",
    "metric_rank",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "sort_vocab",
    "sort_train_lengths",
    "seed",
    "batch_size",
)
_VAL_SEED = 1234


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda was asked for but no CUDA GPU is available", "pass --device cpu")
    if name not in ("cpu", "cuda"):
        raise InputError(f"unknown device '{name}'", "pass --device auto, cpu or cuda")
    return torch.device(name)


def default_run_dir(config: LabConfig) -> Path:
    from lorebook import paths  # lazy: the lab also runs where platformdirs is not installed

    return paths.subdir("lab") / "runs" / f"{config.task}-{config.attention}-s{config.seed}"


def lr_at(step: int, config: LabConfig, train_seconds: float = 0.0) -> float:
    """Linear warm-up to lr, then cosine decay to lr·min_lr_ratio at max_iters or max_minutes.

    With a time budget the decay follows whichever budget runs out first, so a run cut by the clock
    still ends at the low learning rate that settles it, on a slow machine as on a fast one.
    """
    if step < config.warmup_iters:
        return config.lr * (step + 1) / config.warmup_iters
    span = max(1, config.max_iters - config.warmup_iters)
    progress = min(1.0, (step - config.warmup_iters) / span)
    if config.max_minutes > 0:
        progress = max(progress, min(1.0, train_seconds / (60 * config.max_minutes)))
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: GPT, task, config: LabConfig, device: torch.device, final: bool = False) -> dict:
    """Validation loss on fixed batches (+ sort accuracy; + whole-split loss for shakespeare when final)."""
    model.eval()
    gen = torch.Generator().manual_seed(_VAL_SEED)
    total = 0.0
    for _ in range(config.eval_iters):
        x_bt, y_bt = task.get_batch("val", config.batch_size, gen)
        with autocast(device):
            total += model(x_bt.to(device), y_bt.to(device))[1].item()
    result = {"val_loss": total / config.eval_iters}
    with autocast(device):
        if config.task == "sort":
            result.update(task.accuracy(model, device))
        elif final:
            result["val_loss_full"] = task.full_val_loss(model, device)
    model.train()
    return result


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(run_dir: Path) -> dict:
    path = Path(run_dir) / "ckpt.pt"
    if not path.is_file():
        raise InputError(f"no checkpoint in {run_dir}", "train first: lorebook lab train --out DIR")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file (truncated, foreign) gets the same advice
        raise InputError(
            f"checkpoint {path} is unreadable ({type(exc).__name__})", "delete it and train again"
        ) from None


def train(
    config: LabConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Train (or resume) one run in run_dir; returns the metrics written to run_dir/metrics.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "ckpt.pt"
    state = None
    if resume:
        state = load_checkpoint(run_dir)
        saved = LabConfig.from_dict(state["config"])
        changed = [f for f in ARCHITECTURE_FIELDS if getattr(saved, f) != getattr(config, f)]
        if changed:
            raise InputError(
                f"cannot resume with different {', '.join(changed)}", "train into a new --out directory"
            )
    elif ckpt_path.exists():
        raise InputError(
            f"{run_dir} already holds a run", "pass --resume to continue it or choose another --out"
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(config.seed)
    task = make_task(config, state["meta"] if state else None)
    model = GPT(config, task.vocab_size).to(device)
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(0.9, config.beta2),
        fused=device.type == "cuda",
    )
    batch_gen = torch.Generator().manual_seed(config.seed)
    step, train_seconds, history = 0, 0.0, []
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        batch_gen.set_state(state["batch_generator"])
        torch.set_rng_state(state["torch_rng"])
        step, train_seconds, history = state["step"], state["train_seconds"], state["history"]
        log(f"resuming {run_dir} at step {step}")
    params = parameter_counts(model)
    config.save(run_dir / "config.json")
    log(
        f"{config.task} / {config.attention}: {params['total']:,} parameters ({params['attention']:,} in attention)"
        f" on {_device_name(device)}"
    )
    wall_start = time.perf_counter() - (state or {}).get("wall_seconds", 0.0)

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "config": config.to_dict(),
                "meta": task.meta,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "train_seconds": train_seconds,
                "history": history,
                "batch_generator": batch_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "params": params,
                "wall_seconds": time.perf_counter() - wall_start,
            },
        )

    tokens_per_step = config.batch_size * config.block_size
    stop_reason = "max_iters"
    bar = _progress_bar(progress, step, config.max_iters, run_dir.name)
    recent: list[float] = []
    model.train()
    try:
        while step < config.max_iters:
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config, train_seconds)
            x_bt, y_bt = task.get_batch("train", config.batch_size, batch_gen)
            with autocast(device):
                _, loss = model(x_bt.to(device, non_blocking=True), y_bt.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            if step % 10 == 0 or step == config.max_iters:
                recent.append(loss.item())  # .item() waits for the GPU, so the timing below is honest
            train_seconds += time.perf_counter() - started
            bar.update(1)
            out_of_time = config.max_minutes > 0 and train_seconds >= 60 * config.max_minutes
            if step % config.eval_interval == 0 or step == config.max_iters or out_of_time:
                entry = {
                    "step": step,
                    "train_seconds": round(train_seconds, 3),
                    "tokens": step * tokens_per_step,
                    "train_loss": sum(recent) / len(recent) if recent else None,
                }
                entry.update(evaluate(model, task, config, device))
                entry["wall_seconds"] = round(time.perf_counter() - wall_start, 3)  # includes evaluations
                history.append(entry)
                recent = []
                bar.set_postfix(val_loss=f"{entry['val_loss']:.3f}")
                checkpoint()
                if out_of_time:
                    stop_reason = "max_minutes"
                    break
                if config.stop_at_accuracy and entry.get("acc_seen", 0.0) >= config.stop_at_accuracy:
                    stop_reason = "stop_at_accuracy"
                    break
    except KeyboardInterrupt:
        checkpoint()
        bar.close()
        log(f"interrupted at step {step}; checkpoint saved, continue with --resume")
        raise
    bar.close()
    final = evaluate(model, task, config, device, final=True)
    checkpoint()
    metrics = {
        "config": config.to_dict(),
        "params": params,
        "device": _device_name(device),
        "steps": step,
        "stop_reason": stop_reason,
        "train_seconds": round(train_seconds, 3),
        "wall_seconds": round(time.perf_counter() - wall_start, 3),
        "tokens_per_s": round(step * tokens_per_step / max(train_seconds, 1e-9), 1),
        "final": final,
        "history": history,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _progress_bar(enabled: bool, start: int, total: int, name: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=name, disable=not enabled, dynamic_ncols=True, leave=False)


def main(argv: list[str] | None = None) -> None:
    """`python -m lorebook.lab.train --out DIR [--config cfg.json] [--set field=value ...] [--resume]`: one run
    without the typer CLI (used by `compare` for parallel workers and on bare GPU machines)."""
    import argparse

    from lorebook.lab.config import parse_overrides

    parser = argparse.ArgumentParser(prog="python -m lorebook.lab.train", description=main.__doc__)
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--config", type=Path, help="LabConfig JSON to start from")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a field")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    base = json.loads(args.config.read_text()) if args.config else {}
    if args.resume and not args.config:
        base = load_checkpoint(args.out)["config"]
    try:
        config = LabConfig.from_dict({**base, **parse_overrides(args.set)})
        metrics = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    except InputError as exc:
        raise SystemExit(f"error: {exc.one_line()}") from None
    print(json.dumps({k: metrics[k] for k in ("params", "steps", "train_seconds", "tokens_per_s", "final")}))


if __name__ == "__main__":
    main()
