"""Generation speed: lorebook's torch engine vs plain `transformers.generate` vs llama.cpp, one run.

Prints load time (cold = GGUF conversion, warm = from the safetensors cache), time to first token on a
~100-token prompt, and decode tokens/s on the same prompts, with ratios. Greedy decoding everywhere.

    .venv/bin/python bench/generate.py [--cold] [--rounds 2] [--max-tokens 128] [--questions 70]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from lorebook.models import GenerationOptions, load_engine, resolve_model
from lorebook.models.loader import ensure_cached, load_model, quiet_transformers

PROMPTS = [
    "Write a detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how a bicycle works, covering the frame, wheels, gears and brakes.",
    "Describe the water cycle in detail for a school student.",
]
LONG_PROMPT = (
    "You are reviewing a travel diary. The traveller writes: we left the small harbour town at dawn, "
    "crossed two rivers by ferry, walked through vineyards and olive groves, and reached the mountain "
    "village by evening, where an old baker sold us bread and told us stories about the war and the "
    "long winters. The next day we climbed to the monastery and watched the clouds below us. "
    "Summarize the diary in one sentence."
)


def timed_stream(engine, messages, options):
    """(ttft seconds, decode tokens/s, tokens) for one streamed reply."""
    started = time.perf_counter()
    first = None
    for _ in engine.stream(messages, options):
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    tokens = engine.last.completion_tokens
    decode = (tokens - 1) / max(total - (first or total), 1e-9)
    return first or total, decode, tokens


def accuracy(engine, questions) -> tuple[int, list[str]]:
    """Greedy short answers to general-knowledge questions: (correct count, replies)."""
    from lorebook.evaluate.normalize import match

    options = GenerationOptions(temperature=0, max_tokens=24, repetition_penalty=1.0)
    replies = [engine.chat([{"role": "user", "content": q["question"]}], options).text for q in questions]
    correct = sum(match(r, [q["answer"], *q.get("aliases", [])]) for q, r in zip(questions, replies))
    return correct, replies


def bench_engine(engine, rounds, max_tokens):
    options = GenerationOptions(temperature=0, max_tokens=max_tokens, repetition_penalty=1.0)
    timed_stream(engine, [{"role": "user", "content": "Hi"}], options)  # warm-up
    ttfts, rates = [], []
    for _ in range(rounds):
        ttfts.append(timed_stream(engine, [{"role": "user", "content": LONG_PROMPT}],
                                  options.updated(max_tokens=1))[0])
        for prompt in PROMPTS:
            rates.append(timed_stream(engine, [{"role": "user", "content": prompt}], options)[1])
    return min(ttfts), statistics.median(rates)


def bench_hf_generate(rounds, max_tokens):
    model, tokenizer = load_model(resolve_model(None))
    torch.set_num_threads(os.cpu_count())

    def run(content, new_tokens):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        started = time.perf_counter()
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
        return time.perf_counter() - started, out.shape[1] - ids["input_ids"].shape[1]

    run("Hi", 4)
    ttft = min(run(LONG_PROMPT, 1)[0] for _ in range(rounds))
    rates = []
    for _ in range(rounds):
        for prompt in PROMPTS:
            seconds, tokens = run(prompt, max_tokens)
            rates.append((tokens - 1) / max(seconds - ttft, 1e-9))
    return ttft, statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time the first GGUF conversion (~1 min)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--questions", type=int, default=70, help="accuracy check size (0 skips it)")
    args = parser.parse_args()
    quiet_transformers()
    spec = resolve_model(None)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"model: {spec.name}; prompts: {len(PROMPTS)} x {args.rounds} rounds, {args.max_tokens} new tokens, greedy")
    if args.cold:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["LOREBOOK_MODELS"] = tmp
            started = time.perf_counter()
            ensure_cached(resolve_model(None), progress=False)
            print(f"load cold (GGUF -> safetensors cache): {time.perf_counter() - started:.1f} s")
            del os.environ["LOREBOOK_MODELS"]
    ensure_cached(spec, progress=False)
    started = time.perf_counter()
    load_model(spec)
    print(f"load warm (transformers from cache):    {time.perf_counter() - started:.2f} s")

    from lorebook.evaluate.probes import load_general_knowledge

    questions = load_general_knowledge()[::3][: args.questions]
    results, quality = {}, {}
    for label, kwargs in (("torch engine int8", {"quantize": "int8"}), ("torch engine fp32", {"quantize": "none"})):
        started = time.perf_counter()
        engine = load_engine(None, engine="torch", **kwargs)
        print(f"load warm ({label}, ready to generate): {time.perf_counter() - started:.2f} s")
        results[label] = bench_engine(engine, args.rounds, args.max_tokens)
        if args.questions:
            quality[label] = accuracy(engine, questions)
        del engine
    results["transformers.generate"] = bench_hf_generate(args.rounds, args.max_tokens)
    try:
        engine = load_engine(None, engine="llamacpp")
        results["llama.cpp"] = bench_engine(engine, args.rounds, args.max_tokens)
        if args.questions:
            quality["llama.cpp"] = accuracy(engine, questions)
    except Exception as exc:  # the [fast] extra is optional
        print(f"llama.cpp: skipped ({exc})")

    base = results["transformers.generate"][1]
    print(f"\n{'engine':24} {'TTFT ms (100-tok prompt)':>26} {'decode tok/s':>13} {'x generate':>11} {'x llama.cpp':>12}")
    for label, (ttft, rate) in results.items():
        vs_cpp = f"{rate / results['llama.cpp'][1]:.2f}" if "llama.cpp" in results else "-"
        print(f"{label:24} {ttft * 1000:26.0f} {rate:13.1f} {rate / base:11.2f} {vs_cpp:>12}")
    if quality:
        # Speed is only worth having if the answers stay as good: same questions, greedy, graded alike.
        reference = quality["torch engine fp32"][1]
        print(f"\nquality: {len(questions)} general-knowledge questions, greedy, 24 tokens")
        for label, (correct, replies) in quality.items():
            same = sum(a == b for a, b in zip(reference, replies))
            print(f"{label:24} correct {correct:3d}/{len(questions)}   replies identical to fp32: {same}")


if __name__ == "__main__":
    main()
