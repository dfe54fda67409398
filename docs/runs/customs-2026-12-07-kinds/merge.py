"""`python merge.py OUT.json A.json B.json …`: one evaluation file holding every row of the inputs, so that
`lorebook eval label OUT.json` shows their turns shuffled together (read blind)."""

import json
import sys
from pathlib import Path

out, *inputs = sys.argv[1:]
merged = json.loads(Path(inputs[0]).read_text(encoding="utf-8"))
merged["rows"] = [row for path in inputs for row in json.loads(Path(path).read_text(encoding="utf-8"))["rows"]]
Path(out).write_text(json.dumps(merged, ensure_ascii=False), encoding="utf-8")
