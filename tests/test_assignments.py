"""The course's assignments (notebooks/assignments) under nbgrader, end to end, and the commands that drive it.

One nbgrader cycle on a copy of the course (tests/assignment_harness.py): every assignment released with
``dmcmc_edu assignments release``; the source notebooks ("solution"), the release notebooks ("untouched") and the
source notebooks with the common mistakes of tests/assignment_mistakes/ ("mistakes1..K") graded with ONE
``dmcmc_edu assignments grade`` (nbgrader autograde + export).  The cycle tests skip only when nbgrader is not
installed (the extra 'assignments'; ``make test`` installs it).  The bad-input tests of the commands need no nbgrader.
While writing an assignment, ``DMCMC_ASSIGNMENTS=a1_noise_and_denoising,a2_integrators pytest
tests/test_assignments.py`` runs these tests for the named assignments only.  To keep ``make test`` short, the
cycle grades the first pack of mistakes of each assignment (the first listed mistake of every graded cell);
``DMCMC_ALL_MISTAKES=1`` grades every pack, and tests/test_grading_a*.py check every mistake's message in-process.
"""
import json
import os
import shutil
from pathlib import Path

import pytest
from assignment_harness import (
    COURSE,
    MANUAL_CELLS,
    MARKERS,
    assignment_names,
    cell_text,
    cells_by_id,
    grade_id,
    graded_points,
    load_mistakes,
    nbgrader_missing_reason,
    problems,
    read_notebook,
    run_cycle,
    source_path,
)

from dmcmc_edu.cli import main
from dmcmc_edu.grading import course as course_mod

NAMES = [n for n in os.environ.get("DMCMC_ASSIGNMENTS", "").split(",") if n] or assignment_names()
needs_nbgrader = pytest.mark.skipif(nbgrader_missing_reason() is not None, reason=str(nbgrader_missing_reason()))


# ----------------------------------------------------------------------------- the source notebooks' format


@pytest.mark.parametrize("name", NAMES)
def test_source_notebook_follows_the_course_format(name):
    nb = read_notebook(source_path(name))
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and "minutes" in cell_text(first), "opens with what and how long"
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), "stored without outputs"
    cells = nb["cells"]
    for i, c in enumerate(cells):
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and c["cell_type"] == "code":
            text = cell_text(c)
            assert all(m in text for m in MARKERS), f"{meta['grade_id']}: no BEGIN/END SOLUTION region"
            test = cells[i + 1]
            assert grade_id(test) == f"test_{meta['grade_id']}", f"{meta['grade_id']}: no graded test cell after it"
            assert "### BEGIN HIDDEN TESTS" in cell_text(test), f"{grade_id(test)}: no hidden tests"
            assert test["metadata"]["nbgrader"]["locked"], f"{grade_id(test)} must be read-only"
    auto = sum(p for g, p in graded_points(nb).items() if g not in MANUAL_CELLS)
    assert auto == 10, f"{name}: {auto} autograded points, the course gives 10 per assignment"


@pytest.mark.parametrize("name", NAMES)
def test_every_graded_function_has_a_listed_mistake(name):
    nb = read_notebook(source_path(name))
    tests = {g for g in graded_points(nb) if g not in MANUAL_CELLS}
    mistakes = load_mistakes(name)
    assert tests <= {m["test"] for m in mistakes}, f"graded cells without a listed mistake: " \
                                                   f"{sorted(tests - {m['test'] for m in mistakes})}"
    ids = cells_by_id(nb)
    for m in mistakes:
        assert m["cell"] in ids and ids[m["cell"]]["metadata"]["nbgrader"]["solution"], m["cell"]
        assert m["test"] in tests, m["test"]


# ----------------------------------------------------------------------------- the nbgrader cycle


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_cycle(NAMES, tmp_path_factory.mktemp("course-cycle"),
                     all_mistakes=os.environ.get("DMCMC_ALL_MISTAKES") == "1")


@needs_nbgrader
def test_release_notebooks_hide_the_answers(report):
    for name in NAMES:
        rel = read_notebook(report.workdir / "course" / "release" / name / f"{name}.ipynb")
        text = "\n".join(cell_text(c) for c in rel["cells"])
        assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
        assert "hidden=True" not in text, f"{name}: a hidden test is left in the release"
        assert "raise NotImplementedError()" in text
        for c in rel["cells"]:
            meta = c.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                assert meta.get("locked"), f"{name}: graded cell {meta['grade_id']} is not locked"


@needs_nbgrader
def test_solutions_get_full_autograded_marks(report):
    assert problems(report, ["solution"]) == []
    for row in report.grades:
        if row["student_id"] == "solution":
            manual = sum(p for g, p in report.points[row["assignment"]].items() if g in MANUAL_CELLS)
            assert row["score"] == row["max_score"] - manual, row


@needs_nbgrader
def test_untouched_release_gets_zero_and_fails_only_in_graded_cells(report):
    assert problems(report, ["untouched"]) == []
    assert all(row["score"] == 0 for row in report.grades if row["student_id"] == "untouched")


@needs_nbgrader
def test_each_common_mistake_loses_points_with_a_message_naming_it(report):
    assert problems(report, ["mistakes"]) == []
    graded = [(name, m["test"]) for (_, name), sub in report.submissions.items() for m in sub.mistakes]
    if os.environ.get("DMCMC_ALL_MISTAKES") == "1":
        assert len(graded) == sum(len(load_mistakes(n)) for n in NAMES), "every listed mistake was graded"
    else:  # the first pack: one mistake for every graded cell of every assignment
        for name in NAMES:
            tests = {g for g in graded_points(read_notebook(source_path(name))) if g not in MANUAL_CELLS}
            assert tests <= {t for n, t in graded if n == name}, f"{name}: graded cells without a graded mistake"


@needs_nbgrader
def test_grading_leaves_the_submissions_and_the_csv_alone(report):
    assert report.submissions_unchanged
    out = report.workdir / "grades.csv"
    before = out.read_bytes()
    with pytest.raises(SystemExit, match="exists; choose another file"):
        main(["assignments", "grade", "--course", str(report.workdir / "course"),
              "--submissions", str(report.workdir / "submissions"), "--out", str(out)])
    assert out.read_bytes() == before
    header = before.decode().splitlines()[0].split(",")
    assert {"assignment", "student_id", "score", "max_score"} <= set(header)


# ----------------------------------------------------------------------------- bad input: one error line, no nbgrader


def _submission(root: Path, student: str, name: str, text: str | None = None) -> Path:
    folder = root / student / name
    folder.mkdir(parents=True)
    nb = text if text is not None else json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    (folder / f"{name}.ipynb").write_text(nb)
    return folder


def _grade_error(capsys, course, subs, out) -> str:
    with pytest.raises(SystemExit) as info:
        main(["assignments", "grade", "--course", str(course), "--submissions", str(subs), "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def small_course(tmp_path):
    course = tmp_path / "course"
    (course / "source" / NAMES[0]).mkdir(parents=True)
    shutil.copy2(COURSE / "nbgrader_config.py", course)
    shutil.copy2(source_path(NAMES[0]), course / "source" / NAMES[0])
    return course


def test_grade_refuses_bad_input_with_one_line(small_course, tmp_path, capsys):
    name = NAMES[0]
    out = tmp_path / "grades.csv"
    assert "no such folder" in _grade_error(capsys, small_course, tmp_path / "nowhere", out)
    assert "not an nbgrader course folder" in _grade_error(capsys, tmp_path, tmp_path, out)
    subs = tmp_path / "subs"
    subs.mkdir()
    assert "no submissions in it" in _grade_error(capsys, small_course, subs, out)
    _submission(subs, "ann", "a9_unknown")
    line = _grade_error(capsys, small_course, subs, out)
    assert "unknown assignment 'a9_unknown'" in line and name in line
    shutil.rmtree(subs / "ann")
    _submission(subs, "ann", name, text="{not json")
    assert "not a notebook" in _grade_error(capsys, small_course, subs, out)
    shutil.rmtree(subs / "ann")
    (subs / "ann" / name).mkdir(parents=True)
    assert f"no {name}.ipynb in it" in _grade_error(capsys, small_course, subs, out)
    shutil.rmtree(subs / "ann")
    _submission(subs, "ann", name)
    out.write_text("kept")
    assert "exists; choose another file" in _grade_error(capsys, small_course, subs, out)
    assert out.read_text() == "kept"


def test_without_nbgrader_the_commands_say_which_extra_to_install(small_course, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(course_mod, "nbgrader_available", lambda: False)
    subs = tmp_path / "subs"
    _submission(subs, "ann", NAMES[0])
    line = _grade_error(capsys, small_course, subs, tmp_path / "grades.csv")
    assert "pip install dmcmc_edu[assignments]" in line
    with pytest.raises(SystemExit):
        main(["assignments", "release", "--course", str(small_course)])
    assert "pip install dmcmc_edu[assignments]" in capsys.readouterr().err
    assert not (small_course / "release").exists() and not (tmp_path / "grades.csv").exists()


def test_release_refuses_an_unknown_assignment(small_course, capsys):
    with pytest.raises(SystemExit):
        main(["assignments", "release", "--course", str(small_course), "--assignments", "a0_nothing"])
    err = capsys.readouterr().err
    assert "unknown assignment 'a0_nothing'" in err and NAMES[0] in err
