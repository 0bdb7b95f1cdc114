"""Model folders: ``model.json`` (architecture, preprocessing, thresholds, training data,
metrics) beside ``*.safetensors`` weights with their SHA-256. Loading never unpickles and
refuses weights whose checksum does not match."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cmbdet.errors import InputError

MODEL_FORMAT = 1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(folder: Path, name: str, module: torch.nn.Module) -> dict[str, str]:
    """Write ``<name>.safetensors`` atomically; return its ``{"file", "sha256"}`` entry."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    partial = folder / f".{name}.{os.getpid()}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(partial))
    os.chmod(partial, 0o644)
    os.replace(partial, path)
    return {"file": path.name, "sha256": sha256_of(path)}


def load_weights(folder: Path, entry: dict, module: torch.nn.Module) -> torch.nn.Module:
    """Load weights described by ``entry`` into ``module`` after checking the checksum."""
    path = folder / entry["file"]
    if not path.is_file():
        raise InputError(path, "model weights are missing")
    if sha256_of(path) != entry["sha256"]:
        raise InputError(path, "model weights do not match the SHA-256 in model.json")
    try:
        module.load_state_dict(load_file(str(path)))
    except Exception as error:  # wrong architecture or a damaged file
        raise InputError(path, f"cannot load model weights ({error})") from None
    return module.eval()


def write_model_json(folder: Path, info: dict) -> Path:
    path = folder / "model.json"
    payload = {"format": MODEL_FORMAT, **info}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def read_model_json(folder: Path) -> dict:
    path = Path(folder) / "model.json"
    if not path.is_file():
        raise InputError(path, "not a model folder (model.json is missing)")
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"unreadable model description ({error})") from None
    if info.get("format") != MODEL_FORMAT:
        raise InputError(path, f"unsupported model format {info.get('format')!r}")
    return info


def fold_batch_norm(net: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of ``net`` with each batch norm that directly follows a convolution
    in an ``nn.Sequential`` folded into that convolution's weights (one pass instead of two;
    outputs equal to float rounding). The copy is in eval mode; ``net`` is left untouched.
    """
    folded = copy.deepcopy(net).eval()
    for module in folded.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv, norm = module[index], module[index + 1]
            if isinstance(conv, torch.nn.modules.conv._ConvNd) and isinstance(
                norm, torch.nn.modules.batchnorm._BatchNorm
            ):
                module[index] = fuse_conv_bn_eval(conv, norm)
                module[index + 1] = torch.nn.Identity()
    return folded
