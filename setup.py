"""The build step pyproject.toml cannot express: the course's files become package data of the wheel.

``build_py`` copies the files listed by ``dmcmc_edu/cli/course_files.py`` (the walkthroughs, the nbgrader course,
the MNIST data and the stored measurements the walkthroughs read; they live outside the package in the repository)
into ``dmcmc_edu/course/`` of the build, so that ``python -m dmcmc_edu course init DIR`` works from a wheel.
Everything else is in pyproject.toml.
"""

import importlib.util
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _course_files():
    """The course's files; in a git clone only those git tracks (not the results of a bench still running)."""
    # loaded by path: the list is plain data, and importing dmcmc_edu would need its dependencies at build time
    spec = importlib.util.spec_from_file_location("course_files", HERE / "dmcmc_edu" / "cli" / "course_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files = module.course_files(HERE)
    if (HERE / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=HERE, capture_output=True)
        if listed.returncode == 0:
            tracked = set(listed.stdout.decode().split("\0"))
            files = [f for f in files if f in tracked]
    return files


class BuildWithCourse(build_py):
    """``build_py``, then the course's files into ``<build>/dmcmc_edu/course/`` (relative paths kept)."""

    def run(self):
        super().run()
        files = _course_files()
        if not any(f.startswith("notebooks/assignments/source/") for f in files):
            raise SystemExit(f"setup.py: the course's files are missing under {HERE} (no notebooks/assignments/source/"
                             "); build from a clone or from the sdist")
        for rel in files:
            target = Path(self.build_lib) / "dmcmc_edu" / "course" / rel
            self.mkpath(str(target.parent))
            self.copy_file(str(HERE / rel), str(target), preserve_mode=False)


setup(cmdclass={"build_py": BuildWithCourse})
