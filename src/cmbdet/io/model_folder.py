"""Model folders: ``model.json`` (architecture, preprocessing, thresholds, training data,
metrics) beside ``*.safetensors`` weights with their SHA-256. Loading never unpickles and
refuses weights whose checksum does not match."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cmbdet.errors import InputError
from cmbdet.io.writing import write_atomic

if TYPE_CHECKING:  # the networks' weights need PyTorch; model.json does not
    import torch

MODEL_FORMAT = 1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(folder: Path, name: str, module: torch.nn.Module) -> dict[str, str]:
    """Write ``<name>.safetensors`` atomically; return its ``{"file", "sha256"}`` entry."""
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_atomic(path, save(state))
    return {"file": path.name, "sha256": sha256_of(path)}


def load_weights(folder: Path, entry: dict, module: torch.nn.Module) -> torch.nn.Module:
    """Load weights described by ``entry`` into ``module`` after checking the checksum."""
    from safetensors.torch import load_file

    path = verify_weights(folder, entry)
    try:
        module.load_state_dict(load_file(str(path)))
    except Exception as error:  # wrong architecture or a damaged file
        raise InputError(path, f"cannot load model weights ({error})") from None
    return module.eval()


def verify_weights(folder: Path, entry: dict) -> Path:
    """The weights file of ``entry`` (``{"file", "sha256"}``), checked against its checksum.

    Raises:
        InputError: the file is missing or its SHA-256 differs.
    """
    path = folder / entry["file"]
    if not path.is_file():
        raise InputError(path, "model weights are missing")
    if sha256_of(path) != entry["sha256"]:
        raise InputError(path, "model weights do not match the SHA-256 in model.json")
    return path


def write_model_json(folder: Path, info: dict) -> Path:
    path = folder / "model.json"
    payload = {"format": MODEL_FORMAT, **info}
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_model_json(folder: Path) -> dict:
    path = Path(folder) / "model.json"
    if not path.is_file():
        raise InputError(path, "not a model folder (model.json is missing)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InputError(path, f"unreadable model description ({error})") from None
    if not isinstance(info, dict):
        raise InputError(
            path, f"model description must be a JSON object, not {type(info).__name__}"
        )
    if info.get("format") != MODEL_FORMAT:
        raise InputError(path, f"unsupported model format {info.get('format')!r}")
    return info
