#!/usr/bin/env bash
# Set up vidcolor in ./.venv: CPU PyTorch pinned (a bare `torch` would pull a multi-GB CUDA build),
# then the package itself. Safe to run again; it only installs what is missing.
#   bash scripts/setup.sh          # to use vidcolor
#   bash scripts/setup.sh --test   # also what the tests need (pytest, Ray, the ffmpeg command)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TEST=0
[ "${1:-}" = "--test" ] && TEST=1
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
if [ "$TEST" = 1 ]; then
    # Ray too: the tests run `vidcolor batch --ray` on a local Ray (the plain commands never need it)
    # and the pretrained encoder, so that the test that loads it into effdec runs
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,ray,train]"
    # The real-input tests make their files with the ffmpeg command, as users' files are made.
    if ! command -v ffmpeg >/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg) >/dev/null
        else
            echo "setup: the tests need the ffmpeg command: install it (e.g. sudo apt-get install ffmpeg)" >&2
            exit 1
        fi
    fi
else
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
echo "vidcolor is set up in .venv (run .venv/bin/vidcolor --help)"
