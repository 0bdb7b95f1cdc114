"""Copy a trained and calibrated model folder into the package under its shipped name, with
its description and the field x TE range of its training subjects; the weights' checksums are
checked on the way.

    .venv/bin/python recipes/ship_model.py --source runs/pf1-cal --name cmbdet-phasefree-v1 \
        --description "..." --data data/g2-train/* data/g2-all/*
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from cmbdet.detect.shipped import MODELS_DIR
from cmbdet.io.dataset import find_subjects
from cmbdet.training.ranges import training_ranges

FILES = ("model.json", "stage1.safetensors", "stage2.safetensors", "stage1.onnx", "stage2.onnx")
MAX_MIB = 20.0


def ship(source: Path, name: str, description: str, data: list[Path]) -> Path:
    target = MODELS_DIR / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for file in FILES:
        shutil.copy(source / file, target / file)
    info = json.loads((target / "model.json").read_text())
    for stage in ("stage1", "stage2"):
        for entry in (info[stage]["weights"], info[stage]["onnx"]):
            digest = hashlib.sha256((target / entry["file"]).read_bytes()).hexdigest()
            assert digest == entry["sha256"], f"{entry['file']} changed"
    ranges = training_ranges([s for folder in data for s in find_subjects(folder)])
    info["training_ranges"]["field_te_t_ms"] = list(ranges.field_te_t_ms)
    info["training_ranges"]["field_strength_t"] = list(ranges.field_strength_t)
    info["name"], info["description"] = name, description
    (target / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    assert size < MAX_MIB, f"{size:.1f} MiB"
    print(f"{target}: {size:.1f} MiB, thresholds {info['stage1_threshold']} / {info['threshold']}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--description", required=True)
    parser.add_argument("--data", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    ship(args.source, args.name, args.description, args.data)


if __name__ == "__main__":
    main()
