"""Both networks of a model folder exported to ONNX, for detection without PyTorch.

Each network is exported from its checksummed safetensors weights as the inference copy that
detection runs (batch norm folded into the convolutions, float32, CPU), with the batch and the
in-plane size free (stage 1) or the batch free (stage 2). The files sit beside the weights and
are recorded in model.json with their SHA-256 (``stageN.onnx``), as the weights are; ``train``
and ``calibrate`` write them with every model folder.
"""

from __future__ import annotations

import inspect
import io
import warnings
from pathlib import Path

from cmbdet.io.model_folder import load_weights, sha256_of
from cmbdet.io.writing import write_atomic

ONNX_OPSET = 18
STAGE1_OUTPUTS = ("heatmap", "offset", "size")


def export_onnx(folder: Path, info: dict) -> dict:
    """Export the networks of the model folder ``folder`` (described by ``info``, its
    model.json) to ``stage1.onnx`` and ``stage2.onnx``; returns ``info`` with their
    ``stageN.onnx`` entries (``{"file", "sha256"}``).

    Raises:
        InputError: weights missing or not matching their checksums.
    """
    import torch

    from cmbdet.runtime import prepare_for_inference
    from cmbdet.stage1.config import Stage1Config
    from cmbdet.stage1.model import CandidateNet
    from cmbdet.stage2.config import Stage2Config
    from cmbdet.stage2.model import PatchClassifier
    from cmbdet.stage2.patches import PatchConfig

    folder = Path(folder)
    exported = {**info}
    config1 = Stage1Config.from_json(info["stage1"]["config"])
    stage1 = load_weights(folder, info["stage1"]["weights"], CandidateNet(config1))
    channels = len(config1.pass_channels) or config1.in_channels * config1.slices_per_pass
    example = torch.zeros(1, channels, 64, 64)
    axes = {"images": {0: "batch", 2: "x", 3: "y"}} | {
        name: {0: "batch"} for name in STAGE1_OUTPUTS
    }
    network = prepare_for_inference(stage1, torch.device("cpu"), torch.float32)
    entry = _export(network, example, folder / "stage1.onnx", ["images"], STAGE1_OUTPUTS, axes)
    exported["stage1"] = {**info["stage1"], "onnx": entry}
    if "stage2" in info:
        config2 = Stage2Config.from_json(info["stage2"]["config"])
        stage2 = load_weights(folder, info["stage2"]["weights"], PatchClassifier(config2))
        size = PatchConfig.from_json(info["stage2"].get("patch", PatchConfig().to_json())).size
        example = torch.zeros(2, config2.in_channels, *size)
        network = prepare_for_inference(stage2, torch.device("cpu"), torch.float32)
        axes = {"patches": {0: "batch"}, "logits": {0: "batch"}}
        entry = _export(network, example, folder / "stage2.onnx", ["patches"], ("logits",), axes)
        exported["stage2"] = {**info["stage2"], "onnx": entry}
    return exported


def _export(network, example, path: Path, inputs: list[str], outputs, axes: dict) -> dict:
    """One network to ``path`` (written atomically); its model.json entry."""
    import torch

    buffer = io.BytesIO()
    # the TorchScript exporter (newer PyTorch also has a dynamo one, which needs onnxscript)
    parameters = inspect.signature(torch.onnx.export).parameters
    legacy = {"dynamo": False} if "dynamo" in parameters else {}
    with warnings.catch_warnings():  # the TorchScript exporter announces its successor
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            buffer,
            input_names=inputs,
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            **legacy,
        )
    write_atomic(path, buffer.getvalue())
    return {"file": path.name, "sha256": sha256_of(path)}
