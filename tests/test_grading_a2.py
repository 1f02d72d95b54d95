"""The checks of assignment A2 (integrators): the model answers pass, stubs and each listed mistake fail.

The model answers are the solution cells of the source notebook and the mistakes those of
``tests/assignment_mistakes/a2_integrators.py``, so these tests see exactly what nbgrader grades.
"""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from dmcmc_edu.core.integrators import rk45
from dmcmc_edu.grading import CheckFailed
from dmcmc_edu.grading import a2_integrators as a2

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks/assignments/source/a2_integrators/a2_integrators.ipynb"
CHECKS = {"exact_flow": a2.check_exact_flow, "pf_euler": a2.check_pf_euler, "kar1": a2.check_kar1,
          "convergence_order": a2.check_convergence_order}


def _assert_close(got, want, rtol=1e-7, atol=1e-9):
    """Like torch.testing.assert_close (whose first call costs seconds of imports), for float64 tensors."""
    assert got.shape == want.shape and torch.allclose(got, want, rtol=rtol, atol=atol), (got, want)


def _cells() -> dict:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in cells if c["cell_type"] == "code"}


def _namespace(sources: list[str]) -> dict:
    ns: dict = {}
    for src in sources:
        exec(compile(src, "<cell>", "exec"), ns)
    return ns


def _mistakes() -> list[dict]:
    spec = importlib.util.spec_from_file_location("a2_mistakes", ROOT / "tests/assignment_mistakes/a2_integrators.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MISTAKES


@pytest.fixture(scope="module")
def solutions() -> dict:
    cells = _cells()
    setup = cells["setup"].replace("print(", "(")  # no printing of the schedules here
    return _namespace([setup] + [cells[name] for name in CHECKS])


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("name", list(CHECKS))
def test_model_answer_passes(solutions, name, hidden):
    assert CHECKS[name](solutions[name], hidden=hidden).startswith("ok:")


@pytest.mark.parametrize("name", list(CHECKS))
def test_stub_fails(name):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="not implemented yet"):
        CHECKS[name](stub)


@pytest.mark.parametrize("mistake", _mistakes(), ids=lambda m: f"{m['cell']}:{m['message']}")
def test_mistake_fails_with_its_message(solutions, mistake):
    ns = _namespace([_cells()["setup"].replace("print(", "(")])
    exec(compile(mistake["source"], "<mistake>", "exec"), ns)
    check = CHECKS[mistake["test"].removeprefix("test_")]
    with pytest.raises(CheckFailed) as err:
        check(ns[mistake["cell"]])
        check(ns[mistake["cell"]], hidden=True)
    assert mistake["message"] in str(err.value), str(err.value)


def test_reference_exact_flow_matches_rk45():
    """The closed form the checks use is the probability-flow ODE of N(mean, tau I), solved by the library's RK45."""
    target = a2.gaussian_target(tau=0.3)
    mean = target.means[0]
    g = torch.Generator().manual_seed(0)
    s0 = torch.tensor([8.0, 2.0, 0.4, 1.0], dtype=torch.float64)
    x = mean + torch.randn(4, 2, generator=g, dtype=torch.float64) * (0.3 + s0[:, None] ** 2).sqrt()
    _assert_close(target(x, s0), mean + 0.3 / (0.3 + s0[:, None] ** 2) * (x - mean))
    gaussian = lambda x, s: mean + 0.3 / (0.3 + s[:, None] ** 2) * (x - mean)  # noqa: E731 (fast, same D)
    out, info = rk45(gaussian, x, s0, 0.05, rtol=1e-6, atol=1e-6)
    _assert_close(out, a2.reference_exact_flow(x, s0, torch.full_like(s0, 0.05), mean, 0.3),
                               rtol=0, atol=1e-4)


def test_reference_order_recovers_a_power_law():
    steps = torch.tensor([4.0, 8.0, 16.0, 32.0], dtype=torch.float64)
    assert a2.reference_order(steps, 0.3 * steps**-1.5) == pytest.approx(1.5, rel=1e-9)


def test_wasted_evaluations_are_reported(solutions):
    """An integrator that evaluates D twice at the same point gives the right x but the wrong cost."""
    def wasteful_pf_euler(D, x, sigma_start, sigma_min, steps):
        D(x, sigma_start)  # an evaluation whose value is thrown away
        return solutions["pf_euler"](D, x, sigma_start, sigma_min, steps)

    with pytest.raises(CheckFailed, match=r"evaluated D 6 times per sample, but it needs 5"):
        a2.check_pf_euler(wasteful_pf_euler)


def test_bad_shapes_and_returns_are_named(solutions):
    with pytest.raises(CheckFailed, match="should return a pair"):
        a2.check_kar1(lambda D, x, s0, smin, n: solutions["kar1"](D, x, s0, smin, n)[0])
    with pytest.raises(CheckFailed, match="sigma of shape"):
        a2.check_pf_euler(lambda D, x, s0, smin, n: (D(x, 1.0), 1.0))
    with pytest.raises(CheckFailed, match="returned 2 numbers"):
        a2.check_convergence_order(lambda steps, errors: [1.0, 2.0])


def test_measured_orders_are_one_and_two(solutions, capsys):
    """With the model answers, the notebook's measurement shows Euler ~ 1 and Heun ~ 2."""
    res = a2.measure_orders(solutions["exact_flow"], solutions["pf_euler"], solutions["kar1"],
                            solutions["convergence_order"])
    orders = {name: r[2] for name, r in res.items()}
    assert orders["probability-flow Euler"] == pytest.approx(1.0, abs=0.15)
    assert orders["KAR1 (Heun)"] == pytest.approx(2.0, abs=0.3)
    assert all(math.isfinite(float(e)) for r in res.values() for e in r[1])
