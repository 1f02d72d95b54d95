"""Run folders: a re-run with other settings is refused, a finished run is not rewritten, a killed run resumes exactly.

Most calls go through ``dmcmc_edu.cli.main`` in this process (a refusal is a ``SystemExit`` carrying the message);
the kills, the full disk and the kill during the final write need a process of their own.
"""

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dmcmc_edu.cli import main
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.datasets import WEIGHT_FILES, default_weights_dir
from dmcmc_edu.models.classifier import MLPClassifier, NoiseLevelClassifier

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")

VANILLA = ["sample", "--target", "ring", "--integrator", "kar1", "--steps", "3", "--n", "50", "--batch", "20",
           "--seed", "0", "--quiet"]
DLG = ["sample", "--target", "ring", "--dlg", "--chains", "10", "--n", "20", "--steps", "2", "--n-levels", "50",
       "--seed", "0", "--quiet"]


def snapshot(folder) -> dict:
    """Every entry under ``folder`` (and the folder itself): its bytes and mtime for a file, its mtime for a folder.

    A write of any kind (a new file, a replaced file, a temporary file made and removed) changes it.
    """
    folder = Path(folder)
    out = {".": folder.stat().st_mtime_ns}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = st.st_mtime_ns if p.is_dir() else (p.read_bytes(), st.st_mtime_ns)
    return out


def with_option(args: list, flag: str, value: str) -> list:
    """``args`` with ``flag`` set to ``value`` (replaced if present, else added)."""
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


def refusal(argv) -> str:
    """The message of a refused call (it must be refused)."""
    with pytest.raises(SystemExit) as err:
        main(argv)
    return str(err.value)


@pytest.fixture(scope="module")
def vanilla_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vanilla"
    assert main([*VANILLA, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def dlg_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dlg"
    assert main([*DLG, "--out", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------- other settings, other kinds, strangers


@pytest.mark.parametrize("flag,value,line", [
    ("--integrator", "pf_euler", "integrator: 'kar1' vs 'pf_euler'"),
    ("--steps", "4", "steps: 3 vs 4"),
    ("--target", "grid", "target_sha256: "),
    ("--seed", "1", "seed: 0 vs 1"),
    ("--sigma-max", "9", "sigma_max: "),
    ("--batch", "25", "batch: 20 vs 25"),
    ("--n", "60", "n: 50 vs 60"),
])
def test_other_settings_are_refused_and_nothing_changes(vanilla_run, flag, value, line):
    before = snapshot(vanilla_run)
    message = refusal([*with_option(VANILLA, flag, value), "--out", str(vanilla_run)])
    assert "different settings (saved vs now)" in message and line in message, message
    assert snapshot(vanilla_run) == before


def test_a_run_of_another_kind_is_refused(vanilla_run, dlg_run):
    for argv, folder, saved, now in ((DLG, vanilla_run, "sample", "sample-dlg"),
                                     (VANILLA, dlg_run, "sample-dlg", "sample")):
        before = snapshot(folder)
        message = refusal([*argv, "--out", str(folder)])
        assert f"holds a {saved!r} run, and this is a {now!r} run" in message
        assert snapshot(folder) == before


def test_files_without_a_run_record_are_left_alone(tmp_path):
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    (strangers / "samples.npy").write_bytes(b"someone else's")
    old = tmp_path / "old"  # a run.json of an older version: no fingerprint
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"command": "sample", "settings": {}}))
    for folder, why in ((strangers, "no run record"), (old, "holds no fingerprint")):
        before = snapshot(folder)
        assert why in refusal([*VANILLA, "--out", str(folder)])
        assert snapshot(folder) == before


# ----------------------------------------------------------------------------- finished runs are only reported


@pytest.mark.parametrize("which", ["vanilla", "dlg"])
def test_a_finished_run_is_reported_without_writing(vanilla_run, dlg_run, which, capsys):
    folder, argv = (vanilla_run, VANILLA) if which == "vanilla" else (dlg_run, DLG)
    before = snapshot(folder)
    capsys.readouterr()
    assert main([*[a for a in argv if a != "--quiet"], "--out", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "nothing was written" in captured.err and json.loads(captured.out)["samples"][0] in (50, 20)
    assert snapshot(folder) == before
    assert json.loads((folder / "run.json").read_text())["complete"] is True


def _set_modes(folder: Path, file_mode: int, dir_mode: int) -> None:
    for p in sorted(folder.rglob("*"), reverse=True):
        p.chmod(dir_mode if p.is_dir() else file_mode)
    folder.chmod(dir_mode)


def test_a_finished_run_in_a_read_only_folder(vanilla_run):
    before = snapshot(vanilla_run)
    _set_modes(vanilla_run, 0o444, 0o555)
    try:
        if os.access(vanilla_run, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes here")
        assert main([*VANILLA, "--out", str(vanilla_run)]) == 0
    finally:
        _set_modes(vanilla_run, 0o644, 0o755)
    assert snapshot(vanilla_run) == before


def _full_disk() -> None:
    """In the child before exec: no file may grow past 0 bytes (writes fail with EFBIG instead of a signal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_a_finished_run_on_a_full_disk_loses_nothing(vanilla_run, tmp_path):
    before = snapshot(vanilla_run)
    # torch's import asks tempfile for a folder, and tempfile tries one by writing a few bytes into it: name
    # torch's cache folder instead, so that the only writes left to fail are the command's own
    env = dict(ENV, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "torch_cache"))
    proc = subprocess.run([sys.executable, "-m", "dmcmc_edu", *VANILLA, "--out", str(vanilla_run)], env=env,
                          cwd=ROOT, preexec_fn=_full_disk, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert snapshot(vanilla_run) == before


# ----------------------------------------------------------------------------- kills


def kill_when_written(argv, out: Path, pattern: str, seed: int) -> None:
    """Start ``python -m dmcmc_edu argv --out out``; SIGKILL it a random moment (seeded, under 30 ms) after a file
    matching ``pattern`` (under ``out``) appears; the run must not have finished by then."""
    delay = random.Random(seed).uniform(0.0, 0.03)
    proc = subprocess.Popen([sys.executable, "-m", "dmcmc_edu", *argv, "--out", str(out)], env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and not (out.exists() and any(out.glob(pattern))):
            time.sleep(0.002)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=600)
    assert proc.returncode == -signal.SIGKILL, f"the run ended with {proc.returncode} before it could be killed"
    assert not json.loads((out / "run.json").read_text())["complete"]


def test_a_killed_vanilla_run_resumes_to_the_same_bytes(tmp_path):
    argv = ["sample", "--target", "ring", "--integrator", "pf_euler", "--steps", "100", "--n", "1000", "--batch",
            "50", "--seed", "2", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "run"
    kill_when_written(argv, out, "chunks/chunk_*.npy", seed=1)
    assert main([*argv, "--out", str(out)]) == 0
    assert (out / "samples.npy").read_bytes() == (tmp_path / "ref" / "samples.npy").read_bytes()
    assert json.loads((out / "run.json").read_text())["complete"] is True


def test_a_killed_dlg_run_refuses_another_target_and_resumes_to_the_same_bytes(tmp_path):
    argv = ["sample", "--target", "ring", "--dlg", "--chains", "20", "--outputs-per-chain", "40", "--n", "800",
            "--steps", "5", "--n-skip", "5", "--n-levels", "100", "--sigma-min", "0.01", "--sigma-max", "10",
            "--checkpoint-every", "3", "--seed", "3", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "run"
    kill_when_written(argv, out, "rounds/round_*.npy", seed=2)
    before = snapshot(out)  # the same sigmas on another target: the chains would be a mix of both
    assert "target_sha256: " in refusal([*with_option(argv, "--target", "grid"), "--out", str(out)])
    assert snapshot(out) == before
    assert main([*argv, "--out", str(out)]) == 0
    assert (out / "samples.npy").read_bytes() == (tmp_path / "ref" / "samples.npy").read_bytes()
    ledger, ref = (json.loads((d / "ledger.json").read_text()) for d in (out, tmp_path / "ref"))
    assert ledger["per_output"] == ref["per_output"]


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    """A copy of the shipped MNIST weights with one score-model weight changed a little (still loadable)."""
    folder = tmp_path_factory.mktemp("weights") / "weights"
    shutil.copytree(default_weights_dir(), folder)
    path = folder / WEIGHT_FILES["score"]
    state = torch.load(path, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 1e-3
    torch.save(state, path)
    return folder


def test_a_killed_mnist_run_resumes_to_the_same_bytes_and_refuses_other_weights(tmp_path, other_weights):
    argv = ["sample-mnist", "--n", "48", "--batch", "4", "--steps", "4", "--seed", "5", "--threads", "1", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "run"
    kill_when_written(argv, out, "chunks/chunk_*.npy", seed=3)
    before = snapshot(out)
    assert "score_weights_sha256: " in refusal([*argv, "--weights", str(other_weights), "--out", str(out)])
    assert snapshot(out) == before
    assert main([*argv, "--out", str(out)]) == 0
    for name in ("images.npy", "samples.png"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_a_dlg_mnist_run_refuses_other_weights(tmp_path, other_weights):
    argv = ["sample-mnist", "--dlg", "--n", "4", "--outputs-per-chain", "2", "--steps", "1", "--n-skip", "1",
            "--seed", "1", "--threads", "1", "--quiet"]
    out = tmp_path / "dlg"
    assert main([*argv, "--out", str(out)]) == 0
    before = snapshot(out)
    assert "model_sha256: " in refusal([*argv, "--weights", str(other_weights), "--out", str(out)])
    assert snapshot(out) == before


KILL_AT_FINAL_WRITE = """
import os, signal, sys
from pathlib import Path

real_replace = os.replace


def replace(src, dst, *args, **kwargs):  # SIGKILL just before / just after samples.npy takes its place
    final = Path(dst).name == "samples.npy"
    if final and sys.argv[1] == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *args, **kwargs)
    if final and sys.argv[1] == "after":
        os.kill(os.getpid(), signal.SIGKILL)


os.replace = replace
from dmcmc_edu.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_during_the_final_write_leaves_no_output_or_the_complete_one(tmp_path, vanilla_run, when):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_FINAL_WRITE, when, *VANILLA, "--out", str(out)], env=ENV,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    reference = (vanilla_run / "samples.npy").read_bytes()
    samples = out / "samples.npy"
    assert samples.exists() == (when == "after")
    if samples.exists():
        assert samples.read_bytes() == reference
    assert not json.loads((out / "run.json").read_text())["complete"]
    assert main([*VANILLA, "--out", str(out)]) == 0  # a temporary file left by the kill does not count as foreign
    assert samples.read_bytes() == reference
    assert json.loads((out / "run.json").read_text())["complete"] is True


# ----------------------------------------------------------------------------- classifiers fit the chain's target


def test_a_classifier_of_another_target_is_refused_and_one_without_a_record_warned(tmp_path, capsys):
    grid_args = ["--sigma-min", "0.01", "--sigma-max", "10"]
    clf = tmp_path / "grid_classifier.pt"
    train = ["train-classifier", "--target", "grid", "--steps", "20", "--hidden", "16", "--n-levels", "20",
             *grid_args, "--out", str(clf), "--quiet"]
    assert main(train) == 0
    saved = NoiseLevelClassifier.load(clf).config
    assert saved["target_sha256"] == saved["fingerprint"]["target_sha256"]
    before = (clf.read_bytes(), clf.stat().st_mtime_ns)
    assert main(train) == 0  # the same call again: reported, not retrained
    assert (clf.read_bytes(), clf.stat().st_mtime_ns) == before
    assert "steps: 20 vs 30" in refusal(with_option(train, "--steps", "30"))
    assert (clf.read_bytes(), clf.stat().st_mtime_ns) == before

    out = tmp_path / "dlg"
    sample = ["sample", "--target", "ring", "--dlg", "--sigma-update", "classifier-argmax", *grid_args, "--chains",
              "5", "--n", "10", "--steps", "2", "--quiet", "--out", str(out)]
    assert "trained on another target" in refusal([*sample, "--classifier", str(clf)])
    assert not out.exists()

    bare = tmp_path / "bare.pt"  # made by hand, without the target it was trained on
    torch.manual_seed(0)
    NoiseLevelClassifier(MLPClassifier(2, 20, hidden=8), noise_level_grid(0.01, 10.0, 20)).save(bare)
    capsys.readouterr()
    assert main([*sample, "--classifier", str(bare)]) == 0
    assert "does not record the target it was trained on" in capsys.readouterr().err
    assert np.load(out / "samples.npy").shape == (10, 2)


# ----------------------------------------------------------------------------- time budgets (issue 22)

MNIST = ["sample-mnist", "--n", "6", "--batch", "2", "--steps", "1", "--quiet"]
MNIST_DLG = ["sample-mnist", "--dlg", "--n", "4", "--outputs-per-chain", "2", "--steps", "1", "--n-skip", "1",
             "--quiet"]


@pytest.mark.parametrize("argv,stage", [(MNIST, "chunks"), (MNIST_DLG, "output rounds")], ids=["vanilla", "dlg"])
def test_sample_mnist_budget_stops_at_a_boundary_and_the_same_command_continues(tmp_path, capsys, argv, stage):
    """A budget spent before the first chunk / round (0.0001 min = 6 ms, less than loading the model) stops there,
    says so on stderr and in run.json, exits 0; the same command without the budget ends the run, equal to one
    made without any budget."""
    out = tmp_path / "budget"
    t0 = time.monotonic()
    assert main([*argv, "--max-minutes", "0.0001", "--out", str(out)]) == 0
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err
    assert "time budget spent after 0 of" in err and stage in err and "run the same command again" in err, err
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] is False and record["last_call"]["stopped_by"] == "budget"
    assert record["last_call"]["done"] == 0 and stage in record["last_call"]["stage"]
    assert record["last_call"]["samples_written"] == 0 and record["last_call"]["n"] == (6 if argv is MNIST else 4)
    assert not (out / "images.npy").exists()
    assert main([*argv, "--max-minutes", "0.0001", "--out", str(out)]) == 0  # still nothing to gain: stops again
    assert main([*argv, "--out", str(out)]) == 0  # no budget: the run ends
    whole = tmp_path / "whole"
    assert main([*argv, "--out", str(whole)]) == 0
    assert np.array_equal(np.load(out / "images.npy"), np.load(whole / "images.npy"))
    assert json.loads((out / "run.json").read_text())["complete"] is True


def test_vanilla_sample_mnist_budget_is_honoured_inside_a_chunk(tmp_path, capsys, monkeypatch):
    """The budget of vanilla sample-mnist is checked at every denoiser evaluation, not only between chunks: spent
    during a chunk, that chunk is dropped (no part of it on disk), the chunks written stay, and run.json says the
    run stopped on its budget with the samples it wrote; the same command without the budget ends the run, equal to
    one made without any budget."""
    import dmcmc_edu.runs as runs

    out = tmp_path / "mid_chunk"
    argv = ["sample-mnist", "--n", "6", "--batch", "2", "--steps", "3", "--quiet"]
    checks = []

    def spent(deadline):
        """A clock whose budget runs out at the 2nd denoiser evaluation of chunk 1 (after chunk 0 is on disk)."""
        if deadline is None or not (out / "chunks" / "chunk_00000.npy").exists():
            return False
        checks.append(True)  # 1: the check before chunk 1, 2: its 1st evaluation, 3: its 2nd
        return len(checks) >= 3

    monkeypatch.setattr(runs, "_spent", spent)
    assert main([*argv, "--max-minutes", "5", "--out", str(out)]) == 0
    assert len(checks) == 3  # stopped inside chunk 1, after one of its evaluations
    err = capsys.readouterr().err
    assert "time budget spent after 1 of 3 chunks (2 samples written)" in err, err
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] is False
    assert {k: record["last_call"][k] for k in ("stopped_by", "done", "total", "samples_written", "n")} == \
        {"stopped_by": "budget", "done": 1, "total": 3, "samples_written": 2, "n": 6}
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["chunk_00000.npy", "nfe.json"]
    assert not (out / "images.npy").exists() and not (out / "samples.png").exists()
    monkeypatch.undo()
    assert main([*argv, "--out", str(out)]) == 0  # no budget: the run ends
    whole = tmp_path / "whole"
    assert main([*argv, "--out", str(whole)]) == 0
    assert np.array_equal(np.load(out / "images.npy"), np.load(whole / "images.npy"))
    assert json.loads((out / "run.json").read_text())["complete"] is True
