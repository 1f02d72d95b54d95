"""bench/ladder_seeds.py and bench/floors.py refuse what they must not overwrite, in one line (issue 18)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seed_lists():
    mod = _load("ladder_seeds")
    assert mod.seed_list("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(Exception, match="expected seeds"):
        mod.seed_list("a-b")


def test_a_report_with_other_settings_is_refused_and_kept(tmp_path, capsys):
    mod = _load("ladder_seeds")
    report = tmp_path / "ring_fast_seeds.json"
    settings = {"seeds": [0, 1, 5], "floor_repeats": 200, "quantile": 0.995, "prices": None}
    report.write_text(json.dumps({"settings": settings}))
    before = report.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        mod.main(["--target", "ring", "--fast", "--seeds", "0-2", "--report-only", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "other settings" in err[0]
    assert report.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [report.name]


def test_a_missing_replicate_is_refused_with_report_only(tmp_path, capsys):
    mod = _load("ladder_seeds")
    with pytest.raises(SystemExit):
        mod.main(["--target", "ring", "--fast", "--seeds", "0-1", "--report-only", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "replicate seed 0 has not been run" in err
    with pytest.raises(SystemExit):
        mod.main(["--target", "ring", "--fast", "--seeds", "0-1", "--recheck-seeds", "1-2", "--out", str(tmp_path)])
    assert "not used for the choice" in capsys.readouterr().err


def test_floors_file_with_other_settings_is_refused(tmp_path, capsys):
    mod = _load("floors")
    path = tmp_path / "ring_n100.json"
    path.write_text(json.dumps({"settings": {"n": 100, "repeats": 20}}))
    before = path.read_bytes()
    with pytest.raises(SystemExit):
        mod.main(["--target", "ring", "--n", "100", "--repeats", "20", "--out", str(tmp_path)])
    assert "other settings" in capsys.readouterr().err and path.read_bytes() == before


def _fake_mnist_point(variant, integ, setting, seed, fid, nfe, shift, rng_seed):
    reps = (fid + shift + np.random.default_rng(rng_seed).normal(0, 0.3, 400)).tolist()
    return {"variant": variant, "integrator": integ, "setting": setting, "seed": seed, "nfe": nfe,
            "fid": {"fid": fid, "low": fid - 0.6, "high": fid + 0.6, "replicates": reps}}


def test_mnist_seeds_picks_the_deciding_points_and_the_overview_reads_its_verdicts(tmp_path):
    """bench/mnist_seeds.py: the best point of each kind is the one re-run; a 5-point FID gap with a 0.3 spread
    is a verdict, a 0.1 gap is not; overview.mnist_verdicts and the README block print what the file holds."""
    from dmcmc_edu.experiments import overview

    mod = _load("mnist_seeds")
    sweep = {"points": [{"variant": "vanilla", "integrator": "pf_euler", "setting": s, "fid": f, "nfe": s + 1}
                        for s, f in ((20, 40.0), (100, 24.0), (50, 30.0))]
             + [{"variant": "dlg-argmax", "integrator": "pf_euler", "setting": s, "fid": f, "nfe": 30 + s}
                for s, f in ((5, 60.0), (20, 23.0))]
             + [{"variant": "vanilla", "integrator": "kar1", "setting": 10, "fid": 16.0, "nfe": 19},
                {"variant": "dlg-argmax", "integrator": "kar1", "setting": 8, "fid": 17.0, "nfe": 40}]}
    decisive = mod.decisive_points(sweep, ["pf_euler", "kar1"])
    assert [(p["integrator"], p["arm"], p["setting"]) for p in decisive] == [
        ("pf_euler", "vanilla", 100), ("pf_euler", "dlg-argmax", 20), ("pf_euler", "vanilla-at-dlg-cost", 50),
        ("kar1", "vanilla", 10), ("kar1", "dlg-argmax", 8)]  # the cheapest run from noise at >= DLG's 50 NFE: 51
    with pytest.raises(ValueError, match="no stored point"):
        mod.decisive_points(sweep, ["rk45"])
    points = []
    for s in range(3):
        points += [_fake_mnist_point("vanilla", "pf_euler", 100, s, 24.0 + 0.1 * s, 101, 1.0, s),
                   _fake_mnist_point("dlg-argmax", "pf_euler", 20, s, 19.0 + 0.1 * s, 50, 2.0, s + 10),
                   _fake_mnist_point("vanilla", "kar1", 10, s, 16.0, 19, 1.0, s + 20),
                   _fake_mnist_point("dlg-argmax", "kar1", 8, s, 16.1, 40, 2.0, s + 30),
                   _fake_mnist_point("vanilla", "pf_euler", 50, s, 30.0, 51, 1.0, s + 40)]
    found = mod.analyse(points, decisive, [0, 1, 2])
    assert found["pf_euler"]["verdict"]["outcome"] == "a_cheaper"  # DLG's FID lower by 5
    assert found["pf_euler"]["verdict"]["ratio"]["estimate"] == pytest.approx(-5.0)
    assert found["kar1"]["verdict"]["outcome"] == "no_difference"
    assert found["pf_euler"]["verdict_at_cost"]["outcome"] == "a_cheaper"  # 19 vs 30 at 51 NFE
    assert "verdict_at_cost" not in found["kar1"]
    root = tmp_path / "results"
    (root / "mnist_seeds").mkdir(parents=True)
    (root / "mnist_seeds" / "mnist_seeds.json").write_text(json.dumps({"settings": {"seeds": [0, 1, 2], "n": 1000},
                                                                       "findings": found}))
    read = overview.mnist_verdicts(root / "mnist_seeds" / "mnist_seeds.json")
    assert read["pf_euler"]["dlg"]["fid_mean"] == pytest.approx(19.1)
    assert read["pf_euler"]["noise"]["n_seeds"] == 3
    assert "no measurable difference" in overview.short_difference(read["kar1"]["verdict"])
    assert overview.mnist_verdicts(tmp_path / "absent.json") == {}
    headline = overview._mnist_headline(read)
    assert "lower than the best from noise for Probability flow" in headline and "KAR1" in headline
    block = overview._mnist_block(read, root)
    assert "24.0, 24.1, 24.2" in block and "RK45" in block  # integrators not re-run are named as single runs


def test_mnist_long_chains_refuses_a_report_made_with_other_settings(tmp_path, capsys):
    mod = _load("mnist_long_chains")
    report = tmp_path / "mnist_long.json"
    settings = {"n": 1000, "denoise_steps": 8, "n_skip": 1, "block": mod.BLOCK, "baseline_steps": 10,
                "seeds": [0, 1], "lengths": [250, 500]}
    report.write_text(json.dumps({"settings": settings}))
    before = report.read_bytes()
    for extra in (["--n", "500"], ["--lengths", "100"]):
        with pytest.raises(SystemExit) as err:
            mod.main(["--seeds", "0-1", "--out", str(tmp_path)] + (["--n", "1000"] if "--n" not in extra else [])
                     + extra)
        assert err.value.code == 2
        assert "mnist_long.json" in capsys.readouterr().err
    assert report.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["mnist_long.json"]
