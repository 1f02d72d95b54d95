"""Packaging: environment.yml agrees with pyproject.toml; a wheel carries the shipped MNIST weights."""

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dmcmc_edu.datasets import WEIGHT_FILES, default_weights_dir, load_mnist
from dmcmc_edu.evaluation.mnist_fid import REFERENCE_NAME

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_agrees_with_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = pyproject["dependencies"] + pyproject["optional-dependencies"]["test"]
    wanted = {_name(s) for s in specs}
    listed, in_deps = set(), False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if not line.startswith(" "):
            in_deps = line.startswith("dependencies:")
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+)", line)
        if in_deps and m:
            listed.add(CONDA_NAMES.get(m.group(1).lower(), m.group(1).lower()))
    listed -= {"python", "pip"}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"


def test_ci_calls_make_test_and_readme_documents_it():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so no build/ or egg-info lands in the working tree)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dmcmc_edu", src / "dmcmc_edu", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("dmcmc_edu-*.whl")
    return built


def test_wheel_ships_the_mnist_weights_byte_for_byte(wheel):
    shipped = default_weights_dir()
    expected = {f"dmcmc_edu/weights/{p.name}": _sha256(p) for p in shipped.iterdir() if p.suffix in (".pt", ".json")}
    # every network the MNIST rung loads, with its JSON record, and the FID reference statistics
    needed = {*WEIGHT_FILES.values(), *(Path(f).with_suffix(".json").name for f in WEIGHT_FILES.values()),
              REFERENCE_NAME}
    assert {f"dmcmc_edu/weights/{n}" for n in needed} <= set(expected)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert set(expected) <= names, f"missing from the wheel: {sorted(set(expected) - names)}"
        for name, digest in expected.items():
            assert hashlib.sha256(z.read(name)).hexdigest() == digest, name
    # package data only: no tests, notebooks, benchmarks or MNIST images in the wheel
    assert all(n.startswith(("dmcmc_edu/", "dmcmc_edu-")) for n in names), sorted(names)[:5]


def test_installed_wheel_finds_its_weights(wheel, tmp_path):
    """Unpacked as pip installs it, the wheel's ``default_weights_dir()`` points inside it and holds every file."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    # the wheel's own datasets module (it imports no other dmcmc_edu module), loaded under another name
    spec = importlib.util.spec_from_file_location("wheel_datasets", site / "dmcmc_edu" / "datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = module.default_weights_dir()
    assert folder == (site / "dmcmc_edu" / "weights").resolve()
    assert {*WEIGHT_FILES.values(), REFERENCE_NAME} <= {p.name for p in folder.iterdir()}


def test_mnist_loader_says_where_to_get_the_images(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data/MNIST/raw.*download=True"):
        load_mnist(tmp_path)
