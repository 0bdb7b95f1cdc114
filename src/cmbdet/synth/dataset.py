"""Write synthetic subjects in the dataset layout of DESIGN.md (``cmbdet synth``)."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from cmbdet.errors import InputError
from cmbdet.geometry import world_to_voxel
from cmbdet.io.dataset import read_dataset_json, write_dataset_json
from cmbdet.io.lesions import write_lesions_csv
from cmbdet.io.nifti import save_volume
from cmbdet.io.writing import (
    check_writable,
    leftovers_of,
    publish,
    real_output_path,
    remove_folders,
    staging_folder,
)
from cmbdet.processes import exit_with_parent, threads_per_worker, worker_pool
from cmbdet.synth import GENERATOR_VERSION
from cmbdet.synth.anatomy import ATLAS_VERSION, load_atlas
from cmbdet.synth.bids import (
    INTEGER_PHASE_MAX,
    generate_echoes,
    stored_phase,
    write_bids_subject,
    write_dataset_description,
)
from cmbdet.synth.config import PRESETS, SynthConfig
from cmbdet.synth.families import FamilyWeights
from cmbdet.synth.lesions import LesionCounts
from cmbdet.synth.subject import SyntheticSubject, generate_subject
from cmbdet.version import __version__


def subject_seed(dataset_seed: int, index: int) -> np.random.SeedSequence:
    """Subject ``index``'s seed: derived from (dataset seed, index), so a dataset can be
    extended and datasets with different seeds never share a subject."""
    return np.random.SeedSequence(entropy=dataset_seed, spawn_key=(index,))


MAX_SUBJECTS = 100_000  # per synth call (~1 TB of hr subjects)
MAX_CMB_RICHNESS = 50.0  # ~50 times the clinical CMB count: far beyond any real brain


def rich_lesion_counts(richness: float) -> LesionCounts:
    """Lesion counts with ``richness`` times the typical CMB count (see generate_dataset)."""
    if not 0 < richness <= MAX_CMB_RICHNESS:  # NaN fails too
        raise InputError(
            None,
            f"--cmb-richness must be a number above 0 and at most {MAX_CMB_RICHNESS:g}, "
            f"got {richness}",
        )
    default = LesionCounts()
    if richness == 1.0:
        return default
    return replace(
        default,
        cmb_log_mean=default.cmb_log_mean + float(np.log(richness)),
        cmb_none_probability=default.cmb_none_probability / max(richness, 1.0),
    )


def subject_id(index: int) -> str:
    return f"{index:04d}"


def generate_dataset(
    out_dir: Path,
    preset: str,
    n: int,
    seed: int,
    workers: int = 1,
    overwrite: bool = False,
    handedness: str = "right",
    phase_units: str = "radians",
    orientation: str = "RAS",
    phase_kind: str = "filtered",
    progress: bool = True,
    start: int = 0,
    cmb_richness: float = 1.0,
    families: FamilyWeights | None = None,
    voxel_mm: tuple[float, float, float] | None = None,
    layout: str = "cmbdet",
    echoes: int = 1,
) -> Path:
    """Generate subjects ``start .. start + n - 1`` into ``out_dir``.

    ``preset`` names the grid and the protocol ranges (:data:`cmbdet.synth.config.PRESETS`);
    ``voxel_mm`` (x, y, z) replaces its voxel size over the same field of view.
    ``cmb_richness`` > 1 makes CMB-rich training data: the typical count of a subject with CMBs
    is multiplied by it and fewer subjects have none (1 is the clinical distribution).
    ``families``: how often each family of appearance is drawn (default: every family,
    :class:`~cmbdet.synth.families.FamilyWeights`). ``layout`` ``bids`` writes gradient-echo
    magnitude and phase as BIDS stores them, ``echoes`` of them (:mod:`cmbdet.synth.bids`).

    Each subject is written to a temporary folder and renamed into place, so an interrupted run
    never leaves a half-written ``sub-*`` folder. An existing dataset may be extended with more
    subjects when its settings match (``start`` beyond its last subject).

    Raises:
        InputError: bad arguments, or ``out_dir`` holds something that would be overwritten.
    """
    out_dir = real_output_path(out_dir)
    if preset not in PRESETS:
        raise InputError(None, f"unknown preset {preset!r} (choose {', '.join(PRESETS)})")
    try:
        config = SynthConfig.for_preset(
            preset,
            handedness=handedness,
            phase_units=phase_units,
            orientation=orientation.upper(),
            phase_kind=phase_kind,
            lesions=rich_lesion_counts(cmb_richness),
            families=families or FamilyWeights(),
            voxel_mm=tuple(voxel_mm or (0.0, 0.0, 0.0)),
            layout=layout,
            echoes=echoes,
        )
    except ValueError as error:
        raise InputError(None, f"synthetic dataset settings: {error}") from None
    _check_arguments(config, n, seed, workers, start)
    info = _dataset_info(config, seed)
    _prepare_output(out_dir, info, range(start, start + n), overwrite)
    load_atlas()  # build the atlas cache once, before workers race for it

    indices = list(range(start, start + n))
    bar = tqdm(total=n, desc=f"synth {preset}", unit="subject", disable=not progress)
    try:
        if workers == 1:
            for index in indices:
                _write_subject(out_dir, config, seed, index, overwrite)
                bar.update()
        else:
            threads = threads_per_worker(workers)
            context = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(threads, os.getpid()),
            )
            with worker_pool(pool):
                futures = [
                    pool.submit(_write_subject, out_dir, config, seed, index, overwrite)
                    for index in indices
                ]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    bar.update()
    finally:
        bar.close()
    write_dataset_json(out_dir, info)
    if config.layout == "bids":
        write_dataset_description(out_dir, info)
    return out_dir


def _check_arguments(config: SynthConfig, n: int, seed: int, workers: int, start: int) -> None:
    if config.preset not in PRESETS:
        raise InputError(None, f"unknown preset {config.preset!r} (choose {', '.join(PRESETS)})")
    if not 1 <= n <= MAX_SUBJECTS:
        raise InputError(None, f"--n must be 1 to {MAX_SUBJECTS}, got {n}")
    if seed < 0 or start < 0:
        raise InputError(None, "--seed and --start must be non-negative")
    if workers < 1:
        raise InputError(None, f"--workers must be at least 1, got {workers}")
    if config.handedness not in ("right", "left"):
        raise InputError(None, f"--handedness must be right or left, got {config.handedness!r}")
    if config.phase_units not in ("radians", "integer"):
        raise InputError(
            None, f"--phase-units must be radians or integer, got {config.phase_units!r}"
        )
    if config.phase_kind not in ("filtered", "raw"):
        raise InputError(None, f"--phase-kind must be filtered or raw, got {config.phase_kind!r}")
    try:
        nib.orientations.axcodes2ornt(tuple(config.orientation))
    except Exception:
        raise InputError(
            None,
            f"--orientation {config.orientation!r} is not three axis codes "
            "like RAS or LPS, one per axis",
        ) from None
    if len(config.orientation) != 3:
        raise InputError(None, f"--orientation {config.orientation!r} must have three letters")


def _dataset_info(config: SynthConfig, seed: int) -> dict:
    grid = config.grid
    return {
        "description": "Synthetic SWI + phase dataset made by cmbdet synth",
        "generator": "cmbdet.synth",
        "generator_version": GENERATOR_VERSION,
        "atlas": f"MNI ICBM152 2009 GM/WM/brain mask from nilearn, derived stack v{ATLAS_VERSION}",
        "cmbdet_version": __version__,
        "seed": seed,
        "subject_seed_rule": "numpy SeedSequence(entropy=seed, spawn_key=(subject index,)); "
        "families and artefacts from spawn_key=(subject index, 2**31 - 1)",
        "grid": {"shape": list(grid.shape), "spacing_mm": list(grid.spacing_mm)},
        "settings": config.to_json(),
        "files": _bids_files(config)
        if config.layout == "bids"
        else {
            "swi": "Haacke SWI (magnitude x negative-phase-mask^power, the power in each "
            "acquisition.json's families, 0 for plain magnitude), int16 scanner units",
            "phase": _phase_description(config),
            "magnitude": "magnitude, int16 scanner units",
            "brainmask": "brain mask, 0/1",
            "labels": "instance map: value n is lesion_id n of lesions.csv (CMBs, mimics, veins)",
            "lesions.csv": "ground truth; kind cmb, calcification, iron, cavernoma or vein",
        },
    }


def _bids_files(config: SynthConfig) -> dict:
    return {
        "anat/*_part-mag_*": f"gradient-echo magnitude, int16 scanner units, {config.echoes} "
        "echo(es) (MEGRE with echo-<k> when several, else T2starw); sidecars give EchoTime",
        "anat/*_part-phase_*": _phase_description(config),
        "labels": "instance map: value n is lesion_id n of lesions.csv (CMBs, mimics, veins)",
        "lesions.csv": "ground truth of the reference echo (cmbdet.synth.bids)",
    }


def _phase_description(config: SynthConfig) -> str:
    kind = "homodyne high-pass filtered" if config.phase_kind == "filtered" else "raw wrapped"
    units = (
        "radians"
        if config.phase_units == "radians"
        else f"integers, -{INTEGER_PHASE_MAX}..{INTEGER_PHASE_MAX - 1} for -pi..pi"
    )
    return f"{kind} phase, {units}, {config.handedness}-handed"


def _prepare_output(out_dir: Path, info: dict, indices: range, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder")
    ours = {f"sub-{subject_id(i)}" for i in indices}
    present = sorted(p for p in out_dir.iterdir() if p.name in ours) if out_dir.is_dir() else []
    links = [p for p in present if p.is_symlink()]
    if links:
        raise InputError(links[0], "is a symbolic link; cmbdet never writes through links")
    check_writable(out_dir)
    existing = out_dir.is_dir() and any(out_dir.iterdir())
    if existing and not overwrite:
        previous = read_dataset_json(out_dir, missing_ok=True)
        same = previous and all(
            previous.get(k) == info[k] for k in ("generator_version", "seed", "settings")
        )
        if not same:
            raise InputError(
                out_dir,
                "output folder is not empty and is not a dataset made with "
                "the same settings (use --overwrite to replace it)",
            )
        if present:
            raise InputError(
                out_dir,
                f"{present[0].name} already exists (use --start to extend the dataset, or "
                "--overwrite)",
            )
    out_dir.mkdir(parents=True, exist_ok=True)


def _start_worker(threads: int, parent: int) -> None:
    """A worker process: capped math threads; it exits when ``parent`` (the command) does."""
    import torch

    torch.set_num_threads(threads)
    os.environ["CMBDET_THREADS"] = str(threads)
    exit_with_parent(parent)


def _write_subject(
    out_dir: Path, config: SynthConfig, seed: int, index: int, overwrite: bool
) -> None:
    """Generate one subject into a private staging folder and rename it into place (an
    existing folder is only there to replace with ``overwrite``: see _prepare_output)."""
    final = out_dir / f"sub-{subject_id(index)}"
    remove_folders(leftovers_of(final))
    staging = staging_folder(final)
    try:
        if config.layout == "bids":
            echoes = generate_echoes(config, subject_seed(seed, index))
            to_stored, affine = _storage_orientation(
                echoes[0].affine, echoes[0].magnitude.shape, config.orientation
            )
            write_bids_subject(staging, subject_id(index), echoes, config, to_stored, affine)
        else:
            subject = generate_subject(config, subject_seed(seed, index))
            write_subject_files(staging, subject, config)
        publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_subject_files(folder: Path, subject: SyntheticSubject, config: SynthConfig) -> None:
    """Write one subject's volumes and ``lesions.csv`` in the configured storage conventions."""
    to_stored, affine = _storage_orientation(subject.affine, subject.swi.shape, config.orientation)
    phase_data, phase_dtype, _ = stored_phase(subject, config)
    volumes = {
        "swi": (subject.swi, np.int16),
        "phase": (phase_data, phase_dtype),
        "magnitude": (subject.magnitude, np.int16),
        "brainmask": (subject.brain_mask.astype(np.uint8), np.uint8),
        "labels": (subject.labels, np.int16),
    }
    for name, (data, dtype) in volumes.items():
        save_volume(folder / f"{name}.nii.gz", to_stored(data), affine, dtype=dtype)
    lesions = []
    for lesion in subject.lesions:
        ijk = world_to_voxel(np.array([lesion.x_mm, lesion.y_mm, lesion.z_mm]), affine)
        lesions.append(replace(lesion, i=float(ijk[0]), j=float(ijk[1]), k=float(ijk[2])))
    write_lesions_csv(folder / "lesions.csv", lesions)
    acquisition = {
        "protocol": subject.protocol.to_json(),
        "families": subject.families,
        "stored_orientation": config.orientation,
    }
    (folder / "acquisition.json").write_text(
        json.dumps(acquisition, indent=2, sort_keys=True) + "\n"
    )


def _storage_orientation(canonical_affine: np.ndarray, shape, axcodes: str):
    """A function taking canonical RAS arrays to the stored orientation, and its affine."""
    start = nib.orientations.io_orientation(canonical_affine)
    transform = nib.orientations.ornt_transform(
        start, nib.orientations.axcodes2ornt(tuple(axcodes))
    )
    affine = canonical_affine @ nib.orientations.inv_ornt_aff(transform, shape)

    def to_stored(array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(nib.orientations.apply_orientation(array, transform))

    return to_stored, affine
