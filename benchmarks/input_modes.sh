#!/usr/bin/env bash
# Issue 19: the same generated subjects as scanner SWI + filtered phase, and as 4-echo BIDS
# MEGRE magnitude + raw phase (echo 2 = the drawn TE), detected with the shipped model.
set -euo pipefail
cd "$(dirname "$0")/.."
C=.venv/bin/cmbdet
for preset in lr hr; do
  seed=$([ $preset = lr ] && echo 9101 || echo 9102)
  [ -f data/modes/$preset-swi/dataset.json ] || $C synth --out data/modes/$preset-swi --preset $preset --n 6 --seed $seed --cmb-richness 3 --quiet --overwrite
  [ -f data/modes/$preset-megre/dataset.json ] || $C synth --out data/modes/$preset-megre --preset $preset --n 6 --seed $seed --cmb-richness 3 --layout bids --echoes 4 --phase-kind raw --quiet --overwrite
  for mode in swi megre; do
    out=runs/modes/$preset-$mode
    [ -f $out/batch.csv ] || $C detect --dataset data/modes/$preset-$mode --out $out --precision float32
    $C evaluate --pred $out --truth data/modes/$preset-$mode --out $out/eval --overwrite | tail -2
  done
done
