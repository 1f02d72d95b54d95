"""Check that the analytic mixture and the six integrators give the same results on a GPU as on the CPU.

usage: python bench/gpu_consistency.py OUT.json    (needs a CUDA device; float64 throughout)
"""

import json
import sys

import torch

from dmcmc_edu import targets
from dmcmc_edu.core.integrators import PAPER_INTEGRATORS, sample_from_noise


def main(out):
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    res = {"device_name": torch.cuda.get_device_name(0), "torch": torch.__version__, "max_abs_diff": {}}
    for name, mix in [("ring", targets.ring()), ("lowrank784", targets.lowrank(d=784))]:
        g = torch.Generator().manual_seed(0)
        x = mix.sample(512, g) + torch.randn(512, mix.d, generator=g, dtype=torch.float64)
        s = torch.rand(512, generator=g, dtype=torch.float64) * 5 + 0.01
        gpu = mix.to("cuda")
        for what in ("log_prob", "score", "denoise"):
            a = getattr(mix, what)(x, s)
            b = getattr(gpu, what)(x.cuda(), s.cuda()).cpu()
            res["max_abs_diff"][f"{name}.{what}"] = float((a - b).abs().max() / a.abs().max().clamp(min=1))
        grid = torch.logspace(1, -2, 50, dtype=torch.float64)
        a = mix.sigma_log_posterior(x, grid)
        b = gpu.sigma_log_posterior(x.cuda(), grid.cuda()).cpu()
        res["max_abs_diff"][f"{name}.sigma_log_posterior"] = float((a - b).abs().max())
    mix = targets.ring()
    gpu = mix.to("cuda")
    for integ in PAPER_INTEGRATORS:
        kw = dict(integrator=integ, steps=20, sigma_max=mix.default_sigma_max(), sigma_min=0.01)
        a, ia = sample_from_noise(mix, (256, 2), generator=torch.Generator().manual_seed(1), **kw)
        b, ib = sample_from_noise(gpu, (256, 2), generator=torch.Generator().manual_seed(1), device="cuda", **kw)
        res["max_abs_diff"][f"integrator.{integ}"] = float((a - b.cpu()).abs().max())
        res[f"nfe.{integ}"] = [ia.nfe, ib.nfe]
    print(json.dumps(res, indent=1))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
