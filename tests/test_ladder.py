"""The ladder: the fast oracle agrees with the mixture, the --fast sweep writes a complete, resumable result file."""

import csv
import json

import pytest
import torch
from torch.testing import assert_close

from dmcmc_edu.cli import main
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.experiments import ladder
from dmcmc_edu.runs import target_sha256
from dmcmc_edu.targets import GaussianMixture, dlg_config, lowrank, ring


def _mixtures():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 3, 3, generator=g, dtype=torch.float64)
    full3 = GaussianMixture([1.0, 2.0, 3.0], torch.randn(3, 3, generator=g, dtype=torch.float64),
                            A @ A.transpose(1, 2) + 0.1 * torch.eye(3, dtype=torch.float64))
    diag = GaussianMixture([1.0, 2.0], torch.randn(2, 5, generator=g, dtype=torch.float64),
                           factors=torch.randn(2, 5, 2, generator=g, dtype=torch.float64),
                           diagonal=torch.rand(2, 5, generator=g, dtype=torch.float64) + 0.1)
    return [ring(), lowrank(d=16, n_components=4, rank=3), full3, diag]


@pytest.mark.parametrize("mix", _mixtures(), ids=["ring", "lowrank_iso", "full3", "lowrank_diag"])
def test_spectral_oracle_equals_the_mixture(mix):
    fast = mix.spectral()
    g = torch.Generator().manual_seed(1)
    x0 = mix.sample(300, g)
    s = torch.exp(torch.randn(300, generator=g, dtype=torch.float64))
    x = x0 + s[:, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    assert_close(fast(x, s), mix(x, s), rtol=1e-9, atol=1e-10)
    assert_close(fast.log_prob(x, s), mix.log_prob(x, s), rtol=1e-10, atol=1e-10)
    grid = noise_level_grid(mix.default_sigma_min(), mix.default_sigma_max(), 50)
    assert_close(fast.sigma_log_posterior(x, grid), mix.sigma_log_posterior(x, grid), rtol=1e-9, atol=1e-9)
    prior = torch.linspace(0, 1, 50, dtype=torch.float64)
    assert_close(fast.sigma_log_posterior(x, grid, log_prior=prior),
                 mix.sigma_log_posterior(x, grid, log_prior=prior), rtol=1e-9, atol=1e-9)
    assert fast.K == mix.K and torch.equal(fast.assign(x0), mix.assign(x0))  # forwarded attributes


def test_integrator_options_reach_the_denoising_integrator():
    """DMCMCConfig.integrator_options (new, default {}) is passed on: RK45's tolerance changes its NFE."""
    mix = ring()
    nfe = {}
    for tol in (1e-1, 1e-5):
        cfg = dlg_config(mix, 40, integrator="rk45", steps=1, integrator_options={"rtol": tol, "atol": tol},
                                     init_steps=2, burn_in=[[1, None]])
        res = DMCMCSampler(mix.spectral(), cfg, data_shape=(2,)).run()
        nfe[tol] = res.ledger.per_output()["parts"]["denoise"]
    assert nfe[1e-1] < nfe[1e-5]
    with pytest.raises(ValueError, match="integrator_options"):
        DMCMCConfig(integrator_options=[1]).validate()
    # settings saved before these options existed still match (a missing key counts as its default)
    from dmcmc_edu.runs import _config_diff

    old = {k: v for k, v in DMCMCConfig().to_dict().items() if k not in ("integrator_options", "steps_per_decade")}
    assert _config_diff(old, DMCMCConfig().to_dict()) == []
    assert _config_diff(old, DMCMCConfig(steps_per_decade=2.0).to_dict()) != []


def test_steps_per_decade_gives_states_at_large_sigma_more_steps():
    """steps_per_decade: a state picked at sigma gets max(steps, ceil(spd log10(sigma / sigma_min))) steps."""
    mix = ring()
    cfg = dlg_config(mix, 40, steps=2, steps_per_decade=3.0, init_steps=2, burn_in=[[1, None]])
    sampler = DMCMCSampler(mix.spectral(), cfg, data_shape=(2,))
    sig = torch.tensor([cfg.sigma_min, 0.05, 1.0, 50.0], dtype=torch.float64)
    assert sampler.denoising_steps(sig).tolist() == [2, 3, 6, 12]
    res = sampler.run()
    per = res.ledger.per_output()["parts"]["denoise"]
    assert per > 2 * 2 - 1  # some chains sit at larger sigma and got more KAR1 steps
    assert torch.isfinite(res.samples).all()


def test_points_are_reproducible_from_their_recorded_seed():
    ctx = ladder.LadderContext(ring(), n=200, floor_repeats=20)
    for s in (dict(kind="noise", integrator="kar2", steps=6, options={}),
              dict(kind="restart", integrator="euler_maruyama", coarse_steps=5, sigma_restart=1.0, steps=8,
                   options={}),
              dict(kind="dlg", integrator="kar1", sigma_update="exact", x_update="mala", eta=0.005, eta_rel=1.0,
                   n_skip=1, steps=3, integrator_options={}, outputs_per_chain=4, init_steps=3, burn_in=[[2, None]])):
        a, b = ladder.run_point(ctx, s), ladder.run_point(ctx, s)
        assert a["seed"] == b["seed"] == ladder.point_seed(0, ladder.point_id(s))
        assert a["metrics"] == b["metrics"] and a["ledger"] == b["ledger"]
    assert a["chain"]["outputs_per_chain"] == 4 and a["ledger"]["full"] > a["ledger"]["paper"]


def test_fast_sweep_writes_a_complete_resumable_result_file(tmp_path):
    out = tmp_path / "ladder"
    main(["ladder", "--target", "ring", "--fast", "--out", str(out), "--quiet"])
    doc = json.loads((out / "ring_fast.json").read_text())
    points = doc["points"]
    ctx_plan = ladder.build_plan(ladder.LadderContext(ring(), n=500, classifier=object(), floors={}, ref_values={}),
                                 fast=True)
    assert {ladder.point_id(p) for p in ctx_plan} == {p["id"] for p in points}  # every planned point is there
    assert {p["kind"] for p in points} == set(ladder.KINDS)
    assert {p["integrator"] for p in points} == {"kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion",
                                                 "euler_maruyama"}
    assert {p["settings"].get("sigma_update") for p in points if p["kind"] == "dlg"} == {
        "exact", "classifier-argmax", "classifier-sample"}
    for p in points:
        assert not p.get("error"), p
        assert isinstance(p["seed"], int) and p["settings"]["kind"] == p["kind"]
        assert p["ledger"]["full"] >= p["ledger"]["paper"] > 0 and p["nfe"] == p["ledger"]["full"]
        assert set(p["metrics"]) >= {"w2", "mmd2", "mode_tv", "spread", "on_manifold", "nll_mean", "nll_median"}
        assert p["nfe_per_independent"] >= p["nfe"] - 1e-9
        if p["kind"] == "dlg":
            assert {"ess_ratio", "mode_switch_rate", "decorrelation", "acf1_component"} <= set(p["chain"])
            assert p["ledger"]["parts"]["init_amortised"] > 0
    assert doc["meta"]["command"] == f"python -m dmcmc_edu ladder --target ring --fast --out {out}"
    assert set(doc["meta"]["floors"]) >= {"w2", "mode_tv", "spread"}
    # the floors are the exact ones of (target, n), kept beside the sweep for every later sweep of that size
    assert doc["meta"]["floors"]["kind"] == "exact_pairs" and doc["meta"]["floors"]["repeats"] == 50
    assert json.loads((out / "ring_fast_floors_n500.json").read_text())["floors"] == doc["meta"]["floors"]
    with open(out / "ring_fast.csv") as f:
        assert len(list(csv.DictReader(f))) == len(points)
    for name in ("ring_fast_fig3.png", "ring_fast_findings.md", "ring_fast_findings.json", "ring_fast_classifier.pt"):
        assert (out / name).exists(), name
    findings = json.loads((out / "ring_fast_findings.json").read_text())
    assert set(findings["per_integrator"]) == {p["integrator"] for p in points}
    # resume: nothing left to do, the points are kept as they were
    before = (out / "ring_fast.json").read_text()
    main(["ladder", "--target", "ring", "--fast", "--out", str(out), "--quiet", "--no-plot"])
    after = json.loads((out / "ring_fast.json").read_text())
    assert after["points"] == json.loads(before)["points"]
    with pytest.raises(SystemExit, match="other settings"):
        main(["ladder", "--target", "ring", "--fast", "--n", "400", "--out", str(out), "--quiet"])


def test_analysis_finds_the_first_point_that_reaches_the_reference():
    floors = {k: {"threshold": 0.1} for k in ("w2", "mmd2", "mode_tv", "spread", "on_manifold", "nll_mean",
                                               "nll_median")}

    def pt(kind, nfe, w2, ess=1.0, tags=()):
        m = {"w2": w2, "mmd2": 0.0, "mode_tv": 0.0, "spread": 1.0, "spread_dev": 0.0, "on_manifold_dev": 0.0,
             "nll_mean_dev": 0.0, "nll_median_dev": 0.0}
        s = {"kind": kind, "integrator": "kar1", "steps": 3, "options": {}, "sigma_mid": 2.0}
        if kind == "dlg":
            s.update(sigma_update="exact", x_update="mala", eta=0.01, outputs_per_chain=2, n_skip=1)
        return {"id": f"{kind}{nfe}", "kind": kind, "integrator": "kar1", "settings": s, "tags": list(tags),
                "metrics": m, "nfe": nfe, "nfe_paper": nfe, "nfe_per_independent": nfe / ess, "ess_ratio": ess}

    doc = {"meta": {"floors": floors}, "points": [
        pt("noise", 10, 0.5), pt("noise", 50, 0.08), pt("noise", 100, 0.07),
        pt("schedule", 20, 0.09), pt("dlg", 5, 0.05, ess=0.5), pt("dlg", 3, 0.3)]}
    f = ladder.analyse(doc)["per_integrator"]["kar1"]
    assert f["reach"]["noise"]["nfe"] == 50 and f["reach"]["control"]["nfe"] == 20
    assert f["reach"]["dlg"]["nfe_per_independent"] == 10  # 5 NFE per output, ESS ratio 0.5
    assert f["speedup_dlg_vs_noise"] == 5 and f["speedup_dlg_vs_best_control"] == 2


def test_sweep_floors_are_the_exact_floors_kept_once_and_refused_for_other_settings(tmp_path):
    from dmcmc_edu.evaluation import metrics
    from dmcmc_edu.runs import RunRefused

    mix, n, bw = ring(), 100, 1.5
    ref = metrics.reference_values(mix, generator=torch.Generator().manual_seed(3))
    path = tmp_path / "ring_floors_n100.json"
    first = ladder.sweep_floors(mix, n, bw, ref, repeats=20, path=path)
    direct = metrics.exact_floors(mix, n, repeats=20, mmd_bandwidth=bw, ref_values=ref)
    for k in metrics.FLOOR_METRICS:  # the 0.995 quantile of 20 exact pairs, not a mean + k sd
        assert first[k]["threshold"] == pytest.approx(direct[k]["threshold"], rel=1e-12)
    again = ladder.sweep_floors(mix, n, bw, ref, repeats=20, path=path)  # read back, not recomputed
    assert json.dumps(again, sort_keys=True) == json.dumps(json.loads(path.read_text())["floors"], sort_keys=True)
    with pytest.raises(RunRefused, match="other settings"):
        ladder.sweep_floors(mix, n, 2 * bw, ref, repeats=20, path=path)
    with pytest.raises(ValueError, match="at least 20"):
        ladder.sweep_floors(mix, n, bw, ref, repeats=5)


def test_refloor_reads_a_finished_sweep_against_other_floors_without_sampling(tmp_path):
    from dmcmc_edu.evaluation import metrics

    out = tmp_path / "ladder"
    main(["ladder", "--target", "ring", "--fast", "--integrators", "kar1", "--out", str(out), "--quiet", "--no-plot"])
    doc = json.loads((out / "ring_fast.json").read_text())
    meta = doc["meta"]
    # floors of the same target, n and kernel but a stricter quantile: some points that were inside fall outside
    strict = metrics.exact_floors(ring(), meta["sweep"]["n"], repeats=20, quantile=0.5,
                                  mmd_bandwidth=meta["floors"]["mmd_bandwidth"], ref_values=meta["ref_values"])
    settings = {"target_sha256": target_sha256(ring().to_dict()),
                "n": meta["sweep"]["n"], "repeats": 20, "seed": 777, "quantile": 0.5,
                "mmd_bandwidth": meta["floors"]["mmd_bandwidth"]}
    f = tmp_path / "strict.json"
    f.write_text(json.dumps({"settings": settings, "floors": ladder._clean(strict)}))
    seconds = [p["seconds"] for p in doc["points"]]
    new = ladder.refloor_sweep(out, "ring_fast", f)
    assert [p["seconds"] for p in new["points"]] == seconds  # nothing sampled again
    assert new["meta"]["floors_before"] == meta["floors"] and new["meta"]["floors_file"] == "strict.json"
    for p in new["points"]:
        assert p["within_floor"] == metrics.within_floors(p["metrics"], strict)
    before = sum(p["within_floor"]["all"] for p in doc["points"])
    assert sum(p["within_floor"]["all"] for p in new["points"]) < before
    findings = json.loads((out / "ring_fast_findings.json").read_text())
    assert findings["floors"]["w2"] == pytest.approx(strict["w2"]["threshold"])
    # the record was finished with the new outputs: a re-run of the same sweep reads it back and writes nothing
    stamp = (out / "ring_fast.json").stat().st_mtime_ns
    main(["ladder", "--target", "ring", "--fast", "--integrators", "kar1", "--out", str(out), "--quiet", "--no-plot"])
    assert (out / "ring_fast.json").stat().st_mtime_ns == stamp
    # floors of another size are refused in one line
    settings["n"] = 123
    f.write_text(json.dumps({"settings": settings, "floors": ladder._clean(strict)}))
    with pytest.raises(ValueError, match="n = 123"):
        ladder.refloor_sweep(out, "ring_fast", f)
