"""Experiment (2026-12-05): should a nearer moment count for more when the picker scores a candidate?

The picker scores a candidate by its best similarity to the replies of the `neighbours` moments whose user line
is nearest the traveller's; a far neighbour counts as much as the nearest. Here each neighbour's match gets
`weight * (its user-line similarity - the nearest's)` added, and for every read turn of a row picked by moments
under docs/runs/ the AUC of the score (in role vs out of role) is printed per number of neighbours and weight:

    python weighted_auc.py outlines.jsonl [more outlines.jsonl ...]

Measured on the 1140 such turns (219 out of role) with the off-topic outlines: 0.745 at 20 neighbours and
weight 0 (the picker as shipped), 0.769 at weight 2; with the variety outlines 0.750 -> 0.770. Not shipped.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "customs-2026-12-04-moments"))

from picker_auc import CachedEmbedder, auc, read_turns

from lorebook.chat import moments
from lorebook.notebook.embedder import Embedder


def weighted_score(picker, embedder, turn, weight: float, neighbours: int) -> float:
    """The shipped score of the turn's reply (repeat and unknown-word penalties at their defaults), with nearer
    neighbours favoured by `weight`."""
    heard = next((m["content"] for m in reversed(turn.before) if m["role"] == "user"), "")
    said = [m["content"] for m in turn.before if m["role"] == "assistant"]
    vectors = embedder.embed([heard, turn.reply, *said])
    heard_vector, reply_vector, said_vectors = vectors[0], vectors[1], vectors[2:]
    closeness = picker.user_vectors @ heard_vector
    nearest = np.argsort(-closeness)[:neighbours]
    fit = (picker.reply_vectors[nearest] @ reply_vector + weight * (closeness[nearest] - closeness[nearest[0]])).max()
    if len(said_vectors):
        fit -= picker.config.repeat_penalty * max((said_vectors @ reply_vector).max() - moments.REPEAT_FLOOR, 0.0)
    unknown = sum(word not in picker.vocabulary for word in moments.words(turn.reply))
    return fit - picker.config.unknown_word_penalty * unknown


def main(paths: list[str]) -> None:
    turns = [(turn, flag) for turn, flag in read_turns() if "by moments" in turn.row]
    labels = np.array([flag for _, flag in turns])
    embedder = CachedEmbedder(Embedder().embed)
    for outlines in paths:
        picker = moments.MomentPicker(moments.MomentsConfig(file=outlines), embedder)
        print(f"{outlines}: {len(turns)} read turns, {(~labels).sum()} out of role")
        for neighbours in (5, 10, 20, 40):
            cells = []
            for weight in (0.0, 0.5, 1.0, 2.0):
                scores = np.array([weighted_score(picker, embedder, turn, weight, neighbours) for turn, _ in turns])
                cells.append(f"weight {weight}: {auc(scores, labels):.3f}")
            print(f"  {neighbours} neighbours  " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
