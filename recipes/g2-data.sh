#!/usr/bin/env bash
# The seeded data of the generalisation recipes (generator 2.2), sourced by
# recipes/cmbdet-default-v4.sh and recipes/cmbdet-phasefree-v1.sh from the repository root:
# training subjects, calibration subjects and the frozen yardstick sets. Each dataset is
# skipped when already complete. 2 CPU cores: about 35 minutes from nothing.
CMBDET=${CMBDET:-.venv/bin/cmbdet}
HELD_OUT=(--exclude-family veins=medullary --exclude-family contrast=bright_csf)

synth() {  # synth FOLDER N SEED OPTIONS...: one dataset, unless already complete
    local out=$1 n=$2 seed=$3
    shift 3
    if [ "$(ls -d "$out"/sub-* 2>/dev/null | wc -l)" -ge "$n" ] && [ -f "$out/dataset.json" ]; then
        return
    fi
    $CMBDET synth --out "$out" --n "$n" --seed "$seed" --cmb-richness 3 --workers 2 \
        --overwrite --quiet "$@"
}

# Training data: the recipe-proving model's 168 subjects (held-out families excluded, no 1.5 T)
synth data/g2-train/hr 32 6001 --preset hr "${HELD_OUT[@]}"
synth data/g2-train/lr 32 6002 --preset lr "${HELD_OUT[@]}"
synth data/g2-train/ukb 24 6003 --preset ukb "${HELD_OUT[@]}"
synth data/g2-train/iso1 20 6004 --preset iso1 "${HELD_OUT[@]}"
synth data/g2-train/7t 20 6005 --preset 7t "${HELD_OUT[@]}"
synth data/g2-train/lr-raw 16 6006 --preset lr --phase-kind raw "${HELD_OUT[@]}"
synth data/g2-train/lr-1.5mm 12 6007 --preset lr --voxel-mm 0.6 0.6 1.5 "${HELD_OUT[@]}"
synth data/g2-train/hr-2.5mm 12 6008 --preset hr --voxel-mm 0.45 0.45 2.5 "${HELD_OUT[@]}"
# ... and, for the shipped model, the families and protocol the recipe-proving model never saw
synth data/g2-all/1.5t 24 6201 --preset 1.5t
synth data/g2-all/hr-medullary 10 6202 --preset hr --family veins=medullary
synth data/g2-all/lr-medullary 12 6203 --preset lr --family veins=medullary
synth data/g2-all/hr-bright-csf 10 6204 --preset hr --family contrast=bright_csf
synth data/g2-all/lr-bright-csf 12 6205 --preset lr --family contrast=bright_csf
synth data/g2-all/1.5t-raw 8 6206 --preset 1.5t --phase-kind raw

# Calibration subjects (every family; never trained on, never tested on)
synth data/v4-val/hr 10 6101 --preset hr
synth data/v4-val/lr 10 6102 --preset lr
synth data/v4-val/ukb 8 6103 --preset ukb
synth data/v4-val/iso1 6 6104 --preset iso1
synth data/v4-val/7t 6 6105 --preset 7t
synth data/v4-val/1.5t 8 6106 --preset 1.5t

# The frozen yardstick sets (seeds 5001-5010; never trained on or calibrated on)
.venv/bin/python benchmarks/yardstick.py generate
