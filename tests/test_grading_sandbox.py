"""Grading a student cannot game or harm: hostile submissions graded in one batch with honest classmates.

One ``assignments grade`` run (nbgrader autograde in the bubblewrap sandbox, every check judged outside the kernel)
on a copy of the course, assignment A1 (the cheapest), with these students:

* ``ann`` -- the model answers: 10/10;  ``bob`` -- one common mistake (forward_noise): 8/10;
* ``patcher`` -- stubs, and a cell that replaces the checks, ``compare``, ``numpy.allclose``, ``AssertionError``,
  ``sys.modules`` entries and IPython's error display with ones that always pass;
* ``reader`` -- stubs, and a cell that tries to read the source notebook (model answers, hidden tests), the
  gradebook and the repository, and prints what it found;
* ``writer`` -- stubs, and a cell that tries to append to the source notebook, rewrite the gradebook (ann's scores to
  0), create files in the course folder and in the host's /tmp, and reach the network;
* ``spawner`` -- stubs, and a cell that leaves detached processes (a new session, a double fork);
* ``hog`` -- asks for 16 GiB (refused: the memory limit), then two model answers: 4/10;
* ``exiter`` -- two model answers, then ``os._exit`` (the kernel dies): 4/10;
* ``hanger`` -- one model answer, then an endless loop that ignores SIGINT: 2/10, stopped by the per-cell limit;
* ``flooder`` -- one model answer, then output without end: 2/10, stopped by the output limit;
* ``broken`` -- a notebook nbgrader cannot process: named as not graded, left out of the CSV.

Each attempt earns nothing beyond its honest cells, finds and changes nothing, leaves no process; ann and bob are
exported with their scores.  Also: a second grader on the course is refused, a source notebook changed since its
release is refused, the whole run has a time limit.  The suite skips only where bubblewrap cannot run (CI installs
it: .ci/run) or nbgrader is missing.
"""
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from assignment_harness import (
    COURSE,
    cell_text,
    cells_by_id,
    enrol,
    load_mistakes,
    nbgrader_missing_reason,
    read_notebook,
    source_path,
    without_markers,
)

from dmcmc_edu.cli import main
from dmcmc_edu.grading import course as course_mod
from dmcmc_edu.grading import sandbox

NAME = "a1_noise_and_denoising"
MARKER = f"dmcmc-hostile-{uuid.uuid4().hex[:12]}"  # in every hostile process's command line and file name


def _bwrap_missing_reason() -> str | None:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap; CI installs it in .ci/run)"
    env = dict(os.environ)
    env.pop(sandbox.MODE_ENV, None)
    probe = subprocess.run([sys.executable, "-c", "from dmcmc_edu.grading import sandbox; sandbox.check_sandbox()"],
                           capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        return f"bubblewrap cannot run the sandbox here: {probe.stderr.strip().splitlines()[-1][:300]}"
    return None


@pytest.fixture(scope="module", autouse=True)
def _needs_nbgrader_and_bubblewrap():
    reason = nbgrader_missing_reason() or _bwrap_missing_reason()
    if reason is not None:
        pytest.skip(reason)

STUB = "raise NotImplementedError()"

PATCH = '''
import builtins, sys, numpy
import dmcmc_edu.grading.a1_noise as checks, dmcmc_edu.grading.feedback as feedback
passing = lambda *a, **k: "ok: patched"
for key in dir(checks):
    if key.startswith("check_"):
        setattr(checks, key, passing)
feedback.compare = lambda *a, **k: None
feedback.fail = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
builtins.AssertionError = type("AssertionError", (Exception,), {})
fake = type(sys)("dmcmc_edu.grading.a1_noise")
fake.__dict__.update({k: passing for k in dir(checks) if k.startswith("check_")})
sys.modules["dmcmc_edu.grading.a1_noise"] = fake
a1_noise = fake
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
from IPython.display import HTML, display
display(HTML("<script>MARKER()</script>"))
'''

READ = '''
import glob, os
found, denied = [], 0
targets = [COURSE + "/source/NAME/NAME.ipynb", COURSE + "/gradebook.db", COURSE + "/nbgrader_config.py",
           REPO + "/notebooks/assignments/source/NAME/NAME.ipynb", REPO + "/README.md", "/root/.bash_history"]
for path in targets:
    try:
        found.append(open(path, "rb").read()[:20000].decode("latin-1"))
    except OSError:
        denied += 1
roots = ["/", "/tmp", "/home", "/home/student", "/root", os.path.dirname(COURSE), os.path.dirname(REPO)]
for root in roots:
    for pattern in ["*/source/*/*.ipynb", "*/gradebook.db", "*/*/source/*/*.ipynb", "*/*/gradebook.db"]:
        for hit in glob.glob(os.path.join(root, pattern))[:5]:
            found.append(open(hit, "rb").read()[:20000].decode("latin-1"))
print("release file:", open("notes.txt").read())
print("denied:", denied, "found:", len(found))
print("\\n".join(found)[:50000])
'''

WRITE = '''
import os, socket, sqlite3
attempts = {}
def attempt(label, fn):
    try:
        fn()
        attempts[label] = "done"
    except Exception as err:
        attempts[label] = type(err).__name__
attempt("source", lambda: open(COURSE + "/source/NAME/NAME.ipynb", "a").write(" "))
def zero_ann():
    db = sqlite3.connect(COURSE + "/gradebook.db")
    db.execute("update grade set auto_score = 0")
    db.commit()
attempt("gradebook", zero_ann)
attempt("course", lambda: open(COURSE + "/MARKER", "w").write("x"))
attempt("host_tmp", lambda: open("/tmp/MARKER", "w").write("x"))
attempt("repo", lambda: open(REPO + "/MARKER", "w").write("x"))
attempt("network", lambda: socket.create_connection(("1.1.1.1", 80), timeout=2))
print("attempts:", sorted(attempts.items()))
'''

SPAWN = '''
import os, subprocess, sys
subprocess.Popen(["sh", "-c", "exec -a MARKER-session sleep 300"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sh", ["sh", "-c", "exec -a MARKER-double sleep 300"])
    os._exit(0)
print("spawned")
'''

HOG = '''
try:
    hog = bytearray(16 << 30)
    print("allocated 16 GiB")
except MemoryError:
    print("memory refused")
'''

EXIT = "import os\nos._exit(3)\n"
HANG = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"
FLOOD = "while True:\n    print('x' * 100000)\n"


def _fill(code: str, course: Path) -> str:
    return (code.replace("COURSE", repr(str(course))).replace("REPO", repr(str(COURSE.parents[1])))
            .replace("NAME", NAME).replace("MARKER", MARKER))


def _submission(course: Path, answers: dict[str, str], extra: tuple[str, str] | None = None) -> dict:
    """The source notebook with each solution cell holding ``answers[cell]`` (default: a stub); ``extra`` =
    (cell, code) puts ``code`` at the top of that cell."""
    nb = copy.deepcopy(read_notebook(source_path(NAME)))
    for gid, cell in cells_by_id(nb).items():
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not (meta.get("solution") and cell["cell_type"] == "code"):
            continue
        body = answers.get(gid)
        if body == "model":
            text = without_markers(cell_text(cell))
        elif body is not None:
            text = body
        else:  # what the release holds: the cell up to its solution, then the stub
            text = cell_text(cell).split("### BEGIN SOLUTION")[0] + STUB + "\n"
        if extra is not None and extra[0] == gid:
            text = _fill(extra[1], course) + "\n" + text
        cell["source"] = text
    return nb


def _model(*cells):
    return {c: "model" for c in cells}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    course = work / "course"
    (course / "source" / NAME).mkdir(parents=True)
    shutil.copy2(COURSE / "nbgrader_config.py", course)
    shutil.copy2(source_path(NAME), course / "source" / NAME)
    (course / "source" / NAME / "notes.txt").write_text("release data for students")  # released with the notebook
    course_mod.release(course, [NAME])
    all_cells = ["forward_noise", "karras_schedule", "geometric_schedule", "tweedie_denoiser", "score_from_denoiser"]
    mistake = next(m for m in load_mistakes(NAME) if m["cell"] == "forward_noise")
    bob = _model(*all_cells)
    bob["forward_noise"] = mistake["source"]
    students = {
        "ann": _submission(course, _model(*all_cells)),
        "bob": _submission(course, bob),
        "patcher": _submission(course, {}, ("forward_noise", PATCH)),
        "reader": _submission(course, {}, ("forward_noise", READ)),
        "writer": _submission(course, {}, ("forward_noise", WRITE)),
        "spawner": _submission(course, {}, ("forward_noise", SPAWN)),
        "hog": _submission(course, _model("forward_noise", "karras_schedule"), ("karras_schedule", HOG)),
        "exiter": _submission(course, _model("forward_noise", "karras_schedule"), ("geometric_schedule", EXIT)),
        "hanger": _submission(course, _model("forward_noise"), ("karras_schedule", HANG)),
        "flooder": _submission(course, _model("forward_noise"), ("karras_schedule", FLOOD)),
    }
    # a notebook nbgrader itself cannot process (a code cell without source): not graded, named, left out
    students["broken"] = {"cells": [{"cell_type": "code", "metadata": {}}], "metadata": {}, "nbformat": 4,
                          "nbformat_minor": 5}
    subs = work / "submissions"
    enrol(course, students)
    for student, nb in students.items():
        (subs / student / NAME).mkdir(parents=True)
        (subs / student / NAME / f"{NAME}.ipynb").write_text(json.dumps(nb))
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [course / "source" / NAME / f"{NAME}.ipynb",
                                                                      course / "nbgrader_config.py"]}
    out = work / "grades.csv"
    tmp = work / "tmp"  # the kernels' own folders go here (not the shared /tmp, where other tests' kernels run)
    tmp.mkdir()
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp)
    try:
        rows = course_mod.grade(course, subs, out, cell_seconds=10, notebook_seconds=120, run_seconds=900)
    finally:
        if saved is None:
            os.environ.pop("TMPDIR")
        else:
            os.environ["TMPDIR"] = saved
    return dict(course=course, out=out, rows=rows, digests=digests, tmp=tmp, work=work,
                scores={(r["student_id"]): r["score"] for r in rows})


def _autograded(batch, student) -> dict:
    return read_notebook(batch["course"] / "autograded" / student / NAME / f"{NAME}.ipynb")


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts.append(json.dumps(out))
    return "\n".join(parts)


def test_honest_classmates_are_exported_with_their_scores(batch):
    assert batch["scores"]["ann"] == 10
    assert batch["scores"]["bob"] == 8
    exported = {r["student_id"]: r["score"] for r in course_mod.read_grades(batch["out"])}
    assert exported == batch["scores"] and len(exported) == 10, "every student graded and exported"
    assert set(batch["rows"].failed) == {("broken", NAME)}, "only the notebook nbgrader could not read is left out"
    assert "not graded" in batch["rows"].failed[("broken", NAME)]


def test_patching_the_checks_scores_nothing(batch):
    assert batch["scores"]["patcher"] == 0
    nb = _autograded(batch, "patcher")
    failed = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 5, "every check cell failed, judged outside the kernel"
    assert MARKER not in _outputs_text(nb), "no HTML or script of the student's reaches the instructor's pages"


def test_reading_the_course_finds_nothing(batch):
    assert batch["scores"]["reader"] == 0
    text = _outputs_text(_autograded(batch, "reader"))
    assert "denied: 6 found: 0" in text, "the attempt ran and every path was out of reach"
    assert "release file: release data for students" in text, "the release's files are in the working folder"
    for secret in ("BEGIN HIDDEN TESTS", "hidden=True", "BEGIN SOLUTION", "SQLite format"):
        assert secret not in text


def test_writing_outside_changes_nothing(batch):
    assert batch["scores"]["writer"] == 0
    text = _outputs_text(_autograded(batch, "writer"))
    attempts = text.split("attempts: ", 1)[1].split("\\n", 1)[0]
    for label in ("source", "gradebook", "course", "repo", "network"):
        assert f"('{label}', 'done')" not in attempts and f"('{label}', " in attempts, attempts
    # ('host_tmp', 'done'): the sandbox's own /tmp, a tmpfs that went with it; the host's /tmp has no such file
    for path, digest in batch["digests"].items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed"
    assert not any(MARKER in p.name for p in batch["course"].rglob("*"))
    assert not (Path("/tmp") / MARKER).exists() and not (COURSE.parents[1] / MARKER).exists()
    assert batch["scores"]["ann"] == 10, "the gradebook was not rewritten"


def test_no_process_is_left_behind(batch):
    assert "spawned" in _outputs_text(_autograded(batch, "spawner"))
    assert batch["scores"]["spawner"] == 0
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if MARKER in cmdline:
                left.append(cmdline)
    assert left == []
    assert list(batch["tmp"].iterdir()) == [], "every kernel's folder was removed"


def test_memory_is_limited(batch):
    text = _outputs_text(_autograded(batch, "hog"))
    assert "memory refused" in text and "allocated" not in text
    assert batch["scores"]["hog"] == 4, "forward_noise and karras_schedule (the model answer after the attempt)"


def test_a_dead_or_stuck_notebook_costs_its_student_only(batch):
    assert batch["scores"]["exiter"] == 4
    assert batch["scores"]["hanger"] == 2
    assert batch["scores"]["flooder"] == 2
    notes = batch["rows"].notes
    assert "kernel died" in notes[("exiter", NAME)]
    assert "time limit of 10 s per cell" in notes[("hanger", NAME)]
    assert "output passed its limit" in notes[("flooder", NAME)]
    assert set(notes) == {("exiter", NAME), ("hanger", NAME), ("flooder", NAME)}


def test_a_second_grader_is_refused(batch, tmp_path, capsys):
    with course_mod.course_lock(batch["course"]):
        with pytest.raises(SystemExit):
            main(["assignments", "grade", "--course", str(batch["course"]), "--submissions",
                  str(batch["work"] / "submissions"), "--out", str(tmp_path / "second.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another grader is working on this course" in err[0]
    assert not (tmp_path / "second.csv").exists()


def test_a_changed_source_is_refused_until_released_again(batch, tmp_path, capsys):
    src = batch["course"] / "source" / NAME / f"{NAME}.ipynb"
    original = src.read_bytes()
    subs = tmp_path / "subs" / "ann" / NAME
    subs.mkdir(parents=True)
    shutil.copy2(batch["course"] / "submitted" / "ann" / NAME / f"{NAME}.ipynb", subs)
    try:
        src.write_bytes(original.replace(b"Noise and denoising", b"Noise and denoising (edited)", 1))
        with pytest.raises(SystemExit):
            main(["assignments", "grade", "--course", str(batch["course"]), "--submissions",
                  str(tmp_path / "subs"), "--out", str(tmp_path / "g.csv")])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "changed since it was released" in err[0] and "assignments release" in err[0]
        assert not (tmp_path / "g.csv").exists()
    finally:
        src.write_bytes(original)


def test_the_whole_run_has_a_time_limit(batch, tmp_path):
    subs = tmp_path / "subs" / "ann" / NAME
    subs.mkdir(parents=True)
    shutil.copy2(batch["course"] / "submitted" / "ann" / NAME / f"{NAME}.ipynb", subs)
    with pytest.raises(course_mod.CourseError, match="ann/a1_noise_and_denoising: not graded: the run passed its "
                                                     "time limit of 1 s"):
        course_mod.grade(batch["course"], tmp_path / "subs", tmp_path / "g.csv", run_seconds=1)
    assert not (tmp_path / "g.csv").exists()


def test_a_notebook_past_its_time_limit_is_stopped(batch, tmp_path):
    """Cells each under the per-cell limit, the notebook over its own: stopped, its earlier cells kept."""
    subs = tmp_path / "subs" / "slow" / NAME
    subs.mkdir(parents=True)
    nb = _submission(batch["course"], _model("forward_noise"), ("karras_schedule", "import time\ntime.sleep(90)\n"))
    (subs / f"{NAME}.ipynb").write_text(json.dumps(nb))
    enrol(batch["course"], ["slow"])
    rows = course_mod.grade(batch["course"], tmp_path / "subs", tmp_path / "g.csv", notebook_seconds=20,
                            cell_seconds=120)
    assert [r["score"] for r in rows if r["student_id"] == "slow"] == [2]
    assert "the notebook ran past its time limit of 20 s" in rows.notes[("slow", NAME)]


def test_the_sandbox_command(tmp_path):
    """As root: the kernel drops to uid 65534 inside; as another user: a user namespace, no setpriv. Neither binds
    the course or the repository, only the package."""
    limits = sandbox.Limits()
    for root in (True, False):
        cmd = sandbox.kernel_command(["python", "-m", "ipykernel_launcher"], tmp_path, limits, as_root=root)
        assert ("--unshare-user" in cmd) is (not root) and ("setpriv" in cmd) is root
        assert {"--unshare-net", "--unshare-pid", "--die-with-parent", "--clearenv"} <= set(cmd)
        binds = [cmd[i + 1] for i, a in enumerate(cmd) if a in ("--bind", "--ro-bind")]
        assert str(COURSE) not in binds and str(COURSE.parents[1]) not in binds
        assert str(sandbox.package_dir()) in binds and [cmd[i + 1] for i, a in enumerate(cmd) if a == "--bind"] == \
            [str(tmp_path)]
        # the environment and the package are bound after the private /tmp and home, so that an environment
        # installed under /tmp is not hidden by them (a clone under /tmp graded nothing before)
        mounts = [cmd[i + 1] for i, a in enumerate(cmd) if a in ("--tmpfs", "--ro-bind")]
        assert mounts.index("/tmp") < mounts.index(str(sandbox.package_dir()))
        assert mounts.index("/home/student") < mounts.index(str(Path(sys.prefix).resolve()))
    release = tmp_path / "release" / NAME
    (release / "data").mkdir(parents=True)
    for name in (f"{NAME}.ipynb", "data/points.csv", ".secret"):
        (release / name).write_text("x")
    cmd = sandbox.kernel_command(["python"], tmp_path, limits, release=release)
    pairs = [(cmd[i + 1], cmd[i + 2]) for i, a in enumerate(cmd) if a == "--ro-bind" and cmd[i + 1].startswith(
        str(tmp_path))]
    assert pairs == [(str(release / "data" / "points.csv"), sandbox.WORKDIR + "/data/points.csv")], \
        "the release's files but its notebooks (and hidden files), read-only in the working folder"


def test_without_bubblewrap_grading_is_refused_unless_plain(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(sandbox.MODE_ENV, raising=False)
    with pytest.raises(sandbox.SandboxError, match="apt-get install bubblewrap.*DMCMC_EDU_SANDBOX=plain"):
        sandbox.sandbox_mode()
    monkeypatch.setenv(sandbox.MODE_ENV, "plain")
    assert sandbox.sandbox_mode() == "plain"
    monkeypatch.setenv(sandbox.MODE_ENV, "docker")
    with pytest.raises(sandbox.SandboxError, match="expected one of bwrap, plain"):
        sandbox.sandbox_mode()


def test_plain_mode_without_sandbox_still_judges_outside_the_kernel(batch, tmp_path, monkeypatch, capsys):
    """DMCMC_EDU_SANDBOX=plain (a laptop without bubblewrap, trusted notebooks only): the kernel runs unsandboxed,
    the checks are still judged in the grader, so patching them still scores nothing."""
    monkeypatch.setenv(sandbox.MODE_ENV, "plain")
    subs = tmp_path / "subs"
    for student in ("ann", "patcher"):
        (subs / student / NAME).mkdir(parents=True)
        shutil.copy2(batch["work"] / "submissions" / student / NAME / f"{NAME}.ipynb", subs / student / NAME)
    main(["assignments", "grade", "--course", str(batch["course"]), "--submissions", str(subs),
          "--out", str(tmp_path / "plain.csv")])
    printed = capsys.readouterr().out
    assert {r["student_id"]: r["score"] for r in course_mod.read_grades(tmp_path / "plain.csv")
            if r["student_id"] in ("ann", "patcher")} == {"ann": 10, "patcher": 0}
    assert "wrote" in printed and "10 / 10" in printed
