"""The package's architecture rules (README, "Layout"), checked on the source so that later work
cannot quietly undo them:

- no import cycle between modules, nor between packages (imports inside functions count);
- nothing that ``cmbdet detect`` imports holds training code (optimisers, losses, backward
  passes, training loops), calibration, cross-validation or the generator;
- the report does not import the generator;
- no module over 450 lines; package ``__init__`` files import nothing (the root's lazy
  ``Detector`` and the command line's entry point aside).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "cmbdet"
MAX_LINES = 450
# where ``cmbdet detect`` (one subject or a batch) starts
DETECT_ENTRY = ("cmbdet.cli.detect", "cmbdet.detect.detector", "cmbdet.batch.run")
TRAINING_CODE = re.compile(
    r"torch\.optim|\.backward\(|zero_grad|clip_grad|binary_cross_entropy|cross_entropy\(|"
    r"def train(_stage\d|_model)?\(|def detection_loss|def classification_loss"
)
NOT_FOR_DETECTION = ("cmbdet.training", "cmbdet.synth")
IMPORTING_INITS = {"cmbdet", "cmbdet.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


@cache
def _imports() -> dict[str, frozenset[str]]:
    """Every cmbdet module each module imports, wherever the import statement stands."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # ``from cmbdet.io import nifti`` names a module
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in modules else node.module)
        graph[name] = frozenset(m for m in found if m in modules and m != name)
    return graph


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _closure(starts: tuple[str, ...]) -> set[str]:
    graph, seen, todo = _imports(), set(), list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def test_the_rules_see_the_whole_package():
    graph = _imports()
    assert len(graph) > 60
    assert "cmbdet.detect.model_spec" in graph["cmbdet.detect.detector"]
    assert "cmbdet.training.stage1" in graph["cmbdet.training.model"]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset({"a"}), "c": frozenset()}) == [["a", "b"]]


def test_no_import_cycle_between_modules():
    assert _cycles(_imports()) == []


def test_no_import_cycle_between_packages():
    packages: dict[str, set[str]] = {}
    for module, imported in _imports().items():
        if module == "cmbdet":  # the root's lazy ``Detector`` is a convenience for users
            continue
        edges = packages.setdefault(_package(module), set())
        edges |= {_package(m) for m in imported if _package(m) != _package(module)}
    assert _cycles({k: frozenset(v) for k, v in packages.items()}) == []


def test_detection_imports_no_training_calibration_or_generator_code():
    reached = _closure(DETECT_ENTRY)
    assert "cmbdet.stage2.inference" in reached and "cmbdet.report.subject" in reached
    assert sorted(m for m in reached if m.startswith(NOT_FOR_DETECTION)) == []
    holding = [m for m in reached if TRAINING_CODE.search(_modules()[m].read_text())]
    assert sorted(holding) == []


def test_the_report_does_not_import_the_generator():
    report = tuple(m for m in _modules() if m.startswith("cmbdet.report"))
    assert sorted(m for m in _closure(report) if m.startswith("cmbdet.synth")) == []


@pytest.mark.parametrize("module", sorted(_modules()))
def test_modules_stay_small_and_package_inits_import_nothing(module):
    path = _modules()[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{module}: split it by what it does"
    if path.name == "__init__.py" and module not in IMPORTING_INITS:
        tree = ast.parse(text)
        assert not [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]


def test_a_detect_run_loads_no_training_or_generator_code(quick_model, tmp_path):
    """What ``cmbdet detect`` really imports, command line included: of the training package and
    the generator only their torch-free settings (the command line shows their defaults)."""
    from cmbdet.synth.dataset import generate_dataset

    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=4, progress=False)
    subject = data / "sub-0000"
    argv = [
        "detect",
        "--swi",
        str(subject / "swi.nii.gz"),
        "--phase",
        str(subject / "phase.nii.gz"),
    ]
    argv += ["--out", str(tmp_path / "out"), "--model", str(quick_model)]
    code = (
        "import sys; from cmbdet.cli import main; code = main(sys.argv[1:]); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('cmbdet')))); "
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.splitlines()[-1].split()
    ran = {"cmbdet.detect.detector", "cmbdet.detect.networks", "cmbdet.stage1.inference"}
    assert ran <= set(loaded)
    settings_only = {"cmbdet.training", "cmbdet.training.config", "cmbdet.synth"}
    settings_only |= {"cmbdet.synth.families", "cmbdet.synth.presets"}
    assert sorted(set(m for m in loaded if m.startswith(NOT_FOR_DETECTION)) - settings_only) == []
    holding = [
        m for m in loaded if m in _modules() and TRAINING_CODE.search(_modules()[m].read_text())
    ]
    assert holding == []


def test_detect_and_demo_run_without_pytorch_nilearn_or_matplotlib(tmp_path):
    """The light install: with torch, nilearn and matplotlib unimportable, ``cmbdet demo`` runs
    on the shipped sample subject and ``cmbdet detect`` on it, both on ONNX Runtime."""
    from cmbdet.cli.demo import SAMPLE_DIR

    blocked = "import sys; sys.modules.update(torch=None, nilearn=None, matplotlib=None); "
    run = blocked + "from cmbdet.cli import main; sys.exit(main(sys.argv[1:]))"
    demo = subprocess.run(
        [sys.executable, "-c", run, "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    assert "the generator needs torch and nilearn" in demo.stdout
    argv = ["detect", "--swi", str(SAMPLE_DIR / "swi.nii.gz"), "--phase"]
    argv += [str(SAMPLE_DIR / "phase.nii.gz"), "--out", str(tmp_path / "detect")]
    detect = subprocess.run(
        [sys.executable, "-c", run, *argv], capture_output=True, text=True, timeout=300
    )
    assert detect.returncode == 0, detect.stderr
    record = json.loads((tmp_path / "detect" / "run.json").read_text())
    assert record["backend"] == "onnx" and record["candidates"] > 0
