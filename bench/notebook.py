"""Notebook scale: embedding backends, importing N notes, and search latency vs a naive SQLite scan.

    .venv/bin/python bench/notebook.py [--notes 100000] [--queries 200] [--compare 4096] [--precision int8]

First the embedding backends side by side on the same `--compare` notes (PyTorch eager, the ONNX Runtime
export a float32 notebook uses, and its int8 quantization for `--precision int8` notebooks): notes/s,
the ratios, and how far their vectors are from the float32 ones.

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
import sys
import tempfile
import time

import numpy as np

_HOME = sys.argv[sys.argv.index("--home") + 1] if "--home" in sys.argv else tempfile.mkdtemp(prefix="notebook-bench-")
os.environ["LOREBOOK_HOME"] = _HOME  # before lorebook is imported: the data home is read at import

from lorebook.errors import InputError
from lorebook.notebook.embedder import DIMENSIONS, PRECISIONS, Embedder, get_embedder
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


def compare_backends(texts: list[str]) -> None:
    """Embed the same notes with PyTorch, ONNX Runtime and ONNX int8; print throughput, ratios, agreement."""
    results = {}
    for name, embedder in (("pytorch eager", Embedder("torch")), ("onnx float32", get_embedder("float32")),
                           ("onnx int8", get_embedder("int8"))):
        embedder.embed(texts[:64])  # warm-up
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        results[name] = (len(texts) / (time.perf_counter() - started), vectors)
    slow, reference = results["pytorch eager"][0], results["onnx float32"][1]
    for name, (rate, vectors) in results.items():
        cosine = (vectors * reference).sum(1)
        print(f"embed {name:14} {rate:7.0f} notes/s  {rate / slow:5.2f}x pytorch  "
              f"cosine to onnx float32: min {float(cosine.min()):.6f} mean {float(cosine.mean()):.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--compare", type=int, default=4096, help="notes for the backend comparison (0 = skip)")
    parser.add_argument("--home", help="data home of an earlier run (printed at its start): reuse its notes")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS, help="the notebook's embeddings")
    args = parser.parse_args()
    print(f"{args.notes:,} notes, {args.queries} queries, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"data home {_HOME}, precision {args.precision}")
    texts = sentences(args.notes)
    if args.compare:
        compare_backends(sentences(args.compare, seed=7))
    name = f"bench-{args.precision}"
    try:
        notebook = Notebook.open(name)
        print(f"import: skipped, reusing the {notebook.count():,} notes in {_HOME}")
    except InputError:
        notebook = Notebook.create(name, precision=args.precision)
        started = time.perf_counter()
        notebook.add(texts, progress=True)
        seconds = time.perf_counter() - started
        print(f"import: {seconds:.1f} s ({args.notes / seconds:.0f} notes/s)")

    embedder = notebook.embedder
    chosen = random.Random(1).sample(range(len(texts)), args.queries)
    queries = [f"Where does the {texts[i].split()[3]} {texts[i].split()[4]} lie?" for i in chosen]
    vectors = embedder.embed(queries)
    notebook.search_vectors(vectors[:1], 3)  # the matrix is built once per process
    # Retrieval quality beside the speed: the note a query was made from should come first. The names are
    # random syllables, so this is a hard test of spelling (real paraphrases: tests/test_notebook.py).
    first = [hits[0][0] for hits in notebook.search_vectors(vectors, 1)]
    wanted = notebook.db.execute("SELECT id, text FROM notes WHERE notebook_id = ?", (notebook.id,)).fetchall()
    by_text = {text: note_id for note_id, text in wanted}
    right = sum(first[q] == by_text[texts[i]] for q, i in enumerate(chosen))
    print(f"top-1 retrieval of the source note: {right}/{len(chosen)} = {right / len(chosen):.1%}")
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
