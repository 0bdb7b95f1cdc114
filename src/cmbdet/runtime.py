"""Where and how the networks run at detection: the device, the number format, batch-norm
folding and the input layout. Shared by inference and training; holds no training code."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cmbdet.config import PRECISIONS
from cmbdet.errors import InputError


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(requested: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        InputError: CUDA asked for where PyTorch sees no CUDA GPU, or an unknown device.
    """
    if str(requested) == "auto":
        return default_device()
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise InputError(
            None, f"unknown device {requested!r} (auto, cpu, cuda or cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
        raise InputError(None, f"device {requested}: PyTorch {torch.__version__} has {build}")
    if device.type not in ("cpu", "cuda"):
        raise InputError(None, f"device {requested}: cmbdet runs on cpu or cuda")
    return device


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
