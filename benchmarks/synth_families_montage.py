"""Montages of the generator's families and protocols: ``docs/synth_families.png`` and
``docs/synth_protocols.png``.

Families: one ``lr`` subject (the same seed, so the same head) per value of each axis, that
value forced and every other axis standard; a 90 mm axial crop of SWI (the whole head for the
skull axis) on the slice where the brain is widest, near the deep grey matter, and a 30 mm
zoom beside it (a patch of white matter and cortex: veins).
Protocols: one subject of each preset (standard families), the same slice, SWI and high-pass
phase. Radiological convention: anterior up, the patient's right on the left.

Usage: ``.venv/bin/python benchmarks/synth_families_montage.py --out docs/ --seed 5``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cmbdet.synth.config import SynthConfig  # noqa: E402
from cmbdet.synth.families import AXES, standard_weights  # noqa: E402
from cmbdet.synth.presets import PRESETS  # noqa: E402
from cmbdet.synth.subject import SyntheticSubject, generate_subject  # noqa: E402

CROP_MM, ZOOM_MM, HEAD_MM = 90.0, 30.0, 200.0


def _slice(subject: SyntheticSubject) -> int:
    """The axial slice where the brain mask is widest (near the deep grey matter)."""
    return int(subject.brain_mask.sum(axis=(0, 1)).argmax())


def _brain_centre(subject: SyntheticSubject, z: int) -> tuple[int, int]:
    """The brain's centroid on slice ``z``, voxels."""
    x, y = np.nonzero(subject.brain_mask[:, :, z])
    return int(x.mean()), int(y.mean())


def _crop(image: np.ndarray, spacing: float, size_mm: float, centre: tuple[int, int]):
    half = int(round(size_mm / 2 / spacing))
    x, y = centre
    crop = image[max(x - half, 0) : x + half, max(y - half, 0) : y + half]
    return np.rot90(crop)[:, ::-1]  # anterior up, the patient's right on the left


def _show(axis, image, title, phase=False):
    if phase:
        axis.imshow(image, cmap="gray", vmin=-1.0, vmax=1.0)
    else:
        axis.imshow(image, cmap="gray", vmin=0, vmax=np.percentile(image, 99.5) + 1e-6)
    axis.set_title(title, fontsize=7)
    axis.axis("off")


def families_montage(seed: int, out: Path) -> None:
    rows = list(AXES)
    columns = max(len(values) for values in AXES.values())
    figure, axes = plt.subplots(
        len(rows), 2 * columns, figsize=(2.0 * 2 * columns, 2.1 * len(rows))
    )
    for axis_row in axes:
        for axis in axis_row:
            axis.axis("off")
    for r, name in enumerate(rows):
        for c, value in enumerate(AXES[name]):
            weights = standard_weights().forced(name, value)
            subject = generate_subject(
                SynthConfig(preset="lr", families=weights), np.random.SeedSequence(seed)
            )
            z = _slice(subject)
            spacing = subject.affine[0, 0]
            x, y = _brain_centre(subject, z)
            size = HEAD_MM if name == "skull" else CROP_MM
            image = _crop(subject.swi[:, :, z], spacing, size, (x, y))
            _show(axes[r, 2 * c], image, f"{name}={value}")
            zoom_centre = (x - int(35 / spacing), y + int(15 / spacing))  # right frontal
            zoom = _crop(subject.swi[:, :, z], spacing, ZOOM_MM, zoom_centre)
            _show(axes[r, 2 * c + 1], zoom, "zoom")
    figure.tight_layout()
    figure.savefig(out / "synth_families.png", dpi=80)
    plt.close(figure)


def protocols_montage(seed: int, out: Path) -> None:
    presets = [name for name in PRESETS if name != "tiny"]
    figure, axes = plt.subplots(2, len(presets), figsize=(2.6 * len(presets), 5.4))
    for c, preset in enumerate(presets):
        config = SynthConfig.for_preset(preset, families=standard_weights())
        subject = generate_subject(config, np.random.SeedSequence(seed))
        z = _slice(subject)
        grid = PRESETS[preset]
        spacing = grid.spacing_mm[0]
        centre = _brain_centre(subject, z)
        size = "x".join(f"{s:g}" for s in grid.spacing_mm)
        title = f"{preset}: {subject.protocol.field_t:g} T, {size} mm"
        _show(axes[0, c], _crop(subject.swi[:, :, z], spacing, 180.0, centre), title)
        phase = _crop(subject.hp_phase[:, :, z], spacing, 180.0, centre)
        _show(axes[1, c], phase, f"TE {1000 * subject.protocol.te_s:.0f} ms phase", phase=True)
    figure.tight_layout()
    figure.savefig(out / "synth_protocols.png", dpi=80)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    families_montage(args.seed, args.out)
    protocols_montage(args.seed, args.out)
    print(f"wrote {args.out / 'synth_families.png'} and {args.out / 'synth_protocols.png'}")


if __name__ == "__main__":
    main()
