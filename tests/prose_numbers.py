"""A number in prose is a number in an output (issue 19, item 1): the checker behind ``tests/test_prose_numbers.py``.

``check_notebook(path, declared)`` reads the stored ``.ipynb`` (it executes nothing), takes every number that a
markdown cell states and returns one :class:`Finding` (notebook, cell index, number, surrounding words) for each
that no output of the same notebook shows and nothing declares.  A notebook stored without outputs (an assignment's
source: nbgrader releases it cleared) is checked against an executed copy: :func:`executed_cells` runs it, model
answers included, in a scratch folder and returns its cells with their outputs.  The rules:

**A stated number** is a decimal numeral in the prose: ``37``, ``0.065``, ``50,000``, ``1e-3``, ``12 %`` (also
read as 0.12), ``50k`` (50000).  Its sign is ignored (a "drop of 0.5" may print as -0.5).  Spelled-out numbers
("two", "eight") are not read.  Not read either:

* LaTeX maths (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``): formulas and symbols;
* fenced and indented code blocks (commands to type), URLs and link targets, HTML tags;
* inline code, *except* a backticked assignment of numbers (```eta = 0.01```, ```STEPS = [6, 25]```) or a
  backticked bare number: that states a setting, which must be printed or declared.  Any other backticked text
  (a command, a file name, a call such as ``kar1(model, x, s0, sigma_min, 3)``) is code, not a claim.  Under a
  "Try this" heading every backticked span is a suggestion to type, and is not read;
* digits glued to letters or underscores (``KAR1``, ``W2``, ``CIFAR10``, ``A6``, ``2D``, ``04_dlg_acceleration``),
  after a word and a hyphen (``CelebA-HQ-256``, ``Wasserstein-2``) and version strings (``2.11.0``): names;
* references: a number after *section, notebook, cell, figure/fig., table, algorithm/alg., equation/eq., item,
  part, question, exercise, assignment, appendix, chapter, line, row, column, issue, week, session* (with its run:
  ``cells 12/13/15``, ``sections 2 and 3``); a numeral with a leading zero (``04``, ``01-03``: the notebooks'
  numbers); a list marker (``1.`` opening a line); a one-digit integer alone in brackets (``(3)``, ``**(1)**``;
  "(75)" is a value); the number opening a heading;
* citations: a year (1900-2099) right after an author, a venue or ``et al.`` (``Song et al. (2021)``,
  ``ICML 2023``) and arXiv ids (``2209.14593``);
* the opening cell's ``**Time:**`` (or ``**Time.**``) line: reading and run times, which issue 19, item 5
  measures for the course map; they are not outputs of the notebook.

**Shown** -- a stated number is shown when a number in an output of any code cell of the same notebook (stream
text, ``text/plain`` or ``text/markdown`` results) equals it *at the prose's precision*:

* a number written with decimals or an exponent matches an output o when ``|o - p|`` is at most half a unit of
  its last written digit: "0.7" matches 0.70, 0.703 and 0.68 (not 0.76); "1e-3" matches 0.0012;
* an integer matches only an output of the same value: "37" matches 37 and 37.0, not 36.6 (so a timing "15 s"
  is not shown by a table's 15.29);
* a percentage also matches its fraction (12 % and 0.12), and an output percentage its fraction.

**Derived** -- arithmetic the prose writes out on its own numbers, ``(95.3 / 12.0)``, ``2 × 19 − 1`` (numbers
joined by ``/``, ``×``, ``*``, ``·``, or by ``x``, ``+``, ``-``, ``−`` between spaces), shows its result: a stated
number equal to it at the prose's precision (integers too: "about 8 times (95.3 / 12.0)") passes.  The operands are
stated numbers themselves, checked like any other, so a derived number rests on shown ones.

**Declared** -- (a) a numeric constant that the notebook's *settings cell* assigns (the code cell after a
"Settings" heading, or one whose first line is a ``# Settings`` comment; read with ``ast``, so comments do not
count): the cell shows it, and a sentence that restates it fails once the setting changes; (b) a number of
:mod:`dmcmc_edu.paper` (the names in its ``__all__``: presets, FIDs, sample sizes, headline claims); (c) the
per-notebook list passed as ``declared`` ({number as written: a one-line reason}), for definitions.

The check is membership, not position: a sentence that quotes a printed number in the wrong place still passes,
and a small integer (2, 4, 8) is almost always printed somewhere.  It catches a number no output shows, which
is how typed numbers drift.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dmcmc_edu import paper

# ---- numbers --------------------------------------------------------------------------------------------------------
# a numeral: 50,000 | 37 | 0.065 | 1e-3 | 2.5e+04; never preceded by a word character or a dot, never followed by
# a dot + digit (a version) or a word character other than the suffix k (thousands) / x (times)
_NUM = re.compile(r"(?<![\w.])(?<![A-Za-z]-)(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?(?P<exp>[eE][-+]?\d+)?"
                  r"(?P<k>k)?(?!\.\d)(?![\w])(?P<pct>\s?%)?")
_OUT_NUM = re.compile(r"(?<![A-Za-z0-9_.])(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
                      r"(?P<exp>[eE][-+]?\d+)?(?!\.\d)(?P<pct>\s?%)?")

# ---- what is not prose ----------------------------------------------------------------------------------------------
_FENCED = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_MATH = re.compile(r"\$\$.*?\$\$|(?<!\\)\$(?:\\\$|[^$])+?\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_URL = re.compile(r"<?https?://\S+>?")
_HTML = re.compile(r"<!--.*?-->|<[A-Za-z/][^>]*>", re.S)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# a backticked setting: NAME = 0.01, NAME=[6, 25], cfg.eta_rel = 0.2, or a bare number
_SETTING = re.compile(r"^\s*(?:[A-Za-z_][\w.\[\]'\"]*\s*=\s*)?[-+\[\](),.\deE\s]*\d[-+\[\](),.\deE\s]*$")
_REF_WORDS = (r"sections?|§|notebooks?|cells?|fig(?:ure)?s?\.?|tables?|algorithms?|eq(?:uation)?s?\.?|items?|parts?"
              r"|questions?|exercises?|assignments?|appendix|chapters?|lines?|rows?|columns?|issues?|alg\.|weeks?|sessions?")
_REF = re.compile(rf"\b(?:{_REF_WORDS})\s*\(?\d+(?:\s*(?:,|/|-|–|—|and|to|or)\s*\d+)*\)?", re.I)
_LEADING_ZERO = re.compile(r"(?<![\w.])0\d(?:\s*[-–—]\s*0\d)*(?![\w.])")
_LIST_MARKER = re.compile(r"^(\s*)\d+[.)](?=\s)", re.M)
_BRACKETED_INT = re.compile(r"\(\d\)")
_HEADING_NUMBER = re.compile(r"^(#+\s*)\d+(?:\.\d+)*", re.M)
_ARXIV = re.compile(r"\b\d{4}\.\d{4,5}(?:v\d+)?\b")
_TIME_LINE = re.compile(r"\*\*Time[:.]\*\*.*?(?=\*\*|\n\s*\n|\Z)", re.S)
_TRY_THIS = re.compile(r"^#+\s*Try this", re.I | re.M)
_YEAR = re.compile(r"(?:et al\.?|[A-Z][a-z]+|[A-Z]{2,}|&)[\s,]*\(?\s*(?:19|20)\d\d\b\)?")
# arithmetic written out in the prose: numerals joined by / × * · (spaces optional) or by x + - − (between spaces)
_NUMERAL = r"(?<![\w.])\d+(?:\.\d+)?(?!\w|\.\d|\s?%)"
_OP = r"(?:\s*[/×*·]\s*|\s+[x+\-−]\s+)"
_ARITHMETIC = re.compile(rf"{_NUMERAL}(?:{_OP}{_NUMERAL})+")


@dataclass(frozen=True)
class Finding:
    notebook: str
    cell: int
    number: str
    context: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.number!r} in \"...{self.context}...\""


@dataclass(frozen=True)
class _Number:
    text: str
    value: float
    half_unit: float   # half a unit of the last digit written
    percent: bool
    integer: bool      # written without decimals or exponent


def _parse(m: re.Match) -> _Number:
    digits = m.group("int").replace(",", "")
    frac, exp = m.group("frac") or "", m.group("exp") or ""
    value = float(digits + frac + exp)
    decimals = len(frac) - 1 if frac else 0
    half = 0.5 * 10.0 ** (-decimals + (int(exp[1:]) if exp else 0))
    if m.groupdict().get("k"):
        value, half = value * 1000, half * 1000
    return _Number(m.group(0).strip(), value, half, bool(m.group("pct")), not frac and not exp)


def _blank(pattern: re.Pattern, text: str) -> str:
    """Replace every match by spaces of its length (keeps the positions, so contexts stay readable)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _indented_code(text: str) -> str:
    """Blank indented code blocks: lines indented by 4+ spaces after a blank line (list text is indented less)."""
    lines, out, in_block, prev_blank = text.split("\n"), [], False, True
    for line in lines:
        indented = line.startswith("    ") and line.strip()
        in_block = bool(indented and (in_block or prev_blank))
        out.append(" " * len(line) if in_block else line)
        prev_blank = not line.strip()
    return "\n".join(out)


def _code_spans(text: str) -> str:
    """Blank inline code but a backticked setting; in a "Try this" section every backticked span (a suggestion)."""
    m = _TRY_THIS.search(text)
    cut = m.start() if m else len(text)

    def keep(span: re.Match) -> str:
        setting = span.start() < cut and _SETTING.match(span.group(2))
        return span.group(0) if setting else " " * len(span.group(0))

    return _CODE_SPAN.sub(keep, text)


def prose(markdown: str) -> str:
    """The markdown with everything that is not a stated number blanked out (same length, same positions)."""
    text = _blank(_FENCED, markdown)
    text = _indented_code(text)
    text = _blank(_HTML, text)
    text = _blank(_LINK_TARGET, text)
    text = _blank(_URL, text)
    text = _blank(_MATH, text)
    text = _blank(_TIME_LINE, text)
    text = _code_spans(text)
    text = text.replace("`", " ")
    for pattern in (_ARXIV, _REF, _LEADING_ZERO, _BRACKETED_INT):
        text = _blank(pattern, text)
    text = _YEAR.sub(lambda m: re.sub(r"\d", " ", m.group(0)), text)
    text = _LIST_MARKER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), text)
    text = _HEADING_NUMBER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), text)
    return text


def derived_values(markdown: str) -> list[float]:
    """The results of the arithmetic the markdown writes out on its numbers (``95.3 / 12.0``, ``2 × 19 − 1``)."""
    values = []
    for m in _ARITHMETIC.finditer(prose(markdown)):
        expr = re.sub(r"\s+", " ", m.group(0))
        expr = re.sub(r" ?[×·x] ?", "*", expr.replace("−", "-"))
        try:
            values.append(float(eval(expr, {"__builtins__": {}}, {})))  # digits, dots, + - * / only (the regex)
        except ZeroDivisionError:
            continue
    return values


def stated_numbers(markdown: str) -> list[tuple[_Number, str]]:
    """Each number the markdown states, with about 40 characters of its surroundings."""
    text = prose(markdown)
    found = []
    for m in _NUM.finditer(text):
        a, b = max(0, m.start() - 40), min(len(markdown), m.end() + 40)
        found.append((_parse(m), " ".join(markdown[a:b].split())))
    return found


# ---- what the notebook shows and declares ---------------------------------------------------------------------------
def _text(x) -> str:
    return x if isinstance(x, str) else "".join(x)


def output_values(cells: list[dict]) -> list[float]:
    """Every number in the notebook's outputs (stream, text/plain, text/markdown); percentages also as fractions."""
    values = []
    for cell in cells:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            texts = [_text(out.get("text", ""))]
            data = out.get("data", {})
            texts += [_text(data[k]) for k in ("text/plain", "text/markdown") if k in data]
            for t in texts:
                for m in _OUT_NUM.finditer(t):
                    v = _parse(m).value
                    values += [v, v / 100] if m.group("pct") else [v]
    return values


def _is_settings_cell(cells: list[dict], i: int) -> bool:
    if cells[i]["cell_type"] != "code":
        return False
    first = _text(cells[i]["source"]).lstrip().split("\n", 1)[0].lower()
    if first.startswith("#") and "settings" in first:
        return True
    prev = cells[i - 1] if i > 0 else None
    return bool(prev and prev["cell_type"] == "markdown"
                and re.search(r"^#+\s*settings\b", _text(prev["source"]), re.I | re.M))


def settings_values(cells: list[dict]) -> list[float]:
    """The numeric constants the settings cell assigns (its comments do not count)."""
    values = []
    for i in range(len(cells)):
        if _is_settings_cell(cells, i):
            src = "\n".join(line for line in _text(cells[i]["source"]).split("\n")
                            if not line.lstrip().startswith(("%", "!")))
            values += [float(n.value) for n in ast.walk(ast.parse(src))
                       if isinstance(n, ast.Constant) and isinstance(n.value, (int, float))
                       and not isinstance(n.value, bool)]
    return values


def paper_values() -> list[float]:
    """Every number in :mod:`dmcmc_edu.paper`'s tables (presets, FIDs, headline claims)."""
    values = []

    def walk(x):
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            values.append(float(x))
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    for name in paper.__all__:
        walk(getattr(paper, name))
    return values


def _matches(n: _Number, values: list[float]) -> bool:
    targets = [abs(n.value)] + ([abs(n.value) / 100] if n.percent else [])
    if n.integer:   # an integer matches only the same integer: "15 s" is not the 15.29 of a table
        return any(math.isclose(abs(v), t, rel_tol=1e-12) for t in targets for v in values)
    scale = [n.half_unit] + ([n.half_unit / 100] if n.percent else [])
    return any(abs(abs(v) - t) <= h * (1 + 1e-9) + 1e-12 for t, h in zip(targets, scale) for v in values)


def _derived_match(n: _Number, values: list[float]) -> bool:
    """A derived value is rounded by the prose: it matches at the prose's precision, integers included."""
    return any(abs(abs(v) - abs(n.value)) <= n.half_unit * (1 + 1e-9) for v in values)


def check_cells(name: str, cells: list[dict], declared: dict[str, str] | None = None) -> list[Finding]:
    """The findings of one notebook given as its list of cells (see the module docstring for the rules)."""
    declared_values = [float(k.replace(",", "")) for k in (declared or {})]
    shown = output_values(cells)
    known = settings_values(cells) + paper_values()
    derived = [v for c in cells if c["cell_type"] == "markdown" for v in derived_values(_text(c["source"]))]
    findings = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        for n, context in stated_numbers(_text(cell["source"])):
            if _matches(n, shown) or _matches(n, known) or _derived_match(n, derived):
                continue
            if any(math.isclose(abs(n.value), d) for d in declared_values):
                continue
            findings.append(Finding(name, i, n.text, context))
    return findings


def check_notebook(path: Path, declared: dict[str, str] | None = None) -> list[Finding]:
    return check_cells(Path(path).name, json.loads(Path(path).read_text())["cells"], declared)


def executed_cells(path: Path, timeout: int = 600) -> list[dict]:
    """The cells of the notebook at ``path`` after running it top to bottom (nbclient, the ``python3`` kernel) in a
    scratch copy of its folder, so that nothing it writes lands beside the source; the stored file is not changed.
    A cell that raises stops the run with nbclient's error naming the cell.  One run per notebook and process (the
    prose check and tests/test_course_kit.py read the same run of A6)."""
    return json.loads(_executed(str(Path(path).resolve()), timeout))["cells"]


@functools.lru_cache(maxsize=None)
def _executed(path: str, timeout: int) -> str:
    import nbclient
    import nbformat

    source = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(source.parent, Path(tmp) / source.parent.name,
                                      ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")))
        nb = nbformat.read(folder / source.name, as_version=4)
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(folder)}}).execute()
    return nbformat.writes(nb)
