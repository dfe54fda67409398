"""python show.py MERGED.json SEED [CONTEXT]: the pending turns in `eval label`'s blind order, numbered."""
import sys
from pathlib import Path
from lorebook.synth.labels import agent_turns, read_evaluation, read_labels, to_label
path = Path(sys.argv[1]); seed = int(sys.argv[2]); context = int(sys.argv[3]) if len(sys.argv) > 3 else 3
turns = agent_turns(read_evaluation(path))
labels = read_labels(path.with_name(f"{path.stem}.labels.jsonl"))
for n, turn in enumerate(to_label(turns, labels, seed), 1):
    print(f"[{n}] turn {turn.turn}")
    for m in turn.before[-context:]:
        print(f"   {'A' if m['role']=='assistant' else 'T'}: {' '.join(m['content'].split())}")
    print(f"   >> {' '.join(turn.reply.split())}")
