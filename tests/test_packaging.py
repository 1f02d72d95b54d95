"""Packaging: environment.yml agrees with pyproject.toml; a wheel carries the shipped MNIST weights, the course
(walkthroughs, nbgrader course, MNIST data, stored results) and the LICENSE; ``course init`` copies the course out."""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dmcmc_edu.cli.course_files import course_files
from dmcmc_edu.datasets import WEIGHT_FILES, default_weights_dir, load_mnist
from dmcmc_edu.evaluation.mnist_fid import REFERENCE_NAME

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name
COURSE_EXTRAS = ("test", "explorers", "assignments")
"""The extras environment.yml carries: the tests, notebook 08's explorers (ipywidgets), the graded assignments."""


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_agrees_with_pyproject():
    """environment.yml = the dependencies and the course's extras, with the same version bounds."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = pyproject["dependencies"] + [s for e in COURSE_EXTRAS for s in pyproject["optional-dependencies"][e]]
    wanted = {_name(s): s.strip()[len(_name(s)):].replace(" ", "") for s in specs}
    listed, in_deps = {}, False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if not line.startswith(" "):
            in_deps = line.startswith("dependencies:")
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+)(\S*)", line)
        if in_deps and m:
            listed[CONDA_NAMES.get(m.group(1).lower(), m.group(1).lower())] = m.group(2)
    for name in ("python", "pip"):
        listed.pop(name, None)
    assert set(listed) == set(wanted), (f"only in environment.yml: {set(listed) - set(wanted)}; "
                                        f"only in pyproject: {set(wanted) - set(listed)}")
    assert listed == wanted  # the same bounds
    assert {"ipywidgets", "nbgrader", "jupyterlab"} <= set(listed)  # notebook 08, the assignments, the notebooks


def test_ci_calls_make_test_and_readme_documents_it():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def course_list() -> list[str]:
    """The course's files as the wheel is built (benches running beside the tests may add results later)."""
    return course_files(ROOT)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, course_list) -> Path:
    """A wheel built from a copy of the sources (so no build/ or egg-info lands in the working tree)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "setup.py", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dmcmc_edu", src / "dmcmc_edu",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "course"))
    for rel in course_list:  # what setup.py copies into the wheel's dmcmc_edu/course/
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, src / rel)
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
    # package data only: no tests or benchmark scripts; the course lies inside the package (dmcmc_edu/course/),
    # with notebook 07's CPU checkpoint as its only file from tests/
    assert all(n.startswith(("dmcmc_edu/", "dmcmc_edu-")) for n in names), sorted(names)[:5]
    assert not any(n.endswith((".png", ".py")) and n.startswith("dmcmc_edu/course/tests/") for n in names)
    assert {n for n in names if n.startswith("dmcmc_edu/course/tests/")} == {
        f"dmcmc_edu/course/tests/fixtures/score_sde/tiny_cifar10_ncsnpp_continuous/{f}"
        for f in ("checkpoint.pth", "config.json")}


def test_wheel_ships_the_course_the_data_and_the_license(wheel, course_list):
    """The walkthroughs, the nbgrader course, MNIST's idx files and the stored results, byte for byte, and LICENSE."""
    expected = course_list
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = {n.removeprefix("dmcmc_edu/course/") for n in names if n.startswith("dmcmc_edu/course/")}
        assert set(expected) <= shipped, f"missing from the wheel: {sorted(set(expected) - shipped)[:5]}"
        for rel in expected:
            if rel.startswith(("notebooks/assignments/", "data/")) or rel.endswith(".ipynb"):
                assert z.read(f"dmcmc_edu/course/{rel}") == (ROOT / rel).read_bytes(), rel
        licenses = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert licenses and z.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    for part in ("notebooks/00_overview.ipynb", "notebooks/08_explorers.ipynb",
                 "notebooks/assignments/nbgrader_config.py", "notebooks/assignments/README.md",
                 "notebooks/assignments/source/a1_noise_and_denoising/a1_noise_and_denoising.ipynb",
                 "data/MNIST/raw/train-images-idx3-ubyte.gz", "data/MNIST/raw/t10k-labels-idx1-ubyte.gz",
                 "bench/results/toy/ring.json", "bench/results/toy/ring_classifier.pt",
                 "tests/fixtures/score_sde/tiny_cifar10_ncsnpp_continuous/checkpoint.pth"):
        assert part in shipped, part
    size_mb = wheel.stat().st_size / 1e6
    print(f"wheel {wheel.name}: {size_mb:.1f} MB")
    assert size_mb < 60, f"the wheel grew to {size_mb:.1f} MB"


COURSE_INIT = """
import sys
from pathlib import Path
import dmcmc_edu
site = Path(sys.argv[1]).resolve()
assert Path(dmcmc_edu.__file__).resolve().is_relative_to(site), dmcmc_edu.__file__  # the wheel's package, not the clone
from dmcmc_edu.cli import main
sys.exit(main(["course", "init", sys.argv[2]]))
"""


def _run_from(site: Path, *args, cwd: Path):
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked as pip installs it (its package first on sys.path in the subprocesses below)."""
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def test_course_init_from_the_installed_wheel(installed, tmp_path, course_list):
    work = tmp_path / "empty"
    work.mkdir()
    proc = _run_from(installed, "-c", COURSE_INIT, str(installed), "course", cwd=work)
    assert proc.returncode == 0, proc.stderr
    course = work / "course"
    assert sorted(p.relative_to(course).as_posix() for p in course.rglob("*") if p.is_file()) == course_list
    assert (course / "data/MNIST/raw/train-images-idx3-ubyte.gz").read_bytes() == \
        (ROOT / "data/MNIST/raw/train-images-idx3-ubyte.gz").read_bytes()
    # a second init into the same (now full) folder is refused in one line, and nothing changes
    before = {p: p.stat().st_mtime_ns for p in course.rglob("*")}
    proc = _run_from(installed, "-c", COURSE_INIT, str(installed), "course", cwd=work)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "not empty" in proc.stderr and "course" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in course.rglob("*")} == before


@pytest.mark.slow
def test_assignments_release_in_a_folder_made_by_course_init(installed, tmp_path):
    """From an empty folder with only the wheel: course init, then assignments release with its default --course."""
    pytest.importorskip("nbgrader")
    proc = _run_from(installed, "-c", COURSE_INIT, str(installed), "course", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    course = tmp_path / "course"
    proc = _run_from(installed, "-m", "dmcmc_edu", "assignments", "release", "--assignments",
                     "a1_noise_and_denoising", cwd=course)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    released = course / "notebooks/assignments/release/a1_noise_and_denoising/a1_noise_and_denoising.ipynb"
    assert released.is_file()


def test_course_init_refuses_a_file_or_a_full_folder_and_names_it(tmp_path, capsys):
    from dmcmc_edu.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("a user's file")
    (tmp_path / "a_file").write_text("x")
    for target, why in (("full", "not empty"), ("a_file", "a file, not a folder")):
        with pytest.raises(SystemExit) as exc:
            main(["course", "init", str(tmp_path / target)])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and why in err and target in err
    assert (tmp_path / "full" / "mine.txt").read_text() == "a user's file"
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["mine.txt"]


def test_course_init_from_this_installation_into_an_empty_folder(tmp_path, capsys):
    """In a clone (an editable install) the files come from the repository itself: the same list."""
    from dmcmc_edu.cli import main

    target = tmp_path / "new" / "course"
    before = set(course_files(ROOT))
    assert main(["course", "init", str(target)]) == 0
    copied = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert before <= copied <= set(course_files(ROOT))  # (a bench running beside may add results meanwhile)
    assert "wrote" in capsys.readouterr().out


def test_assignments_release_without_a_course_says_how_to_make_one(tmp_path, capsys):
    from dmcmc_edu.cli import main

    with pytest.raises(SystemExit):
        main(["assignments", "release", "--course", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "course init DIR" in err and "nowhere" in err


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
