"""Mutation testing of the assignments' graders (issue 20, item 5): do small wrong changes to model answers lose points?

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/grading_mutants.py --out bench/results/grading_mutants
        [--assignments a2_integrators,...] [--max-mutants N] [--seed S] [--time-limit SECONDS]
        [--hidden-secret TEXT] [--explanations FILE] [--nbgrader-check K] [--report-only]

(``make mutants``; about 2 minutes on two loaded cores.)  Without ``--out`` a run goes to a new folder
``runs/grading_mutants-<UTC time>``; the committed results (``bench/results/grading_mutants``) are rewritten only
when named, as above.  ``--report-only`` needs ``--out``.

For every assignment of ``notebooks/assignments/source`` this takes the model answer of each solution cell (the
lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION``) and makes *mutants*: copies of the cell with one
small change to one of those lines, made on the cell's syntax tree (:mod:`ast`), never on its text:

=================  =========================================================================================
operator           change
=================  =========================================================================================
``binop``          ``+`` <-> ``-``, ``*`` <-> ``/``, ``**`` -> ``*``, ``//`` -> ``/``, ``%`` -> ``//`` (and ``+=`` ...)
``swap-operands``  ``a - b`` -> ``b - a``, ``a / b`` -> ``b / a``, ``a ** b`` -> ``b ** a``
``compare``        ``<`` -> ``<=``/``>``, ``<=`` -> ``<``/``>=``, ``>`` -> ``>=``/``<``, ``>=`` -> ``>``/``<=``,
                   ``==`` <-> ``!=``, ``is`` <-> ``is not``, ``in`` <-> ``not in``
``boolop``         ``and`` <-> ``or``
``constant``       a number ``c`` -> ``c + 1`` and ``c - 1`` (so 0 <-> 1, 2 -> 1), ``True`` <-> ``False``
``index``          ``a[i]`` -> ``a[i + 1]`` and ``a[i - 1]`` (each non-slice entry of a tuple index)
``slice``          each written end of a slice ``+ 1``, ``- 1`` or dropped (``a[1:]`` -> ``a[2:]``, ``a[0:]``, ``a[:]``)
``range``          the stop of ``range(...)`` ``+ 1`` and ``- 1``
``name``           ``argmax`` <-> ``argmin``, ``max`` <-> ``min``, ``amax`` <-> ``amin``, ``sum`` <-> ``mean``,
                   ``maximum`` <-> ``minimum`` (functions, methods and keyword names such as ``clamp(max=..)``)
``unary``          a unary ``-`` or ``not`` dropped
``swap-args``      two neighbouring positional arguments of a call swapped
``drop-call``      a wrapping call dropped: ``x.sqrt()`` -> ``x``, ``torch.log(p)`` -> ``p``, ``float(v)`` -> ``v``
                   (log, exp, sqrt, abs, float, int, clone, detach, (un)squeeze, to, double, cumsum, softmax, ...)
``drop-statement`` an update (``x = x_next``, ``s += pair``), an expression statement (``xs.append(x)``),
                   ``break`` or ``continue`` replaced by ``pass``
``variable``       a local name read where a sibling was meant: same stem before the first ``_`` (``x`` <->
                   ``x_next``, ``t_cur`` <-> ``t_next``, ``sigma_start`` <-> ``sigma_end``, ``log_p`` <-> ``log_q``)
=================  =========================================================================================

Mutants that give the same code as another (or as the model answer) are dropped.  Each mutant is graded the way the
grader scores the notebook, in this process, in a fresh namespace: the notebook runs top to bottom -- the setup
cell, the solution cells (the mutated one changed) and every other cell that binds a name a solution or test cell
reads (plots and printouts, which bind nothing the graded cells read, are left out) -- and each graded test cell
after the mutated one runs as the student's kernel runs it, recording each check's answers
(:func:`dmcmc_edu.grading.feedback.recording`).  The verdict of the cell is then computed from those records by the
grader's own judge (:func:`dmcmc_edu.grading.judge.judge_cell`: visible and hidden checks, exactly as ``nbgrader
autograde`` with the course's ``JudgeChecks`` plug-in does), and the cell earns its points (the ``points`` of its
nbgrader metadata) or none.  Test cells before the mutated cell keep the model answers' result (they ran before the
change existed).  The hidden cases draw their seeds from a secret the grader makes per run; this run fixes one
(``--hidden-secret``).  A cell that runs longer than ``--time-limit`` seconds (nbgrader's own limit is 120 s) loses
its points and the mutant is marked ``timeout``.  What is not reproduced: the sandbox, the kernel's process and the
cells left out (the checks draw every case from their own generators, so the global random state does not matter).

Every mutant is then

* ``killed``     -- it loses points;
* ``equivalent`` -- it keeps full marks and every answer it gave to every check case (the records) is identical,
  bit for bit, to the model answer's: on the checks' cases the change alters nothing (it may still be a real
  mistake that other cases would show: see the explanations);
* ``survives``   -- it keeps full marks although some answer differs from the model answer's.

The score the issue sets: at least 90% of the non-equivalent mutants of every assignment lose points.  Every mutant
that keeps full marks is listed with an explanation from :data:`EXPLANATIONS_FILE`
(``{"<assignment>/<mutant id>": "equivalent: ..." or "not caught: ..."}``), written by hand after looking at it, or
"(not explained yet)"; ``--report-only`` rewrites the table from the JSON after the explanations changed.  An
explanation that starts with ``equivalent:`` says the change alters no result on any input the function's docstring
allows; ``not caught:`` names the case a check would need to catch it.  The table gives both fractions: killed /
non-equivalent on the check cases, and killed / (all but those explained as equivalent).

Writes ``OUT/grading_mutants.json`` (every mutant: id, cell, line, operator, the change, status, the cells that lost
points, whether only a hidden check took them -- the visible one said "ok" -- and the first message),
``OUT/README.md`` (the command, the run time, a table per assignment and every mutant that keeps full marks) and
``OUT/grading_mutants.png`` (a bar per assignment).  ``--max-mutants N`` grades a seeded random sample of N mutants
per assignment (stated in the results).  ``--nbgrader-check K`` grades K of the mutants a second time with the
course's own command (``nbgrader autograde`` in a scratch copy of the course, the sandbox where bubblewrap runs) and
records whether every graded cell gets the same score as here.  Single-threaded by design.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import io
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "notebooks" / "assignments"
#: the committed results (written only when ``--out`` names them; a run without ``--out`` makes a new folder)
RESULTS = ROOT / "bench" / "results" / "grading_mutants"
EXPLANATIONS_FILE = RESULTS / "explanations.json"
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
MANUAL_CELLS = {"written_answer"}  # graded by hand (A6): not autograded
TARGET = 0.90  # issue 20: at least 90% of the non-equivalent mutants lose points
TEXT_MAX = 160  # characters of a node shown in a change

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (when run as a command)

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dmcmc_edu.grading import feedback  # noqa: E402
from dmcmc_edu.grading.feedback import recording  # noqa: E402
from dmcmc_edu.grading.judge import judge_cell, planned_checks  # noqa: E402
from dmcmc_edu.runs import fresh_folder  # noqa: E402

# hidden cases draw their seeds from a secret the grader holds (a fresh one per grading run); this run fixes one, so
# that its result can be reproduced (--hidden-secret)
HIDDEN_ENV = getattr(feedback, "HIDDEN_ENV", "DMCMC_EDU_HIDDEN_SEED")
DEFAULT_SECRET = "grading-mutants-0"

# ----------------------------------------------------------------------------- the notebooks


@dataclass
class Cell:
    """A code cell of a source notebook as this tool sees it."""

    index: int  # position in the notebook
    grade_id: str | None
    kind: str  # "solution", "test" (graded, autograded), "other"
    source: str
    points: float = 0.0
    region: tuple[int, int] | None = None  # solution cells: first and last line of the model answer (1-based)


def notebook_path(name: str, course: Path = COURSE) -> Path:
    return course / "source" / name / f"{name}.ipynb"


def assignment_names(course: Path = COURSE) -> list[str]:
    """The assignments of the course (``source/<a>/<a>.ipynb``), sorted."""
    return sorted(p.name for p in (course / "source").iterdir() if notebook_path(p.name, course).is_file())


def solution_region(source: str) -> tuple[int, int] | None:
    """The lines strictly between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (1-based, inclusive), or None."""
    lines = [ln.strip() for ln in source.splitlines()]
    if MARKERS[0] not in lines or MARKERS[1] not in lines:
        return None
    begin, end = lines.index(MARKERS[0]) + 1, lines.index(MARKERS[1]) + 1
    if end <= begin + 1:
        return None
    return begin + 1, end - 1


def read_cells(name: str, course: Path = COURSE) -> list[Cell]:
    """The code cells of assignment ``name``'s source notebook, with their kind and points."""
    path = notebook_path(name, course)
    if not path.is_file():
        raise FileNotFoundError(f"no source notebook {path}")
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code":
            continue
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        meta = c.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if meta.get("solution"):
            cells.append(Cell(i, gid, "solution", src, region=solution_region(src)))
        elif meta.get("grade") and gid not in MANUAL_CELLS:
            cells.append(Cell(i, gid, "test", src, points=float(meta.get("points", 0))))
        else:
            cells.append(Cell(i, gid, "other", src))
    return cells


# ----------------------------------------------------------------------------- names: what reaches what


def _loaded_names(tree: ast.AST) -> set[str]:
    """The global names ``tree`` can read: every name loaded, less those bound locally in the function it is in."""
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    local: set[str] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            declared = {name for g in ast.walk(fn) if isinstance(g, ast.Global) for name in g.names}
            args = fn.args
            params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
            params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
            stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            local |= (params | stored) - declared
    top = {n.id for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
           for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
           } if isinstance(tree, ast.Module) else set()
    return (loaded - local) | top


def bound_names(tree: ast.Module) -> set[str]:
    """The names a cell binds at its top level (functions, classes, assignments, imports)."""
    out: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
        else:
            out |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return out


# ----------------------------------------------------------------------------- the mutation generator


@dataclass
class Site:
    """One possible change: the node (by its position in ``ast.walk`` order) and how to rewrite it."""

    node_index: int
    operator: str
    rewrite: object  # callable(node copy) -> new node
    lineno: int
    col: int


@dataclass
class Mutant:
    """A solution cell with one change: where, what, and the changed syntax tree."""

    id: str
    cell: str
    line: int  # line in the cell (1-based, as the notebook shows it)
    col: int  # where the changed node starts on that line (0-based)
    operator: str
    before: str
    after: str
    code_line: str
    tree: ast.Module = field(repr=False, compare=False)


_BINOP_SWAPS = {ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.Div], ast.Div: [ast.Mult],
                ast.Pow: [ast.Mult], ast.FloorDiv: [ast.Div], ast.Mod: [ast.FloorDiv]}
_NONCOMMUTATIVE = (ast.Sub, ast.Div, ast.Pow, ast.FloorDiv, ast.Mod)
_CMP_SWAPS = {ast.Lt: [ast.LtE, ast.Gt], ast.LtE: [ast.Lt, ast.GtE], ast.Gt: [ast.GtE, ast.Lt],
              ast.GtE: [ast.Gt, ast.LtE], ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.Is: [ast.IsNot],
              ast.IsNot: [ast.Is], ast.In: [ast.NotIn], ast.NotIn: [ast.In]}
# calls that wrap a value of the same kind: dropping one leaves valid code (x.sqrt() -> x, torch.log(p) -> p)
_UNWRAP = {"log", "exp", "sqrt", "abs", "float", "int", "clone", "detach", "squeeze", "unsqueeze", "to", "double",
           "cumsum", "softmax", "log_softmax", "asarray", "logsumexp"}
_MODULES = {"torch", "np", "numpy", "math"}
_NAME_SWAPS = {"argmax": "argmin", "argmin": "argmax", "max": "min", "min": "max", "amax": "amin", "amin": "amax",
               "sum": "mean", "mean": "sum", "maximum": "minimum", "minimum": "maximum", "nanmax": "nanmin",
               "nanmin": "nanmax"}


def _shifted(expr: ast.expr, delta: int) -> ast.expr:
    """``expr + delta`` (a number is changed in place: ``3`` -> ``4``)."""
    if isinstance(expr, ast.Constant) and type(expr.value) in (int, float):
        return ast.Constant(expr.value + delta)
    if (isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub)) and isinstance(expr.right, ast.Constant)
            and type(expr.right.value) is int):  # i + 1 -> i + 2 or i, not i + 1 + 1
        c = (expr.right.value if isinstance(expr.op, ast.Add) else -expr.right.value) + delta
        if c == 0:
            return expr.left
        return ast.BinOp(left=expr.left, op=ast.Add() if c > 0 else ast.Sub(), right=ast.Constant(abs(c)))
    return ast.BinOp(left=expr, op=ast.Add() if delta > 0 else ast.Sub(), right=ast.Constant(abs(delta)))


def _with(node: ast.AST, **changes) -> ast.AST:
    new = copy.copy(node)
    for k, v in changes.items():
        setattr(new, k, v)
    return new


def _sites(tree: ast.Module, lines: tuple[int, int] | None) -> list[Site]:
    """Every change the operators make to the nodes that start on a line of ``lines`` (all lines if None)."""
    sites: list[Site] = []
    skip: set[int] = set()  # inside f-strings (format specs); str constants are never changed
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(n) for n in ast.walk(node))
    pools = _sibling_pools(tree)
    droppable = _droppable(tree)
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for k, node in enumerate(ast.walk(tree)):
        line = getattr(node, "lineno", None)
        if line is None or id(node) in skip or (lines is not None and not lines[0] <= line <= lines[1]):
            continue

        def add(operator, rewrite, k=k, line=line, col=node.col_offset):
            sites.append(Site(k, operator, rewrite, line, col))

        if id(node) in droppable:
            add("drop-statement", lambda n: ast.Pass())
        if isinstance(node, (ast.BinOp, ast.AugAssign)):
            for op in _BINOP_SWAPS.get(type(node.op), []):
                add("binop", lambda n, op=op: _with(n, op=op()))
            if isinstance(node, ast.BinOp) and isinstance(node.op, _NONCOMMUTATIVE):
                add("swap-operands", lambda n: _with(n, left=n.right, right=n.left))
        elif isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                for new in _CMP_SWAPS.get(type(op), []):
                    add("compare", lambda n, j=j, new=new: _with(n, ops=[new() if i == j else o
                                                                         for i, o in enumerate(n.ops)]))
        elif isinstance(node, ast.BoolOp):
            add("boolop", lambda n: _with(n, op=ast.Or() if isinstance(n.op, ast.And) else ast.And()))
        elif isinstance(node, ast.Constant) and not isinstance(node.value, str):
            if isinstance(node.value, bool):
                add("constant", lambda n: ast.Constant(not n.value))
            elif type(node.value) in (int, float):
                add("constant", lambda n: ast.Constant(n.value + 1))
                add("constant", lambda n: ast.Constant(n.value - 1))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            add("unary", lambda n: n.operand)
        elif isinstance(node, ast.Subscript):
            _subscript_sites(node, add)
        elif isinstance(node, ast.Call):
            _call_sites(node, add)
        elif isinstance(node, ast.Attribute) and node.attr in _NAME_SWAPS:
            add("name", lambda n: _with(n, attr=_NAME_SWAPS[n.attr]))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in _NAME_SWAPS:
                add("name", lambda n: _with(n, id=_NAME_SWAPS[n.id]))
            if id(node) not in callees:
                for other in pools.get(id(node), []):
                    add("variable", lambda n, other=other: _with(n, id=other))
    return sites


def _droppable(tree: ast.Module) -> set[int]:
    """The statements whose removal leaves every name bound: expression statements (``xs.append(x)``), ``break``,
    ``continue``, augmented assignments, and assignments to names the function bound on an earlier line (an update
    such as ``x = x_next``; dropping the first binding of a name would only raise ``NameError``)."""
    out: set[int] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = fn.args
        params = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} | {x.arg for x in (a.vararg, a.kwarg) if x}
        stores = [(n.lineno, n.id) for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
        for stmt in ast.walk(fn):
            if isinstance(stmt, (ast.Expr, ast.Break, ast.Continue, ast.AugAssign)):
                if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):  # not a docstring
                    out.add(id(stmt))
            elif isinstance(stmt, ast.Assign):
                targets = {n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
                earlier = params | {name for line, name in stores if line < stmt.lineno}
                if targets and targets <= earlier:
                    out.add(id(stmt))
    return out


def _stem(name: str) -> str:
    return name.split("_")[0]


def _sibling_pools(tree: ast.Module) -> dict[int, list[str]]:
    """For each name a function reads, its siblings: the other local names of that function (or of a function it
    is in) with the same stem before the first ``_`` (``x`` and ``x_next``, ``t_cur`` and ``t_next``, ``log_p`` and
    ``log_q``), sorted; callables are swapped by no one (``D``, a nested ``def``)."""
    pools: dict[int, list[str]] = {}

    def locals_of(fn) -> set[str]:
        a = fn.args
        names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs} | {x.arg for x in (a.vararg, a.kwarg) if x}
        names |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        called = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        nested = {n.name for n in ast.walk(fn) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        return names - called - nested

    def visit(node, outer: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, outer | locals_of(child))
            else:
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load) and child.id in outer:
                    pools[id(child)] = sorted(o for o in outer if o != child.id and _stem(o) == _stem(child.id))
                visit(child, outer)

    visit(tree, set())
    return pools


def _subscript_sites(node: ast.Subscript, add) -> None:
    sl = node.slice
    entries = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]

    def put(j, new_entry):
        def rewrite(n, j=j):
            s = n.slice
            if isinstance(s, ast.Tuple):
                elts = list(s.elts)
                elts[j] = new_entry(elts[j])
                return _with(n, slice=_with(s, elts=elts))
            return _with(n, slice=new_entry(s))
        return rewrite

    for j, e in enumerate(entries):
        if isinstance(e, ast.Slice):
            for bound in ("lower", "upper"):
                if getattr(e, bound) is None:
                    continue
                for delta in (1, -1):
                    add("slice", put(j, lambda s, b=bound, d=delta: _with(s, **{b: _shifted(getattr(s, b), d)})))
                add("slice", put(j, lambda s, b=bound: _with(s, **{b: None})))
        elif not (isinstance(e, ast.Constant) and (e.value is None or e.value is Ellipsis)):
            for delta in (1, -1):
                add("index", put(j, lambda s, d=delta: _shifted(s, d)))


def _call_sites(node: ast.Call, add) -> None:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name in _UNWRAP:
        if isinstance(func, ast.Attribute) and not (isinstance(func.value, ast.Name) and func.value.id in _MODULES):
            add("drop-call", lambda n: n.func.value)  # x.sqrt() -> x, x.squeeze(1) -> x
        elif len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred):
            add("drop-call", lambda n: n.args[0])  # torch.log(x) -> x, float(x) -> x
    if isinstance(node.func, ast.Name) and node.func.id == "range" and node.args:
        stop = 0 if len(node.args) == 1 else 1
        for delta in (1, -1):
            add("range", lambda n, d=delta, s=stop: _with(n, args=[_shifted(a, d) if i == s else a
                                                                    for i, a in enumerate(n.args)]))
    for j, kw in enumerate(node.keywords):
        if kw.arg in _NAME_SWAPS:
            add("name", lambda n, j=j: _with(n, keywords=[_with(k, arg=_NAME_SWAPS[k.arg]) if i == j else k
                                                          for i, k in enumerate(n.keywords)]))
    positional = [a for a in node.args if not isinstance(a, ast.Starred)]
    if len(positional) == len(node.args):
        for j in range(len(node.args) - 1):
            if ast.dump(node.args[j]) != ast.dump(node.args[j + 1]):
                add("swap-args", lambda n, j=j: _with(n, args=n.args[:j] + [n.args[j + 1], n.args[j]]
                                                      + n.args[j + 2:]))


def _replace_in_parent(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
    raise ValueError("the node to change has no parent")  # the root itself is never a site


def _short(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX - 3] + "..."


def generate_mutants(source: str, cell: str = "cell", lines: tuple[int, int] | None = None) -> list[Mutant]:
    """The mutants of a cell's ``source`` whose change starts on one of ``lines`` (1-based, inclusive; None: all).

    Each mutant differs from ``source`` by one change (see the module's table); mutants whose code equals the
    original's or an earlier mutant's are left out.  Ids read ``<cell>:<line>:<operator>:<k>``, ``k`` counting the
    mutants of that line and operator in the order of the syntax tree (stable while the cell is unchanged).
    """
    tree = ast.parse(source)
    src_lines = source.splitlines()
    seen = {ast.dump(tree)}
    out: list[Mutant] = []
    counts: dict[tuple[int, str], int] = {}
    for site in _sites(tree, lines):
        mutated = copy.deepcopy(tree)
        node = list(ast.walk(mutated))[site.node_index]
        new = site.rewrite(node)
        if new is node:
            continue
        _replace_in_parent(mutated, node, new)
        ast.fix_missing_locations(mutated)
        key = ast.dump(mutated)
        if key in seen:
            continue
        try:
            compile(mutated, "<mutant>", "exec")
        except (SyntaxError, ValueError, TypeError):  # e.g. a constant change that makes no valid tree
            continue
        seen.add(key)
        k = counts.get((site.lineno, site.operator), 0) + 1
        counts[(site.lineno, site.operator)] = k
        original_node = list(ast.walk(tree))[site.node_index]
        out.append(Mutant(f"{cell}:{site.lineno}:{site.operator}:{k}", cell, site.lineno, site.col, site.operator,
                          _short(original_node), _short(new), src_lines[site.lineno - 1].strip(), mutated))
    return sorted(out, key=lambda m: (m.line, m.col, m.operator, m.id))


# ----------------------------------------------------------------------------- grading a notebook in-process


class CellTimeout(BaseException):
    """A graded cell ran past the time limit (a ``BaseException``, so that no check turns it into a message)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`CellTimeout` in this (main) thread after ``seconds`` of wall time."""
    def on_alarm(signum, frame):
        raise CellTimeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class CellResult:
    """A graded test cell's outcome: passed (full points) or not, the judge's message, the records."""

    passed: bool
    message: str | None
    records: list
    timeout: bool = False
    hidden_only: bool = False  # the visible check passed, a hidden one failed (the student saw "ok")


class NotebookGrader:
    """Grades assignment ``name`` with its model answers or with one solution cell changed, in this process.

    For each grading, a fresh namespace runs the *prelude*: the setup cell, the solution cells and every other cell
    that binds a name a solution or test cell reads (plots and printouts are left out), in notebook order.
    :meth:`grade` then runs the graded test cells as the student's kernel would and judges their records.
    """

    def __init__(self, name: str, course: Path = COURSE, time_limit_s: float = 60.0):
        self.name, self.time_limit_s = name, time_limit_s
        self.cells = read_cells(name, course)
        self.trees = {c.index: ast.parse(c.source) for c in self.cells}
        needed = set().union(*(_loaded_names(self.trees[c.index]) for c in self.cells if c.kind != "other"))
        # the cells that run before the graded ones: the setup, the solutions, and what binds a name they read
        self.prelude = [c for c in self.cells if c.kind == "solution" or (c.kind == "other" and (
            c.grade_id == "setup" or bound_names(self.trees[c.index]) & needed))]
        self.points = {c.grade_id: c.points for c in self.cells if c.kind == "test"}
        self.original: dict[str, CellResult] = {}
        self.original, errors = self._run(None)
        if errors:
            raise RuntimeError(f"{name}: the model answers' notebook fails in {errors[0]}")
        lost = [g for g, r in self.original.items() if not r.passed]
        if lost:
            raise RuntimeError(f"{name}: the model answers lose points in {', '.join(lost)}: "
                               f"{self.original[lost[0]].message}")

    def _run(self, mutant: Mutant | None) -> tuple[dict[str, CellResult], list[str]]:
        """Run the notebook top to bottom in a fresh namespace (``mutant``'s tree in place of its cell).

        Prelude cells and graded test cells run in notebook order; a test cell *before* the mutated cell gives what
        it gave with the model answers (it ran before the change existed).  A prelude cell that raises is reported
        and the run goes on, as nbgrader goes on after an error.  Returns the test cells' results and the errors.
        """
        ns: dict = {"__name__": "__main__"}
        changed_at = next(c.index for c in self.cells if c.grade_id == mutant.cell) if mutant is not None else -1
        results: dict[str, CellResult] = {}
        errors: list[str] = []
        prelude = {c.index for c in self.prelude}
        for c in self.cells:
            if c.kind == "test":
                results[c.grade_id] = (self.original[c.grade_id] if c.index < changed_at
                                       else self._run_test(c, ns))
            elif c.index in prelude:
                tree = mutant.tree if c.index == changed_at else self.trees[c.index]
                try:
                    self._exec(c, tree, ns)
                except Exception as err:
                    errors.append(f"{c.grade_id}: {type(err).__name__}: {err}"[:300])
        return results, errors

    def _exec(self, cell: Cell, tree: ast.Module, ns: dict) -> None:
        code = compile(tree, f"<{self.name}:{cell.grade_id or cell.index}>", "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, ns)  # noqa: S102 -- the course's own notebook (and mutants of its model answers)
        plt.close("all")

    def _run_test(self, cell: Cell, ns: dict) -> CellResult:
        """Run a graded test cell in ``ns`` with the checks recording, then judge the records (the grader's path)."""
        sink: list = []
        stopped = None
        try:
            with time_limit(self.time_limit_s), recording(sink), contextlib.redirect_stdout(io.StringIO()):
                exec(compile(cell.source, f"<{self.name}:{cell.grade_id}>", "exec"), ns)  # noqa: S102
        except CellTimeout:
            return CellResult(False, f"timed out after {self.time_limit_s:g} s", sink, timeout=True)
        except Exception as err:  # the cell failed in the kernel: the judge decides from the records it left
            stopped = f"{type(err).__name__} in the notebook"
        finally:
            plt.close("all")
        verdict = judge_cell(cell.source, sink, stopped)
        plan = planned_checks(cell.source)
        failed_at = len(verdict.lines)  # the checks run in order; each that passed left its "ok" line
        hidden_only = (not verdict.passed and failed_at < len(plan) and plan[failed_at][1]
                       and any(not hidden for _, hidden in plan[:failed_at]))
        return CellResult(verdict.passed, verdict.message, sink, hidden_only=bool(hidden_only))

    def solution_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == "solution" and c.region is not None]

    def mutants(self) -> list[Mutant]:
        out = []
        for c in self.solution_cells():
            out += generate_mutants(c.source, c.grade_id, c.region)
        return out

    def grade(self, mutant: Mutant) -> dict:
        """Score the notebook with ``mutant`` in place of its solution cell: status, points lost, first message."""
        results, errors = self._run(mutant)
        lost = {g: self.points[g] for g, r in results.items() if g in self.points and not r.passed}
        timeout = any(r.timeout for r in results.values())
        same = all(results[g].records == self.original[g].records for g in self.points)
        if lost:
            status = "killed"
        else:
            status = "equivalent" if same else "survives"
        first = next((results[g].message for g in self.points if g in lost), None)
        return {"status": status, "timeout": timeout, "points_lost": sum(lost.values()),
                "cells_lost": sorted(lost), "hidden_only": bool(lost) and all(results[g].hidden_only for g in lost),
                "message": (first or "")[:400] or None,
                "cell_errors": errors}


# ----------------------------------------------------------------------------- the run and its report


def run_assignment(name: str, *, max_mutants: int | None, seed: int, time_limit_s: float, log=sys.stderr) -> dict:
    """Generate and grade the mutants of one assignment; returns its part of the JSON report."""
    t0 = time.perf_counter()
    try:
        grader = NotebookGrader(name, time_limit_s=time_limit_s)
    except RuntimeError as err:  # the model answers themselves lose points: nothing to measure against
        print(f"  {name}: not measured: {err}", file=log, flush=True)
        return {"assignment": name, "error": str(err)[:600], "generated": 0, "graded": 0, "killed": 0,
                "equivalent": 0, "survives": 0, "killed_hidden_only": 0, "killed_fraction": None,
                "killed_fraction_non_equivalent": None,
                "cells": {}, "points": {}, "seconds": round(time.perf_counter() - t0, 1), "mutants": []}
    mutants = grader.mutants()
    generated = len(mutants)
    if max_mutants is not None and generated > max_mutants:
        rng = random.Random(f"{seed}:{name}")
        keep = set(rng.sample(range(generated), max_mutants))
        mutants = [m for i, m in enumerate(mutants) if i in keep]
    rows = []
    for k, m in enumerate(mutants, start=1):
        t = time.perf_counter()
        row = {key: v for key, v in asdict(m).items() if key != "tree"}
        row.update(grader.grade(m))
        row["seconds"] = round(time.perf_counter() - t, 3)
        rows.append(row)
        print(f"  [{name} {k}/{len(mutants)}] {row['status']:<10} {m.id}  {m.before!r} -> {m.after!r}", file=log,
              flush=True)
    killed = sum(r["status"] == "killed" for r in rows)
    hidden_only = sum(r["hidden_only"] for r in rows)
    equivalent = sum(r["status"] == "equivalent" for r in rows)
    non_eq = len(rows) - equivalent
    return {"assignment": name, "generated": generated, "graded": len(rows), "killed": killed,
            "equivalent": equivalent, "survives": len(rows) - killed - equivalent, "killed_hidden_only": hidden_only,
            "killed_fraction": killed / len(rows) if rows else None,
            "killed_fraction_non_equivalent": killed / non_eq if non_eq else None,
            "cells": {c.grade_id: sum(r["cell"] == c.grade_id for r in rows) for c in grader.solution_cells()},
            "points": grader.points, "seconds": round(time.perf_counter() - t0, 1), "mutants": rows}


def load_explanations(path: Path = EXPLANATIONS_FILE) -> dict[str, str]:
    """``{"<assignment>/<mutant id>": explanation}`` written by hand (missing file: none).

    An explanation starts with ``equivalent:`` (the change alters no result on any input the docstring allows) or
    ``not caught:`` (and names the case a check would need).
    """
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: expected an object of strings, {{\"<assignment>/<mutant id>\": \"why\"}}")
    bad = [k for k, v in data.items() if not v.startswith(("equivalent:", "not caught:"))]
    if bad:
        raise ValueError(f"{path}: an explanation starts with 'equivalent:' or 'not caught:' ({bad[0]})")
    return data


def summarize(part: dict, explanations: dict[str, str]) -> None:
    """Add to an assignment's part the explanations of its mutants that keep full marks and the fractions."""
    name = part["assignment"]
    keep = [m for m in part["mutants"] if m["status"] != "killed"]
    for m in keep:
        m["explanation"] = explanations.get(f"{name}/{m['id']}")
    proven = sum(1 for m in keep if (m["explanation"] or "").startswith("equivalent:"))
    part["explained_equivalent"] = proven
    rest = part["graded"] - proven
    part["killed_fraction_not_proven_equivalent"] = part["killed"] / rest if rest else None
    ops: dict[str, list[int]] = {}
    for m in part["mutants"]:
        k = ops.setdefault(m["operator"], [0, 0])
        k[0] += m["status"] == "killed"
        k[1] += 1
    part["operators"] = {op: {"killed": k, "graded": n} for op, (k, n) in sorted(ops.items())}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}" + ("" if x >= TARGET else " (below 90%)")


def _command_naming_out(command: str, out: Path) -> str:
    """``command`` with ``--out`` (relative to the repository where it lies inside it) when it names none: a run
    without ``--out`` writes a new folder, so the command that rewrites ``out`` must name it."""
    if any(t == "--out" or t.startswith("--out=") for t in command.split()):
        return command
    try:
        shown = Path(out).resolve().relative_to(ROOT)
    except ValueError:
        shown = Path(out)
    return f"{command} --out {shown}"


def write_markdown(report: dict, out: Path) -> None:
    """``OUT/README.md``: the command, the run time, one row per assignment, every mutant that keeps full marks."""
    lines = ["# Mutation run over the assignments' model answers (issue 20, item 5)", "",
             "Written by `bench/grading_mutants.py` (its docstring says what a mutant is and how it is graded): "
             "each mutant is one small change to one line of a model answer, graded with the notebook's own "
             "graded test cells (visible and hidden checks, judged from the recorded answers as the grader does, "
             "each cell its metadata's points).", "",
             f"Command: `{_command_naming_out(report['command'], out)}`  ",
             f"Run time: {report['seconds']:.0f} s on {report['machine']}"
             + (f" (with the check against nbgrader below: {report['seconds_with_nbgrader_check']:.0f} s)"
                if report.get("seconds_with_nbgrader_check") else "") + "  ",
             f"Date (UTC): {report['date']}; checks and notebooks of commit {report['commit']}"
             + (f" with uncommitted changes to {', '.join(report['uncommitted'])}" if report["uncommitted"] else "")
             + "  ",
             *(["**The checks or the source notebooks changed during this run: run it again.**  "]
               if report.get("checks_changed_during_run") else []),
             f"Sample: {report['sample']}; the hidden cases' secret: `{report['hidden_secret']}` (a grading run draws "
             "a fresh one)", "",
             "| assignment | mutants | killed | of which by hidden checks only | equivalent on the checks | survive | "
             "killed / all | killed / non-equivalent | killed / (all but proven equivalent) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a in report["assignments"]:
        if a.get("error"):
            lines.append(f"| {a['assignment']} | not measured: {a['error'][:200]} | | | | | | | |")
            continue
        count = f"{a['graded']}" + (f" of {a['generated']}" if a["graded"] < a["generated"] else "")
        lines.append(f"| {a['assignment']} | {count} | {a['killed']} | {a['killed_hidden_only']} | "
                     f"{a['equivalent']} | {a['survives']} | "
                     f"{a['killed_fraction']:.1%} | {_pct(a['killed_fraction_non_equivalent'])} | "
                     f"{_pct(a['killed_fraction_not_proven_equivalent'])} |")
    ops: dict[str, list[int]] = {}
    for a in report["assignments"]:
        for op, n in a.get("operators", {}).items():
            ops.setdefault(op, [0, 0])
            ops[op][0] += n["killed"]
            ops[op][1] += n["graded"]
    check = report.get("nbgrader_check")
    if check:
        lines += ["", f"Checked against the course's own command: {check['of']} of these mutants (every one that "
                  f"keeps full marks, up to half, and killed ones drawn at random) graded again with `python -m "
                  f"dmcmc_edu assignments grade` (nbgrader, {check['mode']}) in a scratch course: {check['agree']} of "
                  f"{check['of']} get the same score in every graded cell ({check['seconds']:.0f} s)."]
    if ops:
        lines += ["", "Killed / graded by operator (all assignments): "
                  + ", ".join(f"{op} {k}/{n}" for op, (k, n) in sorted(ops.items())) + "."]
    lines += ["", "*by hidden checks only*: the visible check said \"ok\" and a hidden check took the points (the "
              "student had no warning); "
              "*equivalent on the checks*: full marks, and every answer to every check case (visible and hidden) "
              "identical, bit for bit, to the model answer's; *survive*: full marks although some answer differs. "
              "*proven equivalent*: explained below as altering no result on any allowed input. Target (issue 20): "
              "at least 90% of the non-equivalent mutants of each assignment lose points.", "",
              "## Mutants that keep full marks", "",
              "Explanations are written by hand in `explanations.json`: *equivalent* (no input the docstring allows "
              "tells it from the model answer) or *not caught* (with the case a check would need).", ""]
    for a in report["assignments"]:
        keep = [m for m in a["mutants"] if m["status"] != "killed"]
        lines += [f"### {a['assignment']} ({len(keep)})", ""]
        if not keep:
            lines += ["none" if not a.get("error") else "not measured", ""]
            continue
        lines += ["| id | line | change | status | why |", "|---|---|---|---|---|"]
        for m in keep:
            why = m.get("explanation") or "(not explained yet)"
            cells = [m["id"], f"`{m['code_line']}`", f"`{m['before']}` -> `{m['after']}`", m["status"], why]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    stale = report.get("stale_explanations") or []
    if stale:
        lines += ["Explanations of mutants that now lose points or no longer exist (to remove): "
                  + ", ".join(f"`{k}`" for k in stale), ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def write_plot(report: dict, out: Path) -> None:
    """``OUT/grading_mutants.png``: per assignment, killed / survive / equivalent-on-the-checks mutants."""
    parts = [a for a in report["assignments"] if not a.get("error")]
    names = [a["assignment"].split("_")[0].upper() for a in parts]
    killed = [a["killed"] for a in parts]
    eq = [a["equivalent"] for a in parts]
    surv = [a["survives"] for a in parts]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(names, killed, color="C2", label="killed (lose points)")
    ax.bar(names, surv, bottom=killed, color="C3", label="survive (answers differ, full marks)")
    ax.bar(names, eq, bottom=[k + s for k, s in zip(killed, surv)], color="0.7",
           label="equal answers on every check case")
    for i, a in enumerate(parts):
        auto, strict = a["killed_fraction_non_equivalent"], a.get("killed_fraction_not_proven_equivalent")
        if auto is not None:
            label = f"{auto:.0%}" + (f"\n({strict:.0%})" if strict is not None and abs(strict - auto) > 5e-4 else "")
            ax.text(i, a["graded"], label, ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("mutants of the model answers")
    ax.set_ylim(0, max([a["graded"] for a in parts] + [1]) * 1.25)
    ax.set_title("Single-change mutants of the model answers that lose points\n(label: killed / non-equivalent on "
                 "the checks; in brackets: killed / all but the proven equivalent)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "grading_mutants.png", dpi=120)
    plt.close(fig)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60,
                              check=True).stdout.rstrip()
    except (OSError, subprocess.SubprocessError):
        return ""


def checks_digest() -> str:
    """A digest of the checks (``dmcmc_edu/grading``) and the source notebooks, to tell a run that saw them change."""
    h = hashlib.sha256()
    files = sorted((ROOT / "dmcmc_edu" / "grading").glob("*.py")) + sorted((COURSE / "source").glob("*/*.ipynb"))
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def checks_state() -> tuple[str, list[str]]:
    """The commit of the checkout and its uncommitted changes to the checks and the source notebooks."""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--", "dmcmc_edu/grading", "notebooks/assignments/source")
    return commit, sorted(line[3:] for line in status.splitlines() if line.strip())


def nbgrader_check(names: list[str], k: int, seed: int, parts: list[dict], log=sys.stderr) -> dict:
    """Grade ``k`` of the mutants again with the course's own command (``nbgrader`` through ``python -m dmcmc_edu
    assignments release | grade``, each kernel in the sandbox where bubblewrap runs) in a scratch copy of the course,
    and compare every graded cell's score with this tool's.  The sample: every mutant that kept full marks (up to
    half of ``k``), then killed ones drawn with ``seed``.  Returns the comparison for the report."""
    import tempfile

    from nbgrader.api import Gradebook  # the extra 'assignments': only this check needs it

    from dmcmc_edu.cli import main as cli_main
    from dmcmc_edu.grading import course as course_mod
    from dmcmc_edu.grading import sandbox as sandbox_mod

    rng = random.Random(f"{seed}:nbgrader")
    rows = [(a["assignment"], m) for a in parts for m in a["mutants"]]
    keep = [r for r in rows if r[1]["status"] != "killed"][: k // 2]
    killed = [r for r in rows if r[1]["status"] == "killed"]
    pick = keep + rng.sample(killed, min(len(killed), k - len(keep)))
    t0 = time.perf_counter()
    mode = "sandbox"
    saved = os.environ.get(sandbox_mod.MODE_ENV)
    try:
        sandbox_mod.check_sandbox()
    except sandbox_mod.SandboxError:
        mode = "plain (no bubblewrap here)"
        os.environ[sandbox_mod.MODE_ENV] = "plain"
    try:
        with tempfile.TemporaryDirectory(prefix="grading-mutants-") as tmp:
            work = Path(tmp)
            course = work / "course"
            (course / "source").mkdir(parents=True)
            (course / "nbgrader_config.py").write_bytes((COURSE / "nbgrader_config.py").read_bytes())
            used = sorted({name for name, _ in pick})
            for name in used:
                (course / "source" / name).mkdir()
                (course / "source" / name / f"{name}.ipynb").write_bytes(notebook_path(name).read_bytes())
            with contextlib.redirect_stdout(io.StringIO()):
                cli_main(["assignments", "release", "--course", str(course), "--assignments", ",".join(used)])
            trees = {}
            for name in used:
                trees[name] = {m.id: m for m in NotebookGrader(name).mutants()}
            subs = work / "submissions"
            students = {}
            for j, (name, row) in enumerate(pick):
                student = f"mutant{j:02d}"
                students[student] = (name, row)
                nb = json.loads(notebook_path(name).read_text(encoding="utf-8"))
                mutant = trees[name][row["id"]]
                for c in nb["cells"]:
                    if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == mutant.cell:
                        c["source"] = ast.unparse(mutant.tree) + "\n"
                    if c["cell_type"] == "code":
                        c["outputs"], c["execution_count"] = [], None
                folder = subs / student / name
                folder.mkdir(parents=True)
                (folder / f"{name}.ipynb").write_text(json.dumps(nb, indent=1), encoding="utf-8")
            roster = work / "students.csv"
            roster.write_text("id\n" + "".join(f"{s}\n" for s in sorted(students)), encoding="utf-8")
            course_mod.run_nbgrader(course, "db", "student", "import", str(roster))
            print(f"  grading {len(pick)} mutants with the course's command ({mode})", file=log, flush=True)
            with contextlib.redirect_stdout(io.StringIO()):
                cli_main(["assignments", "grade", "--course", str(course), "--submissions", str(subs),
                          "--out", str(work / "grades.csv")])
            old_path = os.environ.get("PATH", "")
            os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])  # alembic
            try:
                with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "dmcmc_edu") as gb:
                    scores = {s: {g.name: float(g.score or 0) for g in
                                  gb.find_submission_notebook(name, name, s).grades}
                              for s, (name, _) in students.items()}
            finally:
                os.environ["PATH"] = old_path
            errors = {s: _error_outputs(course / "autograded" / s / name / f"{name}.ipynb")
                      for s, (name, _) in students.items()}
    finally:
        if saved is None:
            os.environ.pop(sandbox_mod.MODE_ENV, None)
        else:
            os.environ[sandbox_mod.MODE_ENV] = saved
    points = {a["assignment"]: a["points"] for a in parts}
    out = []
    for student, (name, row) in sorted(students.items()):
        mine = {g: (0.0 if g in row["cells_lost"] else float(p)) for g, p in points[name].items()}
        theirs = {g: scores[student].get(g) for g in mine}
        entry = {"assignment": name, "id": row["id"], "status": row["status"], "agree": mine == theirs,
                 "in_process": mine, "nbgrader": theirs}
        if mine != theirs:  # what the course's command said in the cells that differ
            entry["nbgrader_errors"] = {g: errors[student].get(g) for g in mine if mine[g] != theirs[g]}
        out.append(entry)
    return {"mutants": out, "agree": sum(r["agree"] for r in out), "of": len(out), "mode": mode,
            "seconds": round(time.perf_counter() - t0, 1)}


def _error_outputs(path: Path) -> dict[str, str]:
    """``{grade_id: "Name: message"}`` of the error outputs of an autograded notebook (missing file: empty)."""
    if not path.is_file():
        return {}
    out = {}
    for c in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for o in c.get("outputs", []):
            if o.get("output_type") == "error" and gid:
                out[gid] = f"{o.get('ename')}: {o.get('evalue')}"[:600]
    return out


def explain(report: dict, explanations: dict[str, str]) -> None:
    """Put the hand-written explanations and the fractions into ``report``, and list the stale explanations."""
    parts = report["assignments"]
    for part in parts:
        summarize(part, explanations)
    keeping = {f"{a['assignment']}/{m['id']}" for a in parts for m in a["mutants"] if m["status"] != "killed"}
    measured = {a["assignment"] for a in parts}
    report["stale_explanations"] = sorted(k for k in explanations if k.split("/")[0] in measured and k not in keeping)


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "grading_mutants.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    write_markdown(report, out)
    write_plot(report, out)
    for a in report["assignments"]:
        if a.get("error"):
            print(f"{a['assignment']}: not measured ({a['error'][:200]})")
            continue
        print(f"{a['assignment']}: {a['graded']} mutants, {a['killed']} killed ({a['killed_hidden_only']} by hidden "
              f"checks only), {a['equivalent']} equivalent on the checks, {a['survives']} survive; killed / "
              f"non-equivalent {_pct(a['killed_fraction_non_equivalent'])}, killed / (all but proven equivalent) "
              f"{_pct(a['killed_fraction_not_proven_equivalent'])} ({a['seconds']:.0f} s)")
    unexplained = [f"{a['assignment']}/{m['id']}" for a in report["assignments"] for m in a["mutants"]
                   if m["status"] != "killed" and not m.get("explanation")]
    if unexplained:
        print(f"{len(unexplained)} mutant(s) keep full marks without an explanation: {', '.join(unexplained)}")
    if report["stale_explanations"]:
        print(f"stale explanations (now killed or gone): {', '.join(report['stale_explanations'])}")
    print(f"wrote {out}/grading_mutants.json, README.md, grading_mutants.png (run: {report['seconds']:.0f} s)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help="where the JSON, the table and the plot go (default: a new folder "
                        "runs/grading_mutants-<UTC time>)")
    p.add_argument("--assignments", default="", help="comma-separated names (default: every assignment)")
    p.add_argument("--max-mutants", type=int, default=None, help="grade a seeded sample of N mutants per assignment")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed (with --max-mutants)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per graded cell of a mutant")
    p.add_argument("--explanations", type=Path, default=EXPLANATIONS_FILE,
                   help="the hand-written explanations of the mutants that keep full marks")
    p.add_argument("--hidden-secret", default=DEFAULT_SECRET,
                   help=f"the grader's secret of the hidden cases ({HIDDEN_ENV}) for this run")
    p.add_argument("--nbgrader-check", type=int, default=0, metavar="K",
                   help="also grade K mutants with the course's own command (nbgrader) and compare cell by cell")
    p.add_argument("--report-only", action="store_true",
                   help="grade nothing: rewrite the table and the plot from OUT/grading_mutants.json (needs --out)")
    return p


def out_folder(args) -> Path:
    """``--out``, or a new folder ``runs/grading_mutants-<UTC time>`` (committed results are written only when
    named)."""
    return Path(args.out) if args.out else fresh_folder("grading_mutants")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.report_only and not args.out:
        print("error: --report-only needs --out DIR, the folder that holds grading_mutants.json", file=sys.stderr)
        return 2
    args.out = out_folder(args)
    plt.switch_backend("Agg")  # files only; the notebooks' plots are closed unseen
    explanations = load_explanations(args.explanations)
    if args.report_only:
        path = args.out / "grading_mutants.json"
        if not path.is_file():
            print(f"error: --report-only needs {path} (run without it first)", file=sys.stderr)
            return 2
        report = json.loads(path.read_text(encoding="utf-8"))
        explain(report, explanations)
        write_report(report, args.out)
        return 0
    saved = os.environ.get(HIDDEN_ENV)
    os.environ[HIDDEN_ENV] = args.hidden_secret
    try:
        return _run(args, argv)
    finally:  # leave the caller's environment as it was (the tests call main in-process)
        if saved is None:
            os.environ.pop(HIDDEN_ENV, None)
        else:
            os.environ[HIDDEN_ENV] = saved


def _run(args, argv) -> int:
    """Grade the mutants of the assignments ``args`` names and write the report (see :func:`main`)."""
    explanations = load_explanations(args.explanations)
    known = assignment_names()
    names = [n for n in args.assignments.split(",") if n] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"error: unknown assignment {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if args.max_mutants is not None and args.max_mutants < 1:
        print("error: --max-mutants must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    digest = checks_digest()
    parts = []
    for name in names:
        print(f"{name}: grading its mutants", file=sys.stderr, flush=True)
        parts.append(run_assignment(name, max_mutants=args.max_mutants, seed=args.seed, time_limit_s=args.time_limit))
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/grading_mutants.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    commit, uncommitted = checks_state()
    report = {"command": command, "seconds": round(time.perf_counter() - t0, 1),
              "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "commit": commit, "uncommitted": uncommitted,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread, python "
                         f"{platform.python_version()}, torch {torch.__version__}",
              "sample": (f"a seeded sample of at most {args.max_mutants} mutants per assignment (seed {args.seed})"
                         if args.max_mutants else "every generated mutant"),
              "time_limit_s": args.time_limit, "hidden_secret": args.hidden_secret, "target": TARGET,
              "assignments": parts}
    if args.nbgrader_check > 0:
        report["nbgrader_check"] = nbgrader_check(names, args.nbgrader_check, args.seed, parts)
        report["seconds_with_nbgrader_check"] = round(time.perf_counter() - t0, 1)
    report["checks_changed_during_run"] = checks_digest() != digest
    explain(report, explanations)
    write_report(report, args.out)
    if report["checks_changed_during_run"]:
        print("warning: the checks or the source notebooks changed while this ran; run it again", file=sys.stderr)
    check = report.get("nbgrader_check")
    if check and check["agree"] != check["of"]:
        print(f"error: the course's command scored {check['of'] - check['agree']} of {check['of']} mutants "
              "differently (see the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
