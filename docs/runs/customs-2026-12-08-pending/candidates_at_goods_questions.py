"""At the goods questions (turns 7 and 8) of customs-es18's stored held-out conversations: is a rule or the
referral among the six candidates, and which one does the moments picker keep? Run from this folder:
`python candidates_at_goods_questions.py > candidates_at_goods_questions.txt` (about 4 min on 2 cores)."""
import json
import re
from pathlib import Path

from lorebook.chat.moments import candidate_replies, picker_for
from lorebook.synth.persona_eval import PersonaEvalConfig, _load_engine, subjects

RULE = re.compile(r"inspecci|l[ií]mite|certificado|cartilla|formulario|impreso|prohibid|no se puede introducir|"
                  r"impuestos|no entra|carne|rabia|dejarl", re.IGNORECASE)
subject = subjects(PersonaEvalConfig(persona="customs-es18-pending.yaml", scenario="../../../examples/customs-checkpoint-es.yaml",
                                     baseline=False))[0]
engine = _load_engine(subject)
picker = picker_for(subject.moments)
contexts = []
for name in ("fresh8-es18-pending.json", "fresh7-es18-pending.json", "fresh6-es18-pending.json"):
    for chat in json.loads(Path(name).read_text())["rows"][0]["conversations"]:
        for turn in (7, 8):
            cut = 1 + 2 * turn - 1  # system + (user, assistant) * (turn - 1) + the user line
            contexts.append((name[:6], turn, chat[:cut], chat[cut]["content"]))
found = candidate_replies(engine, [c for _, _, c, _ in contexts], subject.options, subject.moments)
stats = {"picked_rule": 0, "any_rule": 0, "n": 0}
for (name, turn, context, said), candidates in zip(contexts, found):
    picked = picker.pick(context, candidates)
    stats["n"] += 1
    stats["picked_rule"] += bool(RULE.search(picked))
    stats["any_rule"] += any(RULE.search(c) for c in candidates)
    print(f"{name} t{turn} | {context[-1]['content']} | picked: {picked}")
    for c in candidates:
        print(f"      {'R' if RULE.search(c) else ' '} {c}")
print(stats)
