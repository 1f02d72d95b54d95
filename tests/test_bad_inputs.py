"""Bad input gets one line that names the problem (and the file), a non-zero exit, and changes nothing.

Every command-line case runs ``dmcmc_edu.cli.main`` in this process on a shared workspace (finished runs, a
trained classifier, damaged and malformed files) and checks: exit status 2; stderr is one ``error:`` line (or
argparse's usage error for an option's own value); a fragment of the message; and that no file or folder of the
workspace was created, changed or removed (names, bytes and modification times before and after).  The Python
API cases check the ``ValueError`` of the configuration, the target loader and the weight loaders.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dmcmc_edu.cli import main
from dmcmc_edu.cli.common import CommandError
from dmcmc_edu.core.integrators import INTEGRATORS
from dmcmc_edu.core.sampler import DMCMCConfig
from dmcmc_edu.datasets import WEIGHT_FILES, default_weights_dir
from dmcmc_edu.evaluation.mnist_fid import REFERENCE_NAME
from dmcmc_edu.models.classifier import NoiseLevelClassifier
from dmcmc_edu.models.learned import load_denoiser
from dmcmc_edu.models.score_sde import load_score_sde, resolve_config, safe_load_checkpoint
from dmcmc_edu.models.unet import load_score_model
from dmcmc_edu.targets import GaussianMixture, load_target

RING = ["--target", "ring"]
VANILLA = ["sample", *RING, "--integrator", "kar1", "--steps", "2", "--n", "20", "--batch", "10", "--quiet"]
DLG = ["sample", *RING, "--dlg", "--n", "20", "--chains", "10", "--steps", "2", "--n-levels", "20", "--quiet"]
CLF_ARGS = ["--steps", "20", "--batch", "64", "--hidden", "16", "--n-levels", "20"]

_COV = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]
_MEANS = [[0.0, 0.0], [3.0, 0.0]]
BAD_TARGETS = {  # file name -> content
    "overflow.json": json.dumps({"weights": [1e308, 1e308], "means": _MEANS, "covariances": _COV}),
    "ratio.json": json.dumps({"weights": [1e-300, 1e300], "means": _MEANS, "covariances": _COV}),
    "nan.json": '{"weights": [NaN, 1.0], "means": [[0, 0], [3, 0]], "covariances": %s}' % json.dumps(_COV),
    "inf.json": '{"weights": [1e999, 1.0], "means": [[0, 0], [3, 0]], "covariances": %s}' % json.dumps(_COV),
    "negative.json": json.dumps({"weights": [1.0, -1.0], "means": _MEANS, "covariances": _COV}),
    "huge_means.json": json.dumps({"weights": [1.0, 1.0], "means": [[1e200, 0.0], [0.0, 0.0]], "covariances": _COV}),
    "no_cov.json": json.dumps({"weights": [1.0, 1.0], "means": _MEANS}),
    "empty.json": "",
    "cut.json": '{"weights": [1.0, 1.0], "means": ',
}


def _snapshot(root: Path) -> dict:
    """Every path under ``root`` with its kind, size, modification time and bytes."""
    snap = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        snap[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns,
                                          p.read_bytes() if p.is_file() else None)
    return snap


def _truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace: finished runs, a classifier, damaged and malformed files; returns the placeholders."""
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = {"ws": str(root), "new": str(root / "new_out"), "run": str(root / "run"), "dlg": str(root / "dlg"),
             "clf": str(root / "clf.pt")}
    main([*VANILLA, "--out", paths["run"]])
    main([*DLG, "--out", paths["dlg"]])
    main(["train-classifier", *RING, *CLF_ARGS, "--out", paths["clf"], "--quiet"])
    for name, text in BAD_TARGETS.items():
        (root / name).write_text(text)
    (root / "binary.json").write_bytes(b"\xff\xfe\x00\x81 not text")
    (root / "folder.json").mkdir()
    (root / "notes.txt").write_text("a user's file")
    (root / "empty.pt").write_bytes(b"")
    (root / "empty.npy").write_bytes(b"")
    (root / "garbage.pt").write_bytes(b"\x80\x02 this is not a torch file at all")
    _truncate(Path(paths["clf"]), root / "cut.pt")
    np.save(root / "images.npy", np.zeros((4, 1, 8, 8)))
    (root / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(root / "imgs" / f"{i}.png")
    _truncate(root / "images.npy", root / "cut.npy")
    torch.save({"model": {}, "ema": {}, "step": 0}, root / "incompatible.pth")
    (root / "broken_config.json").write_text('{"model": ')
    # a finished DLG run whose checkpoint was cut short
    shutil.copytree(paths["dlg"], root / "dlg_cut")
    _truncate(root / "dlg" / "checkpoint.pt", root / "dlg_cut" / "checkpoint.pt")
    # MNIST weight folders: a cut score model; a broken score config beside real weights
    shipped = default_weights_dir()
    (root / "weights_cut").mkdir()
    _truncate(shipped / WEIGHT_FILES["score"], root / "weights_cut" / WEIGHT_FILES["score"], keep=0.01)
    shutil.copy(shipped / Path(WEIGHT_FILES["score"]).with_suffix(".json"), root / "weights_cut")
    (root / "weights_badjson").mkdir()
    for name in (*WEIGHT_FILES.values(), REFERENCE_NAME):
        (root / "weights_badjson" / name).write_bytes((shipped / name).read_bytes())
    for name in WEIGHT_FILES.values():
        (root / "weights_badjson" / Path(name).with_suffix(".json")).write_text("{}")
    (root / "weights_badjson" / Path(WEIGHT_FILES["score"]).with_suffix(".json")).write_text("{not json")
    # existing outputs of the image rung's train commands
    (root / "mnist_out").mkdir()
    (root / "mnist_out" / "mnist_noise_classifier.pt").write_bytes(b"someone's classifier")
    (root / "mnist_out" / "mnist_feature_net.pt").write_bytes(b"someone's feature net")
    return paths


# (id, argv with {placeholders}, "usage" for argparse's own errors or "error" for the command's, message fragment)
CLI_CASES = [
    # sample: each option's own value (argparse)
    ("chains-0", ["sample", "--dlg", "--chains", "0", "--out", "{new}"], "usage", "--chains"),
    ("batch-0", ["sample", "--batch", "0", "--out", "{new}"], "usage", "--batch"),
    ("checkpoint-every-0", ["sample", "--dlg", "--checkpoint-every", "0", "--out", "{new}"], "usage",
     "--checkpoint-every"),
    ("n-negative", ["sample", "--n", "-1", "--out", "{new}"], "usage", "--n"),
    ("n-float", ["sample", "--n", "1.5", "--out", "{new}"], "usage", "integer"),
    ("steps-0", ["sample", "--steps", "0", "--out", "{new}"], "usage", "--steps"),
    ("eta-nan", ["sample", "--dlg", "--eta", "nan", "--out", "{new}"], "usage", "not finite"),
    ("eta-inf", ["sample", "--dlg", "--eta", "inf", "--out", "{new}"], "usage", "not finite"),
    ("eta-0", ["sample", "--dlg", "--eta", "0", "--out", "{new}"], "usage", "--eta"),
    ("eta-rel-negative", ["sample", "--dlg", "--eta-rel", "-1", "--out", "{new}"], "usage", "--eta-rel"),
    ("sigma-min-0", ["sample", "--sigma-min", "0", "--out", "{new}"], "usage", "--sigma-min"),
    ("sigma-max-inf", ["sample", "--sigma-max", "inf", "--out", "{new}"], "usage", "--sigma-max"),
    ("seed-negative", ["sample", "--seed", "-1", "--out", "{new}"], "usage", "--seed"),
    ("outputs-per-chain-0", ["sample", "--dlg", "--outputs-per-chain", "0", "--out", "{new}"], "usage",
     "--outputs-per-chain"),
    ("n-levels-1", ["sample", "--dlg", "--n-levels", "1", "--out", "{new}"], "usage", "--n-levels"),
    ("integrator-unknown", ["sample", "--integrator", "bogus", "--out", "{new}"], "usage", "bogus"),
    ("bad-option-on-finished-run", [*VANILLA, "--batch", "0", "--out", "{run}"], "usage", "--batch"),
    # sample: options together, files
    ("sigma-min-above-max", ["sample", "--sigma-min", "5", "--sigma-max", "1", "--out", "{new}"], "error",
     "--sigma-min"),
    ("chains-above-n", ["sample", "--dlg", "--n", "5", "--chains", "300", "--out", "{new}"], "error",
     "use --chains 5 or fewer"),
    ("outputs-per-chain-too-few", ["sample", "--dlg", "--n", "100", "--chains", "10", "--outputs-per-chain", "2",
                                   "--out", "{new}"], "error", "fewer than --n 100"),
    ("classifier-update-without-classifier", ["sample", "--dlg", "--sigma-update", "classifier-argmax", "--n", "10",
                                              "--chains", "5", "--out", "{new}"], "error", "needs --classifier"),
    ("n-levels-beside-classifier", ["sample", "--dlg", "--sigma-update", "classifier-argmax", "--classifier",
                                    "{clf}", "--n-levels", "30", "--n", "10", "--chains", "5", "--out", "{new}"],
     "error", "--n-levels 30 differs from the 20 levels"),
    ("classifier-without-dlg", ["sample", "--classifier", "{clf}", "--out", "{new}"], "error", "used only by --dlg"),
    ("classifier-other-grid", ["sample", "--dlg", "--sigma-update", "classifier-sample", "--classifier", "{clf}",
                               "--sigma-max", "20", "--n", "10", "--chains", "5", "--out", "{new}"], "error",
     "another noise-level grid"),
    ("classifier-empty", ["sample", "--dlg", "--sigma-update", "classifier-argmax", "--classifier", "{ws}/empty.pt",
                          "--n", "10", "--chains", "5", "--out", "{new}"], "error", "empty.pt: cannot be read"),
    ("classifier-truncated", ["sample", "--dlg", "--sigma-update", "classifier-argmax", "--classifier",
                              "{ws}/cut.pt", "--n", "10", "--chains", "5", "--out", "{new}"], "error",
     "cut.pt: cannot be read"),
    ("classifier-garbage", ["sample", "--dlg", "--sigma-update", "classifier-argmax", "--classifier",
                            "{ws}/garbage.pt", "--n", "10", "--chains", "5", "--out", "{new}"], "error",
     "garbage.pt: cannot be read"),
    ("classifier-missing", ["sample", "--dlg", "--sigma-update", "classifier-argmax", "--classifier",
                            "{ws}/missing.pt", "--n", "10", "--chains", "5", "--out", "{new}"], "error", "missing.pt"),
    ("target-weights-overflow", ["sample", "--target", "{ws}/overflow.json", "--out", "{new}"], "error",
     "overflow.json': weights must have a finite sum"),
    ("target-weights-ratio", ["sample", "--target", "{ws}/ratio.json", "--out", "{new}"], "error",
     "ratio.json': weights at index [0] are 0"),
    ("target-weights-nan", ["sample", "--target", "{ws}/nan.json", "--out", "{new}"], "error",
     "nan.json': weights must be finite"),
    ("target-weights-inf", ["sample", "--target", "{ws}/inf.json", "--out", "{new}"], "error",
     "inf.json': weights must be finite"),
    ("target-weights-negative", ["sample", "--target", "{ws}/negative.json", "--out", "{new}"], "error",
     "negative.json': weights must be > 0"),
    ("target-means-huge", ["sample", "--target", "{ws}/huge_means.json", "--out", "{new}"], "error",
     "huge_means.json': means[0][0]"),
    ("target-no-covariances", ["sample", "--target", "{ws}/no_cov.json", "--out", "{new}"], "error",
     "no_cov.json': missing field 'covariances'"),
    ("target-empty-file", ["sample", "--target", "{ws}/empty.json", "--out", "{new}"], "error",
     "empty.json' is not valid JSON"),
    ("target-truncated", ["sample", "--target", "{ws}/cut.json", "--out", "{new}"], "error",
     "cut.json' is not valid JSON"),
    ("target-binary", ["sample", "--target", "{ws}/binary.json", "--out", "{new}"], "error", "not UTF-8"),
    ("target-folder", ["sample", "--target", "{ws}/folder.json", "--out", "{new}"], "error", "is a folder"),
    ("target-missing", ["sample", "--target", "{ws}/missing.json", "--out", "{new}"], "error", "missing.json"),
    ("target-unknown-name", ["sample", "--target", "rign", "--out", "{new}"], "error", "unknown target 'rign'"),
    ("out-is-a-file", [*VANILLA, "--out", "{ws}/notes.txt"], "error", "notes.txt"),
    ("finished-dlg-checkpoint-cut", [*DLG, "--out", "{ws}/dlg_cut"], "error", "checkpoint.pt: cannot be read"),
    ("finished-dlg-other-eta", [*DLG, "--eta", "0.02", "--out", "{dlg}"], "error", "dlg"),
    ("finished-vanilla-other-n", [*VANILLA[:-1], "--n", "30", "--quiet", "--out", "{run}"], "error", "run"),
    # a noise range far from the data's scale (issue 22): refused with the suggested range
    ("sigma-max-below-spread", ["sample", *RING, "--sigma-max", "0.02", "--out", "{new}"], "error",
     "--sigma-max 0.02 is below the data's spread (total standard deviation 2.97)"),
    ("sigma-range-at-the-mean", ["sample", *RING, "--sigma-min", "79.9", "--sigma-max", "80", "--out", "{new}"],
     "error", "every sample ends near the mean; a range that fits this target: [0.01, 80.3]"),
    ("dlg-sigma-max-below-spread", ["sample", *RING, "--dlg", "--sigma-max", "0.5", "--out", "{new}"], "error",
     "below the data's spread"),
    ("train-classifier-sigma-max-below-spread", ["train-classifier", *RING, "--sigma-max", "1", "--out",
                                                 "{new}/c.pt"], "error", "below the data's spread"),
    # a run far beyond the size check (issue 22): refused with the estimate, unless --yes
    ("n-huge", ["sample", *RING, "--n", "1000000000000", "--out", "{new}"], "error",
     "samples x 35 NFE x"),
    ("n-huge-dlg", ["sample", *RING, "--dlg", "--n", "1000000000000", "--out", "{new}"], "error",
     "pass --yes to run it anyway"),
    ("sample-mnist-n-huge", ["sample-mnist", "--n", "10000000", "--out", "{new}"], "error",
     "images x 15 NFE x"),
    ("sample-mnist-dlg-n-huge-with-budget", ["sample-mnist", "--dlg", "--n", "10000000", "--max-minutes", "1",
                                             "--out", "{new}"], "error", "more than 2 GB; lower --n, or pass --yes"),
    ("steps-huge", ["sample", *RING, "--n", "100000", "--steps", "10000000", "--out", "{new}"], "error",
     "more than 1 h"),
    # train-classifier
    ("train-classifier-steps-0", ["train-classifier", "--steps", "0", "--out", "{new}/c.pt"], "usage", "--steps"),
    ("train-classifier-n-levels-1", ["train-classifier", "--n-levels", "1", "--out", "{new}/c.pt"], "usage",
     "--n-levels"),
    ("train-classifier-sigma-order", ["train-classifier", "--sigma-min", "2", "--sigma-max", "1", "--out",
                                      "{new}/c.pt"], "error", "--sigma-min"),
    ("train-classifier-out-is-users-file", ["train-classifier", *CLF_ARGS, "--out", "{ws}/notes.txt"], "error",
     "notes.txt"),
    ("train-classifier-out-other-settings", ["train-classifier", *CLF_ARGS[:-1], "30", "--out", "{clf}"], "error",
     "clf.pt"),
    ("train-classifier-bad-target", ["train-classifier", "--target", "{ws}/overflow.json", "--out", "{new}/c.pt"],
     "error", "overflow.json"),
    # ladder
    ("ladder-unknown-integrator", ["ladder", "--integrators", "kar1,bogus", "--out", "{new}"], "usage",
     "known: " + ", ".join(INTEGRATORS)),
    ("ladder-repeated-integrator", ["ladder", "--integrators", "kar1,kar1", "--out", "{new}"], "usage", "repeated"),
    ("ladder-n-0", ["ladder", "--n", "0", "--out", "{new}"], "usage", "--n"),
    ("ladder-workers-0", ["ladder", "--workers", "0", "--out", "{new}"], "usage", "--workers"),
    ("ladder-n-not-multiple", ["ladder", "--n", "7", "--out", "{new}"], "error", "multiple of 20"),
    # sample-mnist
    ("sample-mnist-n-0", ["sample-mnist", "--n", "0", "--out", "{new}"], "usage", "--n"),
    ("sample-mnist-threads-negative", ["sample-mnist", "--threads", "-1", "--out", "{new}"], "usage", "--threads"),
    ("sample-mnist-max-minutes-0", ["sample-mnist", "--max-minutes", "0", "--out", "{new}"], "usage",
     "--max-minutes"),
    ("sample-mnist-eta-without-dlg", ["sample-mnist", "--eta", "0.1", "--out", "{new}"], "error",
     "only --dlg runs"),
    ("sample-mnist-weights-missing", ["sample-mnist", "--weights", "{ws}/no_weights", "--out", "{new}"], "error",
     "no_weights"),
    ("sample-mnist-weights-cut", ["sample-mnist", "--weights", "{ws}/weights_cut", "--out", "{new}"], "error",
     WEIGHT_FILES["score"] + ": cannot be read"),
    ("sample-mnist-config-broken", ["sample-mnist", "--weights", "{ws}/weights_badjson", "--out", "{new}"], "error",
     "mnist_score_unet.json: not valid JSON"),
    # the other train-* commands
    ("train-score-ema-decay-1", ["train-score", "--ema-decay", "1", "--out", "{new}"], "usage", "--ema-decay"),
    ("train-score-channels", ["train-score", "--channels", "24,0", "--out", "{new}"], "usage", "--channels"),
    ("train-score-lr-0", ["train-score", "--lr", "0", "--out", "{new}"], "usage", "--lr"),
    ("train-score-sigma-order", ["train-score", "--sigma-min", "30", "--out", "{new}"], "error", "--sigma-min"),
    ("train-mnist-classifier-exists", ["train-mnist-classifier", "--out", "{ws}/mnist_out"], "error", "mnist_out"),
    ("train-mnist-features-exists", ["train-mnist-features", "--out", "{ws}/mnist_out"], "error", "mnist_out"),
    ("train-image-classifier-exists", ["train-image-classifier", "--dataset", "folder", "--root", "{ws}/imgs",
                                       "--steps", "1", "--out", "{ws}/notes.txt"], "error", "notes.txt"),
    ("train-image-classifier-no-images", ["train-image-classifier", "--dataset", "folder", "--root", "{ws}/dlg",
                                          "--out", "{new}/c.pt"], "error", "no image files"),
    ("train-image-classifier-batch-0", ["train-image-classifier", "--dataset", "folder", "--root", "{ws}",
                                        "--batch-size", "0", "--out", "{new}/c.pt"], "usage", "--batch-size"),
    ("train-image-classifier-no-cifar", ["train-image-classifier", "--dataset", "cifar10", "--root", "{ws}/nothing",
                                         "--out", "{new}/c.pt"], "error", "CIFAR10 not found"),
    # save-images, fid, inspect-checkpoint
    ("save-images-empty-npy", ["save-images", "{ws}/empty.npy", "{new}"], "error", "empty.npy: cannot be read"),
    ("save-images-truncated-npy", ["save-images", "{ws}/cut.npy", "{new}"], "error", "cut.npy: cannot be read"),
    ("save-images-not-images", ["save-images", "{run}", "{new}"], "error", "images need [N, C, H, W]"),
    ("save-images-value-range", ["save-images", "{ws}/images.npy", "{new}", "--value-range", "1,0"], "usage",
     "--value-range"),
    ("save-images-limit-0", ["save-images", "{ws}/images.npy", "{new}", "--limit", "0"], "usage", "--limit"),
    ("fid-batch-size-0", ["fid", "{ws}", "{new}", "--batch-size", "0"], "usage", "--batch-size"),
    ("fid-weights-empty", ["fid", "{ws}", "{new}", "--inception-weights", "{ws}/empty.pt"], "error",
     "empty.pt: cannot be read"),
    ("fid-weights-cut", ["fid", "{ws}", "{new}", "--inception-weights", "{ws}/cut.pt"], "error",
     "cut.pt: cannot be read"),
    ("inspect-empty", ["inspect-checkpoint", "{ws}/empty.pt", "--config", "cifar10_ncsnpp_continuous"], "error",
     "empty.pt: cannot be read"),
    ("inspect-truncated", ["inspect-checkpoint", "{ws}/cut.pt", "--config", "cifar10_ncsnpp_continuous"], "error",
     "(empty or truncated file)"),
    ("inspect-unknown-config", ["inspect-checkpoint", "{ws}/incompatible.pth", "--config", "cifar11"], "error",
     "unknown config 'cifar11'"),
    ("inspect-broken-config", ["inspect-checkpoint", "{ws}/incompatible.pth", "--config",
                               "{ws}/broken_config.json"], "error", "broken_config.json: not valid JSON"),
    # sample-distributed (refused before any process group is set up)
    ("distributed-burn-in", ["sample-distributed", *RING, "--burn-in", "10:-1", "--out", "{new}"], "usage",
     "--burn-in"),
    ("distributed-tweedie-sigma", ["sample-distributed", *RING, "--tweedie-sigma", "-1", "--out", "{new}"], "usage",
     "--tweedie-sigma"),
    ("distributed-config-without-score-sde", ["sample-distributed", *RING, "--config", "cifar10_ncsnpp_continuous",
                                              "--out", "{new}"], "error", "--config is read only with --score-sde"),
    ("distributed-sigma-order", ["sample-distributed", *RING, "--sigma-min", "3", "--sigma-max", "2", "--out",
                                 "{new}"], "error", "--sigma-min"),
    # sample-distributed has sample's scale and size checks (issue 22), before any process group or file
    ("distributed-sigma-max-below-spread", ["sample-distributed", *RING, "--sigma-max", "0.5", "--out", "{new}"],
     "error", "--sigma-max 0.5 is below the data's spread (total standard deviation 2.97)"),
    ("distributed-run-huge", ["sample-distributed", *RING, "--chains", "100000000", "--out", "{new}"], "error",
     "outputs x 8, x"),
    # no command
    ("unknown-command", ["smaple", "--out", "{new}"], "usage", "invalid choice"),
]


@pytest.mark.parametrize("argv,kind,fragment", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_command_line(ws, capsys, argv, kind, fragment):
    root = Path(ws["ws"])
    before = _snapshot(root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([a.format(**ws) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = err.strip().splitlines()
    if kind == "usage":
        assert lines[0].startswith("usage:") and sum("error:" in ln for ln in lines) == 1, err
        assert "error: argument" in lines[-1] or "invalid choice" in lines[-1], err
        assert fragment in lines[-1], err
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert fragment in lines[0], err
    assert _snapshot(root) == before, "a refused command changed the workspace"


def test_the_cases_are_many_and_distinct():
    ids = [c[0] for c in CLI_CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40


def test_debug_shows_the_traceback(ws):
    for argv in (["--debug", "sample", "--target", "rign"], ["sample", "--target", "rign", "--debug"]):
        with pytest.raises(CommandError, match="unknown target"):
            main([*argv, "--out", ws["new"]])
    assert not Path(ws["new"]).exists()


def test_inspect_checkpoint_that_does_not_fit_exits_1(ws, capsys):
    rc = main(["inspect-checkpoint", f"{ws['ws']}/incompatible.pth", "--config", "cifar10_ncsnpp_continuous"])
    assert rc == 1 and "compatible:   NO" in capsys.readouterr().out


def test_n_levels_follow_the_classifier(ws, tmp_path):
    """Without --n-levels the classifier's grid is used, and run.json records it."""
    out = tmp_path / "with_clf"
    main(["sample", *RING, "--dlg", "--sigma-update", "classifier-argmax", "--classifier", ws["clf"], "--n", "10",
          "--chains", "5", "--steps", "2", "--out", str(out), "--quiet"])
    text = (out / "run.json").read_text()
    assert '"n_levels": 20' in text and '"n_levels": 1000' not in text and '"n_levels": null' not in text


# ----------------------------------------------------------------------------- the Python API


def _config(**kw):
    return lambda: DMCMCConfig(**kw).validate()


API_CASES = [
    ("config-eta-inf", _config(eta=math.inf), "eta"),
    ("config-eta-nan", _config(eta=math.nan), "eta"),
    ("config-sigma-max-inf", _config(sigma_max=math.inf), "sigma_max"),
    ("config-sigma-order", _config(sigma_min=2.0, sigma_max=1.0), "sigma_min"),
    ("config-init-kick-nan", _config(init_kick=math.nan), "init_kick"),
    ("config-init-kick-negative", _config(init_kick=-1.0), "init_kick"),
    ("config-tweedie-sigma-negative", _config(tweedie_sigma=-1.0), "tweedie_sigma"),
    ("config-x-update-unknown", _config(x_update="bogus"), "bogus"),
    ("config-sigma-update-unknown", _config(sigma_update="bogus"), "bogus"),
    ("config-n-levels-float", _config(n_levels=10.5), "n_levels"),
    ("config-steps-bool", _config(steps=True), "steps"),
    ("config-chains-0", _config(n_chains=0), "n_chains"),
    ("mixture-weights-overflow", lambda: GaussianMixture([1e308, 1e308], _MEANS, _COV), "finite sum"),
    ("mixture-weights-underflow", lambda: GaussianMixture.from_dict(json.loads(BAD_TARGETS["ratio.json"])),
     "0 after normalisation"),
]


@pytest.mark.parametrize("call,match", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_python_api_values(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name,match", [("overflow.json", "weights must have a finite sum"),
                                        ("huge_means.json", r"means\[0\]\[0\]"),
                                        ("binary.json", "not valid JSON"),
                                        ("empty.json", "not valid JSON")])
def test_load_target_names_the_file_and_the_field(ws, name, match):
    with pytest.raises(ValueError, match=match) as exc:
        load_target(f"{ws['ws']}/{name}")
    assert name in str(exc.value)


@pytest.mark.parametrize("loader", [NoiseLevelClassifier.load, load_denoiser, safe_load_checkpoint,
                                    lambda p: load_score_sde(p, "cifar10_ncsnpp_continuous")],
                         ids=["classifier", "denoiser", "score_sde_checkpoint", "score_sde"])
@pytest.mark.parametrize("name", ["empty.pt", "cut.pt", "garbage.pt"])
def test_weight_loaders_name_an_empty_or_truncated_file(ws, loader, name):
    path = f"{ws['ws']}/{name}"
    with pytest.raises(ValueError, match=r"\(empty or truncated file\)") as exc:
        loader(path)
    assert str(exc.value).startswith(path)


def test_score_model_loader_names_a_truncated_file(ws):
    path = Path(ws["ws"]) / "weights_cut" / WEIGHT_FILES["score"]
    with pytest.raises(ValueError, match=r"\(empty or truncated file\)") as exc:
        load_score_model(path)
    assert str(exc.value).startswith(str(path))


def test_config_loader_names_a_broken_json_file(ws):
    with pytest.raises(ValueError, match="broken_config.json: not valid JSON"):
        resolve_config(f"{ws['ws']}/broken_config.json")


# ----------------------------------------------------------------------------- issue 22: the API as strict as the CLI


class _NotATensor:
    """A class a pickled weight file may carry: torch's weights_only loader refuses it."""


def _dlg_grid():
    from dmcmc_edu.core.schedules import noise_level_grid

    return noise_level_grid(0.01, 10.0, 20)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_dlg_init_refuses_a_sigma_that_is_not_a_noise_level(bad):
    from dmcmc_edu.core.dlg import dlg_init, dlg_kernel
    from dmcmc_edu.core.sigma_updates import make_sigma_update

    x, grid = torch.zeros(3, 2), _dlg_grid()
    with pytest.raises(ValueError, match=r"^index_or_sigma: noise levels must be finite and > 0; chain\(s\) \[1\]"):
        dlg_init(x, torch.tensor([1.0, bad, 2.0]), grid)
    with pytest.raises(ValueError, match=r"^index_or_sigma: noise levels must be finite and > 0"):
        dlg_init(x, bad, grid)  # one level for every chain
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    kernel = dlg_kernel(mix, make_sigma_update("exact", model=mix), grid, eta=0.01)
    with pytest.raises(ValueError, match=r"^sigma_or_index: noise levels must be finite and > 0"):
        kernel.init(x, torch.tensor([bad, 1.0, 1.0]))
    assert dlg_init(x, torch.tensor([1.0, 0.01, 10.0]), grid).index.tolist() == [
        int((grid - 1.0).abs().argmin()), 19, 0]  # finite levels are still snapped


def test_run_chunks_names_an_nfe_record_that_holds_a_list(tmp_path):
    from dmcmc_edu.runs import run_chunks

    folder = tmp_path / "chunks"
    folder.mkdir()
    (folder / "nfe.json").write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match=r"nfe\.json: is not the chunks' NFE record .*found a list") as exc:
        run_chunks(folder, 4, 2, lambda k, rows: (np.zeros((rows, 2)), 1.0), progress=False)
    assert str(folder / "nfe.json") in str(exc.value) and "\n" not in str(exc.value)
    (folder / "nfe.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"nfe\.json: cannot be read"):
        run_chunks(folder, 4, 2, lambda k, rows: (np.zeros((rows, 2)), 1.0), progress=False)


def test_sample_names_a_corrupt_nfe_record(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "chunks").mkdir(parents=True)
    args = [*VANILLA, "--out", str(out)]
    with pytest.raises(SystemExit):  # the folder holds files but no record: refused before chunks are read
        main(args)
    capsys.readouterr()
    (out / "chunks").rmdir()
    main(args)  # a finished run; now damage its NFE record and make the samples again
    (out / "samples.npy").unlink()
    (out / "chunks" / "nfe.json").write_text("[]")
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "nfe.json: is not the chunks' NFE record" in err[0], err


@pytest.mark.parametrize("content,match", [({"sigma": np.eye(3)}, "has no 'mu'"),
                                           ({"mu": np.zeros(3)}, "has no 'sigma'"),
                                           ({"mu": np.zeros(3), "sigma": np.eye(2)}, "shape")])
def test_fid_statistics_without_mu_are_named(tmp_path, capsys, content, match):
    stats = tmp_path / "stats.npz"
    np.savez(stats, **content)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(imgs / f"{i}.png")
    from dmcmc_edu.evaluation.inception_fid import compute_fid

    with pytest.raises(ValueError, match=match) as exc:
        compute_fid(imgs, stats)  # refused before any network is built
    assert str(exc.value).startswith(str(stats)) and "\n" not in str(exc.value)
    with pytest.raises(SystemExit) as exit_:
        main(["fid", str(imgs), str(stats)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {stats}: ") and match in err[0], err


@pytest.fixture(scope="module")
def pickled(tmp_path_factory):
    """A torch file that holds an object of a class (torch's weights_only loader refuses it)."""
    path = tmp_path_factory.mktemp("pickled") / "evil.pt"
    torch.save({"state_dict": {}, "extra": _NotATensor()}, path)
    return path


def _beside(json_text):
    """A loader that first writes the JSON record its weights need beside them (each loader its own copy)."""

    def wrap(load):
        def call(path):
            copy = Path(path).with_name(f"{load.__name__}.pt")
            shutil.copy(path, copy)
            copy.with_suffix(".json").write_text(json_text())
            return load(copy)

        call.copy_name = f"{load.__name__}.pt"
        return call

    return wrap


def _loaders():
    from dmcmc_edu.evaluation.mnist_fid import load_feature_net, load_reference

    score_json = (default_weights_dir() / Path(WEIGHT_FILES["score"]).with_suffix(".json")).read_text
    return [NoiseLevelClassifier.load, load_denoiser, safe_load_checkpoint, load_reference,
            _beside(score_json)(load_score_model), _beside(lambda: json.dumps({"arch_kwargs": {}}))(load_feature_net)]


@pytest.mark.parametrize("loader", _loaders(),
                         ids=["classifier", "denoiser", "score_sde_checkpoint", "reference", "unet", "feature_net"])
def test_a_refused_pickle_names_the_file_and_never_suggests_weights_only_false(pickled, loader):
    with pytest.raises(ValueError) as exc:
        loader(pickled)
    text = str(exc.value)
    name = pickled.with_name(getattr(loader, "copy_name", pickled.name))
    assert text.startswith(str(name)) and "refused" in text and "\n" not in text, text
    assert "weights_only=False" not in text.replace(" ", "") and "`False`" not in text, text


def test_a_refused_pickle_in_the_cli_is_one_line(ws, pickled, capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--dlg", "--sigma-update", "classifier-argmax", "--classifier", str(pickled), "--n", "10",
              "--chains", "5", "--out", ws["new"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "False" not in err[0], err
    assert err[0].startswith(f"error: {pickled}: refused by torch.load(weights_only=True) -- "), err


def test_the_size_check_prints_the_estimate_and_a_confirmed_run_passes():
    from dmcmc_edu.cli.common import check_run_size

    with pytest.raises(CommandError, match=r"estimated at 450,000 h and 0.001 GB on disk \(how\), more than 1 h;"):
        check_run_size(450_000 * 3600.0, 1e6, "how", confirmed=False)
    with pytest.raises(CommandError, match=r"more than 2 GB; lower --n, or pass --yes"):
        check_run_size(10.0, 3e9, "how", confirmed=False)
    check_run_size(450_000 * 3600.0, 3e9, "how", confirmed=True)
    check_run_size(3000.0, 1e9, "how", confirmed=False)  # under both thresholds


def test_a_doubtful_sigma_range_is_warned_about_and_runs(tmp_path, capsys):
    assert main([*VANILLA, "--sigma-min", "1", "--sigma-max", "9", "--out", str(tmp_path / "narrow")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err), err
    assert "finest scale" in err[0] and "less than a factor 10" in err[1] and "[0.01, 80.3]" in err[1]
    assert main([*VANILLA, "--out", str(tmp_path / "default")]) == 0
    assert capsys.readouterr().err == ""  # the target's own range: no word


def test_sample_distributed_has_the_size_and_scale_checks_of_sample(tmp_path, capsys):
    """A too-large run is refused with one line naming the estimate and --yes; a doubtful sigma range is warned
    about as by sample (the same functions: common.check_run_size, common.check_scale)."""
    with pytest.raises(SystemExit) as exc:
        main(["sample-distributed", *RING, "--chains", "100000000", "--out", str(tmp_path / "huge")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: this run is estimated at ") and "GB on disk" in err[0], err
    assert "lower --chains or --outputs-per-chain, or pass --yes to run it anyway" in err[0], err
    assert not (tmp_path / "huge").exists()
    tiny = ["sample-distributed", *RING, "--chains", "4", "--outputs-per-chain", "1", "--steps", "2", "--init-steps",
            "2", "--burn-in", "2:", "--eta", "0.01", "--quiet"]
    assert main([*tiny, "--sigma-max", "5", "--out", str(tmp_path / "narrow")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: --sigma-max 5 is less than 3 times the data's spread"), err
    assert (tmp_path / "narrow" / "manifest.json").is_file()


def test_the_python_api_checks_the_sigma_range_in_the_same_place():
    from dmcmc_edu.targets import SigmaScaleWarning, check_sigma_scale, dlg_config, ring

    mix = ring()
    with pytest.raises(ValueError, match=r"^sigma_max 0.02 is below the data's spread .*\[0.01, 80.3\]"):
        check_sigma_scale(0.01, 0.02, mix)
    with pytest.raises(ValueError, match=r"^sigma_min 79.9 is at or above the data's spread"):
        dlg_config(mix, 100, sigma_min=79.9, sigma_max=80.0)
    with pytest.raises(ValueError, match="sigma_max 0.02"):
        dlg_config(mix, 100, sigma_max=0.02)
    with pytest.warns(SigmaScaleWarning, match="less than 3 times the data's spread"):
        dlg_config(mix, 100, sigma_max=5.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dlg_config(mix, 100)  # the defaults fit


def test_a_run_checkpoint_that_is_a_refused_pickle_is_named(pickled):
    from dmcmc_edu.runs import _load_checkpoint

    with pytest.raises(ValueError, match=r"refused by torch.load\(weights_only=True\)") as exc:
        _load_checkpoint(pickled)
    assert str(exc.value).startswith(str(pickled)) and "False" not in str(exc.value)
