"""The models shipped inside the package, by name (``models/<name>/``): the default, the
phase-free models (for subjects without phase: one for an SWI alone, one for a T2*-weighted
magnitude alone), and the earlier defaults kept so that a cohort
can finish with the model it started with. No torch here: the command-line parser reads the
names for ``--help``."""

from __future__ import annotations

from pathlib import Path

from cmbdet.errors import InputError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"  # every shipped model, by name
DEFAULT_MODEL_NAME = "cmbdet-default-v4"  # what runs without --model
DEFAULT_MODEL = MODELS_DIR / DEFAULT_MODEL_NAME
PHASE_FREE_MODEL_NAME = "cmbdet-phasefree-v1"  # what runs on subjects without phase
PHASE_FREE_MODEL_NAMES = {  # by input mode: an SWI alone has a model of its own
    "swi-only": "cmbdet-phasefree-swi-v1",
    "magnitude-only": PHASE_FREE_MODEL_NAME,
}


def installed_models() -> list[str]:
    """Names of the models shipped with this installation (folders of ``models/``), sorted."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "model.json").is_file())


def model_folder(model: str | Path | None) -> Path:
    """The folder that ``--model`` names: a model folder's path, an installed model's name
    (``cmbdet-default-v3``; a folder of that name in the working folder wins), or ``None`` for
    the default. A path that is neither is returned as given (reading it names the problem)."""
    if model is None:
        return default_model_dir()
    path = Path(model)
    if not path.exists() and str(model) in installed_models():
        return MODELS_DIR / str(model)
    return path


def default_model_dir() -> Path:
    """The shipped default model's folder (an InputError if this installation lacks it)."""
    if not (DEFAULT_MODEL / "model.json").is_file():
        raise InputError(
            DEFAULT_MODEL,
            "the shipped model is missing from this installation (pass --model MODEL_DIR)",
        )
    return DEFAULT_MODEL


def phase_free_model_dir(mode: str = "magnitude-only") -> Path | None:
    """The folder of the shipped phase-free model for input ``mode`` (``swi-only``:
    :data:`PHASE_FREE_MODEL_NAMES`; ``magnitude-only``: the general phase-free model, which
    also serves an SWI where this installation lacks the SWI model); None when there is none."""
    for name in (PHASE_FREE_MODEL_NAMES.get(mode, PHASE_FREE_MODEL_NAME), PHASE_FREE_MODEL_NAME):
        folder = MODELS_DIR / name
        if (folder / "model.json").is_file():
            return folder
    return None
