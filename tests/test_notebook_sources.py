"""The notebooks' sources: no control characters, the course's shape, and a course map that names every notebook.

The walkthroughs themselves run under nbval (``make notebooks``); this file checks what nbval cannot see.
"""
import json
import re
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
WALKTHROUGHS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
ALL_NOTEBOOKS = WALKTHROUGHS + sorted((NB_DIR / "assignments" / "source").glob("*/*.ipynb"))
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # everything below space except \t and \n, and DEL


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def test_the_course_has_its_notebooks():
    names = [p.name for p in WALKTHROUGHS]
    assert names[0] == "00_overview.ipynb"
    assert len(names) >= 9, names
    assert len({n[:2] for n in names}) == len(names), f"two notebooks share a number: {names}"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_no_control_characters(path):
    """A control character in a source (e.g. ``\\a`` from "\\approx" in a non-raw string) breaks the maths."""
    for i, cell in enumerate(_cells(path)):
        src = _source(cell)
        m = CONTROL.search(src)
        near = src[max(0, m.start() - 20):m.end() + 20] if m else ""
        assert m is None, f"{path.name} cell {i}: control character {m.group()!r} near {near!r}"


@pytest.mark.parametrize("path", WALKTHROUGHS, ids=lambda p: p.name)
def test_walkthrough_opens_with_objectives_and_time_and_ends_with_try_this(path):
    cells = _cells(path)
    first = _source(cells[0]).lower()
    assert cells[0]["cell_type"] == "markdown" and first.startswith("#"), f"{path.name}: no title cell"
    assert "minute" in first, f"{path.name}: the opening cell does not say how long it takes"
    assert any(w in first for w in ("you will", "learning objectives", "what you will")), \
        f"{path.name}: the opening cell has no learning objectives"
    tail = " ".join(_source(c) for c in cells[-2:]).lower()
    assert "try this" in tail, f"{path.name}: no 'Try this' prompts at the end"


def test_course_map_names_every_notebook_and_only_existing_ones():
    """The map in 00 is printed by overview.course_map from overview.COURSE: that table names every walkthrough,
    and 00 calls it (its stored output lists them all)."""
    from dmcmc_edu.experiments.overview import COURSE

    assert set(COURSE) == {p.name for p in WALKTHROUGHS}, set(COURSE) ^ {p.name for p in WALKTHROUGHS}
    cells = _cells(NB_DIR / "00_overview.ipynb")
    code = [c for c in cells if c["cell_type"] == "code" and "overview.course_map(" in _source(c)]
    assert code, "00_overview.ipynb: no cell prints overview.course_map"
    shown = json.dumps(code[0].get("outputs", []))
    named = set(re.findall(r"`(\d\d_[a-z0-9_]+\.ipynb)`", shown))
    assert named == {p.name for p in WALKTHROUGHS}, (named ^ {p.name for p in WALKTHROUGHS})


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_references_to_other_notebooks_exist(path):
    """A notebook that points at ``NN_name.ipynb`` points at a file that exists (the course was renumbered once)."""
    text = " ".join(_source(c) for c in _cells(path))
    for name in set(re.findall(r"\b(\d\d_[a-z0-9_]+)\.ipynb", text)):
        assert (NB_DIR / f"{name}.ipynb").exists(), f"{path.name} refers to {name}.ipynb, which does not exist"
