"""Benchmark: probes/s of batched evaluation (Engine.chat_batch) vs one-at-a-time generation.

Same model, same probes (knowledge-pack-style questions plus the shipped locality set), greedy, in one
run; prints both rates, the ratio, and whether the replies agree. Usage:
    python bench/eval.py [--model smollm2-135m] [--probes 48] [--batch-size 16] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lorebook.evaluate.normalize import match
from lorebook.evaluate.probes import locality_probes
from lorebook.models.engine import GenerationOptions, load_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--probes", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    engine = load_engine(args.model)
    probes = locality_probes(args.probes)
    options = GenerationOptions(temperature=0, repetition_penalty=1.0, max_tokens=args.max_tokens)
    engine.chat_batch([probes[0].messages], options)  # warm-up

    started = time.perf_counter()
    single = [engine.chat(p.messages, options).text for p in probes]
    single_s = time.perf_counter() - started

    started = time.perf_counter()
    ordered = sorted(probes, key=lambda p: -len(engine.render(p.messages)))  # as the runner does
    batched: dict[str, str] = {}
    for start in range(0, len(ordered), args.batch_size):
        chunk = ordered[start : start + args.batch_size]
        batched.update(zip((p.key for p in chunk), engine.chat_batch([p.messages for p in chunk], options)))
    batched_s = time.perf_counter() - started

    acc_single = sum(match(r, p.answers()) for p, r in zip(probes, single)) / len(probes)
    acc_batched = sum(match(batched[p.key], p.answers()) for p in probes) / len(probes)
    same = sum(batched[p.key].strip() == r.strip() for p, r in zip(probes, single)) / len(probes)
    print(f"model {args.model}, {len(probes)} probes, max_tokens {args.max_tokens}, {os.cpu_count()} CPU threads")
    print(f"one at a time (engine.chat):         {len(probes) / single_s:6.2f} probes/s  ({single_s:.1f} s)  accuracy {acc_single:.1%}")
    print(f"batched (chat_batch, batch {args.batch_size:>3}):      {len(probes) / batched_s:6.2f} probes/s  ({batched_s:.1f} s)  accuracy {acc_batched:.1%}")
    print(f"ratio batched / one-at-a-time: {single_s / batched_s:.2f}x; identical replies: {same:.0%}")


if __name__ == "__main__":
    main()
