"""One small training loop shared by both stages: seeded, gradient clipping, a guard against
non-finite losses, resumable checkpoints (safetensors + JSON, nothing pickled), and hooks for
logging and validation."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from cmbdet.io.writing import write_atomic
from cmbdet.training.config import TrainConfig

Batch = tuple[torch.Tensor, object]  # (inputs, targets) as the loss takes them
Hook = Callable[[int, dict[str, float]], None]
Loss = Callable[[torch.nn.Module, torch.Tensor, object], dict[str, torch.Tensor]]


def model_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: object) -> dict:
    """The loss of a model whose ``forward(inputs, targets)`` returns its loss dict."""
    return model(inputs, targets)


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model: torch.nn.Module,
    next_batch: Callable[[int], Batch],
    config: TrainConfig,
    checkpoint_dir: Path | None = None,
    hooks: list[Hook] = (),
    device: torch.device | str = "cpu",
    loss: Loss = model_loss,
) -> dict[str, float]:
    """Train ``model`` for ``config.steps`` steps; resume from ``checkpoint_dir`` if it holds
    a checkpoint.

    Args:
        model: the network to train.
        next_batch: ``step -> (inputs, targets)``; deterministic in ``step`` so that a resumed
            run sees the same batches.
        config: optimisation settings.
        checkpoint_dir: where ``checkpoint.safetensors`` / ``checkpoint.json`` live.
        hooks: called as ``hook(step, losses)`` every ``log_every`` steps and at the end.
        device: where to train.
        loss: ``loss(model, inputs, targets)`` -> a dict of losses whose ``"loss"`` entry is
            minimised (the others are logged).

    Returns:
        The mean losses of the last logging window.
    """
    torch.manual_seed(config.seed)
    model.to(device)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    start = _load_checkpoint(checkpoint_dir, model, optimiser) if checkpoint_dir else 0
    window: dict[str, float] = {}
    window_count, skipped = 0, 0
    started = time.perf_counter()
    model.train()
    for step in range(start, config.steps):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate_at(step, config)
        torch.manual_seed((config.seed * 1_000_003 + step) % 2**63)  # dropout: same on resume
        inputs, targets = next_batch(step)
        inputs = inputs.to(device)
        targets = targets.to(device) if hasattr(targets, "to") else targets
        losses = loss(model, inputs, targets)
        total = losses["loss"]
        if not torch.isfinite(total):
            skipped += 1  # a bad batch must not poison the weights
            if skipped > 10:
                raise FloatingPointError(f"non-finite loss at {skipped} steps (last: {step})")
            continue
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        for name, value in losses.items():
            window[name] = window.get(name, 0.0) + float(value.detach())
        window_count += 1
        last = step + 1 == config.steps
        if (step + 1) % config.log_every == 0 or last:
            means = {name: total / window_count for name, total in window.items()}
            means["seconds"] = time.perf_counter() - started
            for hook in hooks:
                hook(step + 1, means)
            window, window_count = {}, 0
        if checkpoint_dir and ((step + 1) % config.checkpoint_every == 0 or last):
            _save_checkpoint(checkpoint_dir, model, optimiser, step + 1)
    model.eval()
    return means if config.steps > start else {}


def _save_checkpoint(folder: Path, model, optimiser, step: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    scalars = {}
    for index, state in optimiser.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = float(value)
    write_atomic(folder / "checkpoint.safetensors", save(tensors))
    write_atomic(folder / "checkpoint.json", json.dumps({"step": step, "optimiser": scalars}))


def _load_checkpoint(folder: Path, model, optimiser) -> int:
    weights, meta = folder / "checkpoint.safetensors", folder / "checkpoint.json"
    if not (weights.exists() and meta.exists()):
        return 0
    tensors = load_file(str(weights))
    info = json.loads(meta.read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = optimiser.state_dict()
    for index in range(len(state["param_groups"][0]["params"])):
        entry = {
            key[len(f"optim.{index}.") :]: value
            for key, value in tensors.items()
            if key.startswith(f"optim.{index}.")
        }
        entry.update(
            {
                key.split(".", 1)[1]: torch.tensor(value)
                for key, value in info["optimiser"].items()
                if key.split(".", 1)[0] == str(index)
            }
        )
        if entry:
            state["state"][index] = entry
    optimiser.load_state_dict(state)
    return int(info["step"])
