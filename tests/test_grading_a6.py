"""The checks of assignment A6 (dmcmc_edu.grading.a6_research): the model answers pass, every listed mistake fails
with a message naming it, a stub fails saying it is not implemented."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from assignment_harness import define, load_mistakes  # noqa: E402

from dmcmc_edu.grading import a6_research  # noqa: E402
from dmcmc_edu.grading.feedback import CheckFailed  # noqa: E402

NAME = "a6_research_question"
FUNCTIONS = ["full_nfe_per_output", "effective_sample_size", "nfe_per_independent_sample", "nfe_to_reach"]


def model_answer(fn: str):
    return define(NAME, fn)[fn]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("hidden", [False, True])
def test_model_answer_passes(fn, hidden):
    line = getattr(a6_research, f"check_{fn}")(model_answer(fn), hidden=hidden)
    assert line.startswith("ok: ")


MISTAKES = load_mistakes(NAME)


def test_every_function_has_a_listed_mistake():
    assert {m["cell"] for m in MISTAKES} == set(FUNCTIONS)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m["message"][:40] for m in MISTAKES])
@pytest.mark.parametrize("hidden", [False, True])
def test_each_mistake_fails_naming_it(mistake, hidden):
    wrong = define(NAME, mistake["cell"], mistake["source"])[mistake["cell"]]
    check = getattr(a6_research, mistake["test"].replace("test_", "check_", 1))
    with pytest.raises(CheckFailed) as info:
        check(wrong, hidden=hidden)
    assert mistake["message"] in str(info.value)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_a_stub_fails_saying_not_implemented(fn):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match=f"{fn} is not implemented yet"):
        getattr(a6_research, f"check_{fn}")(stub)


def test_the_reference_ess_is_the_library_ess():
    import numpy as np

    from dmcmc_edu.evaluation.diagnostics import autocorrelation, effective_sample_size

    x = np.cumsum(np.random.default_rng(0).standard_normal((40, 6)), axis=0)
    assert a6_research.reference_ess(autocorrelation(x), x.size) == pytest.approx(effective_sample_size(x), rel=1e-12)


def test_no_point_reaching_the_target_must_give_inf():
    with pytest.raises(CheckFailed, match="expected inf"):
        a6_research.check_nfe_to_reach(lambda nfe, metric, target: min(
            [c for c, m in zip(nfe, metric) if m <= target], default=None))
