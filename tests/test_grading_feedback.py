"""The shared checks of the assignments: a mistake is named, a shape or NaN is reported, the reference passes."""
import math

import pytest
import torch

from dmcmc_edu.grading import feedback
from dmcmc_edu.grading.feedback import CheckFailed, compare


def test_reference_passes_within_a_relative_tolerance():
    want = torch.tensor([1e6, 2.0])
    compare("f(x)", want * (1 + 1e-7), want, rtol=1e-6, atol=0.0)


def test_a_known_mistake_is_named_and_the_reference_code_is_not_shown():
    want = torch.tensor([0.62])
    with pytest.raises(CheckFailed, match="drift eta instead of eta/2") as err:
        compare("the step", torch.tensor([1.24]), want, where="at sigma = 2",
                mistakes={"drift eta instead of eta/2": torch.tensor([1.24])})
    assert str(err.value).startswith("at sigma = 2")
    assert "0.62" in str(err.value) and "def " not in str(err.value)


def test_an_unknown_error_gets_the_numbers_and_the_hint():
    with pytest.raises(CheckFailed, match=r"is 3, expected 2 -- is the drift"):
        compare("the step", 3.0, 2.0, hint="is the drift eta/2 times the score?")


@pytest.mark.parametrize("got, pattern", [
    (torch.zeros(2, 3), r"shape \(2, 3\), expected \(3, 2\).*transpose"),
    (torch.zeros(4), r"shape \(4,\), expected \(3, 2\)"),
    (torch.full((3, 2), math.nan), "NaN or inf"),
    (None, "returned None"),
])
def test_shape_nan_and_none_are_reported(got, pattern):
    with pytest.raises(CheckFailed, match=pattern):
        compare("D(x, sigma)", got, torch.zeros(3, 2))


def test_call_student_names_the_function_for_a_stub_and_a_crash():
    def stub(x):
        raise NotImplementedError()

    def crash(x):
        return x[10]

    with pytest.raises(CheckFailed, match="heun is not implemented yet"):
        feedback.call_student(stub, "heun", torch.zeros(2))
    with pytest.raises(CheckFailed, match="heun raised IndexError"):
        feedback.call_student(crash, "heun", torch.zeros(2))
    assert feedback.call_student(lambda x: x + 1, "f", 1) == 2


def test_when_ready_prints_one_line_instead_of_stopping(capsys):
    def stub():
        raise NotImplementedError()

    def crash():
        raise IndexError("index 8 is out of bounds")

    assert feedback.when_ready(stub, "forward_noise") is None
    assert feedback.when_ready(crash, "training_pairs") is None
    assert feedback.when_ready(lambda: 5, "x") == 5
    out = capsys.readouterr().out.splitlines()
    assert "once forward_noise is implemented" in out[0]
    assert "IndexError: index 8" in out[1]


def test_ok_prints_once_and_is_not_echoed_by_a_notebook(capsys):
    line = feedback.ok("heun matches the reference")
    assert line == "ok: heun matches the reference"
    assert capsys.readouterr().out == "ok: heun matches the reference\n"
    assert hasattr(line, "_ipython_display_") and line._ipython_display_() is None
