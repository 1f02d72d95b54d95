"""pytest in the course folder: the source notebooks run under ``pytest --nbval-lax notebooks/assignments/source``.

They are stored without outputs (nbgrader clears them anyway), so the strict ``--nbval`` of the walkthrough
notebooks (``pytest --nbval notebooks``) leaves them out; nbgrader's generated folders (release/, submitted/,
autograded/, feedback/) are never collected.
"""
import os
from pathlib import Path

# the source notebooks run their hidden checks too: a fixed secret for them (a grading run draws a fresh one)
os.environ.setdefault("DMCMC_EDU_HIDDEN_SEED", "source-notebooks")

HERE = Path(__file__).resolve().parent
GENERATED = {"release", "submitted", "autograded", "feedback"}


def pytest_ignore_collect(collection_path, config):
    try:
        parts = Path(collection_path).resolve().relative_to(HERE).parts
    except ValueError:
        return None
    if not parts:
        return None
    if parts[0] in GENERATED or parts[0].startswith("."):
        return True
    if parts[0] == "source" and config.getoption("nbval", False) and not config.getoption("nbval_lax", False):
        return True
    return None
