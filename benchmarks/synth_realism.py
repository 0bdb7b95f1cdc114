"""How realistic is the synthetic data? Prints the realism tables of benchmarks/RESULTS.md.

1. CMB apparent-diameter distribution, CMBs and mimics per subject.
2. A naive blob detector (multi-scale 3D Laplacian of Gaussian on SWI): candidates per subject
   at ~90% CMB sensitivity. Real data give roughly 50-150 (Al-masni's stage 1: 52 HR, 156 LR).
3. Separability of CMBs from the blob detector's false positives and from calcifications on
   magnitude-only patch features (cross-validated AUC of a logistic regression): it should be
   far from 1, or the mimics are too easy. The same with phase features for contrast.

    .venv/bin/python benchmarks/synth_realism.py --preset lr --n 20 --seed 9000
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cmbdet.synth.config import SynthConfig
from cmbdet.synth.dataset import subject_seed
from cmbdet.synth.subject import SyntheticSubject, generate_subject

LOG_SIGMAS_MM = (0.7, 1.0, 1.4, 2.0, 2.8)
MATCH_MM = 5.0
STRONG_RESPONSE = 0.3
HARD_VEIN_MM = 1.2  # vein dots of CMB calibre
IN_PLANE = (0, 2, 6, 7, 8)  # magnitude features of the central slice alone


def log_candidates(
    subject: SyntheticSubject, spacing_mm, rim_mm: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of the scale-normalised LoG of SWI inside the brain, leaving out a rim of
    ``rim_mm`` along the brain-mask edge (where the dark cortical rim of SWI lies).

    Returns:
        (N, 3) canonical voxel indices and (N,) responses.
    """
    brain = subject.brain_mask
    swi = subject.swi / np.median(subject.swi[brain])
    spacing = np.asarray(spacing_mm)
    response = np.zeros(swi.shape, dtype=np.float32)
    for sigma_mm in LOG_SIGMAS_MM:
        sigma_voxels = np.maximum(sigma_mm / spacing, 0.5)
        # dark blob -> positive Laplacian; sigma^2 normalises across scales
        scaled = sigma_mm**2 * ndimage.gaussian_laplace(swi.astype(np.float32), sigma_voxels)
        np.maximum(response, scaled, out=response)
    footprint = np.maximum(np.round(3.0 / spacing).astype(int) | 1, 3)
    inside = ndimage.distance_transform_edt(brain, sampling=spacing) > rim_mm
    peaks = (response == ndimage.maximum_filter(response, size=footprint)) & inside
    peaks &= response > 0.05
    voxels = np.argwhere(peaks)
    return voxels, response[peaks]


def kind_near(subject: SyntheticSubject, voxel: np.ndarray, spacing, radius_mm=2.0) -> str:
    """Kind of the most common labelled structure within ``radius_mm`` of a voxel."""
    radius = np.maximum(np.round(radius_mm / np.asarray(spacing)).astype(int), 0)
    box = tuple(slice(max(0, c - r), c + r + 1) for c, r in zip(voxel, radius, strict=True))
    labels = subject.labels[box]
    labels = labels[labels > 0]
    if labels.size == 0:
        return "nothing"
    return subject.lesions[np.bincount(labels).argmax() - 1].kind


def world(voxels: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return voxels @ affine[:3, :3].T + affine[:3, 3]


def patch_features(subject: SyntheticSubject, voxel: np.ndarray, spacing) -> tuple[list, list]:
    """Magnitude-only and phase features of a small patch around a voxel."""
    radius = np.maximum(np.round(4.0 / np.asarray(spacing)).astype(int), 1)
    box = tuple(slice(max(0, c - r), c + r + 1) for c, r in zip(voxel, radius, strict=True))
    magnitude = subject.magnitude[box] / np.median(subject.magnitude[subject.brain_mask])
    phase = subject.hp_phase[box]
    centre = tuple(np.minimum(voxel, radius))
    low = magnitude < 0.7 * np.median(magnitude)
    labelled, _ = ndimage.label(low)
    blob = labelled == labelled[centre] if low[centre] else np.zeros_like(low)
    slices_spanned = int(blob.any(axis=(0, 1)).sum())
    in_plane_area = float(blob.sum(axis=2).astype(bool).sum()) * spacing[0] * spacing[1]
    magnitude_features = [
        float(magnitude[centre]),
        float(magnitude.min()),
        float(np.median(magnitude)),
        float(blob.sum()),
        slices_spanned,
        in_plane_area,
        float(magnitude[centre] / (np.median(magnitude) + 1e-6)),
        float(magnitude[:, :, centre[2]].min()),  # central slice only
        float(blob[:, :, centre[2]].sum()) * spacing[0] * spacing[1],
    ]
    k = centre[2]
    above = phase[centre[0], centre[1], min(k + 1, phase.shape[2] - 1)]
    below = phase[centre[0], centre[1], max(k - 1, 0)]
    phase_features = [
        float(phase[centre]),
        float(above),
        float(below),
        float(phase.min()),
        float(phase.max()),
    ]
    return magnitude_features, phase_features


def evaluate(preset: str, n: int, seed: int, rim_mm: float) -> None:
    config = SynthConfig(preset=preset)
    spacing = config.grid.spacing_mm
    per_subject, diameters, cmb_responses, fp_records = [], [], [], []
    features = {"cmb": [], "fp": [], "vein": [], "vein_dot": [], "calcification": []}
    seconds = []
    for index in range(n):
        started = time.perf_counter()
        subject = generate_subject(config, subject_seed(seed, index))
        seconds.append(time.perf_counter() - started)
        kinds = Counter(lesion.kind for lesion in subject.lesions)
        cmbs = [lesion for lesion in subject.lesions if lesion.kind == "cmb"]
        visible = [lesion for lesion in cmbs if lesion.visible]
        diameters += [lesion.diameter_mm for lesion in visible]
        through_plane = sum(1 for lesion in subject.lesions if lesion.shape == "through-plane")
        per_subject.append(
            (len(cmbs), len(visible), kinds["calcification"], kinds["iron"], through_plane)
        )

        voxels, responses = log_candidates(subject, spacing, rim_mm)
        candidates_mm = world(voxels.astype(float), subject.affine)
        all_cmb_mm = np.array([[c.x_mm, c.y_mm, c.z_mm] for c in cmbs]).reshape(-1, 3)
        near_cmb = np.zeros(len(voxels), dtype=bool)
        for lesion in cmbs:
            distance = np.linalg.norm(
                candidates_mm - [lesion.x_mm, lesion.y_mm, lesion.z_mm], axis=1
            )
            near_cmb |= distance <= MATCH_MM
            if lesion.visible:
                best = responses[distance <= MATCH_MM].max(initial=-np.inf)
                cmb_responses.append(best)
                if np.isfinite(best):
                    hit = voxels[
                        np.flatnonzero(distance <= MATCH_MM)[
                            np.argmax(responses[distance <= MATCH_MM])
                        ]
                    ]
                    m, p = patch_features(subject, hit, spacing)
                    features["cmb"].append((m, p))
        for voxel, response in zip(voxels[~near_cmb], responses[~near_cmb], strict=True):
            fp_records.append((index, response, kind_near(subject, voxel, spacing), voxel))
        del all_cmb_mm
        for lesion in subject.lesions:  # hard mimics, as the blob detector sees them
            hard_vein = lesion.shape == "through-plane" and lesion.diameter_mm >= HARD_VEIN_MM
            if lesion.kind == "calcification" or hard_vein:
                distance = np.linalg.norm(
                    candidates_mm - [lesion.x_mm, lesion.y_mm, lesion.z_mm], axis=1
                )
                reach = 2.0 if hard_vein else MATCH_MM  # a vein's midpoint is on the vessel
                if (distance <= reach).any():
                    near = np.flatnonzero(distance <= reach)
                    hit = voxels[near[np.argmax(responses[near])]]
                    kind = "vein_dot" if hard_vein else "calcification"
                    features[kind].append(patch_features(subject, hit, spacing))
        # strong false candidates (near the 90%-sensitivity threshold or above)
        strong = [r for r in fp_records if r[0] == index and r[1] >= STRONG_RESPONSE]
        rng = np.random.default_rng(index)
        for record in rng.permutation(len(strong))[:20]:
            features["fp"].append(patch_features(subject, strong[record][3], spacing))
        veins = [r for r in strong if r[2] == "vein"]
        for record in rng.permutation(len(veins))[:10]:
            features["vein"].append(patch_features(subject, veins[record][3], spacing))

    table = np.array(per_subject)
    print(f"\n## {preset}: {n} subjects (seed {seed}), generation {np.mean(seconds):.1f} s/subject")
    print("\n| per subject | mean | median | max | subjects with none |")
    print("|---|---|---|---|---|")
    for column, name in enumerate(
        ["CMBs", "visible CMBs", "calcifications", "iron deposits", "through-plane veins"]
    ):
        values = table[:, column]
        print(
            f"| {name} | {values.mean():.1f} | {np.median(values):.0f} | {values.max()} | "
            f"{np.mean(values == 0):.0%} |"
        )
    diameters = np.array(diameters)
    bands = [(0, 2), (2, 3), (3, 5), (5, 10), (10, 99)]
    print(
        "\n| apparent diameter of visible CMBs (mm) | "
        + " | ".join(f"{lo}-{hi}" if hi < 99 else f">{lo}" for lo, hi in bands)
        + " | median |"
    )
    print("|---" * (len(bands) + 2) + "|")
    print(
        f"| share (n={len(diameters)}) | "
        + " | ".join(f"{np.mean((diameters >= lo) & (diameters < hi)):.0%}" for lo, hi in bands)
        + f" | {np.median(diameters):.1f} |"
    )

    cmb_responses = np.array(cmb_responses)
    found = np.isfinite(cmb_responses)
    threshold = np.quantile(cmb_responses[found], 0.1) if found.mean() > 0.9 else -np.inf
    sensitivity = np.mean(cmb_responses >= threshold)
    fps = [r for r in fp_records if r[1] >= threshold]
    fp_per_subject = len(fps) / n
    on = Counter(r[2] for r in fps)
    print(
        f"\nLoG blob detector ({rim_mm:g} mm rim left out) at {sensitivity:.0%} CMB sensitivity "
        f"({found.mean():.0%} reachable): {fp_per_subject:.0f} false candidates per subject;"
    )
    print(
        "they sit on: " + ", ".join(f"{k} {v / max(1, len(fps)):.0%}" for k, v in on.most_common())
    )
    all_fp = np.array([r[1] for r in fp_records])
    curve = []
    for target in (0.5, 0.7, 0.8, 0.9, 0.95):
        t = np.quantile(np.maximum(cmb_responses, -1e9), 1 - target)
        curve.append(f"{np.mean(cmb_responses >= t):.0%}: {np.sum(all_fp >= t) / n:.0f}")
    print("sensitivity: false candidates per subject -- " + ", ".join(curve))

    print("\n| CMB vs | features | n (CMB / other) | cross-validated AUC |")
    print("|---|---|---|---|")
    names = {
        "fp": "strong LoG false candidates",
        "vein": "LoG candidates on veins",
        "vein_dot": f"through-plane vein dots >= {HARD_VEIN_MM} mm",
        "calcification": "calcifications",
    }
    for other in ("fp", "vein", "vein_dot", "calcification"):
        for name, pick in (
            ("magnitude, in-plane only", lambda f: [f[0][i] for i in IN_PLANE]),
            ("magnitude only", lambda f: f[0]),
            ("magnitude + phase", lambda f: f[0] + f[1]),
        ):
            x = np.array([pick(f) for f in features["cmb"] + features[other]])
            y = np.array([1] * len(features["cmb"]) + [0] * len(features[other]))
            if min(np.bincount(y, minlength=2)) < 5:
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            auc = cross_val_score(model, x, y, cv=5, scoring="roc_auc").mean()
            label = names[other]
            print(
                f"| {label} | {name} | {len(features['cmb'])} / {len(features[other])} | "
                f"{auc:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lr")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=9000)
    parser.add_argument(
        "--rim-mm",
        type=float,
        default=3.0,
        help="brain-mask rim left out by the blob detector (default: 3)",
    )
    args = parser.parse_args()
    evaluate(args.preset, args.n, args.seed, args.rim_mm)


if __name__ == "__main__":
    main()
