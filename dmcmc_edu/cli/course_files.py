"""Which files make the course that ``python -m dmcmc_edu course init DIR`` copies out (plain data, stdlib only).

The same list builds the wheel's package data (``setup.py`` copies these files into ``dmcmc_edu/course/``) and
is read by ``course init`` in a clone, so a wheel and a clone give the same folder:

* the walkthroughs ``notebooks/*.ipynb``;
* the nbgrader course ``notebooks/assignments``: ``source/``, ``nbgrader_config.py``, ``conftest.py``, the README
  and the example rosters (nothing nbgrader generates: no release/, gradebook.db, students.csv, ...);
* the MNIST data ``data/MNIST/raw/*.gz`` (the original idx files);
* the stored measurements the walkthroughs read, ``bench/results`` (JSON, CSV, Markdown and the toy sweep's
  trained ring/low-rank networks; no figures);
* the tiny CIFAR10 NCSN++ checkpoint that notebook 07 (the GPU lab) runs on a CPU, from ``tests/fixtures``.

Paths are relative to the repository root, with ``/`` separators; the folder made by ``course init`` has the
repository's layout, so the notebooks find ``../data`` and ``../bench/results`` as in a clone.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PATTERNS", "EXCLUDED_PARTS", "course_files"]

PATTERNS = (
    "notebooks/*.ipynb",
    "notebooks/assignments/README.md",
    "notebooks/assignments/nbgrader_config.py",
    "notebooks/assignments/conftest.py",
    "notebooks/assignments/*.example.csv",
    "notebooks/assignments/.gitignore",
    "notebooks/assignments/source/*/*",
    "data/MNIST/raw/*.gz",
    "bench/results/**/*.json",
    "bench/results/**/*.csv",
    "bench/results/**/*.md",
    "bench/results/**/*.txt",
    "bench/results/toy/*.pt",
    "tests/fixtures/score_sde/tiny_cifar10_ncsnpp_continuous/checkpoint.pth",
    "tests/fixtures/score_sde/tiny_cifar10_ncsnpp_continuous/config.json",
)
"""Glob patterns (relative to the root) of the course's files."""

EXCLUDED_PARTS = {".ipynb_checkpoints", "__pycache__", "features"}
"""Folder names never copied (editor checkpoints, caches; bench/results/mnist_seeds/features is a local cache)."""


def course_files(root) -> list[str]:
    """The course's files under ``root`` (a clone, or the wheel's ``dmcmc_edu/course``), sorted, relative."""
    root = Path(root)
    found = set()
    for pattern in PATTERNS:
        for path in root.glob(pattern):
            rel = path.relative_to(root)
            if path.is_file() and not EXCLUDED_PARTS.intersection(rel.parts[:-1]):
                found.add(rel.as_posix())
    return sorted(found)
