#!/usr/bin/env bash
# The recipe of the shipped phase-free model cmbdet-phasefree-v1 (issue "SWI-only and
# T2*-GRE-only input"), from nothing: the data of the v4 recipe (recipes/g2-data.sh), training
# with --phase-free (half the subjects read as their magnitude, half as their SWI, the phase
# never read), calibration on the v4 calibration subjects seen both ways (SWI alone and
# magnitude alone), and the yardstick measured three ways (v4 on SWI + phase, this model on the
# SWI alone and on the magnitude alone). Every step is skipped when its output is complete;
# training resumes from its checkpoints in runs/pf1.
#
#     bash recipes/cmbdet-phasefree-v1.sh          # from the repository root, after the set-up
#
# 2 CPU cores: data about 35 minutes (shared with v4), training about 60, calibration 10,
# the three yardstick measures about 40.
set -euo pipefail
cd "$(dirname "$0")/.."
CMBDET=.venv/bin/cmbdet

source recipes/g2-data.sh

if [ ! -f runs/pf1/model.json ]; then
    $CMBDET train --data data/g2-train/* data/g2-all/* --out runs/pf1 \
        --stage1-steps 4000 --stage2-steps 4000 --seed 5 --phase-free
fi

view() {  # view SOURCE_SET IMAGE: the set's subjects with only IMAGE (swi or magnitude)
    local source=$1 image=$2 subject
    local out="data/pf-val/$(basename "$source")-$image"
    for subject in "$source"/sub-*; do
        mkdir -p "$out/$(basename "$subject")"
        for name in "$image.nii.gz" brainmask.nii.gz labels.nii.gz lesions.csv; do
            ln -sfn "$(realpath "$subject/$name")" "$out/$(basename "$subject")/$name"
        done
    done
}
for set in data/v4-val/*; do
    view "$set" swi
    view "$set" magnitude
done
if [ ! -f runs/pf1-cal/model.json ]; then
    $CMBDET calibrate --model runs/pf1 --data data/pf-val/* --out runs/pf1-cal --max-fp 2 \
        --precision float32
fi

.venv/bin/python benchmarks/yardstick.py measure --model runs/pf1-cal --label pf1-swi --inputs swi
.venv/bin/python benchmarks/yardstick.py measure --model runs/pf1-cal --label pf1-gre \
    --inputs magnitude
.venv/bin/python benchmarks/yardstick.py table v4 pf1-swi pf1-gre
.venv/bin/python benchmarks/yardstick.py froc v4 pf1-swi pf1-gre

# Into the package (what was shipped on 2026-12-05)
.venv/bin/python recipes/ship_model.py --source runs/pf1-cal --name cmbdet-phasefree-v1 \
    --data data/g2-train/* data/g2-all/* --description "$(python3 -c "import json; print(json.load(open('src/cmbdet/models/cmbdet-phasefree-v1/model.json'))['description'])")"
