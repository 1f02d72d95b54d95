"""The demo's metric figure: log axes (its values span decades), one legend without duplicates, RK45 shown."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from dmcmc_edu.experiments.demo import plot_demo_metrics  # noqa: E402


def _rows():
    rows = []
    for name, w2s in (("kar1", [12.0, 0.6]), ("euler_maruyama", [4176.6, 0.66])):
        for steps, (nfe, w2) in zip((3, 50), zip((5.0, 99.0), w2s)):
            rows.append({"integrator": name, "mode": "from sigma_max", "steps": steps, "nfe": nfe, "w2": w2,
                         "mode_tv": 0.1 if steps == 3 else 0.012, "mode_tv_exact": 0.01, "n": 4000})
    rows.append({"integrator": "rk45", "mode": "from sigma_max", "steps": 1, "nfe": 129.0, "w2": 0.47,
                 "mode_tv": 0.014, "mode_tv_exact": 0.012, "n": 4000})
    rows.append({"integrator": "kar1", "mode": "DLG", "steps": 8, "nfe": 45.5, "w2": 0.77, "mode_tv": 0.016,
                 "mode_tv_exact": 0.02, "n": 4000})
    return rows


def test_demo_metric_figure_has_log_axes_and_one_legend():
    fig = plot_demo_metrics(_rows(), floor=0.644)
    try:
        axes = fig.axes
        assert [ax.get_yscale() for ax in axes] == ["log", "log"]
        assert [ax.get_xscale() for ax in axes] == ["log", "log"]
        assert all(ax.get_legend() is None for ax in axes) and len(fig.legends) == 1
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(labels) == len(set(labels)) == 5  # 4 samplers + the floor, each once
        assert "rk45 from sigma_max" in labels and "DLG + kar1 (full ledger)" in labels
        # the whole range of values, from below the floor to Euler-Maruyama's 4,176, is on the axis
        lo, hi = axes[0].get_ylim()
        assert lo < 0.47 and hi > 4176.6
        floor_line = next(line for line in axes[1].get_lines() if line.get_label().startswith("exact samples"))
        assert abs(floor_line.get_ydata()[0] - (4 * 0.01 + 0.012 + 0.02) / 6) < 1e-12
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- the demo's run folder (issue 22)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from dmcmc_edu.cli import main  # noqa: E402
from dmcmc_edu.experiments.demo import DEMO_OUTPUTS, run_demo  # noqa: E402
from dmcmc_edu.runs import RunRefused  # noqa: E402

SMALL = dict(n=60, steps=[2], dlg_steps=[1], progress=False)


def _state(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    rows = run_demo(out, **SMALL)
    return out, rows


def test_demo_writes_a_run_record_with_its_outputs(small_demo):
    out, rows = small_demo
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] is True and record["command"] == "demo"
    assert record["fingerprint"]["kind"] == "demo" and record["fingerprint"]["settings"]["n"] == 60
    assert set(record["outputs"]) == set(DEMO_OUTPUTS) and all((out / name).is_file() for name in DEMO_OUTPUTS)
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(rows))


def test_a_finished_demo_is_reported_and_nothing_is_written(small_demo):
    out, rows = small_demo
    before = _state(out)
    again = run_demo(out, **SMALL)
    assert _state(out) == before and json.dumps(again) == json.dumps(json.loads(json.dumps(rows)))


def test_a_demo_with_other_settings_is_refused(small_demo):
    out, _ = small_demo
    before = _state(out)
    with pytest.raises(RunRefused, match=r"other settings.*n: 60 vs 70"):
        run_demo(out, **{**SMALL, "n": 70})
    assert _state(out) == before


def test_demo_refuses_a_users_results_csv(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("my own table\n")
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--fast", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "results.csv" in err[0] and "no run record" in err[0], err
    assert (out / "results.csv").read_text() == "my own table\n" and sorted(p.name for p in out.iterdir()) == [
        "results.csv"]


def test_demo_refuses_a_finished_sample_run(tmp_path, capsys):
    out = tmp_path / "sampled"
    main(["sample", "--target", "ring", "--steps", "2", "--n", "10", "--quiet", "--out", str(out)])
    before = _state(out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--fast", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "holds a 'sample' run, and this is a 'demo' run" in err[0], err
    assert _state(out) == before


def test_demo_settings_are_checked():
    with pytest.raises(ValueError, match="steps must be a list of integers >= 1"):
        run_demo("unused", steps=[2.5], progress=False)
    assert not Path("unused").exists()
