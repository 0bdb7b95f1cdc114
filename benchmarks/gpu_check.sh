#!/usr/bin/env bash
# The GPU checks of the speed issue, as one short script for a lent GPU machine (about 5
# minutes once the environment exists): the `gpu` tests, then `detect` on the GPU for a batch
# of generated subjects (subjects per minute, one and two workers) beside the same batch on the
# CPU of that machine. Prints everything; nothing is written outside a scratch folder.
#
#   bash benchmarks/gpu_check.sh        (from the checkout, with .venv set up)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
.venv/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
.venv/bin/pytest -q -p no:cacheprovider -m gpu
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
.venv/bin/cmbdet synth --preset lr --n 8 --seed 31 --out "$scratch/lr" --workers 8 --quiet
for run in "cuda 1" "cuda 2" "cpu auto"; do
    set -- $run
    started=$(date +%s.%N)
    .venv/bin/cmbdet detect --dataset "$scratch/lr" --out "$scratch/out-$1-$2" --device "$1" \
        --workers "$2" > /dev/null
    ended=$(date +%s.%N)
    python3 -c "s = $ended - $started; print(f'device $1, workers $2: {s:.1f} s for 8 lr subjects, {8 * 60 / s:.1f} subjects per minute')"
done
