"""Mutation testing of the core (issue 21, item 5): does a single wrong line of ``dmcmc_edu/core`` fail its tests?

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/core_mutants.py [--out bench/results/core_mutants]
        [--sample N] [--seed S] [--timeout SECONDS] [--stop-at HH:MM] [--files contract.py,...]
        [--tests tests/test_x.py,...] [--keep-core DIR] [--report-only]
        [--rerun-not-killed [--core-from DIR]]

The mutants are the single-change mutants of ``bench/grading_mutants.py`` (the same operators on the syntax tree:
``+``/``-`` and ``*``/``/`` swaps, swapped operands, comparison flips, ``and``/``or``, constants +-1 and
``True``/``False``, indices and slice ends +-1, ``range`` stops +-1, ``argmax``/``argmin``, ``max``/``min``,
``sum``/``mean``, a dropped unary minus or ``not``, two neighbouring arguments swapped, a wrapping call dropped,
an update statement dropped, a sibling variable read), applied to every line of every core file.  Strings are
never changed (error messages are not logic).  Each change is spliced into the file's text in place of the changed
node (same number of lines), so only that node differs.

The run never touches the working tree (others edit it): the package, ``pyproject.toml`` and ``tests/`` are copied
to a scratch folder once, the mutants are made from that copy, and each mutant is written there in turn.

1. **Baseline**: the core's test files (:data:`CORE_TESTS`, the golden pin ``tests/test_golden.py`` never among
   them) run once on the unmutated copy under ``coverage`` with one context per test function.  Tests that fail
   there are deselected for the whole run (listed in the results); the coverage map says which tests run each line.
2. **Per mutant**: the tests that run the mutated statement (all test files if it only runs at import) run in a
   process forked from this one (torch already imported, the package imported afresh from the copy, no bytecode
   written), stopping at the first failure, within ``--timeout`` seconds.

A mutant is ``killed`` (a test fails or errors), ``timeout`` (killed by the time limit, counted as killed),
``survived`` (every selected test passes) or ``not run`` (no test executes its line: it survives).  Every mutant
not killed is listed with an explanation from ``OUT/explanations.json`` (``{"<mutant id>": "..."}``, written by hand
after reading it): ``equivalent: ...`` (the change alters no result on any input the function allows) or ``gap:
...`` (a real mistake the tests miss; a test that closes it is named) -- or "(not explained yet)".  The score:
killed / (all but the explained-equivalent); the issue asks for at least 90%.

``--sample N`` runs a seeded random sample of N of the mutants (``random.Random(seed).sample``, stated in the
results), in the sample's order, so that a run stopped by ``--stop-at`` keeps a prefix, itself a random sample.
``--rerun-not-killed`` runs the mutants explained as gaps closed by a test again with today's tests on the core
of the report (``--core-from``: the copy ``--keep-core`` kept; the file hashes must match) and records the result
beside the first pass's.  Writes ``OUT/core_mutants.json``, ``OUT/README.md`` and ``OUT/core_mutants.png``;
``--report-only`` rewrites the last two from the JSON (after the explanations changed).  Single-threaded.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

ROOT = Path(__file__).resolve().parent.parent
CORE = Path("dmcmc_edu") / "core"
DEFAULT_OUT = ROOT / "bench" / "results" / "core_mutants"
TARGET = 0.90
# the core's own test files (those that exist are used); never the golden pin, which cannot tell a fix from a bug
CORE_TESTS = ("tests/test_core_oracles.py", "tests/test_core_steps.py", "tests/test_dlg.py", "tests/test_dlg_kernel.py",
              "tests/test_integrators.py", "tests/test_schedules.py", "tests/test_schedule_input.py",
              "tests/test_ledger_costs.py", "tests/test_mixture.py", "tests/test_core_imports.py",
              "tests/test_architecture.py")
EXCLUDED_TESTS = ("tests/test_golden.py",)

sys.path.insert(0, str(ROOT / "bench"))
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402,F401  (imported once here, so that every forked test run starts with it)
from grading_mutants import _sites  # noqa: E402  (the operators of the graders' mutation run)


@dataclass
class Mutant:
    id: str  # <file>:<line>:<operator>:<k>
    file: str  # relative to dmcmc_edu/core
    line: int
    operator: str
    before: str
    after: str
    code_line: str
    span: tuple[int, int]  # first and last line of the statement that holds the change
    source: str = ""  # the mutated file's text (not stored in the JSON)


# ----------------------------------------------------------------------------- making mutants


def _byte_offset(lines: list[bytes], line: int, col: int) -> int:
    return sum(len(b) for b in lines[:line - 1]) + col


def _splice(source: str, node: ast.AST, text: str) -> str:
    """``source`` with ``node``'s text replaced by ``text``, keeping the number of lines (ast offsets are bytes)."""
    raw = source.encode("utf-8")
    lines = raw.splitlines(keepends=True)
    a = _byte_offset(lines, node.lineno, node.col_offset)
    b = _byte_offset(lines, node.end_lineno, node.end_col_offset)
    extra = node.end_lineno - node.lineno - text.count("\n")
    if isinstance(node, ast.stmt):
        new = text + "\n" * max(extra, 0)  # blank lines keep the count (a dropped statement becomes ``pass``)
    else:
        new = "(" + text + "\n" * max(extra, 0) + ")"
    return (raw[:a] + new.encode("utf-8") + raw[b:]).decode("utf-8")


def _statement_spans(tree: ast.Module) -> list[tuple[int, int]]:
    return [(n.lineno, n.end_lineno) for n in ast.walk(tree) if isinstance(n, ast.stmt)]


def _innermost_span(spans, line: int) -> tuple[int, int]:
    inside = [s for s in spans if s[0] <= line <= s[1]]
    return min(inside, key=lambda s: s[1] - s[0]) if inside else (line, line)


def _annotation_nodes(tree: ast.Module) -> set[int]:
    """Nodes inside annotations: never evaluated in a file with ``from __future__ import annotations``."""
    roots = [n.annotation for n in ast.walk(tree) if isinstance(n, ast.arg)]
    roots += [n.returns for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    roots += [n.annotation for n in ast.walk(tree) if isinstance(n, ast.AnnAssign)]
    return {id(x) for r in roots if r is not None for x in ast.walk(r)}


def _str_arithmetic(node: ast.AST) -> int:
    """How many ``'key' + 1`` are in ``node`` (an index shift of a string key, ``d['parts' - 1]``, fails on every
    run: not a wrong line)."""
    return sum(isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub))
               and any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in (n.left, n.right))
               and any(isinstance(side, ast.Constant) and type(side.value) is int for side in (n.left, n.right))
               for n in ast.walk(node))


def make_mutants(path: Path, rel: str) -> list[Mutant]:
    """Every single-change mutant of the file at ``path`` whose code differs from the original and compiles
    (annotations are left alone: they are never evaluated; a string key is never shifted by one)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    skip = _annotation_nodes(tree) if "from __future__ import annotations" in source else set()
    spans = _statement_spans(tree)
    src_lines = source.splitlines()
    seen = {ast.dump(tree)}
    out, counts = [], {}
    for site in _sites(tree, None):
        node = nodes[site.node_index]
        if id(node) in skip:
            continue
        new = site.rewrite(copy.deepcopy(node))
        if new is node or _str_arithmetic(new) > _str_arithmetic(node):
            continue
        try:
            text = _splice(source, node, ast.unparse(new))
            key = ast.dump(ast.parse(text))
            compile(text, rel, "exec")
        except (SyntaxError, ValueError, TypeError):
            continue
        if key in seen:
            continue
        seen.add(key)
        k = counts[(site.lineno, site.operator)] = counts.get((site.lineno, site.operator), 0) + 1
        before, after = ast.unparse(node), ast.unparse(new)
        out.append(Mutant(f"{rel}:{site.lineno}:{site.operator}:{k}", rel, site.lineno, site.operator,
                          before[:160], after[:160], src_lines[site.lineno - 1].strip()[:160],
                          _innermost_span(spans, site.lineno), text))
    return out


# ----------------------------------------------------------------------------- the scratch copy and the baseline


def make_scratch(root: Path) -> Path:
    """Copy the package, the tests and pyproject.toml to a scratch folder (no bytecode)."""
    tmp = Path(tempfile.mkdtemp(prefix="core_mutants_"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "dmcmc_edu", tmp / "dmcmc_edu", ignore=ignore)
    shutil.copytree(root / "tests", tmp / "tests", ignore=ignore)
    shutil.copy2(root / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def snapshot_info(root: Path, scratch: Path, tests: list[str]) -> dict:
    def git(*args):
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return r.stdout.strip()
    files = sorted(p.name for p in (scratch / CORE).glob("*.py"))
    return {"commit": git("rev-parse", "HEAD"), "core_differs_from_commit": bool(git("status", "--porcelain", "--",
                                                                                     str(CORE))),
            "core_sha256": {f: _sha(scratch / CORE / f) for f in files},
            "tests_sha256": {t: _sha(scratch / t) for t in tests}}


def _context_to_nodeid(ctx: str, test_files: list[str]) -> str | None:
    """coverage's test_function context (``test_dlg.test_x`` or ``test_dlg.Class.test_x``) -> a pytest node id."""
    mod, _, func = ctx.partition(".")
    for f in test_files:
        if Path(f).stem == mod.split(".")[-1]:
            return f + "::" + func.replace(".", "::")
    return None


def baseline(scratch: Path, tests: list[str], log) -> dict:
    """Run the tests once on the unmutated copy under coverage: the failing tests, the tests of each line."""
    rc_file = scratch / ".coveragerc_mutants"
    rc_file.write_text(f"[run]\ndynamic_context = test_function\ninclude = {scratch / CORE}/*.py\n"
                       f"data_file = {scratch / '.coverage_mutants'}\n")
    junit = scratch / "baseline.xml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["OMP_NUM_THREADS"] = "1"  # bytecode of the unmutated copy is written once here (never by a mutant's run)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "coverage", "run", f"--rcfile={rc_file}", "-m", "pytest", "-q",
                        "-p", "no:cacheprovider", f"--junitxml={junit}", *tests], cwd=scratch, env=env,
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    import xml.etree.ElementTree as ET
    failing, n_tests, durations = [], 0, {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        n_tests += 1
        fn = case.get("classname").replace(".", "/") + ".py::" + case.get("name").split("[")[0]
        durations[fn] = durations.get(fn, 0.0) + float(case.get("time") or 0)
        if case.find("failure") is not None or case.find("error") is not None:
            f = case.get("classname").replace(".", "/") + ".py"  # tests.test_dlg -> tests/test_dlg.py
            failing.append(f"{f}::{case.get('name')}")
    print(f"baseline: {n_tests} tests in {seconds:.0f} s, {len(failing)} failing (deselected), "
          f"pytest rc {r.returncode}", file=log, flush=True)
    from coverage import CoverageData
    data = CoverageData(basename=str(scratch / ".coverage_mutants"))
    data.read()
    lines: dict[str, dict[int, set[str]]] = {}
    for f in data.measured_files():
        rel = Path(f).name
        by_line = data.contexts_by_lineno(f)
        lines[rel] = {ln: {c for c in ctxs} for ln, ctxs in by_line.items()}
    return {"seconds": round(seconds, 1), "tests": n_tests, "failing": failing, "lines": lines,
            "durations": durations,
            "pytest_rc": r.returncode, "tail": r.stdout[-2000:]}


def select_tests(m: Mutant, cov_lines: dict, test_files: list[str], durations: dict) -> list[str] | None:
    """The test node ids that run the mutant's statement, fastest first (so a killed mutant stops early); all test
    files if it only runs at import; None if no test runs it."""
    by_line = cov_lines.get(m.file, {})
    ctxs = set()
    for ln in range(m.span[0], m.span[1] + 1):
        ctxs |= by_line.get(ln, set())
    if not ctxs:
        return None
    ids = sorted({i for c in ctxs if c for i in [_context_to_nodeid(c, test_files)] if i},
                 key=lambda i: (durations.get(i, 0.0), i))
    if not ids:  # run only while importing (module level, a def's defaults) or in fixtures: every test
        return list(test_files)
    return ids


# ----------------------------------------------------------------------------- running one mutant


def _purge_package() -> None:
    for name in [n for n in sys.modules if n == "dmcmc_edu" or n.startswith("dmcmc_edu.")]:
        del sys.modules[name]


class _FirstFailure:
    def __init__(self):
        self.nodeid = None

    def pytest_runtest_logreport(self, report):
        if report.failed and self.nodeid is None:
            self.nodeid = report.nodeid


def run_tests(scratch: Path, args: list[str], timeout: float, deselect: list[str]) -> dict:
    """pytest ``args`` in a child forked from this process, in ``scratch``; returns status and first failure."""
    result_file = scratch / ".mutant_result.json"
    result_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        rc = 3
        try:
            os.chdir(scratch)
            sys.path.insert(0, str(scratch))
            sys.dont_write_bytecode = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            rec = _FirstFailure()
            opts = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-p", "no:warnings"]
            opts += [f"--deselect={d}" for d in deselect]
            rc = int(pytest.main(opts + args, plugins=[rec]))
            result_file.write_text(json.dumps({"rc": rc, "first_failure": rec.nodeid}))
        finally:
            os._exit(rc)
    status, info = None, {}
    while True:
        done, wstatus = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = "timeout"
            break
        time.sleep(0.02)
    if status is None:
        info = json.loads(result_file.read_text()) if result_file.is_file() else {"rc": None, "first_failure": None}
        # pytest: 0 all passed, 1 a test failed, 2 interrupted (a collection error), 5 no tests collected
        status = {0: "survived", 5: "not run"}.get(info["rc"], "killed")
    return {"status": status, "rc": info.get("rc"), "first_failure": info.get("first_failure"),
            "seconds": round(time.perf_counter() - t0, 2)}


# ----------------------------------------------------------------------------- the report


def load_explanations(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    bad = [k for k, v in data.items() if not str(v).startswith(("equivalent:", "gap:"))]
    if bad:
        raise ValueError(f"{path}: an explanation starts with 'equivalent:' or 'gap:' ({bad[0]})")
    return data


def _killed(status) -> bool:
    return status in ("killed", "timeout")


def _final(r: dict) -> str:
    """A mutant's status after the re-run of those not killed (if any)."""
    return r["rerun"]["status"] if "rerun" in r else r["status"]


def summarize(report: dict, explanations: dict[str, str]) -> None:
    """Counts and fractions, first pass and after the re-run (the gaps closed), per file and operator."""
    rows = report["mutants"]
    for r in rows:
        r["explanation"] = explanations.get(r["id"]) if not _killed(r["status"]) else None
    eq = [r for r in rows if not _killed(_final(r)) and (r["explanation"] or "").startswith("equivalent:")]
    non_eq = len(rows) - len(eq)
    first = sum(_killed(r["status"]) for r in rows)
    final = sum(_killed(_final(r)) for r in rows)
    report["summary"] = {"run": len(rows), "killed_first_pass": first, "killed": final,
                         "killed_on_rerun": final - first,
                         "timeout": sum(r["status"] == "timeout" for r in rows),
                         "survived": sum(_final(r) == "survived" for r in rows),
                         "not_run": sum(_final(r) == "not run" for r in rows),
                         "explained_equivalent": len(eq),
                         "unexplained": sum(1 for r in rows if not _killed(r["status"]) and not r["explanation"]),
                         "killed_fraction_first_pass": first / len(rows) if rows else None,
                         "killed_fraction_non_equivalent_first_pass": first / non_eq if non_eq else None,
                         "killed_fraction_non_equivalent": final / non_eq if non_eq else None}
    per_file = {}
    for r in rows:
        f = per_file.setdefault(r["file"], {"run": 0, "killed_first_pass": 0, "killed": 0, "equivalent": 0})
        f["run"] += 1
        f["killed_first_pass"] += _killed(r["status"])
        f["killed"] += _killed(_final(r))
        f["equivalent"] += r in eq
    report["per_file"] = dict(sorted(per_file.items()))
    ops = {}
    for r in rows:
        o = ops.setdefault(r["operator"], [0, 0])
        o[0] += _killed(r["status"])
        o[1] += 1
    report["operators"] = {k: {"killed_first_pass": a, "run": b} for k, (a, b) in sorted(ops.items())}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


MUTMUT_NOTE = (
    "Why a script and not a tool: mutmut 3.8.1 was tried first (in a scratch copy, 7 December 2026, 17:58-18:11 UTC): "
    "it made 2,429 mutants of the core and ran 281 of them in 13.5 minutes with four of the core's test files (150 "
    "killed, 58 in functions no test reaches, 73 surviving, many of them changed error-message strings), so the "
    "whole set would take about two hours on these shared cores, and it has no argmax/argmin operator, the mistake "
    "the issue names first. cosmic-ray was not tried. This script reuses the AST operators of "
    "`bench/grading_mutants.py`, selects tests by coverage and samples with a fixed seed.")


def write_readme(report: dict, out: Path) -> None:
    s, st = report["summary"], report["settings"]
    sampled = st["sample"] and st["sample"] < report["generated"]
    lines = ["# Mutation run over `dmcmc_edu/core` (issue 21, item 5)", "",
             "Made by `bench/core_mutants.py` (its docstring describes the operators, the test selection and the "
             "statuses). Command:", "", "```", report["command"], "```", "",
             f"Run on {report['started']} ({report['host']}): {report['seconds'] / 60:.1f} min in all "
             f"(baseline under coverage {report['baseline']['seconds']:.0f} s), one process, OMP_NUM_THREADS=1, "
             "on two cores shared with other jobs (load average about 7 during development runs).",
             f"Snapshot: commit `{report['snapshot']['commit'][:10]}`"
             + (" with uncommitted changes to the core by the sessions editing it (the hashes of the files mutated "
                "are in the JSON)" if report["snapshot"]["core_differs_from_commit"] else "") + ".", "",
             f"Mutants: {report['generated']} single-change mutants of "
             f"{len(report['snapshot']['core_sha256'])} files; "
             + (f"a random sample of {st['sample']} (`random.Random({st['seed']}).sample` over the list sorted by "
                "id, run in the sample's order) " if sampled else "all ")
             + f"planned, each with a {st['timeout']:.0f} s limit"
             + (f"; {s['run']} run before the stop time {st['stop_at']} UTC (a prefix of the sample's random order, "
                "so itself a random sample)" if s["run"] < st.get("planned", s["run"]) else "") + ".", "",
             "Test files (the golden pin `tests/test_golden.py` excluded): "
             + ", ".join(f"`{t}`" for t in st["tests"]) + ".", ""]
    lines += [MUTMUT_NOTE, ""]
    if report["baseline"]["failing"]:
        lines += ["Tests that failed on the unmutated snapshot (work in progress of other sessions; deselected for "
                  "the whole run): " + ", ".join(f"`{t}`" for t in report["baseline"]["failing"]) + ".", ""]
    if "rerun" in report:
        lines += [f"Re-run of the mutants explained as gaps, with the tests of {report['rerun']['when']} on the same "
                  "core (same file hashes): a mutant killed there is a gap closed by a test written after the first "
                  "pass. Command:", "", "```", report["rerun"].get("command", ""), "```", ""]
    lines += ["## Result", "",
              "| mutants run | killed (first pass) | by the time limit | killed on re-run | survived | no test runs "
              "the line | explained equivalent | killed / non-equivalent, first pass | killed / non-equivalent |",
              "|---|---|---|---|---|---|---|---|---|",
              f"| {s['run']} | {s['killed_first_pass']} | {s['timeout']} | {s['killed_on_rerun']} | {s['survived']} | "
              f"{s['not_run']} | {s['explained_equivalent']} | "
              f"{_pct(s['killed_fraction_non_equivalent_first_pass'])} | "
              f"**{_pct(s['killed_fraction_non_equivalent'])}** |", "",
              f"Target: at least {TARGET:.0%} of the non-equivalent mutants killed. "
              + ("Met." if (s["killed_fraction_non_equivalent"] or 0) >= TARGET else "Not met.")
              + (f" With {s['run']} mutants sampled, the standard error of a fraction near 0.9 is about "
                 f"{100 * (0.09 / max(s['run'], 1)) ** 0.5:.1f} points." if sampled else "")
              + (" The first-pass figure is the unbiased estimate for the tests as they were at the snapshot; the "
                 "figure after the re-run counts gaps closed on this very sample, so it overstates the kill rate "
                 "of today's tests over all mutants (another --seed would measure that)." if "rerun" in report
                 else ""), "",
              "![killed mutants per file](core_mutants.png)", "",
              "| file | run | killed, first pass | killed | explained equivalent | killed / non-equivalent |",
              "|---|---|---|---|---|---|"]
    for f, v in report["per_file"].items():
        ne = v["run"] - v["equivalent"]
        frac = _pct(v["killed"] / ne if ne else None)
        lines.append(f"| `{f}` | {v['run']} | {v['killed_first_pass']} | {v['killed']} | {v['equivalent']} | "
                     f"{frac} |")
    lines += ["", "| operator | run | killed, first pass |", "|---|---|---|"]
    lines += [f"| {k} | {v['run']} | {v['killed_first_pass']} |" for k, v in report["operators"].items()]
    keep = [r for r in report["mutants"] if not _killed(r["status"])]
    lines += ["", f"## Every mutant the first pass did not kill ({len(keep)})", "",
              "An explanation reads `equivalent:` (no result changes on any input the function allows) or `gap:` "
              "(a real mistake the tests missed, and the test that now catches it; its re-run status is given).", "",
              "| mutant | change | first pass | re-run | explanation |", "|---|---|---|---|---|"]
    for r in keep:
        change = f"`{r['before']}` -> `{r['after']}`".replace("|", "\\|")
        rerun = r["rerun"]["status"] + (f" by `{r['rerun']['first_failure']}`" if r["rerun"]["first_failure"]
                                        else "") if "rerun" in r else "-"
        lines.append(f"| `{r['id']}` | {change} | {r['status']} | {rerun} | "
                     f"{(r['explanation'] or '(not explained yet)').replace('|', '/')} |")
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plot(report: dict, out: Path) -> None:
    pf = report["per_file"]
    files = list(pf)
    first = [pf[f]["killed_first_pass"] for f in files]
    later = [pf[f]["killed"] - pf[f]["killed_first_pass"] for f in files]
    eq = [pf[f]["equivalent"] for f in files]
    surv = [pf[f]["run"] - pf[f]["killed"] - pf[f]["equivalent"] for f in files]
    fig, ax = plt.subplots(figsize=(8.5, 4))
    bottom = [0] * len(files)
    for vals, color, label in ((first, "C2", "killed"), (later, "C9", "killed after a test was added"),
                               (surv, "C3", "not killed, not equivalent"), (eq, "0.7", "explained equivalent")):
        ax.bar(files, vals, bottom=bottom, color=color, label=label)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, f in enumerate(files):
        ne = pf[f]["run"] - pf[f]["equivalent"]
        if ne:
            ax.text(i, pf[f]["run"], f"{pf[f]['killed'] / ne:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("mutants run")
    ax.set_ylim(0, max([pf[f]["run"] for f in files] + [1]) * 1.25)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_title("Single-change mutants of dmcmc_edu/core killed by its tests (label: killed / non-equivalent; "
                 f"all files: {_pct(report['summary']['killed_fraction_non_equivalent'])})", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "core_mutants.png", dpi=120)
    plt.close(fig)


def run_mutants(mutants: list[Mutant], scratch: Path, base: dict, tests: list[str], timeout: float, log,
                stop: float | None = None) -> list:
    """Run each mutant's selected tests in the scratch copy (the file restored after each); one row per mutant.
    None is started after the time ``stop`` (``time.time()``), so a run cut short keeps a prefix of the list."""
    rows = []
    for k, m in enumerate(mutants, start=1):
        if stop is not None and time.time() > stop:
            print(f"stopped at the time limit after {k - 1} of {len(mutants)} mutants", file=log, flush=True)
            break
        target = scratch / CORE / m.file
        original = target.read_text(encoding="utf-8")
        selected = select_tests(m, base["lines"], tests, base["durations"])
        try:
            if selected is None:
                res = {"status": "not run", "rc": None, "first_failure": None, "seconds": 0.0}
            else:
                for pyc in (target.parent / "__pycache__").glob(target.stem + ".*.pyc"):
                    pyc.unlink()  # the mutant is compiled from its source (children write no bytecode)
                target.write_text(m.source, encoding="utf-8")
                res = run_tests(scratch, selected, timeout, base["failing"])
        finally:
            target.write_text(original, encoding="utf-8")
        row = {k2: v for k2, v in asdict(m).items() if k2 != "source"}
        row.update(res, tests_selected=0 if selected is None else len(selected))
        rows.append(row)
        print(f"[{k}/{len(mutants)}] {res['status']:<8} {res['seconds']:6.1f}s {m.id}  {m.before!r} -> "
              f"{m.after!r}", file=log, flush=True)
    return rows


def rerun_not_killed(report: dict, tests: list[str], timeout: float, log, core_from: Path | None = None,
                     out: Path | None = None) -> None:
    """Run the mutants a report did not kill and ``explanations.json`` calls gaps closed by a test again with today's
    tests, on the same core:
    ``core_from`` (a copy kept by ``--keep-core``) or the working tree's, refused if a file's text differs from the
    report's.  Adds ``rerun`` to each such row."""
    scratch = make_scratch(ROOT)
    try:
        if core_from is not None:
            for f in core_from.glob("*.py"):
                shutil.copy2(f, scratch / CORE / f.name)
        now = snapshot_info(ROOT, scratch, tests)
        explained = load_explanations(DEFAULT_OUT / "explanations.json" if out is None else out / "explanations.json")
        # the mutants explained as gaps closed by a test (equivalent ones and open gaps would only survive again)
        rows = [r for r in report["mutants"] if r["status"] in ("survived", "not run")
                and explained.get(r["id"], "").startswith("gap:") and "not closed" not in explained[r["id"]]]
        changed = sorted({r["file"] for r in rows if now["core_sha256"].get(r["file"])
                          != report["snapshot"]["core_sha256"].get(r["file"])})
        if changed:
            raise SystemExit(f"core file(s) {', '.join(changed)} changed since the report: re-run it whole")
        by_id = {m.id: m for f in sorted({r["file"] for r in rows}) for m in make_mutants(scratch / CORE / f, f)}
        base = baseline(scratch, tests, log)
        _purge_package()
        again = run_mutants([by_id[r["id"]] for r in rows], scratch, base, tests, timeout, log)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        for r, new in zip(rows, again):
            r["rerun"] = {k: new[k] for k in ("status", "first_failure", "seconds", "tests_selected")}
            r["rerun"]["when"] = stamp
        command = "OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/core_mutants.py " + " ".join(sys.argv[1:])
        report["rerun"] = {"when": stamp, "command": command, "tests": tests, "tests_sha256": now["tests_sha256"],
                           "baseline_failing": base["failing"]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--sample", type=int, default=None, help="run a seeded random sample of this many mutants")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    p.add_argument("--files", default=None, help="core files to mutate (comma-separated; default: all)")
    p.add_argument("--tests", default=None, help="test files (comma-separated; default: CORE_TESTS that exist)")
    p.add_argument("--report-only", action="store_true", help="rewrite README and plot from the JSON")
    p.add_argument("--rerun-not-killed", action="store_true",
                   help="run the report's mutants not killed and explained as closed gaps again (same core)")
    p.add_argument("--stop-at", default=None, help="HH:MM (UTC): start no mutant after this time")
    p.add_argument("--keep-core", type=Path, default=None, help="keep a copy of the core mutated in this folder")
    p.add_argument("--core-from", type=Path, default=None, help="with --rerun-not-killed: the core kept then")
    a = p.parse_args(argv)
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    explanations = load_explanations(out / "explanations.json")
    tests = a.tests.split(",") if a.tests else [t for t in CORE_TESTS if (ROOT / t).is_file()]
    if set(tests) & set(EXCLUDED_TESTS):
        raise SystemExit("the golden pin is not a core test (it cannot tell a fix from a bug)")
    if a.report_only or a.rerun_not_killed:
        report = json.loads((out / "core_mutants.json").read_text(encoding="utf-8"))
        if a.rerun_not_killed:
            rerun_not_killed(report, tests, a.timeout, sys.stderr, a.core_from, out)
    else:
        report = full_run(a, argv, tests)
    summarize(report, explanations)
    (out / "core_mutants.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    write_readme(report, out)
    write_plot(report, out)
    print(json.dumps(report["summary"], indent=1))
    return 0


def full_run(a, argv, tests: list[str]) -> dict:
    t_start = time.perf_counter()
    scratch = make_scratch(ROOT)
    log = sys.stderr
    try:
        files = a.files.split(",") if a.files else sorted(p.name for p in (scratch / CORE).glob("*.py"))
        mutants = [m for f in files for m in make_mutants(scratch / CORE / f, f)]
        mutants.sort(key=lambda m: m.id)
        generated = len(mutants)
        if a.sample and a.sample < generated:  # in the sample's random order: any prefix is a random sample too
            mutants = [mutants[i] for i in random.Random(a.seed).sample(range(generated), a.sample)]
        print(f"{generated} mutants of {len(files)} files; running {len(mutants)}", file=log, flush=True)
        snapshot = snapshot_info(ROOT, scratch, tests)
        if a.keep_core is not None:
            shutil.copytree(scratch / CORE, a.keep_core, ignore=shutil.ignore_patterns("__pycache__"))
        base = baseline(scratch, tests, log)
        _purge_package()
        stop = None
        if a.stop_at:  # a wall-clock time (UTC, HH:MM today): no mutant is started after it
            hh, mm = map(int, a.stop_at.split(":"))
            now = time.gmtime()
            stop = time.time() + ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
        rows = run_mutants(mutants, scratch, base, tests, a.timeout, log, stop)
        return {"command": "OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/core_mutants.py "
                           + " ".join(argv if argv is not None else sys.argv[1:]),
                "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() - (time.perf_counter()
                                                                                           - t_start))),
                "host": f"{platform.node()}, Python {platform.python_version()}, torch {torch.__version__}",
                "settings": {"sample": a.sample, "seed": a.seed, "timeout": a.timeout, "files": files,
                             "tests": tests, "stop_at": a.stop_at, "planned": len(mutants)},
                "snapshot": snapshot, "generated": generated,
                "baseline": {k2: v for k2, v in base.items() if k2 not in ("lines", "durations")},
                "seconds": round(time.perf_counter() - t_start, 1), "mutants": rows}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
