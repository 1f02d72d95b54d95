"""No score for a broken sample set: metrics, FID, the ladder and the runs' part files refuse NaN / inf.

Every test injects a known number of bad rows (fixed seeds) and checks that the code refuses with that count, or
names the damaged file, instead of returning a number.  Before these checks ``w2`` of a set with one NaN row was
0.0 (POT's solver called the problem infeasible and returned a zero cost), the score of a perfect sampler.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dmcmc_edu.cli import main as cli_main
from dmcmc_edu.core.sampler import DMCMCConfig, DMCMCSampler
from dmcmc_edu.evaluation import diagnostics, metrics
from dmcmc_edu.evaluation.checks import FRECHET_RTOL, checked_frechet, require_finite
from dmcmc_edu.evaluation.inception_fid import compute_fid, save_random_inception_weights
from dmcmc_edu.evaluation.mnist_fid import MNISTFeatureNet, frechet_distance, mnist_fid
from dmcmc_edu.experiments import ladder
from dmcmc_edu.runs import load_parts, run_chunks, run_to_directory
from dmcmc_edu.targets import ring

N, C = 200, 20  # samples per set; chains (N / C = 10 outputs per chain)
BAD_ROWS = (3, 50, 199)  # rows that get a NaN, a +inf and a -inf


@pytest.fixture(scope="module")
def mix():
    return ring()


@pytest.fixture(scope="module")
def sets(mix):
    """An exact sample set, the same set with three broken rows, and an exact reference set (seed 0)."""
    g = torch.Generator().manual_seed(0)
    x, ref = mix.sample(N, g), mix.sample(N, g)
    bad = x.clone()
    for row, v in zip(BAD_ROWS, (float("nan"), float("inf"), float("-inf"))):
        bad[row, row % 2] = v
    return x, bad, ref


def _metric_calls(mix, ref):
    """Every metric that takes samples, as ``name -> f(samples)``."""
    sig = torch.full((N,), 0.5, dtype=torch.float64)
    return {
        "w2": lambda x: metrics.w2(x, ref),
        "w2_second_set": lambda x: metrics.w2(ref, x),
        "w2_scipy": lambda x: metrics.w2(x, ref, method="scipy"),
        "mmd2": lambda x: metrics.mmd2(x, ref),
        "median_bandwidth": lambda x: metrics.median_bandwidth(x, ref),
        "mode_weights": lambda x: metrics.mode_weights(mix, x),
        "mode_weight_tv": lambda x: metrics.mode_weight_tv(mix, x),
        "spread": lambda x: metrics.spread(mix, x),
        "on_manifold_fraction": lambda x: metrics.on_manifold_fraction(mix, x),
        "nll": lambda x: metrics.nll(mix, x),
        "nll_stats": lambda x: metrics.nll_stats(mix, x),
        "decorrelation": lambda x: metrics.decorrelation(mix, x.reshape(N // C, C, -1)),
        "chain_metrics": lambda x: metrics.chain_metrics(mix, x, sig, C),
        "evaluate": lambda x: metrics.evaluate(mix, x, ref),
        "evaluate_reference": lambda x: metrics.evaluate(mix, ref, x),
        "summary": lambda x: metrics.summary(mix, x, w2_n=N),
    }


METRICS = list(_metric_calls(None, None))


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_scores_a_good_set_and_refuses_the_same_set_with_broken_rows(mix, sets, name):
    x, bad, ref = sets
    f = _metric_calls(mix, ref)[name]
    f(x)  # the good set is scored (no error)
    with pytest.raises(ValueError, match=rf"{len(BAD_ROWS)} of {N} \w.*NaN or inf; a broken sample set has no score"):
        f(bad)
    with pytest.raises(ValueError, match=rf"1 of {N} "):  # a single bad row is enough
        f(torch.where(torch.arange(N)[:, None] == 7, float("nan"), x))


def test_a_set_with_one_nan_row_never_gets_w2_zero(sets):
    """The historical failure: identical sets but one NaN row gave W2 = 0 (POT's solver stopped at once)."""
    x, _, _ = sets
    y = x.clone()
    y[0, 0] = float("nan")
    for method in ("pot", "scipy"):
        with pytest.raises(ValueError, match=r"w2: 1 of 200 samples of the second set hold NaN or inf"):
            metrics.w2(x, y, method=method)


def test_w2_refuses_distances_that_overflow(sets):
    x, _, ref = sets
    huge = x.clone()
    huge[4] = 1e200  # finite, but its squared distance to anything is inf
    with pytest.raises(ValueError, match="overflow"):
        metrics.w2(huge, ref)


def test_w2_refuses_an_optimal_transport_that_pot_did_not_certify(monkeypatch, sets):
    """POT at one simplex iteration stops before the optimum (status 3) and returns a cost: w2 must refuse it."""
    ot = pytest.importorskip("ot")
    x, _, ref = sets
    real = ot.emd2
    monkeypatch.setattr(ot, "emd2", lambda *a, **kw: real(*a, **{**kw, "numItermax": 1}))
    with pytest.raises(ValueError, match=r"did not find the optimal transport \(status 3"):
        metrics.w2(x, ref, method="pot")
    # a solver that reports an infeasible problem (status 0) with a zero cost is refused too
    monkeypatch.setattr(ot, "emd2", lambda *a, **kw: (0.0, {"result_code": 0, "warning": "Problem infeasible"}))
    with pytest.raises(ValueError, match="status 0: Problem infeasible"):
        metrics.w2(x, ref, method="pot")
    monkeypatch.setattr(ot, "emd2", real)
    assert metrics.w2(x, ref, method="pot") == pytest.approx(metrics.w2(x, ref, method="scipy"), rel=1e-9)


def test_chain_metrics_refuse_broken_chosen_sigmas(mix, sets):
    x, _, _ = sets
    sig = torch.full((N,), 0.5, dtype=torch.float64)
    sig[[1, 2]] = float("nan")
    with pytest.raises(ValueError, match=r"chain_metrics: 2 of 200 chosen sigmas hold NaN"):
        metrics.chain_metrics(mix, x, sig, C)


def test_label_and_diagnostic_series_with_nan_are_refused():
    """A NaN autocorrelation used to make the ESS come out as 'every output independent' (T * C)."""
    series = np.random.default_rng(0).normal(size=(30, 4))
    assert diagnostics.effective_sample_size(series) < series.size + 1
    series[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"autocorrelation: 1 of 120 values hold NaN"):
        diagnostics.effective_sample_size(series)
    labels = np.zeros((30, 4))
    labels[0, 0] = np.nan
    with pytest.raises(ValueError, match="mode_switch_rate: 1 of 120 labels"):
        diagnostics.mode_switch_rate(labels)
    with pytest.raises(ValueError, match="label_autocorrelation: 1 of 120 labels"):
        diagnostics.label_autocorrelation(labels, 2)
    with pytest.raises(ValueError, match="label_weight_tv: 1 of 120 labels"):
        metrics.label_weight_tv(labels, [1.0, 1.0])


def test_require_finite_passes_good_input_through_unchanged():
    x = np.arange(6.0).reshape(3, 2)
    assert require_finite(x, "t") is x
    assert require_finite(np.zeros((0, 2)), "t").shape == (0, 2)
    with pytest.raises(ValueError, match=r"^t: 1 of 1 samples"):
        require_finite(float("inf"), "t")


# ----------------------------------------------------------------------------- FID


def _stats(d=8, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(4 * d, d))  # more samples than dimensions: a full-rank covariance
    return f.mean(0), np.cov(f, rowvar=False)


@pytest.mark.parametrize("where", ["mu1", "sigma1", "mu2", "sigma2"])
def test_frechet_distance_of_non_finite_statistics_raises(where):
    mu1, s1 = _stats(seed=1)
    mu2, s2 = _stats(seed=2)
    assert frechet_distance(mu1, s1, mu2, s2) > 0
    args = {"mu1": mu1, "sigma1": s1, "mu2": mu2, "sigma2": s2}
    args[where] = args[where].copy()
    args[where].flat[3] = np.nan
    with pytest.raises(ValueError, match=r"1 of \d+ entries NaN or inf; broken statistics have no FID"):
        frechet_distance(**args)


def test_frechet_distance_negative_beyond_round_off_raises_and_round_off_passes():
    mu, s = _stats()
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)  # round-off of an exact 0 is kept
    with pytest.raises(ValueError, match="negative"):  # a covariance that is not PSD: -2 I vs I gives -d
        frechet_distance(mu, -2.0 * np.eye(8), mu, np.eye(8))
    assert checked_frechet(-0.5 * FRECHET_RTOL * 10.0, 10.0, "t") < 0
    with pytest.raises(ValueError, match="negative"):
        checked_frechet(-2.0 * FRECHET_RTOL * 10.0, 10.0, "t")
    with pytest.raises(ValueError, match="came out nan"):
        checked_frechet(float("nan"), 10.0, "t")


def test_mnist_fid_refuses_broken_images_and_broken_reference():
    torch.manual_seed(0)
    net = MNISTFeatureNet().eval()
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(16, 1, 28, 28, generator=g)
    ref = {"mu": torch.zeros(128, dtype=torch.float64), "sigma": torch.eye(128, dtype=torch.float64)}
    assert np.isfinite(mnist_fid(imgs, net, ref))
    bad = imgs.clone()
    bad[[2, 9], 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="mnist_fid: 2 of 16 images hold NaN or inf"):
        mnist_fid(bad, net, ref)
    with pytest.raises(ValueError, match="second set.*mean has 1 of 128 entries NaN"):
        mnist_fid(imgs, net, dict(ref, mu=torch.where(torch.arange(128) == 0, float("nan"), ref["mu"])))


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    pytest.importorskip("pytorch_fid", reason="optional extra 'fid' not installed")
    return save_random_inception_weights(tmp_path_factory.mktemp("w") / "fid_inception_random.pth")


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")
def test_fid_cli_on_broken_statistics_exits_with_one_error_line(tmp_path, capsys, inception_weights):
    """``fid A B`` with a .npz whose covariance holds NaN: no ``{"fid": NaN}``; one ``error:`` line, exit != 0."""
    mu, s = _stats(d=64)
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, mu=mu, sigma=s)
    s_bad = s.copy()
    s_bad[[0, 5], [0, 5]] = np.nan
    np.savez(bad, mu=mu, sigma=s_bad)
    opts = ["--inception-weights", str(inception_weights), "--dims", "64", "--device", "cpu"]
    assert compute_fid(good, good, inception_weights=inception_weights, dims=64) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"bad\.npz: the feature covariance has 2 of 4096 entries NaN"):
        compute_fid(good, bad, inception_weights=inception_weights, dims=64)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli_main(["fid", str(good), str(bad), *opts])
    code, cap = info.value.code, capsys.readouterr()
    assert code not in (0, None)  # a non-zero exit status (a string code exits with status 1)
    msg = code if isinstance(code, str) else cap.err.strip()  # the line Python prints at exit, or the one printed
    assert msg.startswith("error: ") and "\n" not in msg and "bad.npz" in msg and "NaN" in msg
    assert '"fid"' not in cap.out  # no number printed
    # the good pair through the command line still prints its value with exit status 0
    assert cli_main(["fid", str(good), str(good), *opts]) == 0
    assert abs(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fid"]) < 1e-6


# ----------------------------------------------------------------------------- the ladder


def test_a_ladder_point_with_broken_outputs_is_recorded_as_failed_with_the_reason(monkeypatch, mix):
    ctx = ladder.LadderContext(mix, n=N, floors={}, ref_values={})

    def broken_runner(ctx, s, gen):
        x = mix.sample(ctx.n, gen)
        x[[0, 1]] = float("nan")
        return x, {"full": 3.0, "paper": 3.0, "parts": {}}, None

    monkeypatch.setitem(ladder.RUNNERS, "noise", broken_runner)
    row = ladder.run_point(ctx, dict(kind="noise", integrator="kar1", steps=3, options={}))
    assert "metrics" not in row and "within_floor" not in row and "nfe" not in row
    assert row["error"] == ("ValueError: evaluate: 2 of 200 samples hold NaN or inf; a broken sample set has no score")
    floors = {k: {"threshold": 1.0} for k in metrics.FLOOR_METRICS}
    meta = {"stem": "t", "sweep": {"target": "ring", "n": N}, "d": 2, "K": mix.K, "sigma_min": 0.01,
            "sigma_max": 10.0, "floors": floors}
    found = ladder.analyse({"meta": meta, "points": [row]})
    assert found["errors"] == [{"label": ladder.point_label(row["settings"]), "error": row["error"]}]
    assert "2 of 200 samples hold NaN" in ladder.findings_markdown(found, meta)


# ----------------------------------------------------------------------------- runs: part files read back


def _snapshot(folder, skip=()):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def _damage(path, how: str):
    """Damage an .npy part file: a NaN row, a zero-byte file, a truncated file or a wrong shape."""
    arr = np.load(path)
    if how == "nan_row":
        arr = arr.astype(np.float64)
        arr[1] = np.nan
        np.save(path, arr)
    elif how == "zero_bytes":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-8])
    elif how == "short":
        np.save(path, arr[:-1])


_DAMAGE_MESSAGE = {"nan_row": r"1 of \d+ rows hold NaN or inf", "zero_bytes": "cannot be read",
                   "truncated": "cannot be read", "short": "holds an array of shape"}


def _config():
    return DMCMCConfig(sigma_min=0.01, sigma_max=9.5, n_levels=100, eta=0.005, n_skip=2, integrator="kar1", steps=3,
                       n_chains=8, outputs_per_chain=3, init_steps=5, final_tweedie="always")


@pytest.mark.parametrize("file,how", [("round_000001.npy", "nan_row"), ("sigma_000002.npy", "nan_row"),
                                      ("round_000000.npy", "zero_bytes"), ("round_000002.npy", "truncated"),
                                      ("sigma_000000.npy", "short")])
@pytest.mark.parametrize("samples_written", [True, False])
def test_resumed_run_to_directory_refuses_a_damaged_round_file_and_writes_nothing(tmp_path, mix, file, how,
                                                                                  samples_written):
    out = tmp_path / "run"
    first = run_to_directory(DMCMCSampler(mix, _config(), data_shape=(2,)), out, progress=False)
    assert torch.isfinite(first.samples).all()
    if not samples_written:  # interrupted between the last round and samples.npy
        (out / "samples.npy").unlink()
    _damage(out / "rounds" / file, how)
    before = _snapshot(out)
    with pytest.raises(ValueError, match=rf"rounds/{file}: {_DAMAGE_MESSAGE[how]}.*start the run again"):
        run_to_directory(DMCMCSampler(mix, _config(), data_shape=(2,)), out, progress=False)
    assert _snapshot(out) == before  # nothing rewritten, no samples.npy made
    assert (out / "samples.npy").exists() == samples_written


def _make_chunk(calls):
    def make(k, rows):
        calls.append(k)
        g = np.random.default_rng(k)
        return g.normal(size=(rows, 3)), 7.0

    return make


@pytest.mark.parametrize("how", ["nan_row", "zero_bytes", "truncated", "short"])
def test_resumed_run_chunks_refuses_a_damaged_chunk_and_redoes_it_once_deleted(tmp_path, how):
    calls = []
    ref, nfe = run_chunks(tmp_path, 10, 4, _make_chunk(calls), progress=False)
    assert calls == [0, 1, 2] and ref.shape == (10, 3) and nfe == 7.0
    _damage(tmp_path / "chunk_00001.npy", how)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=rf"chunk_00001\.npy: {_DAMAGE_MESSAGE[how]}.*delete this chunk file"):
        run_chunks(tmp_path, 10, 4, _make_chunk(calls), progress=False)
    assert calls == [0, 1, 2] and _snapshot(tmp_path) == before
    (tmp_path / "chunk_00001.npy").unlink()  # the remedy the message names
    again, _ = run_chunks(tmp_path, 10, 4, _make_chunk(calls), progress=False)
    assert calls == [0, 1, 2, 1] and np.array_equal(again, ref)


def test_load_parts_checks_the_trailing_shape_against_the_first_file(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "b.npy", np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"b\.npy: holds an array of shape \[2, 4\], expected \[2, 3\]"):
        load_parts([tmp_path / "a.npy", tmp_path / "b.npy"], [2, 2])
    np.save(tmp_path / "c.npy", np.arange(4).reshape(2, 2))  # integers: nothing to be non-finite
    assert load_parts([tmp_path / "c.npy"], [2])[0].dtype.kind == "i"
