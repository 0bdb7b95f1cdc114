"""Add the ONNX exports of both networks to existing model folders (those made before
``train`` and ``calibrate`` wrote them, the shipped ones included); the safetensors weights
and their checksums are left as they are.

    .venv/bin/python recipes/export_onnx.py src/cmbdet/models/cmbdet-default-v4 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cmbdet.io.model_folder import read_model_json
from cmbdet.training.export import export_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    for folder in args.folders:
        info = export_onnx(folder, read_model_json(folder))
        (folder / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        print(folder, {stage: info[stage]["onnx"]["file"] for stage in ("stage1", "stage2")})


if __name__ == "__main__":
    main()
