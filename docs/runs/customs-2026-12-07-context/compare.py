"""`python compare.py PAIR.json`: the turns where the two rows of a merged reading differ (same conversation and
turn, another reply), each with its label, and the count per row over those turns alone."""

import sys
from pathlib import Path

from lorebook.synth.labels import agent_turns, read_evaluation, read_labels

path = Path(sys.argv[1])
labels = read_labels(path.with_name(f"{path.stem}.labels.jsonl"))
turns = agent_turns(read_evaluation(path))
rows = list(dict.fromkeys(turn.row for turn in turns))
by_place = {}
for turn in turns:
    by_place.setdefault((turn.conversation, turn.turn), {})[turn.row] = turn
counts = dict.fromkeys(rows, 0)
differing = 0
for (conversation, number), pair in sorted(by_place.items()):
    first, second = (pair[row] for row in rows)
    if first.reply == second.reply and first.before == second.before:
        continue
    differing += 1
    marks = []
    for turn in (first, second):
        flag = labels[turn.key]["in_role"] if turn.key in labels else None
        counts[turn.row] += bool(flag)
        marks.append(f"{'y' if flag else 'n' if flag is not None else '?'} {' '.join(turn.reply.split())[:70]}")
    print(f"conv {conversation} turn {number}: " + "  |  ".join(marks))
print(f"{differing} turns differ (reply or the conversation before it); in role there: "
      + ", ".join(f"{row} {k}" for row, k in counts.items()))
