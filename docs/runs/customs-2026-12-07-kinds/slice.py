"""slice.py ALL.json OUT.json START END: an evaluation holding conversations START..END-1 of each row."""
import json, sys
src, out, a, b = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(src))
for r in d["rows"]:
    r["conversations"] = r["conversations"][a:b]
    r.pop("metrics", None)
json.dump(d, open(out, "w"), ensure_ascii=False)
