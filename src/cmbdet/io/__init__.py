"""Reading and writing volumes, lesion tables and the dataset layout of DESIGN.md."""

from __future__ import annotations

from cmbdet.io.dataset import (
    LESION_COLUMNS,
    OPTIONAL_LESION_COLUMNS,
    Lesion,
    SubjectFiles,
    find_subjects,
    lesions_from_mask,
    load_ground_truth,
    read_dataset_json,
    read_lesions_csv,
    subject_dir,
    write_dataset_json,
    write_lesions_csv,
)
from cmbdet.io.nifti import (
    GRID_TOLERANCE_MM,
    Volume,
    check_same_grid,
    load_labels,
    load_mask,
    load_volume,
    save_like,
    save_volume,
)

__all__ = [
    "GRID_TOLERANCE_MM",
    "LESION_COLUMNS",
    "OPTIONAL_LESION_COLUMNS",
    "Lesion",
    "SubjectFiles",
    "Volume",
    "check_same_grid",
    "find_subjects",
    "lesions_from_mask",
    "load_ground_truth",
    "load_labels",
    "load_mask",
    "load_volume",
    "read_dataset_json",
    "read_lesions_csv",
    "save_like",
    "save_volume",
    "subject_dir",
    "write_dataset_json",
    "write_lesions_csv",
]
