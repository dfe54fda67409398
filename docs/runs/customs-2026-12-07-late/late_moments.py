"""`python late_moments.py PAIR.json …`: the turns where the traveller gave an address right after the officer asked
"¿Lleva algo que declarar?" (a late answer), and per row how many replies there were read in role."""

import sys
from pathlib import Path

from lorebook.synth.labels import agent_turns, read_evaluation, read_labels
from lorebook.synth.scenario import load_scenario
from lorebook.synth.topics import begins_any, normalize_words

SCENARIO = Path(__file__).resolve().parents[3] / "examples" / "customs-checkpoint-es.yaml"  # the one evaluated
DECLARATION = next(step.done for step in load_scenario(SCENARIO).agent.agenda if "declar" in step.done)
ADDRESS = ("hotel", "hostal", "casa", "chez", "airbnb", "piso", "apartament", "hilton", "amigos", "hermana",
           "prima", "primo", "tia", "parador", "pension", "residencia", "albergue", "flat", "friends", "aunt")

for name in sys.argv[1:]:
    path = Path(name)
    labels = read_labels(path.with_name(f"{path.stem}.labels.jsonl"))
    counts = {}
    for turn in agent_turns(read_evaluation(path)):
        asked = [m["content"] for m in turn.before if m["role"] == "assistant"]
        heard = normalize_words(turn.before[-1]["content"])
        if asked and begins_any(normalize_words(asked[-1]), DECLARATION) and begins_any(heard, ADDRESS):
            seen, good = counts.get(turn.row, (0, 0))
            counts[turn.row] = (seen + 1, good + bool(labels.get(turn.key, {}).get("in_role")))
    for row, (seen, good) in counts.items():
        print(f"{path.name}: {row}: {good} of {seen} in role after a late address")
