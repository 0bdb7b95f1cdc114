"""The ``detect`` command's options: inputs of one subject or a batch, the phase conventions,
the acquisition (echo times, field strength), and the input modes in its help."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmbdet.cli.arguments import (
    add_model_option,
    add_network_options,
    positive_float,
    probability,
    workers_count,
)
from cmbdet.cli.detect import detect_command


def add_detect(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "detect",
        parents=[common],
        help="find CMBs in one subject or a dataset",
        description="Detect cerebral microbleeds in SWI + phase: one subject (--swi, --phase; "
        "or --magnitude and --phase, and the SWI is computed; or --swi or --magnitude alone, "
        "and the phase-free model runs), or every subject of a dataset "
        "folder (cmbdet sub-*/ layout, or BIDS) or of a CSV manifest, each into "
        "OUT/sub-<id>/. A batch logs every subject in OUT/batch.csv and is resumable: rerun "
        "the same command and subjects with complete outputs are skipped.",
        epilog=DETECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--swi", type=Path, help="SWI NIfTI (one subject)")
    parser.add_argument(
        "--phase",
        type=Path,
        help="phase NIfTI (one subject): high-pass filtered or raw, radians or scanner "
        "integers; a 4D stack of echoes with a 4D --magnitude; without it the phase-free "
        "model runs on --swi, or on --magnitude as a T2*-weighted GRE",
    )
    parser.add_argument(
        "--magnitude",
        type=Path,
        help="magnitude NIfTI (one subject): without --swi the SWI is computed from it and "
        "the phase; a 4D stack of echoes for multi-echo data; with --swi, the homodyne "
        "modulus of raw phase",
    )
    parser.add_argument("--mask", type=Path, help="optional brain mask NIfTI, 0/1 (one subject)")
    parser.add_argument(
        "--dataset",
        type=Path,
        help="dataset folder: sub-*/swi.nii.gz layout, or BIDS (swi, MEGRE, T2starw, GRE)",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        help="CSV with header subject,swi,phase[,magnitude,mask] (swi may be empty where "
        "magnitude is given, phase may be empty); paths relative to the CSV",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_model_option(parser)
    parser.add_argument(
        "--threshold",
        type=probability,
        help="stage-2 operating threshold, a probability in [0, 1] (default: the model's)",
    )
    add_network_options(parser, backend=True)
    add_phase_options(parser)
    parser.add_argument(
        "--echo-times-ms",
        type=positive_float,
        nargs="+",
        metavar="TE",
        help="echo time of each echo of multi-echo input, ms, in stored order (default: the "
        "sidecar JSON's EchoTime); the echo whose field x TE suits the model is used",
    )
    parser.add_argument(
        "--field-strength",
        type=positive_float,
        metavar="TESLA",
        help="main field of the scanner, T (default: the sidecar JSON's "
        "MagneticFieldStrength; 3 T assumed for the echo choice when neither says)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs (a batch: redo subjects that are already complete)",
    )
    parser.add_argument(
        "--workers",
        type=workers_count,
        default=1,
        help="a batch: parallel worker processes on this machine, sharing its cores; auto: "
        "one per core, as memory allows (about 2 GiB each), the fastest for a cohort on a "
        "CPU (default: 1); with --scheduler local, the number of Dask workers",
    )
    parser.add_argument(
        "--bids-derivatives",
        action="store_true",
        help="a batch: also write OUT/derivatives/cmbdet/ (BIDS derivatives: per subject and "
        "session, the label map, its look-up table and the detections table)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a batch: run on a Dask cluster: tcp://HOST:PORT, a scheduler JSON file, or "
        "'local' for one on this machine (needs pip install 'cmbdet[distributed]')",
    )
    parser.set_defaults(handler=detect_command)


def add_phase_options(parser: argparse.ArgumentParser) -> None:
    """--phase-units, --phase-handedness and --phase-kind: each detected unless given."""
    parser.add_argument(
        "--phase-units",
        choices=("auto", "radians", "integer"),
        default="auto",
        help="units of the stored phase: radians, or scanner integers such as -4096..4095 or "
        "0..4095 (rescaled to radians); auto tells them from the values, or a BIDS sidecar's "
        "Units (default: auto)",
    )
    parser.add_argument(
        "--phase-handedness",
        choices=("auto", "right", "left"),
        default="auto",
        help="sign convention of the phase: right when a paramagnetic CMB or vein gives "
        "negative phase above and below it (Siemens, Philips), left when positive (GE); auto "
        "decides from the phase at dark voxels and records its confidence (default: auto)",
    )
    parser.add_argument(
        "--phase-kind",
        choices=("auto", "filtered", "raw"),
        default="auto",
        help="filtered: the scanner's high-pass (SWI) phase; raw: wrapped phase with "
        "background fields, which cmbdet high-pass filters (homodyne); auto tells them from "
        "the phase's smoothness (default: auto)",
    )


DETECT_EPILOG = """\
input modes (which files a subject has decides what runs):
  SWI + phase                    both stages, as trained
  magnitude + phase              SWI computed (magnitude x negative-phase mask^4)
  magnitude + phase, N echoes    one echo chosen by field x echo time, SWI computed
  SWI alone                      the phase-free model (cmbdet-phasefree-v1)
  magnitude alone (T2*w GRE)     the phase-free model; no phase, so calcifications
                                 cannot be told from CMBs by their phase (a QC flag)

examples:
  cmbdet detect --swi swi.nii.gz --phase phase.nii.gz --out out/
  cmbdet detect --magnitude mag.nii.gz --phase phase.nii.gz --phase-kind raw --out out/
  cmbdet detect --magnitude megre_mag.nii.gz --phase megre_phase.nii.gz \\
      --echo-times-ms 5 10 15 20 --field-strength 3 --out out/
  cmbdet detect --swi swi.nii.gz --out out/          # e.g. a PACS export without phase
  cmbdet detect --dataset bids/ --out out/

Exit status of a batch: 0 when every subject is done or was already complete; 1 when any
subject failed unexpectedly; otherwise 2 when any subject had bad input. A failed subject is
reported and skipped, the others still run. Usage errors and unusable inputs (a dataset or
manifest that cannot be read) exit 2 before any work.
"""
