"""Experiment (2026-12-07): do the picker's neighbour moments get better when the officer's last line counts too?

The picker compares a candidate with what the outlines answered after the 20 user lines most like the
traveller's. "Vengo de vacaciones" is answered "¿Lleva algo que declarar?" in one outline and "Bienvenido a
España" in another, depending on what the officer asked before; the user line alone cannot tell them apart.
`MomentsConfig.context_weight` ranks the neighbours by cos(user line) + weight * cos(the officer's line before
it). For every read turn of a row picked by moments under docs/runs/, this prints the AUC of the picker's score
against the blind reading, per weight, overall and by group of rows:

    python context_auc.py ../customs-2026-12-05-offtopic/outlines-es11.jsonl

Measured with the 200 es11 outlines on the 1620 such turns (1245 read in role): weight 0 (the shipped picker)
0.720, 0.25 0.748, 0.5 0.773, 1.0 0.765, 2.0 0.764; with 0.5 on the customs-es11 rows 0.655 -> 0.726, the
customs-es13 rows 0.749 -> 0.764, all other rows 0.746 -> 0.806. With the 200 es13 outlines
(../customs-2026-12-07-kinds): 0.703, 0.749, 0.760, 0.770, 0.777. Those were measured before the rows of
this folder were read; with them (1980 turns, 1483 in role) the es11 outlines give 0.716, 0.739, 0.752, 0.740,
0.734.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "customs-2026-12-04-moments"))

from picker_auc import CachedEmbedder, auc, read_turns

from lorebook.chat import moments
from lorebook.notebook.embedder import Embedder

GROUPS = {"customs-es11 rows": lambda row: "es11" in row, "customs-es13 rows": lambda row: "es13" in row,
          "other rows": lambda row: "es11" not in row and "es13" not in row}


def main(outlines: str) -> None:
    turns = [(turn, flag) for turn, flag in read_turns() if "by moments" in turn.row]
    embedder = CachedEmbedder(Embedder().embed)
    print(f"{len(turns)} read turns of rows picked by moments, {sum(flag for _, flag in turns)} in role")
    for weight in (0.0, 0.25, 0.5, 1.0, 2.0):
        picker = moments.MomentPicker(moments.MomentsConfig(file=outlines, context_weight=weight), embedder)
        scores = [picker.scores(turn.before, [turn.reply])[0] for turn, _ in turns]
        parts = []
        for name, belongs in GROUPS.items():
            group = [i for i, (turn, _) in enumerate(turns) if belongs(turn.row)]
            parts.append(f"{name} {auc([scores[i] for i in group], [turns[i][1] for i in group]):.3f}")
        print(f"context weight {weight}: AUC {auc(scores, [flag for _, flag in turns]):.3f} ("
              + ", ".join(parts) + ")")


if __name__ == "__main__":
    main(sys.argv[1])
