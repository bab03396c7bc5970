#!/bin/bash
# The prepared training call for a lent GPU (docs/gpu.md): effdec end to end from runs/gpu/init.pt
# on the packed photos in runs/gpu/pack, for MINUTES minutes; then the run comes back as one slim
# file (EMA weights in float16, prior, step, history) with its log, under $OUT.
#   usage: bash scripts/gpu_train.sh MINUTES [cuda|cpu]     (cpu: to try it here first)
set -euo pipefail
minutes=${1:?usage: gpu_train.sh MINUTES [cuda|cpu]}
device=${2:-cuda}
out=${OUT:-runs/gpu/out}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
py=$(command -v python3)
[ -x .venv/bin/python ] && [ "$device" = cpu ] && py=.venv/bin/python
$py scripts/train.py --data-dir runs/gpu/pack --out runs/gpu/run --init-from runs/gpu/init.pt \
    --device "$device" --workers "${WORKERS:-12}" --batch "${BATCH:-64}" --crop 128 --lr 5e-4 \
    --encoder-lr 0.25 --stock 0.6 --regress 1 --max-steps "${HORIZON:-5000}" --minutes "$minutes" \
    --threads 4 --eval-every 500 --quiet 2>&1 | tee "$out/train.log"
$py -c "from vidcolor.train import slim_checkpoint as s; s('runs/gpu/run/ckpt.pt', '$out/e2e.pt', half=True)"
ls -l "$out"
