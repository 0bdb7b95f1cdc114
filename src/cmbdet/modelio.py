"""Model folders: ``model.json`` (architecture, preprocessing, thresholds, training data,
metrics) beside ``*.safetensors`` weights with their SHA-256. Loading never unpickles and
refuses weights whose checksum does not match."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cmbdet.errors import InputError
from cmbdet.io.writing import write_atomic

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
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_atomic(path, save(state))
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


PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); False where this
    PyTorch cannot tell."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def resolve_precision(requested: str, device: torch.device) -> torch.dtype:
    """The number format the networks run in.

    ``auto`` is bfloat16 on a CPU that has it in hardware, where the networks run about twice
    as fast with the same detections (benchmarks/RESULTS.md), and float32 elsewhere (on a GPU
    too: ``calibrate`` chooses thresholds in float32 unless told otherwise). ``float32`` gives
    results that do not depend on the CPU.

    Raises:
        InputError: an unknown name.
    """
    if requested not in PRECISIONS:
        raise InputError(None, f"unknown precision {requested!r} ({', '.join(PRECISIONS)})")
    if requested == "auto":
        native = device.type == "cpu" and cpu_has_native_bfloat16()
        return torch.bfloat16 if native else torch.float32
    return getattr(torch, requested)


def prepare_for_inference(
    net: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """An eval-mode copy of ``net`` with batch norm folded, on ``device`` in ``dtype``; on a
    CPU in bfloat16 also channels-last, the layout oneDNN's bfloat16 convolutions are fast in.
    Feed it with :func:`network_input`."""
    ready = fold_batch_norm(net).to(device=device, dtype=dtype)
    if _channels_last(device, dtype):
        for parameter in ready.parameters():
            parameter.data = parameter.data.contiguous(memory_format=_layout(parameter.dim()))
    return ready


def network_input(
    batch: torch.Tensor, net: torch.nn.Module, channels: Sequence[int] = ()
) -> torch.Tensor:
    """``batch`` (B, C, ...), or the given ``channels`` of it, on the device, in the dtype and
    layout of a network made by :func:`prepare_for_inference`.

    Chosen channels going channels-last are copied one by one into the new layout: one pass
    over the data (choosing first and then converting measured 1.7x slower).
    """
    parameter = next(net.parameters())
    device, dtype = parameter.device, parameter.dtype
    if not _channels_last(device, dtype):
        return (batch[:, list(channels)] if channels else batch).to(device=device, dtype=dtype)
    layout = _layout(batch.dim())
    if not channels:
        return batch.to(device=device, dtype=dtype, memory_format=layout)
    chosen = torch.empty(
        (len(batch), len(channels), *batch.shape[2:]),
        dtype=dtype,
        device=device,
        memory_format=layout,
    )
    for i, channel in enumerate(channels):
        chosen[:, i].copy_(batch[:, channel])
    return chosen


def _channels_last(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == "cpu" and dtype == torch.bfloat16


def _layout(dims: int) -> torch.memory_format:
    """Channels-last for 4D (2D conv) and 5D (3D conv) tensors; others as they are."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(dims, torch.contiguous_format)
