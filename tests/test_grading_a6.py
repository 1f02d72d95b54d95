"""The checks of assignment A6 (dmcmc_edu.grading.a6_research). What every check must do is in
tests/test_grading_common.py."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from dmcmc_edu.grading import a6_research  # noqa: E402
from dmcmc_edu.grading.feedback import CheckFailed  # noqa: E402


def test_the_reference_ess_is_the_library_ess():
    import numpy as np

    from dmcmc_edu.evaluation.diagnostics import autocorrelation, effective_sample_size

    x = np.cumsum(np.random.default_rng(0).standard_normal((40, 6)), axis=0)
    assert a6_research.reference_ess(autocorrelation(x), x.size) == pytest.approx(effective_sample_size(x), rel=1e-12)


def test_no_point_reaching_the_target_must_give_inf():
    with pytest.raises(CheckFailed, match="expected inf"):
        a6_research.check_nfe_to_reach(lambda nfe, metric, target: min(
            [c for c, m in zip(nfe, metric) if m <= target], default=None))
