#!/usr/bin/env bash
# The recipe of the shipped default model cmbdet-default-v4 (issue "Generalise II"), from
# nothing: the training and calibration data (generator 2.2, seeded), the frozen yardstick
# sets, training, calibration at <= 1 false positive per subject, and the yardstick measure.
# Every step is skipped when its output is complete, so the script resumes where it stopped
# (training itself resumes from its checkpoints in runs/v4).
#
#     bash recipes/cmbdet-default-v4.sh           # from the repository root, after the set-up
#
# 2 CPU cores: data about 35 minutes, training about 80, calibration and measure about 25.
set -euo pipefail
cd "$(dirname "$0")/.."
CMBDET=.venv/bin/cmbdet

source recipes/g2-data.sh

if [ ! -f runs/v4/model.json ]; then
    $CMBDET train --data data/g2-train/* data/g2-all/* --out runs/v4 \
        --stage1-steps 5000 --stage2-steps 6000 --seed 4
fi
if [ ! -f runs/v4-cal/model.json ]; then
    $CMBDET calibrate --model runs/v4 --data data/v4-val/* --out runs/v4-cal --max-fp 1 \
        --precision float32
fi
.venv/bin/python benchmarks/yardstick.py measure --model runs/v4-cal --label v4
.venv/bin/python benchmarks/yardstick.py table v4
