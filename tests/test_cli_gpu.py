"""The GPU rung's sub-commands on CPU: train-image-classifier (tiny folder, 2 steps), save-images, bench --smoke."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dmcmc_edu.cli import main as cli_main
from dmcmc_edu.cli.gpu import EpochSampler, load_image_dataset
from dmcmc_edu.evaluation.images import list_images
from dmcmc_edu.models.classifier import NoiseLevelClassifier, SimpleCNN, SimpleCNN256

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_folder(tmp_path):
    """Six random RGB images of mixed sizes in an ImageFolder-like layout (two class sub-folders)."""
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(40, 30), (32, 32), (50, 64), (32, 40), (64, 64), (33, 35)]):
        sub = tmp_path / "imgs" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    return tmp_path / "imgs"


@pytest.mark.parametrize("size,arch,smax", [(32, SimpleCNN, 50.0), (256, SimpleCNN256, 348.0)])
def test_train_image_classifier_on_a_folder(tmp_path, capsys, fake_folder, size, arch, smax):
    out = tmp_path / "clf.pt"
    rc = cli_main(["train-image-classifier", "--dataset", "folder", "--root", str(fake_folder), "--out", str(out),
                   "--image-size", str(size), "--steps", "2", "--batch-size", "4", "--device", "cpu", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["images"] == 6 and summary["architecture"] == arch.__name__
    clf = NoiseLevelClassifier.load(out)
    assert isinstance(clf.net, arch) and clf.n_levels == 1000 and clf.input_shape == (3, size, size)
    assert clf.grid[0].item() == pytest.approx(smax) and clf.config["sigma_min"] == 0.01
    assert clf.config["dataset"] == "folder" and clf.config["steps"] == 2


def test_folder_images_are_resized_and_cropped(fake_folder):
    data = load_image_dataset("folder", fake_folder, 32)
    assert data.shape == (6, 3, 32, 32) and data.dtype == torch.uint8


def test_epoch_sampler_uses_every_image_once_per_epoch():
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    sampler = EpochSampler(images)
    g = torch.Generator().manual_seed(0)
    first = torch.cat([sampler(4, g), sampler(4, g), sampler(2, g)])[:, 0, 0, 0] * 255
    assert sorted(first.round().long().tolist()) == list(range(10))
    assert sampler(3, g).shape == (3, 3, 2, 2)


def test_missing_cifar10_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="CIFAR10 not found"):
        cli_main(["train-image-classifier", "--dataset", "cifar10", "--root", str(tmp_path), "--out",
                  str(tmp_path / "c.pt"), "--steps", "1"])


def test_save_images_command(tmp_path, capsys):
    x = np.random.default_rng(1).uniform(-1, 1, (3, 3, 8, 8))
    np.save(tmp_path / "samples.npy", x)
    rc = cli_main(["save-images", str(tmp_path / "samples.npy"), str(tmp_path / "jpg"), "--format", "jpeg",
                   "--value-range=-1,1"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["images"] == 3
    assert [p.name for p in list_images(tmp_path / "jpg")] == ["000000.jpg", "000001.jpg", "000002.jpg"]


def test_gpu_bench_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_throughput.py"), str(tmp_path), "--smoke",
                           "--bf16"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_throughput.json").read_text())
    assert set(res["models"]) == {"cifar10", "celebahq"} and res["smoke"]
    for r in res["models"].values():
        assert {v["method"] for v in r["vanilla"]} == {"kar1", "kar2"} and any(v["bf16"] for v in r["vanilla"])
        assert r["dlg"][0]["nfe_paper"] == pytest.approx(1 + 3 + 1)
        assert 0 < r["gibbs_step"]["classifier_share"] < 1
        assert r["gibbs_step"]["kernel_seconds_per_step"] > 0  # the kernel built once, timed beside dlg_step
    assert (tmp_path / "gpu_throughput.png").stat().st_size > 0
