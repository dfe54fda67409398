"""Conversations per minute with the teacher in bfloat16 vs float32 vs llama.cpp, same conversations, one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/synth_precision.py --model gemma3-270m -n 16 --turns 4 --threads 2

Both runs generate the same scenario's conversations (same seeds, batched, same filters) with the same
teacher loaded twice: once with float32 weights (what `lorebook synth --precision fp32` does), once in
bfloat16 (`--precision bf16`, the default where the CPU has AVX512-BF16 or AMX). The texts differ a
little (different rounding), so the kept counts are shown beside the speed. `--rows fp32,bf16,llamacpp` adds
llama.cpp (`--engine llamacpp`: the GGUF as quantized, one conversation at a time), the choice on CPUs
whose bfloat16 is emulated.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lorebook.models.engine import load_engine
from lorebook.models.torch_engine import native_bf16
from lorebook.synth.runner import SynthConfig, run_synth
from lorebook.synth.scenario import load_scenario
from lorebook.synth.teachers import LocalTeacher

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"


ROWS = {"fp32": ("float32", {"quantize": "none"}), "bf16": ("bfloat16", {"quantize": "bf16"}),
        "llamacpp": ("llama.cpp", {"engine": "llamacpp"})}


def measure(scenario, model: str, load_options: dict, n: int, turns: int, threads: int) -> dict:
    engine = load_engine(model, threads=threads, **load_options)
    batched = "engine" not in load_options
    with tempfile.TemporaryDirectory() as folder:
        config = SynthConfig(n=n, turns=turns, batch_size=n if batched else 1, teacher="bench")
        started = time.perf_counter()
        report = run_synth(scenario, config, Path(folder) / "convs.jsonl", teacher=LocalTeacher(engine, batched),
                           progress=False)
        seconds = time.perf_counter() - started
    del engine
    gc.collect()
    return {"seconds": seconds, "per_minute": 60 * n / seconds, "kept": report["kept"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m", help="registry name or a .gguf path")
    parser.add_argument("--scenario", default=str(EXAMPLE))
    parser.add_argument("-n", type=int, default=16, help="conversations, all in one batch")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rows", default="fp32,bf16", help="comma-separated: fp32, bf16, llamacpp (fp32 first)")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    chosen = [name.strip() for name in args.rows.split(",")]
    if unknown := [name for name in chosen if name not in ROWS]:
        parser.error(f"unknown rows {unknown}: use {', '.join(ROWS)}")
    rows = {ROWS[name][0]: measure(scenario, args.model, ROWS[name][1], args.n, args.turns, args.threads)
            for name in chosen}
    print(f"teacher {args.model}, {args.n} conversations x {args.turns} turns (torch: one batch), {args.threads} "
          f"thread(s), native bf16: {native_bf16()}")
    print(f"{'teacher':<10}{'seconds':>9}{'conv/min':>10}{'kept':>6}")
    for name, row in rows.items():
        print(f"{name:<10}{row['seconds']:>9.1f}{row['per_minute']:>10.2f}{row['kept']:>6}")
    first = next(iter(rows))
    for name, row in list(rows.items())[1:]:
        print(f"{name} / {first}: {row['per_minute'] / rows[first]['per_minute']:.2f}x")


if __name__ == "__main__":
    main()
