#!/usr/bin/env bash
# The sample subject shipped in the package (src/cmbdet/sample/): what `cmbdet demo` runs on in
# the light install, where the generator (PyTorch, nilearn) is not installed. A thin slab (24
# slices of 2 mm through the basal ganglia) at 0.8 mm in-plane, CMB-rich (4x the clinical count),
# phase in scanner integer units; ~3.6 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
.venv/bin/cmbdet synth --preset tiny --voxel-mm 0.8 0.8 2 --n 1 --seed 14 --cmb-richness 4 \
    --phase-units integer --out "$scratch" --quiet
mkdir -p src/cmbdet/sample
for file in swi.nii.gz phase.nii.gz lesions.csv acquisition.json; do
    cp "$scratch/sub-0000/$file" src/cmbdet/sample/
done
cp "$scratch/dataset.json" src/cmbdet/sample/dataset.json
rm -rf "$scratch"
