"""Experiment (2026-12-05): does a word the outlines never say mark a reply read out of role?

For every read turn of a tuned Gemma row picked by moments under docs/runs/ before the penalty existed (not the
-words rows), prints how often the reply has a word that no reply of the outlines uses, among the turns read in
role and out of role, and the AUC of the picker's score with and without the unknown-word penalty:

    python words_auc.py outlines.jsonl

Measured with the 150 outlines of examples/customs-checkpoint-es.yaml on the 660 such turns: an unknown word in
2.9% of the in-role replies and 29.2% of the out-of-role ones; AUC 0.717 without the penalty, 0.768 with 0.5.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "customs-2026-12-04-moments"))

from picker_auc import CachedEmbedder, auc, read_turns

from lorebook.chat import moments
from lorebook.notebook.embedder import Embedder


def main(outlines: str) -> None:
    turns = [(turn, flag) for turn, flag in read_turns() if "by moments" in turn.row and "-words" not in turn.row]
    labels = np.array([flag for _, flag in turns])
    embedder = CachedEmbedder(Embedder().embed)
    scores = {}
    for penalty in (0.0, 0.5):
        picker = moments.MomentPicker(moments.MomentsConfig(file=outlines, unknown_word_penalty=penalty), embedder)
        scores[penalty] = np.array([picker.scores(turn.before, [turn.reply])[0] for turn, _ in turns])
    unknown = np.array([any(w not in picker.vocabulary for w in moments.words(turn.reply)) for turn, _ in turns])
    print(f"{len(turns)} read turns; an unknown word in {unknown[labels].mean():.1%} of those in role, "
          f"{unknown[~labels].mean():.1%} of those out of role")
    print(f"AUC without the penalty {auc(scores[0.0], labels):.3f}, with 0.5 {auc(scores[0.5], labels):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
