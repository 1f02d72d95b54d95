"""The command line: sample (vanilla and DLG), resume, bad targets, demo."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dmcmc_edu.cli import main
from dmcmc_edu.targets import ring


def test_help_runs():
    r = subprocess.run([sys.executable, "-m", "dmcmc_edu", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "sample" in r.stdout and "demo" in r.stdout


def test_sample_vanilla_writes_samples_and_run_json(tmp_path):
    out = tmp_path / "run"
    main(["sample", "--target", "ring", "--integrator", "pf_euler", "--steps", "5", "--n", "300", "--seed", "1",
          "--batch", "128", "--out", str(out), "--quiet"])
    x = np.load(out / "samples.npy")
    assert x.shape == (300, 2) and x.dtype == np.float64
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["integrator"] == "pf_euler"
    assert run["result"]["nfe_per_sample"] == 6  # 5 Euler steps + Tweedie, counted
    assert run["settings"]["sigma_max"] == ring().default_sigma_max()
    # re-running the same command reuses the chunks and gives the same file
    main(["sample", "--target", "ring", "--integrator", "pf_euler", "--steps", "5", "--n", "300", "--seed", "1",
          "--batch", "128", "--out", str(out), "--quiet"])
    assert np.array_equal(np.load(out / "samples.npy"), x)


def test_sample_dlg_with_user_json_target(tmp_path):
    target = tmp_path / "two.json"
    target.write_text(json.dumps({"weights": [0.25, 0.75], "means": [[-2.0, 0.0], [2.0, 0.0]],
                                  "covariances": [[[0.1, 0.0], [0.0, 0.1]], [[0.2, 0.0], [0.0, 0.05]]]}))
    out = tmp_path / "dlg"
    main(["sample", "--target", str(target), "--dlg", "--sigma-update", "exact", "--eta", "0.01", "--n-skip", "2",
          "--chains", "50", "--integrator", "kar1", "--steps", "4", "--n", "100", "--n-levels", "100",
          "--out", str(out), "--quiet"])
    assert np.load(out / "samples.npy").shape == (100, 2)
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["per_output"]["paper"] == 2 + 7  # n_skip + KAR1 (2*4-1); no Tweedie after KAR1 by default
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["n_chains"] == 50 and run["result"]["n_outputs"] == 100


@pytest.mark.parametrize("content,match", [
    ('{"weights": [1.0], "means": [[0.0, 0.0]]}', "covariances"),
    ('{"weights": [1.0], "means": [[0.0, 0.0]], "covariances": [[[1.0, 0.0]]]}', "covariances"),
    ('{"means": [[0.0, 0.0]], "covariances": [[[1.0, 0.0], [0.0, 1.0]]]}', "weights"),
    ("not json", "JSON"),
])
def test_malformed_target_names_the_field(tmp_path, content, match):
    target = tmp_path / "bad.json"
    target.write_text(content)
    with pytest.raises(SystemExit, match=match):
        main(["sample", "--target", str(target), "--n", "10", "--out", str(tmp_path / "o"), "--quiet"])


def test_classifier_update_without_classifier_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="needs --classifier"):
        main(["sample", "--dlg", "--sigma-update", "classifier-argmax", "--n", "10", "--out", str(tmp_path / "o")])


@pytest.mark.slow
def test_demo_fast_writes_figures_and_table(tmp_path):
    main(["demo", "--fast", "--out", str(tmp_path / "demo"), "--quiet"])
    for name in ("results.csv", "results.json", "results.md", "samples.png", "w2_vs_nfe.png"):
        assert (tmp_path / "demo" / name).exists(), name
    rows = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert {r["integrator"] for r in rows} >= {"kar1", "kar2", "pf_euler", "rk45", "reverse_diffusion",
                                               "euler_maruyama"}
    assert any(r["mode"] == "DLG" for r in rows)


@pytest.mark.slow
def test_killed_dlg_run_resumes_with_identical_outputs(tmp_path):
    """SIGKILL a DLG run in the middle, re-run the same command: the outputs equal an uninterrupted run's."""
    import os
    import signal
    import time

    args = ["sample", "--target", "ring", "--dlg", "--chains", "200", "--n", "6000", "--steps", "4", "--n-levels",
            "100", "--seed", "3", "--quiet"]
    main(args + ["--out", str(tmp_path / "ref")])
    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dmcmc_edu", *args, "--out", str(out)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "rounds").glob("round_*.npy"))) < 5:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "samples.npy").exists(), "the run finished before it could be killed"
    main(args + ["--out", str(out)])
    assert np.array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "ref" / "samples.npy"))
    ref_ledger = json.loads((tmp_path / "ref" / "ledger.json").read_text())
    assert json.loads((out / "ledger.json").read_text())["per_output"] == ref_ledger["per_output"]


def test_train_classifier_then_dlg_with_classifier(tmp_path, capsys):
    clf = tmp_path / "clf.pt"
    main(["train-classifier", "--target", "ring", "--out", str(clf), "--steps", "200", "--n-levels", "50", "--quiet"])
    assert clf.exists()
    report = json.loads(capsys.readouterr().out)
    assert report["kl_to_exact"]["kl"] < report["kl_to_exact"]["kl_uniform"]
    out = tmp_path / "dlg"
    main(["sample", "--target", "ring", "--dlg", "--sigma-update", "classifier-sample", "--classifier", str(clf),
          "--n-levels", "50", "--chains", "40", "--n", "80", "--steps", "3", "--out", str(out), "--quiet"])
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["per_output"]["parts"]["classifier"] == 1.0  # one classifier call per Gibbs step (n_skip 1)
    # a classifier trained on another grid is refused with a clear message
    with pytest.raises(SystemExit, match="another noise-level grid"):
        main(["sample", "--target", "ring", "--dlg", "--sigma-update", "classifier-argmax", "--classifier", str(clf),
              "--sigma-max", "20", "--n", "10", "--out", str(tmp_path / "x"), "--quiet"])
