"""Read a merged evaluation conversation by conversation, blind, then pipe the answers to `lorebook eval label`.

`python by_conversation.py PAIR.json SEED show` prints every conversation of every row, shuffled by SEED and
numbered C1, C2, … with no row name, each officer reply numbered by its turn. The reader writes one line per
conversation, "C3 yynyyyynny" (a y or n per officer turn, in turn order), into a file;
`python by_conversation.py PAIR.json SEED answers FILE` prints those answers in the order `lorebook eval label
PAIR.json --seed SEED` asks them, to pipe into it (the labels are written by that command, with the rule)."""

import random
import sys
from pathlib import Path

from lorebook.synth.labels import agent_turns, read_evaluation, to_label

path, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
turns = agent_turns(read_evaluation(path))
chats = sorted({(t.row, t.conversation) for t in turns})
random.Random(f"by-conversation:{seed}").shuffle(chats)
if mode == "show":
    for number, (row, index) in enumerate(chats, 1):
        mine = [t for t in turns if (t.row, t.conversation) == (row, index)]
        print(f"== C{number}")
        for turn in mine:
            print(f"   T: {turn.before[-1]['content'] if turn.before else ''}")
            print(f"{turn.turn:>2} O: {turn.reply}")
else:
    read = {}
    for line in Path(sys.argv[4]).read_text(encoding="utf-8").splitlines():
        if line.strip():
            name, answers = line.split()
            row, index = chats[int(name[1:]) - 1]
            for number, answer in enumerate(answers, 1):
                read[(row, index, number)] = answer
    for turn in to_label(turns, {}, seed):
        print(read[(turn.row, turn.conversation, turn.turn)])
