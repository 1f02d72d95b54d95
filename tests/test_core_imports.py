"""The core stands alone: importing it loads nothing else of the package, and its imports are a short whitelist.

* in a fresh interpreter, importing every module of ``dmcmc_edu.core`` loads no ``dmcmc_edu`` module outside the
  core and no third-party or standard-library package beyond those the whitelist names (compared with an
  interpreter that imported only those);
* every ``import`` / ``from ... import`` in ``dmcmc_edu/core`` (at module level or inside a function) names a
  whitelisted module or the core itself, and no file calls ``importlib`` or ``__import__``;
* registries are explicit: importing the solvers registers nothing; ``dmcmc_edu.registry`` joins the tables and
  registers nothing either (it has no ``use_solvers``).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "dmcmc_edu" / "core"
# what the core may import: the numerical stack and pure-Python standard modules that touch no file, process or
# network (copy and numbers: dlg.py's state and its number checks)
WHITELIST = {"__future__", "abc", "collections", "copy", "dataclasses", "enum", "functools", "itertools", "math",
             "numbers", "typing", "warnings", "torch", "numpy", "scipy"}


def _imports(tree):
    """(line, module) of every import in a module's tree; a relative import is reported with its dots."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is None:  # from . import x
            for alias in node.names:
                yield node.lineno, "." * node.level + alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, "." * node.level + node.module


def _dynamic_imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            base = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            if name in ("__import__", "import_module") or base == "importlib":
                yield node.lineno, ast.unparse(f)


def offending_imports(files) -> list[str]:
    bad = []
    for f in files:
        tree = ast.parse(f.read_text())
        for line, mod in _imports(tree):
            top = mod.split(".")[0]
            if not (top in WHITELIST or mod == "dmcmc_edu.core" or mod.startswith("dmcmc_edu.core.")):
                bad.append(f"{f.name}:{line} imports {mod}")
        bad += [f"{f.name}:{line} calls {call}" for line, call in _dynamic_imports(tree)]
    return bad


def test_the_core_imports_only_the_whitelist_and_itself():
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 10
    assert offending_imports(files) == []


@pytest.mark.parametrize("line,expected", [
    ("import subprocess", "imports subprocess"),
    ("from urllib.request import urlopen", "imports urllib.request"),
    ("import dmcmc_edu.solvers", "imports dmcmc_edu.solvers"),
    ("from .. import targets", "imports ..targets"),
    ("def f():\n    import socket\n", "imports socket"),
    ("import importlib\nm = importlib.import_module('dmcmc_edu.solvers')", "calls importlib.import_module"),
    ("m = __import__('os')", "calls __import__"),
    ("from importlib import import_module\nm = import_module('os')", "calls import_module"),
])
def test_the_whitelist_check_catches_what_it_should(tmp_path, line, expected):
    f = tmp_path / "mod.py"
    f.write_text("import torch\nfrom dmcmc_edu.core.contract import per_sample\n" + line + "\n")
    bad = offending_imports([f])
    assert any(expected in b for b in bad), bad


def _loaded_after(code: str) -> dict:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_core_loads_nothing_outside_it():
    modules = [f"dmcmc_edu.core.{f.stem}" for f in sorted(CORE.glob("*.py")) if f.stem != "__init__"]
    baseline = _loaded_after("import torch, numpy, scipy, scipy.integrate, math, dataclasses, typing")
    loaded = _loaded_after("import " + ", ".join(modules))
    ours = sorted(m for m in loaded if m.split(".")[0] == "dmcmc_edu")
    assert ours == ["dmcmc_edu", "dmcmc_edu.core", *sorted(modules)]
    extra = sorted({m.split(".")[0] for m in loaded - baseline} - WHITELIST - {"dmcmc_edu"})
    assert extra == [], f"importing the core loaded {extra}"


def test_importing_the_solvers_registers_nothing_and_the_registry_joins_explicitly():
    """No registration anywhere: the registry has no ``use_solvers``, and importing the solvers, the registry, the
    package's lazy names and the command line leaves the core's table the paper's six."""
    probe = """
import dmcmc_edu.solvers
from dmcmc_edu.core.integrators import INTEGRATORS, PAPER_INTEGRATORS
assert tuple(INTEGRATORS) == PAPER_INTEGRATORS, list(INTEGRATORS)
import dmcmc_edu.registry
from dmcmc_edu.registry import get_integrator, integrator_table
assert not hasattr(dmcmc_edu.registry, "use_solvers") and "use_solvers" not in dmcmc_edu.registry.__all__
assert tuple(INTEGRATORS) == PAPER_INTEGRATORS, list(INTEGRATORS)
assert list(integrator_table()) == [*PAPER_INTEGRATORS, *dmcmc_edu.solvers.SOLVERS]
assert get_integrator("unipc") is dmcmc_edu.solvers.unipc
from dmcmc_edu.core.integrators import get_integrator as core_get
try:
    core_get("restart")
    raise SystemExit("the core's table resolved a solver's name")
except ValueError:
    pass
import dmcmc_edu
assert dmcmc_edu.get_integrator is get_integrator and "dpmpp_2m" in dmcmc_edu.INTEGRATORS
import dmcmc_edu.cli, dmcmc_edu.cli.toy, dmcmc_edu.cli.mnist, dmcmc_edu.cli.distributed, dmcmc_edu.explorers
assert tuple(INTEGRATORS) == PAPER_INTEGRATORS, list(INTEGRATORS)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_an_unknown_name_lists_every_known_one_in_one_line():
    from dmcmc_edu.registry import get_integrator, integrator_table

    with pytest.raises(ValueError, match="unknown integrator 'heun'; known: kar1, .*, restart$"):
        get_integrator("heun")
    assert len(integrator_table()) == 12


def test_the_sampler_takes_an_integrator_table_instead_of_a_registration():
    """A solver name reaches the sampler through an explicit table; the core's own table stays the six."""
    import subprocess
    import sys
    code = (
        "import torch\n"
        "from dmcmc_edu.core.integrators import INTEGRATORS\n"
        "from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler\n"
        "from dmcmc_edu.registry import integrator_table\n"
        "from dmcmc_edu.targets import ring\n"
        "mix = ring()\n"
        "cfg = DMCMCConfig(integrator='dpmpp_2m', sigma_update='exact', n_chains=4, outputs_per_chain=1, steps=2,\n"
        "                  init_steps=2, burn_in=[], n_levels=20, sigma_max=20.0)\n"
        "try:\n"
        "    DMCMCSampler(mix, cfg, data_shape=(2,))\n"
        "    raise SystemExit('a solver name resolved without a table')\n"
        "except ValueError as e:\n"
        "    assert 'unknown integrator' in str(e), e\n"
        "s = DMCMCSampler(mix, cfg, data_shape=(2,), integrators=integrator_table())\n"
        "out = s.run()\n"
        "assert out.samples.shape == (4, 2) and 'dpmpp_2m' not in INTEGRATORS\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
