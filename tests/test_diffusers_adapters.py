"""diffusers VE (NCSN++, Fourier) and VP (DDPM) UNet2DModels in the D(x, sigma) contract.

Everything runs on tiny random-weight UNet2DModels saved with save_pretrained
into tmp_path; the references are diffusers' own ScoreSdeVePipeline /
ScoreSdeVeScheduler and DDPMScheduler / DDIMScheduler.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="optional extra 'diffusers' not installed "
                                                    "(pip install 'dmcmc_edu[diffusers]')")

from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler  # noqa: E402
from dmcmc_edu.models.classifier import NoiseLevelClassifier, SimpleCNN  # noqa: E402
from dmcmc_edu.models.diffusers_adapters import (  # noqa: E402
    DiffusersVEDenoiser,
    DiffusersVPDenoiser,
    load_diffusers_ve,
    load_diffusers_vp,
    require_diffusers,
    vp_sigmas,
)

torch.set_num_threads(1)
SIZE = 16


def tiny_ve_unet(seed=0):
    """A tiny VE NCSN++-style UNet2DModel (the layout of google/ncsnpp-celebahq-256, much smaller)."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 32),
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
        time_embedding_type="fourier", center_input_sample=True, mid_block_scale_factor=math.sqrt(2), norm_eps=1e-6,
        flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, attention_head_dim=None).eval()


def tiny_vp_unet(seed=1, out_channels=3):
    """A tiny DDPM-style UNet2DModel (positional timestep embedding, epsilon prediction)."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=SIZE, in_channels=3, out_channels=out_channels, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, flip_sin_to_cos=False, freq_shift=1).eval()


def ddpm_scheduler(**kw):
    return diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                                   clip_sample=False, **kw)


@pytest.fixture(scope="module")
def ve_dir(tmp_path_factory):
    """A pipeline folder (model_index.json, unet/, scheduler/) as ScoreSdeVePipeline.save_pretrained writes it."""
    path = tmp_path_factory.mktemp("ve")
    sched = diffusers.ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=348.0, correct_steps=0)
    diffusers.ScoreSdeVePipeline(unet=tiny_ve_unet(), scheduler=sched).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vp_dir(tmp_path_factory):
    """A flat folder: the model files and scheduler_config.json at the top level (the hub's DDPM layout)."""
    path = tmp_path_factory.mktemp("vp")
    tiny_vp_unet().save_pretrained(path)
    ddpm_scheduler().save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- VE


def test_ve_loads_pipeline_layout_and_reads_scheduler(ve_dir):
    model = load_diffusers_ve(ve_dir)
    assert isinstance(model, DiffusersVEDenoiser)
    assert model.sigma_min == pytest.approx(0.01) and model.sigma_max == pytest.approx(348.0)
    assert model.image_shape == (3, SIZE, SIZE) and model.data_range == (0.0, 1.0)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_ve_denoiser_is_x_plus_sigma2_times_unet_output(ve_dir):
    model = load_diffusers_ve(ve_dir)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, SIZE, SIZE, generator=g)
    sigma = torch.tensor([0.05, 1.0, 20.0])
    with torch.no_grad():
        raw = model.unet(x, sigma).sample
        d = model(x, sigma)
    torch.testing.assert_close(d, x + sigma.reshape(-1, 1, 1, 1) ** 2 * raw)
    torch.testing.assert_close(model.score(x, sigma), raw)


def test_ve_matches_score_sde_ve_scheduler_step(ve_dir):
    """One reverse-diffusion predictor step of ScoreSdeVeScheduler equals the same step written with our D."""
    model = load_diffusers_ve(ve_dir)
    sched = diffusers.ScoreSdeVeScheduler.from_pretrained(ve_dir, subfolder="scheduler")
    n = 10
    sched.set_timesteps(n)
    sched.set_sigmas(n)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, SIZE, SIZE, generator=g) + 3.0 * torch.randn(2, 3, SIZE, SIZE, generator=g)
    for i in (0, 4, 8):
        t = sched.timesteps[i]
        s_in = sched.sigmas[i] * torch.ones(2)
        with torch.no_grad():
            ref = sched.step_pred(model.unet(x, s_in).sample, t, x, generator=g).prev_sample_mean
            idx = int(t * (n - 1))
            var = sched.discrete_sigmas[idx] ** 2 - sched.discrete_sigmas[idx - 1] ** 2 if idx > 0 else 0.0 * s_in[0]
            ours = x + var * (model(x, s_in) - x) / s_in.reshape(-1, 1, 1, 1) ** 2
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_ve_reproduces_score_sde_ve_pipeline(ve_dir):
    """The whole ScoreSdeVePipeline (predictor only) rewritten on our D reproduces its images."""
    pipe = diffusers.ScoreSdeVePipeline.from_pretrained(ve_dir)
    pipe.set_progress_bar_config(disable=True)
    model = load_diffusers_ve(ve_dir)
    n, b = 4, 2
    out = pipe(batch_size=b, num_inference_steps=n, generator=torch.Generator().manual_seed(7), output_type="np").images

    sched = diffusers.ScoreSdeVeScheduler.from_pretrained(ve_dir, subfolder="scheduler")
    sched.set_timesteps(n)
    sched.set_sigmas(n)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(b, 3, SIZE, SIZE, generator=g) * sched.init_noise_sigma
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            s_in = sched.sigmas[i] * torch.ones(b)
            idx = int((t * (n - 1)).long())
            s_cur = sched.discrete_sigmas[idx]
            s_adj = sched.discrete_sigmas[idx - 1] if idx > 0 else torch.tensor(0.0)
            var = s_cur**2 - s_adj**2
            mean = x + var * (model(x, s_in) - x) / s_in.reshape(-1, 1, 1, 1) ** 2
            x = mean + var.sqrt() * torch.randn(x.shape, generator=g)
    ours = mean.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, out, rtol=1e-4, atol=1e-4)


def test_ve_per_sample_sigma_and_shapes(ve_dir):
    model = load_diffusers_ve(ve_dir)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.02, 0.7, 30.0], dtype=torch.float64)
    with torch.no_grad():
        batch = model(x, sigma)
        single = torch.cat([model(x[i:i + 1], sigma[i:i + 1]) for i in range(3)])
    assert batch.dtype == torch.float64 and batch.shape == x.shape
    # the float32 network's rounding is amplified by sigma in D: compare (D - x) / sigma, which is O(1)
    s = sigma.reshape(-1, 1, 1, 1)
    torch.testing.assert_close((batch - x) / s, (single - x) / s, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 3, 8, 8), torch.ones(2))
    with pytest.raises(ValueError, match=r"\[B\]"):
        model(x, torch.ones(2, dtype=torch.float64))


def test_ve_loader_refuses_a_vp_model(vp_dir):
    with pytest.raises(ValueError, match="load_diffusers_vp"):
        load_diffusers_ve(vp_dir)


# ----------------------------------------------------------------------------- VP


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_vp_denoiser_equals_ddpm_x0_prediction(tmp_path, prediction_type):
    """At an integer timestep, D(x_t / sqrt(abar_t), sigma_t) equals DDPMScheduler.step's pred_original_sample."""
    tiny_vp_unet().save_pretrained(tmp_path)
    sched = ddpm_scheduler(prediction_type=prediction_type)
    sched.save_pretrained(tmp_path)
    model = load_diffusers_vp(tmp_path)
    assert model.prediction_type == prediction_type
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 3, SIZE, SIZE, generator=g) * 2 - 1
    eps = torch.randn(4, 3, SIZE, SIZE, generator=g)
    for t in (0, 17, 500, 999):
        tt = torch.full((4,), t, dtype=torch.long)
        x_t = sched.add_noise(x0, eps, tt)
        ab = sched.alphas_cumprod[t]
        sigma = torch.full((4,), float(((1 - ab) / ab).sqrt()))
        with torch.no_grad():
            ref = sched.step(model.unet(x_t, tt).sample, t, x_t).pred_original_sample
            ours = model(x_t / ab.sqrt(), sigma)
        # float32 rounding scales with the size of the VE state, about 1 + sigma
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * (1 + sigma[0].item()))


def test_vp_denoiser_equals_ddim_x0_prediction(vp_dir):
    model = load_diffusers_vp(vp_dir)
    ddim = diffusers.DDIMScheduler.from_pretrained(vp_dir)
    ddim.set_timesteps(10)
    g = torch.Generator().manual_seed(4)
    x_t = torch.randn(2, 3, SIZE, SIZE, generator=g)
    t = int(ddim.timesteps[3])
    ab = ddim.alphas_cumprod[t]
    with torch.no_grad():
        ref = ddim.step(model.unet(x_t, t).sample, t, x_t).pred_original_sample
        ours = model(x_t / ab.sqrt(), torch.full((2,), float(((1 - ab) / ab).sqrt())))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_vp_sigma_t_round_trip(vp_dir):
    model = load_diffusers_vp(vp_dir)
    sig = model.sigmas
    assert model.num_train_timesteps == 1000
    assert model.sigma_min == pytest.approx(0.01, rel=1e-3) and 150 < model.sigma_max < 160
    k = torch.tensor([0, 1, 250, 998, 999])
    torch.testing.assert_close(model.sigma_to_t(sig[k]), k.double(), rtol=0, atol=1e-9)
    s = torch.exp(torch.linspace(math.log(model.sigma_min), math.log(model.sigma_max), 101, dtype=torch.float64))
    torch.testing.assert_close(model.t_to_sigma(model.sigma_to_t(s)), s, rtol=1e-10, atol=0)
    t = torch.tensor([0.0, 0.5, 10.25, 998.9])
    torch.testing.assert_close(model.sigma_to_t(model.t_to_sigma(t)), t.double(), rtol=0, atol=1e-9)
    # halfway in log sigma between two integer steps is t + 0.5
    mid = torch.sqrt(sig[10] * sig[11]).reshape(1)
    torch.testing.assert_close(model.sigma_to_t(mid), torch.tensor([10.5], dtype=torch.float64))
    # out of range: clamped to the schedule's ends
    assert model.sigma_to_t(torch.tensor([1e-4, 1e4])).tolist() == [0.0, 999.0]


def test_vp_nearest_timestep_mode(vp_dir):
    model = load_diffusers_vp(vp_dir, timestep_mode="nearest")
    sig = model.sigmas
    near = torch.stack([sig[40] * 1.0001, torch.sqrt(sig[40] * sig[41]) * 1.001])
    assert model.sigma_to_t(near).tolist() == [40.0, 41.0]


def test_vp_continuous_timestep_reaches_the_unet(vp_dir, monkeypatch):
    model = load_diffusers_vp(vp_dir)
    seen = {}
    orig = model.unet.forward

    def spy(sample, timestep, *a, **k):
        seen["t"] = timestep.clone()
        return orig(sample, timestep, *a, **k)

    monkeypatch.setattr(model.unet, "forward", spy)
    mid = torch.sqrt(model.sigmas[10] * model.sigmas[11]).float().reshape(1)
    with torch.no_grad():
        model(torch.zeros(1, 3, SIZE, SIZE), mid)
    torch.testing.assert_close(seen["t"], torch.tensor([10.5]))


def test_vp_unit_data_range(vp_dir):
    m11 = load_diffusers_vp(vp_dir)
    m01 = load_diffusers_vp(vp_dir, data_range=(0, 1))
    assert m01.data_range == (0.0, 1.0)
    assert m01.sigma_max == pytest.approx(m11.sigma_max / 2)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    s = torch.tensor([0.1, 3.0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m01(x, s), (m11(2 * x - 1, 2 * s) + 1) / 2)


def test_vp_per_sample_sigma_and_learned_variance(tmp_path):
    tiny_vp_unet(out_channels=6).save_pretrained(tmp_path)
    ddpm_scheduler(variance_type="learned_range").save_pretrained(tmp_path)
    # float64 end to end: in float32 the denoiser at sigma = 80 is x - 80 eps, so the network's round-off
    # (~1e-6, different for a batch of 1 and of 3 on some CPU kernels) is multiplied by 80
    model = load_diffusers_vp(tmp_path).double()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.02, 1.5, 80.0], dtype=torch.float64)
    with torch.no_grad():
        batch = model(x, sigma)
        single = torch.cat([model(x[i:i + 1], sigma[i:i + 1]) for i in range(3)])
    assert batch.shape == x.shape
    torch.testing.assert_close(batch, single, rtol=1e-10, atol=1e-10)


def test_vp_loader_errors(tmp_path, ve_dir):
    with pytest.raises(FileNotFoundError, match="UNet2DModel"):
        load_diffusers_vp(tmp_path)
    tiny_vp_unet().save_pretrained(tmp_path / "noscheduler")
    with pytest.raises(FileNotFoundError, match="scheduler"):
        load_diffusers_vp(tmp_path / "noscheduler")
    # an explicit schedule works without a scheduler file
    model = load_diffusers_vp(tmp_path / "noscheduler", scheduler=ddpm_scheduler())
    assert isinstance(model, DiffusersVPDenoiser)
    with pytest.raises(ValueError, match="load_diffusers_ve"):
        load_diffusers_vp(ve_dir)
    with pytest.raises(ValueError, match="data_range"):
        load_diffusers_vp(tmp_path / "noscheduler", scheduler=ddpm_scheduler(), data_range=(0, 255))


def test_vp_sigmas_of_the_linear_schedule():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    s = vp_sigmas(torch.cumprod(1 - betas, 0))
    assert s[0].item() == pytest.approx(0.0100005, rel=1e-5) and 156 < s[-1].item() < 158


def test_missing_diffusers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match=r"dmcmc_edu\[diffusers\]"):
        require_diffusers()


# ----------------------------------------------------------------------------- DLG on both


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_diffusers_models_sample_through_dlg(kind, ve_dir, vp_dir):
    """The issue's "diffusers VE and VP models sample through DLG": a random SimpleCNN classifier, a few steps."""
    if kind == "ve":
        model = load_diffusers_ve(ve_dir)
        smin, smax = 0.01, 50.0
    else:
        model = load_diffusers_vp(vp_dir, data_range=(0, 1))
        smin, smax = 0.01, 50.0
    n_levels = 50
    torch.manual_seed(0)
    grid = DMCMCConfig(sigma_min=smin, sigma_max=smax, n_levels=n_levels).grid()
    clf = NoiseLevelClassifier(SimpleCNN(3, n_levels, SIZE), grid)
    cfg = DMCMCConfig(sigma_min=smin, sigma_max=smax, n_levels=n_levels, eta=0.05, n_skip=2, integrator="kar1",
                      steps=2, sigma_update="classifier-argmax", n_chains=2, outputs_per_chain=2, init_steps=2,
                      burn_in=[[1, None]], final_tweedie="always", seed=0)
    with torch.no_grad():
        res = DMCMCSampler(model, cfg, data_shape=(3, SIZE, SIZE), classifier=clf, dtype=torch.float32).run()
    assert res.samples.shape == (4, 3, SIZE, SIZE) and torch.isfinite(res.samples).all()
    per = res.ledger.per_output()
    assert per["paper"] == pytest.approx(2 + 3 + 1)  # n_skip + KAR1 (2 steps = 3 NFE) + Tweedie
    assert clf.rows > 0


def test_diffusers_vp_through_sample_distributed_single_process(tmp_path, vp_dir, monkeypatch):
    """`python -m dmcmc_edu sample-distributed --diffusers-vp ...` without torchrun runs as one rank."""
    import json

    from dmcmc_edu.cli import main as cli_main
    from dmcmc_edu.experiments.distributed import load_distributed_samples

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    grid = DMCMCConfig(sigma_min=0.01, sigma_max=50.0, n_levels=20).grid()
    torch.manual_seed(0)
    NoiseLevelClassifier(SimpleCNN(3, 20, SIZE), grid).save(tmp_path / "clf.pt")
    out = tmp_path / "run"
    rc = cli_main(["sample-distributed", "--diffusers-vp", str(vp_dir), "--classifier", str(tmp_path / "clf.pt"),
                   "--chains", "2", "--outputs-per-chain", "1", "--steps", "1", "--init-steps", "1", "--burn-in", "1:",
                   "--eta", "0.01", "--out", str(out), "--quiet"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 1 and manifest["model"]["data_range"] == [0.0, 1.0]
    assert load_distributed_samples(out).shape == (2, 3, SIZE, SIZE)
