"""The ``course`` command group: ``course init DIR`` copies the course out of the installed package.

course init   the walkthroughs, the nbgrader course and the MNIST data (and the stored measurements the
              walkthroughs read) into a new or empty folder, laid out as in the repository

From a wheel the files are the package data ``dmcmc_edu/course/`` (built by ``setup.py`` from the list in
:mod:`dmcmc_edu.cli.course_files`); from a clone (an editable install) they are read from the repository itself.
Nothing is ever overwritten: a folder that holds anything is refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dmcmc_edu.cli.common import CommandError, HelpFormatter, add_command, plain
from dmcmc_edu.cli.course_files import course_files

__all__ = ["add_parsers", "cmd_init", "course_source"]

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The installed ``dmcmc_edu`` folder."""


def course_source() -> Path:
    """Where the course's files are: the wheel's ``dmcmc_edu/course``, else the clone the package runs from."""
    shipped = PACKAGE_ROOT / "course"
    if (shipped / "notebooks").is_dir():
        return shipped
    clone = PACKAGE_ROOT.parent
    if (clone / "notebooks" / "assignments" / "source").is_dir() and (clone / "pyproject.toml").is_file():
        return clone
    raise CommandError(f"this installation of dmcmc_edu ({PACKAGE_ROOT}) holds no course files (no "
                       f"{shipped / 'notebooks'}); install the wheel, which ships them, or clone the repository")


def _check_target(folder: Path) -> None:
    """Refuse a ``DIR`` that is a file, or a folder that holds anything."""
    if folder.is_symlink() and not folder.exists():
        raise CommandError(f"DIR {folder}: a broken link; choose another folder")
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"DIR {folder}: a file, not a folder; choose a new or empty folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise CommandError(f"DIR {folder}: not empty; course init writes only into a new or empty folder "
                           "(nothing is ever overwritten)")


def cmd_init(args) -> int:
    """copy the walkthroughs, the nbgrader course and the MNIST data into a new folder

    Makes DIR (which must be new or empty) with the repository's layout: DIR/notebooks/*.ipynb (the walkthroughs),
    DIR/notebooks/assignments (the nbgrader course: source/, nbgrader_config.py, README.md, example rosters),
    DIR/data/MNIST/raw (the MNIST idx files, gzipped), DIR/bench/results (the stored measurements the
    walkthroughs read) and DIR/tests/fixtures (the tiny checkpoint notebook 07 runs on a CPU).  Then, in DIR:
    jupyter lab notebooks, python -m dmcmc_edu assignments release, python -m dmcmc_edu train-score --out
    runs/score (--data-root data is the default).  Nothing is overwritten.
    """
    source = course_source()
    target = Path(args.dir)
    _check_target(target)
    files = course_files(source)
    if not any(f.startswith("notebooks/assignments/source/") for f in files):
        raise CommandError(f"{source}: the course's files are incomplete (no notebooks/assignments/source/); "
                           "reinstall dmcmc_edu")
    target.mkdir(parents=True, exist_ok=True)
    size = 0
    for rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(source / rel, "rb") as src, open(dest, "xb") as out:  # "x": never replaces a file
            shutil.copyfileobj(src, out)
        size += dest.stat().st_size
    counts = {what: sum(f.startswith(prefix) for f in files) for what, prefix in
              (("walkthroughs", "notebooks/0"), ("assignment files", "notebooks/assignments/"),
               ("data files", "data/"), ("stored results", "bench/results/"), ("checkpoint files", "tests/"))}
    print(f"wrote {len(files)} files ({size / 1e6:.1f} MB) into {target}: "
          + ", ".join(f"{n} {what}" for what, n in counts.items()))
    print(f"next: cd {target} && jupyter lab notebooks   (start with 00_overview.ipynb);\n"
          "      python -m dmcmc_edu assignments release   (the students' versions, needs the extra 'assignments')")
    return 0


def add_parsers(sub) -> None:
    """Add the command group ``course`` (``init``) to the sub-command parsers."""
    group = sub.add_parser("course", help="the course's files: init DIR copies them out of the installed package",
                           description=plain(__doc__.split("\n\n")[1]), formatter_class=HelpFormatter)
    group.epilog = f"example:\n  {group.prog} init my_course"
    inner = group.add_subparsers(dest="course_command", required=True, metavar="{init}")
    p = add_command(inner, "init", cmd_init, example="my_course")
    p.add_argument("dir", metavar="DIR", help="the folder to make (new, or empty)")
