"""What every assignment check must do (A1, A4, A5, A6; A2 and A3 have the same tests in their own files): the model
answers pass on the visible and hidden cases, every listed mistake fails with a message naming it, a stub fails saying
it is not implemented, and every graded function has a listed mistake."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from assignment_harness import define, load_mistakes  # noqa: E402

from dmcmc_edu.grading import a1_noise, a4_dlg, a5_classifier, a6_research  # noqa: E402
from dmcmc_edu.grading.feedback import CheckFailed  # noqa: E402

ASSIGNMENTS = {
    "a1_noise_and_denoising": (a1_noise, ["forward_noise", "karras_schedule", "geometric_schedule",
                                          "tweedie_denoiser", "score_from_denoiser"]),
    "a4_denoising_langevin_gibbs": (a4_dlg, ["sigma_update", "gibbs_step", "pick_smallest", "mini_dmcmc"]),
    "a5_noise_level_classifier": (a5_classifier, ["training_pairs", "cross_entropy_loss", "kl_exact_to_classifier",
                                                  "log_sigma_spread", "why_argmax_collapses"]),
    "a6_research_question": (a6_research, ["full_nfe_per_output", "effective_sample_size",
                                           "nfe_per_independent_sample", "nfe_to_reach"]),
}
FUNCTIONS = [(name, fn) for name, (_, fns) in ASSIGNMENTS.items() for fn in fns]
MISTAKES = [(name, m) for name in ASSIGNMENTS for m in load_mistakes(name)]


def _check(name: str, fn: str):
    return getattr(ASSIGNMENTS[name][0], f"check_{fn}")


@pytest.mark.parametrize("name, fn", FUNCTIONS)
@pytest.mark.parametrize("hidden", [False, True])
def test_model_answer_passes(name, fn, hidden):
    line = _check(name, fn)(define(name, fn)[fn], hidden=hidden)
    assert line.startswith("ok: ")


@pytest.mark.parametrize("name", list(ASSIGNMENTS))
def test_every_function_has_a_listed_mistake(name):
    assert {m["cell"] for m in load_mistakes(name)} == set(ASSIGNMENTS[name][1])


@pytest.mark.parametrize("name, mistake", MISTAKES, ids=[f"{n}:{m['message'][:40]}" for n, m in MISTAKES])
@pytest.mark.parametrize("hidden", [False, True])
def test_each_mistake_fails_naming_it(name, mistake, hidden):
    wrong = define(name, mistake["cell"], mistake["source"])[mistake["cell"]]
    with pytest.raises(CheckFailed) as info:
        _check(name, mistake["test"].replace("test_", "", 1))(wrong, hidden=hidden)
    assert mistake["message"] in str(info.value)


@pytest.mark.parametrize("name, fn", FUNCTIONS)
def test_a_stub_fails_saying_not_implemented(name, fn):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match=f"{fn} is not implemented yet"):
        _check(name, fn)(stub)
