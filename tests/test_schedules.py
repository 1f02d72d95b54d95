"""Per-sample schedules and the paper's noise-level grid."""

import math

import pytest
import torch

from dmcmc_edu.core.schedules import check_grid, geometric_sigmas, karras_sigmas, noise_level_grid


def test_karras_per_sample_shape_endpoints_and_rho_spacing():
    s0 = torch.tensor([80.0, 1.0, 0.02], dtype=torch.float64)
    sig = karras_sigmas(s0, 0.01, 6)
    assert sig.shape == (3, 7)
    torch.testing.assert_close(sig[:, 0], s0)
    torch.testing.assert_close(sig[:, 5], torch.full((3,), 0.01, dtype=torch.float64))
    assert torch.all(sig[:, 6] == 0)
    # equally spaced in sigma^(1/rho)
    d = torch.diff(sig[:, :6] ** (1 / 7), dim=1)
    torch.testing.assert_close(d, d[:, :1].expand_as(d))
    assert karras_sigmas(s0, 0.01, 6, append_zero=False).shape == (3, 6)


def test_geometric_per_sample():
    s0 = torch.tensor([50.0, 2.0], dtype=torch.float64)
    sig = geometric_sigmas(s0, 0.01, 4)
    assert sig.shape == (2, 5)
    ratios = sig[:, 1:] / sig[:, :-1]
    torch.testing.assert_close(ratios, ratios[:, :1].expand_as(ratios))
    torch.testing.assert_close(sig[:, -1], torch.full((2,), 0.01, dtype=torch.float64))


def test_paper_grid():
    g = noise_level_grid(0.01, 50.0, 1000)
    assert g.shape == (1000,) and g[0] == pytest.approx(50.0)
    assert g[-1] == pytest.approx(0.01 * 5000 ** 1e-3)  # t_min = 1e-3, as in the authors' code
    assert torch.all(g[1:] < g[:-1])
    check_grid(g)
    logs = torch.log(g)
    torch.testing.assert_close(torch.diff(logs), torch.full((999,), (logs[-1] - logs[0]).item() / 999,
                                                          dtype=torch.float64))
    assert math.isclose(g[500].item(), 0.01 * 5000 ** (1 - 500 * (1 - 1e-3) / 999), rel_tol=1e-12)


@pytest.mark.parametrize("kw,match", [
    (dict(sigma_start=torch.tensor([0.001]), sigma_min=0.01, steps=3), "sigma_start < sigma_min"),
    (dict(sigma_start=torch.tensor([1.0]), sigma_min=0.0, steps=3), "sigma_min"),
    (dict(sigma_start=torch.tensor([1.0]), sigma_min=0.01, steps=0), "steps"),
    (dict(sigma_start=torch.ones(2, 2), sigma_min=0.01, steps=3), "shape"),
])
def test_schedule_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        karras_sigmas(**kw)
