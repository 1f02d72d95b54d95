"""The checks of assignment A4 (dmcmc_edu.grading.a4_dlg). Beyond what tests/test_grading_common.py checks for every
assignment: draws in another order are accepted where the check says so."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from dmcmc_edu.grading import a4_dlg  # noqa: E402
from dmcmc_edu.grading.feedback import CheckFailed  # noqa: E402


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
    """reference_mini_dmcmc reproduces DMCMCSampler's outputs from its post-burn-in state (the check's premise).

    The check's body is run without its ``graded`` wrapper: a graded check switches the reference off while the
    function it checks runs (a student may not hand it in), which is tested below."""
    assert a4_dlg.check_mini_dmcmc.__wrapped__(a4_dlg.reference_mini_dmcmc).startswith("ok: ")
    with pytest.raises(CheckFailed, match=r"implement this yourself \(it is what this exercise is for\)"):
        a4_dlg.check_mini_dmcmc(a4_dlg.reference_mini_dmcmc)
