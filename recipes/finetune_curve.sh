#!/usr/bin/env bash
# benchmarks/RESULTS.md "Fine-tuning to a site": a base model that never saw the 1.5 T protocol,
# fine-tuned with the defaults on 5, 10 and 20 labelled 1.5 T subjects, measured against its base
# on the yardstick's held-out 1.5 T set and on hr. Every step is skipped when its output exists
# (and train / finetune resume), so the script can be rerun after an interruption.
# Needs the generated sets of the v4 recipe (recipes/cmbdet-default-v4.sh: data/g2-train,
# data/g2-all, data/v4-val) and the yardstick (benchmarks/yardstick.py generate).
set -e
cd "$(dirname "$0")/.."
cmbdet=.venv/bin/cmbdet
[ -f runs/no15t-short/model.json ] || $cmbdet train --data data/g2-train/* \
    data/g2-all/hr-bright-csf data/g2-all/hr-medullary data/g2-all/lr-bright-csf \
    data/g2-all/lr-medullary --out runs/no15t-short --stage1-steps 3000 --stage2-steps 3500 --seed 4
[ -f runs/no15t-short-cal/model.json ] || $cmbdet calibrate --model runs/no15t-short \
    --data data/v4-val/hr data/v4-val/lr data/v4-val/7t data/v4-val/iso1 data/v4-val/ukb \
    --out runs/no15t-short-cal --max-fp 1 --precision float32
# the labelled site subjects: nested seeded draws from the 32 generated 1.5 T subjects (links)
.venv/bin/python - <<'PY'
import random
from pathlib import Path

pool = [(f"g2x{p.name[4:]}", p) for p in sorted(Path("data/g2-all/1.5t").glob("sub-*"))]
pool += [(f"valx{p.name[4:]}", p) for p in sorted(Path("data/v4-val/1.5t").glob("sub-*"))]
random.Random(25).shuffle(pool)
for n in (5, 10, 20):
    out = Path(f"data/ft15/n{n:02d}")
    out.mkdir(parents=True, exist_ok=True)
    for name, subject in pool[:n]:
        link = out / f"sub-{name}"
        if not link.exists():
            link.symlink_to(subject.resolve())
PY
for n in 05 10 20; do
    [ -f runs/ft15-n$n/model.json ] || $cmbdet finetune --model runs/no15t-short-cal \
        --data data/ft15/n$n --out runs/ft15-n$n
done
.venv/bin/python benchmarks/finetune_curve.py --test data/yardstick/held-out-1.5t \
    base=runs/no15t-short-cal n05=runs/ft15-n05 n10=runs/ft15-n10 n20=runs/ft15-n20 \
    v4=src/cmbdet/models/cmbdet-default-v4
.venv/bin/python benchmarks/finetune_curve.py --test data/yardstick/hr \
    hr-base=runs/no15t-short-cal hr-n20=runs/ft15-n20
