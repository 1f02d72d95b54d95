"""Image export the paper's way (clamp, truncate, JPEG) or as PNG, and FID through pytorch-fid's real code path.

The FID tests use a random-weight FID Inception state dict written to tmp_path
(pytorch-fid's own architecture), passed as --inception-weights: no network.
"""

from __future__ import annotations

import io
import json
import sys
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from dmcmc_edu.evaluation.images import list_images, load_images, save_images, to_uint8

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- images


def test_to_uint8_clamps_and_truncates():
    x = torch.tensor([-0.5, 0.0, 0.5, 0.999, 1.0, 1.7, 1 / 255 - 1e-9, 2 / 255], dtype=torch.float64)
    img = to_uint8(x.reshape(1, 1, 1, -1))
    assert img.shape == (1, 1, 8, 1) and img.dtype == np.uint8
    assert img.ravel().tolist() == [0, 0, 127, 254, 255, 255, 0, 2]  # floor(255 x), not round
    img11 = to_uint8(torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3), value_range=(-1, 1))
    assert img11.ravel().tolist() == [0, 127, 255]
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        to_uint8(torch.zeros(3, 2, 2))


def test_png_is_lossless_and_names_are_indexed(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 8, 8, generator=g) * 1.2 - 0.1
    paths = save_images(x, tmp_path / "png", start_index=10)
    assert [p.name for p in paths] == [f"{i:06d}.png" for i in range(10, 15)]
    back = (load_images(tmp_path / "png") * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(back, to_uint8(x))
    with pytest.raises(FileExistsError, match="start_index"):
        save_images(x[:1], tmp_path / "png", start_index=12)
    assert not [p for p in (tmp_path / "png").iterdir() if p.name.startswith(".")]  # no temp files left


def test_jpeg_is_the_papers_file(tmp_path):
    """format='jpeg' writes exactly what the authors' code writes: PIL's default JPEG of floor(255 clamp(x))."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=g)
    paths = save_images(x, tmp_path, format="jpeg")
    assert [p.suffix for p in paths] == [".jpg", ".jpg"]
    ref = io.BytesIO()
    Image.fromarray((255 * x[0].clamp(0, 1).permute(1, 2, 0).numpy()).astype(np.uint8)).save(ref, format="JPEG")
    assert paths[0].read_bytes() == ref.getvalue()
    assert list_images(tmp_path) == paths


def test_grayscale_images(tmp_path):
    save_images(torch.rand(2, 1, 8, 8), tmp_path)
    assert load_images(tmp_path).shape == (2, 3, 8, 8)  # read back as RGB, as pytorch-fid does


# ----------------------------------------------------------------------------- FID

pytest.importorskip("pytorch_fid", reason="optional extra 'fid' not installed (pip install 'dmcmc_edu[fid]')")

from dmcmc_edu.cli import main as cli_main  # noqa: E402
from dmcmc_edu.evaluation import inception_fid  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return inception_fid.save_random_inception_weights(tmp_path_factory.mktemp("w") / "fid_inception_random.pth")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folders of 20 small images from different distributions (smooth blobs vs. bright noise)."""
    root = tmp_path_factory.mktemp("imgs")
    g = torch.Generator().manual_seed(2)
    a = torch.nn.functional.interpolate(torch.rand(20, 3, 4, 4, generator=g), size=16, mode="bilinear")
    b = 0.5 + 0.5 * torch.rand(20, 3, 16, 16, generator=g)
    save_images(a, root / "a")
    save_images(b, root / "b")
    return root / "a", root / "b"


def test_random_weights_have_pytorch_fids_layout(weights):
    state = torch.load(weights, weights_only=True)
    assert "Conv2d_1a_3x3.conv.weight" in state and "Mixed_7c.branch_pool.conv.weight" in state
    assert state["fc.weight"].shape == (1008, 2048)


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning", "ignore:Matrix is singular")
def test_fid_same_folder_is_zero_and_different_folders_positive(tmp_path, capsys, weights, folders):
    a, b = folders
    stats = inception_fid.save_fid_stats(a, tmp_path / "a.npz", inception_weights=weights, dims=64, batch_size=20)
    with np.load(stats) as f:
        assert f["mu"].shape == (64,) and f["sigma"].shape == (64, 64)
    with pytest.raises(FileExistsError):
        inception_fid.save_fid_stats(a, stats, inception_weights=weights, dims=64)
    same = inception_fid.compute_fid(a, stats, inception_weights=weights, dims=64, batch_size=20)
    # through the command line: folder B against the statistics of A
    capsys.readouterr()
    rc = cli_main(["fid", str(b), str(stats), "--inception-weights", str(weights), "--dims", "64",
                   "--batch-size", "20", "--device", "cpu"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["dims"] == 64
    # random Inception weights: the scale of the values is arbitrary, their order is not
    assert abs(same) < 1e-6 * out["fid"] + 1e-9 or abs(same) < 1e-4
    assert out["fid"] > 1e-3 and out["fid"] > 100 * abs(same)


def test_no_network_gives_instructions(monkeypatch, tmp_path, folders):
    import pytorch_fid.inception

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", offline)
    with pytest.raises(inception_fid.InceptionWeightsUnavailable) as info:
        inception_fid.build_fid_inception(64)
    msg = str(info.value)
    assert inception_fid.FID_WEIGHTS_FILENAME in msg and "--inception-weights" in msg
    assert str(inception_fid.default_weights_path().parent) in msg
    a, b = folders
    with pytest.raises(SystemExit, match="pt_inception-2015-12-05"):
        cli_main(["fid", str(a), str(b), "--dims", "64"])


def test_fid_argument_errors(tmp_path, weights, folders):
    a, _ = folders
    with pytest.raises(FileNotFoundError, match="inception-weights"):
        inception_fid.build_fid_inception(64, inception_weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="dims"):
        inception_fid.build_fid_inception(100)
    (tmp_path / "one").mkdir()
    save_images(torch.rand(1, 3, 8, 8), tmp_path / "one")
    with pytest.raises(SystemExit, match="at least 2"):
        cli_main(["fid", str(a), str(tmp_path / "one"), "--inception-weights", str(weights), "--dims", "64"])


def test_missing_pytorch_fid_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    with pytest.raises(ImportError, match=r"dmcmc_edu\[fid\]"):
        inception_fid.require_pytorch_fid()
