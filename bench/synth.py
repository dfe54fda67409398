"""Conversations per minute for `lorebook synth`, two ways of generating side by side, same engine and seeds, one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/synth.py --model gemma3-270m -n 8 --turns 4
    HF_HUB_OFFLINE=1 .venv/bin/python bench/synth.py --compare answers -n 8 --turns 12 --followups 3

`--compare batching` (the default): `batched` sends every conversation of a turn through `Engine.chat_batch`
(one padded generate call), `one at a time` sends each through `Engine.chat` (the engine's own streaming
decode loop). `--compare answers`: the same teacher plays the traveller (`generated`) or the traveller
answers the officer's questions from the scenario's `traveller.answers` (`--scripted-answers`), so only its
other turns cost a generation; a third row adds `--scripted-agent` (the officer says the scenario's lines too:
whole outlines, no teacher call where every turn has a line). The teacher calls per side are counted, since
that is where the time goes.
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


class CountingTeacher(LocalTeacher):
    """A local teacher that counts the conversations it writes a turn for, per side."""

    def __init__(self, engine, batched: bool):
        super().__init__(engine, batched)
        self.turns = {"traveller": 0, "agent": 0}

    def generate(self, message_lists, options, key="", ids=None):
        role = "traveller" if "-traveller" in key else "agent"  # round keys: c{index}-t{turn}-{role}[-retry{n}]
        self.turns[role] += len(message_lists)
        return super().generate(message_lists, options, key=key, ids=ids)


def measure(scenario, engine, args, batched: bool, scripted: bool = False, agent: bool = False) -> dict:
    teacher = CountingTeacher(engine, batched)
    with tempfile.TemporaryDirectory() as folder:
        config = SynthConfig(n=args.n, turns=args.turns, batch_size=args.n if batched else 1, teacher="bench",
                             followups=args.followups, scripted_answers=scripted, scripted_agent=agent,
                             seed=args.seed)
        started = time.perf_counter()
        report = run_synth(scenario, config, Path(folder) / "convs.jsonl", teacher=teacher, progress=False)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "per_minute": 60 * args.n / seconds, "kept": report["kept"],
            "traveller calls": teacher.turns["traveller"], "agent calls": teacher.turns["agent"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", default="batching", choices=("batching", "answers"))
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--engine", default="torch", choices=("torch", "llamacpp"))
    parser.add_argument("--scenario", default=str(EXAMPLE))
    parser.add_argument("-n", type=int, default=8, help="conversations per side")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--followups", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    engine = load_engine(args.model, engine=args.engine, threads=args.threads)
    if args.compare == "batching":
        rows = {"one at a time": measure(scenario, engine, args, False),
                "batched": measure(scenario, engine, args, True)}
    else:
        batched = args.engine == "torch"
        rows = {"generated": measure(scenario, engine, args, batched),
                "--scripted-answers": measure(scenario, engine, args, batched, scripted=True),
                "+ --scripted-agent": measure(scenario, engine, args, batched, scripted=True, agent=True)}
    print(f"model {args.model} ({args.engine}), {args.n} conversations, --turns {args.turns} "
          f"--followups {args.followups}, {args.threads} thread(s)")
    print(f"{args.compare:<20}{'seconds':>9}{'conv/min':>10}{'kept':>6}{'traveller calls':>17}{'agent calls':>13}")
    for name, row in rows.items():
        print(f"{name:<20}{row['seconds']:>9.1f}{row['per_minute']:>10.2f}{row['kept']:>6}"
              f"{row['traveller calls']:>17}{row['agent calls']:>13}")
    (first, base), *others = rows.items()
    for name, other in others:
        print(f"{name} / {first}: {other['per_minute'] / base['per_minute']:.2f}x")


if __name__ == "__main__":
    main()
