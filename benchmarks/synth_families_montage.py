"""Montages of the generator's families and protocols: ``docs/synth_families.png`` and
``docs/synth_protocols.png``.

Families: one ``lr`` subject (the same seed, so the same head) per value of each axis, that
value forced and every other axis standard; a 150 mm axial crop of SWI (the whole head for
the skull axis) on the slice where the brain is widest, near the deep grey matter, and beside
it a 100 mm minimum intensity projection 20 mm higher (the white matter's veins).
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

CROP_MM, ZOOM_MM, HEAD_MM = 150.0, 100.0, 200.0


def _slice(subject: SyntheticSubject) -> int:
    """The axial slice where the brain mask is widest (near the deep grey matter)."""
    return int(subject.brain_mask.sum(axis=(0, 1)).argmax())


def _brain_centre(subject: SyntheticSubject, z: int) -> tuple[int, int]:
    """The brain's centroid on slice ``z``, voxels."""
    x, y = np.nonzero(subject.brain_mask[:, :, z])
    return int(x.mean()), int(y.mean())


def _white_matter_minip(subject: SyntheticSubject, z: int) -> np.ndarray:
    """Minimum intensity projection of SWI over 8 mm centred 20 mm above slice ``z`` (the
    centrum semiovale: medullary and cortical veins), as readers view veins."""
    step = float(subject.affine[2, 2])
    top = subject.swi.shape[2] - 1
    centre = min(top, z + round(20.0 / step))
    half = max(1, round(4.0 / step))
    return subject.swi[:, :, max(0, centre - half) : centre + half + 1].min(axis=2)


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


def _shown(axis: str) -> tuple[str, ...]:
    """The values of an axis shown: all, but every third SWI mask power."""
    return ("0", "3", "6") if axis == "swi_power" else AXES[axis]


def families_montage(seed: int, out: Path) -> None:
    rows = list(AXES)
    columns = max(len(_shown(name)) for name in rows)
    figure, axes = plt.subplots(
        len(rows), 2 * columns, figsize=(2.4 * 2 * columns, 2.5 * len(rows))
    )
    for axis_row in axes:
        for axis in axis_row:
            axis.axis("off")
    for r, name in enumerate(rows):
        for c, value in enumerate(_shown(name)):
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
            zoom = _crop(_white_matter_minip(subject, z), spacing, ZOOM_MM, (x, y))
            _show(axes[r, 2 * c + 1], zoom, "minIP 8 mm, 20 mm up")
    figure.tight_layout()
    figure.savefig(out / "synth_families.png", dpi=100)
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
