#!/usr/bin/env bash
# Set up vidcolor in ./.venv: CPU PyTorch pinned (a bare `torch` would pull a multi-GB CUDA build),
# then the package itself with its test extra. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
echo "vidcolor is set up in .venv (run .venv/bin/vidcolor --help)"
