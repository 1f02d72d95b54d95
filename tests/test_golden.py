"""Behaviour pinned: the six integrators from sigma_max and DLG with every sigma-update reproduce recorded outputs.

The outputs in ``tests/fixtures/golden/golden.pt`` were recorded before the
package was reorganised (``python tests/test_golden.py --write``).  A
refactoring that changes any arithmetic or the order of random draws changes
them; the test allows 1e-12 (float64 round-off of a few operations).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from dmcmc_edu.core.integrators import PAPER_INTEGRATORS, sample_from_noise
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.targets import ExactLevelClassifier, ring

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "golden.pt"
N = 300
STEPS = {"kar1": 8, "kar2": 8, "pf_euler": 20, "rk45": 1, "reverse_diffusion": 20, "euler_maruyama": 20}
DLG_RUNS = {
    "exact-ula": dict(sigma_update="exact", x_update="ula", integrator="kar1", steps=4, n_skip=1),
    "exact-mala": dict(sigma_update="exact", x_update="mala", eta_rel=0.5, integrator="euler_maruyama", steps=6,
                       n_skip=2),
    "classifier-argmax": dict(sigma_update="classifier-argmax", integrator="kar2", steps=4, n_skip=3),
    "classifier-sample": dict(sigma_update="classifier-sample", integrator="pf_euler", steps=5, n_skip=2),
}


def compute_outputs() -> dict[str, torch.Tensor]:
    mix = ring()
    out = {}
    for name in PAPER_INTEGRATORS:
        g = torch.Generator().manual_seed(1234)
        x, _ = sample_from_noise(mix, (N, 2), integrator=name, steps=STEPS[name], sigma_max=80.0, sigma_min=0.01,
                                 generator=g)
        out[f"integrator/{name}"] = x
    for name, kw in DLG_RUNS.items():
        cfg = DMCMCConfig(sigma_min=0.01, sigma_max=80.0, n_levels=200, eta=0.01, n_chains=100, outputs_per_chain=3,
                          init_steps=5, burn_in=[[4, 0.02], [3, None]], seed=7, **kw)
        clf = ExactLevelClassifier(mix, cfg.grid()) if kw["sigma_update"].startswith("classifier") else None
        res = DMCMCSampler(mix, cfg, data_shape=(2,), classifier=clf).run()
        out[f"dlg/{name}"] = res.samples
        out[f"dlg/{name}/sigma"] = res.chosen_sigma
        out[f"dlg/{name}/nfe_full"] = torch.tensor(res.ledger.per_output()["full"], dtype=torch.float64)
    return out


@pytest.mark.slow
def test_outputs_match_the_recorded_ones():
    golden = torch.load(GOLDEN, weights_only=True)
    now = compute_outputs()
    assert sorted(now) == sorted(golden)
    for key, ref in golden.items():
        assert now[key].shape == ref.shape, key
        diff = (now[key] - ref).abs().max().item()
        assert diff <= 1e-12, f"{key}: max abs difference {diff:.3g} from the recorded output"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_golden.py --write   (records tests/fixtures/golden/golden.pt)")
    torch.set_num_threads(1)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    torch.save(compute_outputs(), GOLDEN)
    print(f"wrote {GOLDEN}")
