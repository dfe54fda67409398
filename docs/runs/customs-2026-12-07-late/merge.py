"""`python merge.py OUT.json A.json B.json …`: one evaluation file holding every row of the inputs, so that
`lorebook eval label OUT.json` shows their turns shuffled together (read blind)."""

import json
import sys
from pathlib import Path

from lorebook.synth.labels import read_evaluation

out, *inputs = sys.argv[1:]
merged = read_evaluation(inputs[0])
merged["rows"] = [row for path in inputs for row in read_evaluation(path)["rows"]]
Path(out).write_text(json.dumps(merged, ensure_ascii=False), encoding="utf-8")
