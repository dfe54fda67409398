"""Notebook scale: importing N notes, and search latency, vs a naive store that scans SQLite per query.

    .venv/bin/python bench/notebook.py [--notes 100000] [--queries 200]

Notes are generated sentences ("Fact 123: the river Xyz flows through the town of Abc in 1870.") so
every one is distinct; they go through the real import path (embedding, SQLite, progress bar) into a
temporary data home. Search latency covers embedding the query plus the scope search; the naive
baseline reads every embedding from SQLite for each query, as a store without an in-memory index would.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

import numpy as np

os.environ["LOREBOOK_HOME"] = tempfile.mkdtemp(prefix="notebook-bench-")

from lorebook.notebook.embedder import DIMENSIONS, get_embedder
from lorebook.notebook.store import Notebook

WORDS = ["river", "town", "mountain", "lake", "bridge", "castle", "harbour", "valley", "forest", "island", "tower", "market", "garden"]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    name = lambda: "".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)).title()
    return [f"Fact {i}: the {rng.choice(WORDS)} {name()} lies near the {rng.choice(WORDS)} of {name()} "
            f"and was first recorded in {rng.randint(1200, 2020)}." for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(f"{args.notes:,} notes, {args.queries} queries, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    texts = sentences(args.notes)
    embedder = get_embedder()
    notebook = Notebook.create("bench")
    started = time.perf_counter()
    notebook.add(texts, progress=True)
    seconds = time.perf_counter() - started
    print(f"import: {seconds:.1f} s ({args.notes / seconds:.0f} notes/s)")

    queries = [f"Where does the {t.split()[3]} {t.split()[4]} lie?" for t in random.Random(1).sample(texts, args.queries)]
    vectors = embedder.embed(queries)
    notebook.search_vectors(vectors[:1], 3)  # the matrix is built once per process
    embed_ms, index_ms, naive_ms = [], [], []
    for query, vector in zip(queries, vectors):
        started = time.perf_counter()
        embedder.embed([query])
        embed_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        notebook.search_vectors(vector[None], 3)
        index_ms.append((time.perf_counter() - started) * 1000)
    for vector in vectors[:20]:  # the naive scan is slow; 20 queries are enough for its median
        started = time.perf_counter()
        rows = notebook.db.execute("SELECT id, embedding FROM notes WHERE notebook_id = ?", (notebook.id,)).fetchall()
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, DIMENSIONS)
        int(np.argmax(matrix @ vector))
        naive_ms.append((time.perf_counter() - started) * 1000)
    print(f"\n{'search (ms per query)':34} {'p50':>8} {'p95':>8}")
    print(f"{'embed the query (MiniLM)':34} {percentile(embed_ms, .5):8.2f} {percentile(embed_ms, .95):8.2f}")
    print(f"{'lorebook in-memory matrix, top-3':34} {percentile(index_ms, .5):8.2f} {percentile(index_ms, .95):8.2f}")
    print(f"{'naive: scan SQLite per query':34} {percentile(naive_ms, .5):8.2f} {percentile(naive_ms, .95):8.2f}")
    total = [e + i for e, i in zip(embed_ms, index_ms)]
    print(f"{'embed + search, end to end':34} {percentile(total, .5):8.2f} {percentile(total, .95):8.2f}")
    print(f"\nindex vs naive scan: {statistics.median(naive_ms) / statistics.median(index_ms):.0f}x faster")


if __name__ == "__main__":
    main()
