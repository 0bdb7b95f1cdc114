#!/usr/bin/env bash
# The recipe of the shipped SWI-alone model cmbdet-phasefree-swi-v1 (issue "SWI-only and
# T2*-GRE-only input"): the data of the v4 recipe (recipes/g2-data.sh), training with
# --phase-free --magnitude-share 0 (every subject read as its SWI, the phase never read),
# calibration on the SWI-alone views of the v4 calibration subjects (made by
# recipes/cmbdet-phasefree-v1.sh), and the yardstick on SWI alone beside v4 and the general
# phase-free model. Every step is skipped when its output is complete; training resumes from its
# checkpoints in runs/pf-swi.
#
#     bash recipes/cmbdet-phasefree-swi-v1.sh      # from the repository root, after the set-up
#
# 2 CPU cores: training about 60 minutes, calibration 8, the yardstick 10.
set -euo pipefail
cd "$(dirname "$0")/.."
CMBDET=.venv/bin/cmbdet

source recipes/g2-data.sh

if [ ! -f runs/pf-swi/model.json ]; then
    $CMBDET train --data data/g2-train/* data/g2-all/* --out runs/pf-swi \
        --stage1-steps 4000 --stage2-steps 4000 --seed 6 --phase-free --magnitude-share 0
fi
ls -d data/pf-val/*-swi > /dev/null  # the SWI-alone views: recipes/cmbdet-phasefree-v1.sh
if [ ! -f runs/pf-swi-cal/model.json ]; then
    $CMBDET calibrate --model runs/pf-swi --data data/pf-val/*-swi --out runs/pf-swi-cal \
        --max-fp 2 --precision float32
fi

.venv/bin/python benchmarks/yardstick.py measure --model runs/pf-swi-cal --label pfswi-swi \
    --inputs swi
.venv/bin/python benchmarks/yardstick.py table v4 pf1-swi pfswi-swi
.venv/bin/python benchmarks/phase_free_compare.py v4 pf1-swi pfswi-swi

# Into the package (what was shipped on 2026-12-05)
.venv/bin/python recipes/ship_model.py --source runs/pf-swi-cal --name cmbdet-phasefree-swi-v1 \
    --data data/g2-train/* data/g2-all/* --description "$(python3 -c "import json; print(json.load(open('src/cmbdet/models/cmbdet-phasefree-swi-v1/model.json'))['description'])")"
