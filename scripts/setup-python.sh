#!/usr/bin/env bash
# Python references for interop tests and benchmarks: a venv in .venv-py with
# CPU torch 2.x (also a second libtorch to build against), accelerate, transformers,
# safetensors and jsonschema. Prefers local wheel folders when the machine has
# them (offline images), else PyPI. Tests that need it skip with a printed
# reason when it is missing. Prints the venv's python path.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-py
PKGS="torch==2.13.0+cpu accelerate safetensors jsonschema tensorboard transformers"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, accelerate, safetensors, jsonschema, tensorboard, transformers" 2>/dev/null; then
  echo "$PWD/$VENV/bin/python"; exit 0
fi
python3 -m venv "$VENV" >&2
links=()
for d in /opt/wheels /opt/pypi/files /opt/pypi-more/files; do [ -d "$d" ] && links+=(--find-links "$d"); done
if [ ${#links[@]} -gt 0 ]; then
  "$VENV/bin/pip" install -q --no-index "${links[@]}" $PKGS >&2
else
  "$VENV/bin/pip" install -q --extra-index-url https://download.pytorch.org/whl/cpu $PKGS >&2
fi
echo "$PWD/$VENV/bin/python"
