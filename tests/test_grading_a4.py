"""The checks of assignment A4 (dmcmc_edu.grading.a4_dlg): the model answers pass, every listed mistake fails
with a message naming it, a stub fails saying it is not implemented; draws in another order are accepted where the check
says so."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from assignment_harness import define, load_mistakes  # noqa: E402

from dmcmc_edu.grading import a4_dlg  # noqa: E402
from dmcmc_edu.grading.feedback import CheckFailed  # noqa: E402

NAME = "a4_denoising_langevin_gibbs"
FUNCTIONS = ["sigma_update", "gibbs_step", "pick_smallest", "mini_dmcmc"]


def model_answer(fn: str):
    return define(NAME, fn)[fn]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("hidden", [False, True])
def test_model_answer_passes(fn, hidden):
    line = getattr(a4_dlg, f"check_{fn}")(model_answer(fn), hidden=hidden)
    assert line.startswith("ok: ")


MISTAKES = load_mistakes(NAME)


def test_every_function_has_a_listed_mistake():
    assert {m["cell"] for m in MISTAKES} == set(FUNCTIONS)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m["message"][:40] for m in MISTAKES])
@pytest.mark.parametrize("hidden", [False, True])
def test_each_mistake_fails_naming_it(mistake, hidden):
    wrong = define(NAME, mistake["cell"], mistake["source"])[mistake["cell"]]
    check = getattr(a4_dlg, mistake["test"].replace("test_", "check_", 1))
    with pytest.raises(CheckFailed) as info:
        check(wrong, hidden=hidden)
    assert mistake["message"] in str(info.value)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_a_stub_fails_saying_not_implemented(fn):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match=f"{fn} is not implemented yet"):
        getattr(a4_dlg, f"check_{fn}")(stub)


def test_a_draw_in_another_order_is_accepted_when_it_follows_q():
    import torch

    def multinomial_draw(log_q, rule, generator):
        if rule == "argmax":
            return log_q.argmax(dim=1)
        return torch.multinomial(log_q.exp(), 1, generator=generator).squeeze(1)

    assert "draws that follow q" in a4_dlg.check_sigma_update(multinomial_draw)


def test_a_draw_that_ignores_q_fails():
    import torch

    def uniform_draw(log_q, rule, generator):
        if rule == "argmax":
            return log_q.argmax(dim=1)
        return torch.randint(0, log_q.shape[1], (log_q.shape[0],), generator=generator)

    with pytest.raises(CheckFailed, match="frequency"):
        a4_dlg.check_sigma_update(uniform_draw)


def test_the_mini_sampler_reference_is_the_library_sampler():
    """reference_mini_dmcmc reproduces DMCMCSampler's outputs from its post-burn-in state (the check's premise)."""
    assert a4_dlg.check_mini_dmcmc(a4_dlg.reference_mini_dmcmc).startswith("ok: ")
