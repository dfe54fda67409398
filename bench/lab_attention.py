"""Benchmark: training-step throughput of the lab's attention variants, side by side, dot as the baseline.

    PYTHONPATH=src python bench/lab_attention.py [--device cuda] [--preset shakespeare-gpu] [--steps 30]

Every variant is the same GPT except its attention; each is timed over the same random batches (forward,
backward, AdamW step) after a warm-up, and the table gives parameters, ms/step, tokens/s and the ratio to
dot's tokens/s. Output: a markdown table on stdout (and --json FILE).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lorebook.lab.config import PRESETS, LabConfig
from lorebook.lab.model import GPT, parameter_counts
from lorebook.lab.train import autocast, resolve_device

VARIANTS = {
    "dot": {"attention": "dot"},
    "metric-full": {"attention": "metric", "metric_form": "full"},
    "metric-sym": {"attention": "metric", "metric_form": "symmetric"},
    "metric-lowrank": {"attention": "metric", "metric_form": "lowrank"},
    "metric-shared": {"attention": "metric-shared"},
}


def time_variant(config: LabConfig, vocab: int, steps: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = GPT(config, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x_bt = torch.randint(0, vocab, (config.batch_size, config.block_size), device=device)
    y_bt = torch.randint(0, vocab, (config.batch_size, config.block_size), device=device)

    def step() -> None:
        with autocast(device):
            _, loss = model(x_bt, y_bt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    return {
        "params": parameter_counts(model),
        "ms_per_step": 1000 * seconds,
        "tokens_per_s": config.batch_size * config.block_size / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default="shakespeare-cpu", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    base = LabConfig(**PRESETS[args.preset])
    vocab = 84  # the Shakespeare character vocabulary
    rows = {
        name: time_variant(base.replace(**ov), vocab, args.steps, device) for name, ov in VARIANTS.items()
    }
    dot = rows["dot"]["tokens_per_s"]
    name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"preset {args.preset} on {name}: {base.n_layer} layers, {base.n_embd} wide, "
        f"block {base.block_size}, batch {base.batch_size}"
    )
    print("| variant | params | attention params | ms/step | tokens/s | × dot |")
    print("|---|---|---|---|---|---|")
    for variant, r in rows.items():
        print(
            f"| {variant} | {r['params']['total']:,} | {r['params']['attention']:,} | {r['ms_per_step']:.1f} "
            f"| {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / dot:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "device": name, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
