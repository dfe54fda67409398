"""`python show.py MERGED.json SEED [CONTEXT]`: the turns `lorebook eval label MERGED.json --seed SEED` has still to
ask, in its blind order and numbered, each with the last CONTEXT lines before it (3 unless given), so that a batch
of them can be read at once and the y/n answers piped into `eval label` in the same order."""

import sys
from pathlib import Path

from lorebook.synth.labels import agent_turns, read_evaluation, read_labels, to_label

path, seed = Path(sys.argv[1]), int(sys.argv[2])
context = int(sys.argv[3]) if len(sys.argv) > 3 else 3
turns = agent_turns(read_evaluation(path))
labels = read_labels(path.with_name(f"{path.stem}.labels.jsonl"))
for number, turn in enumerate(to_label(turns, labels, seed), 1):
    print(f"[{number}] turn {turn.turn}")
    for message in turn.before[-context:]:
        speaker = "A" if message["role"] == "assistant" else "T"
        print(f"   {speaker}: {' '.join(message['content'].split())}")
    print(f"   >> {' '.join(turn.reply.split())}")
