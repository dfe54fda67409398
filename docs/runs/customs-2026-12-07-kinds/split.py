"""split.py MERGED.labels.jsonl A.json B.json ...: each input's labels (by row label) into A.labels.jsonl, ..."""
import json, sys
from pathlib import Path
merged, *ins = sys.argv[1:]
labels = [json.loads(l) for l in open(merged)]
for p in ins:
    p = Path(p)
    rows = {r["label"] for r in json.load(open(p))["rows"]}
    mine = [l for l in labels if l["row"] in rows]
    p.with_name(f"{p.stem}.labels.jsonl").write_text("".join(json.dumps(l, ensure_ascii=False) + "\n" for l in mine))
    print(p, len(mine), sum(l["in_role"] for l in mine))
