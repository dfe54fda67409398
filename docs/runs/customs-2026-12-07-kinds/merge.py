"""merge.py OUT.json A.json B.json ...: one evaluation file holding every row of the inputs (for blind reading together)."""
import json, sys
out, *ins = sys.argv[1:]
rows = []
for p in ins:
    d = json.load(open(p))
    rows += d["rows"]
base = json.load(open(ins[0]))
base["rows"] = rows
json.dump(base, open(out, "w"), ensure_ascii=False)
