"""Conversations per minute: batched local generation vs one conversation at a time, same engine, one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/synth.py --model gemma3-270m -n 8 --turns 4

Both sides generate the same scenario's conversations (same seeds) with one loaded engine: `batched`
sends every conversation of a turn through `Engine.chat_batch` (one padded generate call), `one at a
time` sends each through `Engine.chat` (the engine's own streaming decode loop).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lorebook.models.engine import load_engine
from lorebook.synth.runner import SynthConfig, run_synth
from lorebook.synth.scenario import load_scenario
from lorebook.synth.teachers import LocalTeacher

EXAMPLE = Path(__file__).parent.parent / "examples" / "customs-checkpoint-es.yaml"


def measure(scenario, engine, batched: bool, n: int, turns: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config = SynthConfig(n=n, turns=turns, batch_size=n if batched else 1, teacher="bench")
        started = time.perf_counter()
        report = run_synth(scenario, config, Path(folder) / "convs.jsonl", teacher=LocalTeacher(engine, batched),
                           progress=False)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "per_minute": 60 * n / seconds, "kept": report["kept"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--scenario", default=str(EXAMPLE))
    parser.add_argument("-n", type=int, default=8, help="conversations per side")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    engine = load_engine(args.model, threads=args.threads)
    single = measure(scenario, engine, False, args.n, args.turns)
    batched = measure(scenario, engine, True, args.n, args.turns)
    print(f"model {args.model}, {args.n} conversations x {args.turns} turns, {args.threads} thread(s)")
    print(f"{'mode':<14}{'seconds':>9}{'conv/min':>10}{'kept':>6}")
    for name, row in (("one at a time", single), ("batched", batched)):
        print(f"{name:<14}{row['seconds']:>9.1f}{row['per_minute']:>10.2f}{row['kept']:>6}")
    print(f"batched / one at a time: {batched['per_minute'] / single['per_minute']:.2f}x")


if __name__ == "__main__":
    main()
