"""The learned (EDM-preconditioned MLP) denoiser: contract, loss identity, deterministic training, save/load."""

import torch
from torch.testing import assert_close

from dmcmc_edu.models.learned import FrozenDenoiser, MLPDenoiser, denoiser_error, load_denoiser, save_denoiser
from dmcmc_edu.targets import ring
from dmcmc_edu.training.denoiser import quick_denoiser
from dmcmc_edu.training.losses import edm_loss


def test_contract_shape_dtype_and_preconditioning_limits():
    torch.manual_seed(0)
    net = MLPDenoiser(2, sigma_data=2.0, hidden=32, depth=2)
    x = torch.randn(5, 2, dtype=torch.float64)
    out = net(x, torch.full((5,), 0.3, dtype=torch.float64))
    assert out.shape == (5, 2) and out.dtype == torch.float64
    # sigma -> 0: c_skip -> 1, c_out -> 0, so D(x) -> x (exactly, whatever the untrained network says)
    tiny = net(x, torch.full((5,), 1e-9, dtype=torch.float64))
    assert_close(tiny, x, atol=1e-7, rtol=0)
    c_skip, c_out, c_in, _ = net.precond(torch.tensor([2.0]))
    assert_close(c_skip, torch.tensor([[0.5]]))
    assert_close(c_out, torch.tensor([[2 ** 0.5]]))
    assert_close(c_in, torch.tensor([[1 / 8 ** 0.5]]))


def test_edm_loss_is_the_weighted_denoising_error():
    """lambda(s) |D(x0 + s n, s) - x0|^2 with lambda = 1/c_out^2, averaged, equals the loss on F."""
    torch.manual_seed(1)
    net = MLPDenoiser(2, sigma_data=1.5, hidden=16, depth=1)
    x0, n = torch.randn(64, 2), torch.randn(64, 2)
    s = torch.exp(torch.randn(64))
    d = net(x0 + s[:, None] * n, s)
    _, c_out, _, _ = net.precond(s)
    weighted = (((d - x0) / c_out) ** 2).mean()
    assert_close(edm_loss(net, x0, s, n), weighted, rtol=1e-4, atol=1e-6)


def test_quick_training_is_deterministic_learns_and_round_trips(tmp_path):
    mix = ring()
    a, info = quick_denoiser(mix, steps=400, seed=3, hidden=64, depth=2, batch_size=256)
    b, _ = quick_denoiser(mix, steps=400, seed=3, hidden=64, depth=2, batch_size=256)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    torch.manual_seed(3)
    untrained = MLPDenoiser(2, info["sigma_data"], hidden=64, depth=2)

    def err(net):  # squared error to the exact denoiser, summed over two noise levels (same draws for both nets)
        rows = denoiser_error(FrozenDenoiser(net), mix, [1.0, 3.0], n=1000, generator=torch.Generator().manual_seed(0))
        return sum(r["mse"] for r in rows)

    assert err(a) < 0.5 * err(untrained)
    save_denoiser(a, tmp_path / "d.pt", info)
    c, info2 = load_denoiser(tmp_path / "d.pt")
    x = torch.randn(7, 2, dtype=torch.float64)
    s = torch.full((7,), 0.7, dtype=torch.float64)
    assert_close(FrozenDenoiser(c)(x, s), FrozenDenoiser(a)(x, s))
    assert info2["steps"] == 400 and info2["seed"] == 3
