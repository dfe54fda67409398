"""`python slice.py ALL.json OUT.json START END`: an evaluation holding conversations START..END-1 of each row
(one set of six scripts out of `all-scripts.yaml`'s thirty); its metrics, computed over all thirty, are left out."""

import json
import sys
from pathlib import Path

from lorebook.synth.labels import read_evaluation

source, out, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
evaluation = read_evaluation(source)
for row in evaluation["rows"]:
    row["conversations"] = row["conversations"][start:end]
    row.pop("metrics", None)
Path(out).write_text(json.dumps(evaluation, ensure_ascii=False), encoding="utf-8")
