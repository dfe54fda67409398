"""`python split.py MERGED.labels.jsonl A.json B.json …`: the labels of a merged reading put back beside each
input as A.labels.jsonl (by row label; a label's key hashes its row, conversation, turn and reply, so it holds)."""

import json
import sys
from pathlib import Path

from lorebook.synth.labels import read_evaluation, read_labels

merged, *inputs = sys.argv[1:]
labels = list(read_labels(merged).values())
for name in inputs:
    path = Path(name)
    rows = {row["label"] for row in read_evaluation(path)["rows"]}
    mine = [label for label in labels if label["row"] in rows]
    path.with_name(f"{path.stem}.labels.jsonl").write_text(
        "".join(json.dumps(label, ensure_ascii=False) + "\n" for label in mine), encoding="utf-8")
    print(path, len(mine), "labels,", sum(label["in_role"] for label in mine), "in role")
