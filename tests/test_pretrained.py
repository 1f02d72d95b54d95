"""Tests for the clean-room NCSN++ and the score_sde checkpoint loader.

Fixtures (``tests/fixtures/score_sde``) were produced with the public reference
code (yang-song/score_sde_pytorch) on random weights: two manifests describing
the full-size paper models, and two tiny checkpoints with reference outputs.
Tolerances follow the fixtures' README: per sigma slice, a float32 run must be
within ``1e-4 * max|ref|`` of the float64 reference, a float64 run within
``1e-10 * max|ref|``.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dmcmc_edu.core.contract import CountingDenoiser, score_from_denoiser
from dmcmc_edu.models.ncsnpp import (
    BigGANResBlock,
    FIRConvDownsample,
    GaussianFourierFeatures,
    NCSNpp,
    NCSNppConfig,
    PyramidCombine,
    SelfAttentionBlock,
    fir_downsample_2x,
    fir_upsample_2x,
)
from dmcmc_edu.models.score_sde import (
    NUMPY_SAFE_GLOBALS,
    PRESETS,
    CheckpointError,
    CheckpointMismatchError,
    ScoreSDEDenoiser,
    build_ncsnpp,
    format_inspection,
    inspect_checkpoint,
    load_score_sde,
    resolve_config,
    safe_load_checkpoint,
)

FIX = Path(__file__).parent / "fixtures" / "score_sde"
PRESET_MANIFESTS = {
    "cifar10_ncsnpp_continuous": "manifest_cifar10_ncsnpp_continuous.json",
    "celebahq_256_ncsnpp_continuous": "manifest_celebahq_256_ncsnpp_continuous.json",
}
VARIANTS = ["tiny_cifar10_ncsnpp_continuous", "tiny_celebahq_ncsnpp_continuous"]
REF_CLASSES = {
    "GaussianFourierProjection": GaussianFourierFeatures,
    "Linear": nn.Linear,
    "Conv2d": nn.Conv2d,
    "GroupNorm": nn.GroupNorm,
    "ResnetBlockBigGANpp": BigGANResBlock,
    "AttnBlockpp": SelfAttentionBlock,
    "Downsample": FIRConvDownsample,
    "Combine": PyramidCombine,
}


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=None)
def _json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _manifest(preset: str) -> dict:
    return _json(str(FIX / PRESET_MANIFESTS[preset]))


def _tiny_config(variant: str) -> dict:
    return _json(str(FIX / variant / "config.json"))


def _ckpt_path(variant: str) -> Path:
    return FIX / variant / "checkpoint.pth"


@functools.lru_cache(maxsize=None)
def _reference(variant: str) -> dict:
    return torch.load(FIX / variant / "reference.pt", weights_only=True)


@functools.lru_cache(maxsize=None)
def _model(variant: str, dtype: torch.dtype = torch.float32, use_ema: bool = True) -> ScoreSDEDenoiser:
    return load_score_sde(_ckpt_path(variant), FIX / variant / "config.json", use_ema=use_ema, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _perturbed_out(variant: str, use_ema: bool = True) -> torch.Tensor:
    """float32 network output on the reference's perturbed batch (one sigma per sample)."""
    ref = _reference(variant)
    with torch.no_grad():
        return _model(variant, torch.float32, use_ema).net(ref["x_perturbed"], ref["sigmas"])


def _state_dict_listing(net: nn.Module, prefix: str = "module.") -> list[tuple]:
    params = dict(net.named_parameters())
    rows = []
    for name, t in net.state_dict(keep_vars=True).items():
        is_param = name in params
        rows.append((prefix + name, list(t.shape), str(t.dtype).replace("torch.", ""),
                     "parameter" if is_param else "buffer", params[name].requires_grad if is_param else None))
    return rows


def _manifest_listing(entries: list[dict]) -> list[tuple]:
    return [(e["name"], e["shape"], e["dtype"], e["kind"], e["requires_grad"]) for e in entries]


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).abs().max() / ref.double().abs().max())


def _assert_slice_close(out: torch.Tensor, ref: torch.Tensor, rel: float, what: str) -> None:
    """README tolerance: max|out - ref| <= rel * max|ref| (plus rtol=rel elementwise), on one sigma slice."""
    ref = ref.double()
    torch.testing.assert_close(out.double(), ref, rtol=rel, atol=rel * float(ref.abs().max()), msg=what)


# --------------------------------------------------------------------------- architecture vs manifests


@pytest.mark.parametrize("preset", sorted(PRESET_MANIFESTS))
def test_preset_state_dict_matches_manifest(preset):
    man = _manifest(preset)
    net = build_ncsnpp(preset, device="meta")
    assert _state_dict_listing(net) == _manifest_listing(man["state_dict"])  # keys, shapes, dtypes, order
    assert len(net.state_dict()) == man["num_state_dict_entries"]
    assert sum(p.numel() for p in net.parameters()) == man["total_parameter_count"]
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == man["trainable_parameter_count"]
    trainable = ["module." + n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == man["ema_shadow_param_names_in_order"]
    assert len(trainable) == man["num_trainable_parameter_tensors"]
    assert ["module." + n for n, p in net.named_parameters() if not p.requires_grad] == man["nontrainable_parameters"]
    # the preset carries the manifest's configuration values
    for dotted, value in man["config"].items():
        section, key = dotted.split(".")
        if section in PRESETS[preset] and key in PRESETS[preset][section]:
            assert PRESETS[preset][section][key] == value, dotted


@pytest.mark.parametrize("preset", sorted(PRESET_MANIFESTS))
def test_preset_layers_and_shapes_match_manifest(preset):
    """Per all_modules index: layer type, channels, resampling flags, GroupNorm groups and (meta) output shapes."""
    man = _manifest(preset)
    net = build_ncsnpp(preset, device="meta").eval()
    assert len(net.all_modules) == len(man["all_modules"])
    seen: dict[int, tuple] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, tuple(out.shape)))
             for i, m in enumerate(net.all_modules)]
    c, h, w = net.config.image_shape
    out = net(torch.empty(1, c, h, w, device="meta"), torch.empty(1, device="meta"))
    for hook in hooks:
        hook.remove()
    assert list(out.shape) == man["output_shape_batch1"]
    for row in man["all_modules"]:
        i, mod = row["index"], net.all_modules[row["index"]]
        assert isinstance(mod, REF_CLASSES[row["class"]]), (i, row["class"], type(mod))
        assert list(seen[i]) == row["forward_output_shape_batch1"], i
        if row["class"] == "ResnetBlockBigGANpp":
            assert (mod.in_ch, mod.out_ch, mod.up, mod.down, mod.Conv_2 is not None) == (
                row["in_ch"], row["out_ch"], row["up"], row["down"], row["has_Conv_2"]), i
            assert (mod.GroupNorm_0.num_groups, mod.GroupNorm_1.num_groups) == (
                row["GroupNorm_0_groups"], row["GroupNorm_1_groups"]), i
        elif row["class"] == "AttnBlockpp":
            assert mod.GroupNorm_0.num_groups == row["GroupNorm_0_groups"], i
        elif row["class"] == "GroupNorm":
            assert (mod.num_groups, mod.eps) == (row["num_groups"], row["eps"]), i


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_config_state_dict_matches_config_json(variant):
    cj = _tiny_config(variant)
    net = build_ncsnpp(FIX / variant / "config.json", device="meta")
    assert net.config.image_size == cj["key_config"]["data.image_size"]
    assert _state_dict_listing(net) == _manifest_listing(cj["state_dict"])
    assert ["module." + n for n, p in net.named_parameters() if p.requires_grad] == cj[
        "ema_shadow_param_names_in_order"]
    assert sum(p.numel() for p in net.parameters()) == cj["checkpoint"]["total_parameter_count"]
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == cj["checkpoint"][
        "trainable_parameter_count"]


# --------------------------------------------------------------------------- numerics vs reference outputs


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_outputs_float32(variant):
    ref, model = _reference(variant), _model(variant, torch.float32)
    net = model.net
    x, sig = ref["x"], ref["sigmas"]
    n = x.shape[0]
    # one batch: every (sigma_i, x_j) pair, then the score_fn call (x_perturbed at sigma(t))
    sigma_t = model.sigma_min * (model.sigma_max / model.sigma_min) ** ref["score_fn_t"].double()
    torch.testing.assert_close(sigma_t.float(), ref["score_fn_labels_sigma"].float())
    xs = torch.cat([x.repeat(len(sig), 1, 1, 1), ref["x_perturbed"]])
    ss = torch.cat([sig.repeat_interleave(n), ref["score_fn_labels_sigma"].float()])
    with torch.no_grad():
        out = net(xs, ss)
        feats, temb = net.noise_embedding(sig)
    per_sigma = out[: len(sig) * n].reshape(len(sig), n, *x.shape[1:])
    for i in range(len(sig)):
        _assert_slice_close(per_sigma[i], ref["out_per_sigma_float64"][i], 1e-4, f"sigma={float(sig[i])}")
    score_fn = out[len(sig) * n:]
    perturbed = _perturbed_out(variant)
    for j in range(n):  # each sample has its own sigma: compare per sample
        _assert_slice_close(perturbed[j], ref["out_perturbed_float64"][j], 1e-4, f"perturbed sample {j}")
        _assert_slice_close(score_fn[j], ref["out_score_fn_float32"][j], 1e-4, f"score_fn sample {j}")
    _assert_slice_close(feats, ref["fourier_features_float64"], 1e-4, "fourier features")
    _assert_slice_close(temb, ref["temb_float64"], 1e-4, "temb")


@pytest.mark.parametrize("variant", VARIANTS)
def test_reference_outputs_float64(variant):
    ref, model = _reference(variant), _model(variant, torch.float64)
    assert model.net.sigmas.dtype == torch.float64 and model.net.all_modules[1].weight.dtype == torch.float64
    x, sig, n = ref["x"].double(), ref["sigmas"].double(), ref["x"].shape[0]
    # the mixed-sigma call on x equals the diagonal of the per-sigma outputs (README)
    with torch.no_grad():
        out = model.net(torch.cat([x, ref["x_perturbed"].double()]), torch.cat([sig, sig]))
        feats, temb = model.net.noise_embedding(sig)
    for j in range(n):
        _assert_slice_close(out[j], ref["out_per_sigma_float64"][j, j], 1e-10, f"diagonal {j}")
        _assert_slice_close(out[n + j], ref["out_perturbed_float64"][j], 1e-10, f"perturbed sample {j}")
    _assert_slice_close(feats, ref["fourier_features_float64"], 1e-10, "fourier features")
    _assert_slice_close(temb, ref["temb_float64"], 1e-10, "temb")


@pytest.mark.parametrize("variant", VARIANTS)
def test_negative_control_raw_weights(variant):
    """Without the EMA the output is the README's negative control, clearly away from the EMA reference."""
    ref = _reference(variant)
    out_raw, out_ema = _perturbed_out(variant, use_ema=False), _perturbed_out(variant)
    for j in range(out_raw.shape[0]):
        _assert_slice_close(out_raw[j], ref["out_perturbed_raw_model_weights_float32"][j], 1e-4, f"raw {j}")
    assert _rel_err(out_raw, ref["out_perturbed_float64"]) > 0.3  # README: 0.69 (CIFAR), 1.19 (CelebA)
    assert _rel_err(out_ema, ref["out_perturbed_raw_model_weights_float32"]) > 0.3
    with pytest.raises(AssertionError):
        _assert_slice_close(out_raw, ref["out_perturbed_float64"], 1e-4, "negative control must fail")


# --------------------------------------------------------------------------- the D(x, sigma) contract


def test_denoiser_contract_per_sample_sigma():
    variant = "tiny_cifar10_ncsnpp_continuous"
    ref, model = _reference(variant), _model(variant, torch.float32)
    assert isinstance(model, nn.Module) and not model.training and not model.net.training
    assert (model.sigma_min, model.sigma_max, model.image_shape) == (0.01, 50.0, (3, 32, 32))
    assert not model.net.all_modules[0].W.requires_grad
    xp, sig = ref["x_perturbed"], ref["sigmas"]
    counter = CountingDenoiser(model, n_samples=xp.shape[0])
    with torch.no_grad():
        d = counter(xp, sig)
        d_expected = xp.double() + sig.double().reshape(-1, 1, 1, 1) ** 2 * ref["out_perturbed_float64"]
        for j in range(xp.shape[0]):  # D = x + sigma^2 * score, each sample at its own sigma
            _assert_slice_close(d[j], d_expected[j], 1e-4, f"D sample {j}")
        assert d.shape == xp.shape and d.dtype == xp.dtype and counter.nfe == 1
        # per-sample sigma really is per sample: row 1 alone gives the same result
        d1 = model(xp[1:2], sig[1:2])
        _assert_slice_close(d1[0], d[1], 1e-5, "batch independence")
        # Tweedie round trip, and a Python float sigma broadcast to the batch
        s = score_from_denoiser(model)(xp[:1], sig[:1])
        _assert_slice_close(s[0], ref["out_perturbed_float64"][0], 1e-3, "score from D")
        assert model(xp[2:3], float(sig[2])).shape == (1, 3, 32, 32)
        _assert_slice_close(model.score(xp[2:3], sig[2:3])[0], ref["out_perturbed_float64"][2], 1e-4, "score")
    with pytest.raises(ValueError, match="shape"):
        model(xp, sig[:2])
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        model(torch.zeros(2, 3, 16, 16), torch.ones(2))
    with pytest.raises(ValueError, match="> 0"):
        model(xp[:2], torch.tensor([0.5, -1.0]))


def test_fir_resampling_shapes_and_constants():
    x = torch.ones(2, 3, 4, 4, dtype=torch.float64)
    up, down = fir_upsample_2x(x), fir_downsample_2x(x)
    assert up.shape == (2, 3, 8, 8) and down.shape == (2, 3, 2, 2)
    # interior of a constant image stays constant (zero padding only affects the border)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones_like(up[..., 2:-2, 2:-2]))
    assert fir_upsample_2x(torch.ones(1, 1, 1, 1)).shape == (1, 1, 2, 2)
    assert fir_downsample_2x(torch.ones(1, 1, 2, 2)).shape == (1, 1, 1, 1)


# --------------------------------------------------------------------------- safe loading


class _Trap:
    """Pickles as a call to :func:`_spring`; loading it must never run that call."""

    def __reduce__(self):
        return (_spring, ("loaded",))


_SPRUNG: list = []


def _spring(tag):
    _SPRUNG.append(tag)
    return tag


def test_arbitrary_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "ema": {}, "step": 0, "payload": _Trap()}, path)
    before = list(torch.serialization.get_safe_globals())
    with pytest.raises(CheckpointError, match="weights_only"):
        load_score_sde(path, "cifar10_ncsnpp_continuous")
    with pytest.raises(CheckpointError):
        inspect_checkpoint(path, "cifar10_ncsnpp_continuous")
    assert _SPRUNG == []
    assert list(torch.serialization.get_safe_globals()) == before  # the allow-list does not leak


def test_numpy_scalar_in_optimizer_needs_exactly_the_allow_list():
    cifar = _ckpt_path("tiny_cifar10_ncsnpp_continuous")
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(cifar, weights_only=True)  # plain weights_only load fails on the numpy.float64 lr
    ckpt = safe_load_checkpoint(cifar)
    lr = ckpt["optimizer"]["param_groups"][0]["lr"]
    assert type(lr) is np.float64 and lr == pytest.approx(1e-4)
    torch.load(_ckpt_path("tiny_celebahq_ncsnpp_continuous"), weights_only=True)  # no step taken: plain load ok
    names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in NUMPY_SAFE_GLOBALS}
    assert names == {"numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype",
                     "numpy.dtypes.Float64DType"}


def test_numpy1_spelling_of_scalar_global(tmp_path):
    """Files written under NumPy 1 name the scalar reconstructor numpy.core.multiarray.scalar."""
    legacy = tmp_path / "legacy.pth"
    with zipfile.ZipFile(_ckpt_path("tiny_cifar10_ncsnpp_continuous")) as zin, \
            zipfile.ZipFile(legacy, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            zout.writestr(info.filename, data)
    ckpt = safe_load_checkpoint(legacy)
    assert type(ckpt["optimizer"]["param_groups"][0]["lr"]) is np.float64


# --------------------------------------------------------------------------- mismatching checkpoints


def test_wrong_missing_unexpected_keys_and_shapes_are_listed(tmp_path):
    variant = "tiny_celebahq_ncsnpp_continuous"
    cfg_path = FIX / variant / "config.json"
    ckpt = safe_load_checkpoint(_ckpt_path(variant))
    model = ckpt["model"]
    model["module.all_modules.4.Conv_0.weight_renamed"] = model.pop("module.all_modules.4.Conv_0.weight")
    model["module.all_modules.99.extra"] = torch.zeros(3)
    model["module.all_modules.3.weight"] = torch.zeros(16, 3, 5, 5)
    ckpt["ema"]["shadow_params"][7] = torch.zeros(2, 2)
    bad = tmp_path / "bad_keys.pth"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointMismatchError) as exc:
        load_score_sde(bad, cfg_path)
    msg, err = str(exc.value), exc.value
    assert "missing keys (1)" in msg and "module.all_modules.4.Conv_0.weight\n" in msg + "\n"
    assert "unexpected keys (2)" in msg
    assert "module.all_modules.4.Conv_0.weight_renamed" in msg and "module.all_modules.99.extra" in msg
    assert "module.all_modules.3.weight: expected [16, 3, 3, 3], checkpoint has [16, 3, 5, 5]" in msg
    assert "ema.shadow_params[7]" in msg and "checkpoint has [2, 2]" in msg
    assert err.missing == ["module.all_modules.4.Conv_0.weight"]
    assert sorted(err.unexpected) == ["module.all_modules.4.Conv_0.weight_renamed", "module.all_modules.99.extra"]
    # the raw weights alone still have the key problems; inspect reports the same findings
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        load_score_sde(bad, cfg_path, use_ema=False)
    info = inspect_checkpoint(bad, cfg_path)
    assert not info["compatible"] and info["missing_keys"] == err.missing
    assert "compatible:   NO" in format_inspection(info)


def test_wrong_number_of_ema_tensors_and_wrong_config(tmp_path):
    variant = "tiny_celebahq_ncsnpp_continuous"
    ckpt = safe_load_checkpoint(_ckpt_path(variant))
    ckpt["ema"]["shadow_params"].pop()
    short = tmp_path / "short_ema.pth"
    torch.save(ckpt, short)
    with pytest.raises(CheckpointMismatchError, match="EMA has 479 shadow params, expected 480"):
        load_score_sde(short, FIX / variant / "config.json")
    load_score_sde(short, FIX / variant / "config.json", use_ema=False)  # raw weights are complete
    # right shapes, wrong sigma range in the config
    cj = json.loads(json.dumps(_tiny_config(variant)))
    cj["full_config"]["model"]["sigma_max"] = 50
    with pytest.raises(CheckpointMismatchError, match="sigmas buffer runs from 348"):
        load_score_sde(_ckpt_path(variant), cj)
    # a tiny checkpoint against the full-size preset
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        load_score_sde(_ckpt_path(variant), "celebahq_256_ncsnpp_continuous")


# --------------------------------------------------------------------------- inspection and configs


@pytest.mark.parametrize("variant", VARIANTS)
def test_inspect_checkpoint(variant):
    cj = _tiny_config(variant)
    info = inspect_checkpoint(_ckpt_path(variant), FIX / variant / "config.json")
    meta = cj["checkpoint"]
    assert info["compatible"] and info["config_name"] == variant
    assert info["step"] == meta["step"] and info["ema_decay"] == meta["ema_decay"]
    assert info["ema_num_updates"] == meta["ema_num_updates"]
    assert info["num_shadow_params"] == len(cj["ema_shadow_param_names_in_order"])
    assert info["checkpoint_parameter_count"] == meta["total_parameter_count"]
    assert info["ema_parameter_count"] == meta["trainable_parameter_count"]
    assert info["expected"]["total_parameter_count"] == meta["total_parameter_count"]
    assert info["expected"]["trainable_parameter_count"] == meta["trainable_parameter_count"]
    assert (info["optimizer"]["num_params_with_state"] > 0) == meta["optimizer_has_state"]
    json.dumps(info)  # JSON friendly
    text = format_inspection(info)
    assert f"step:         {meta['step']}" in text and "compatible:   yes" in text


def test_resolve_config_presets_files_and_errors():
    for preset, manifest in PRESET_MANIFESTS.items():
        cfg, name = resolve_config(preset)
        assert name == preset
        assert resolve_config(FIX / manifest)[0] == cfg  # manifest layout (dotted keys) gives the same config
    cfg, name = resolve_config(str(FIX / VARIANTS[1] / "config.json"))
    assert (name, cfg.image_size, cfg.nf, cfg.sigma_max) == (VARIANTS[1], 64, 16, 348)
    assert resolve_config(cfg)[0] is cfg
    with pytest.raises(ValueError, match="unknown config"):
        resolve_config("cifar10_ddpmpp_continuous")
    bad = json.loads(json.dumps(PRESETS["cifar10_ncsnpp_continuous"]))
    bad["model"]["progressive"] = "residual"
    bad["model"]["embedding_type"] = "positional"
    with pytest.raises(ValueError, match="(?s)progressive.*embedding_type|embedding_type.*progressive"):
        resolve_config(bad)
    with pytest.raises(ValueError, match="built for images"):
        NCSNpp(NCSNppConfig(nf=8, ch_mult=(1, 1), num_res_blocks=1, image_size=8))(
            torch.zeros(1, 3, 16, 16), torch.ones(1))
    assert math.isclose(PRESETS["celebahq_256_ncsnpp_continuous"]["model"]["sigma_max"], 348)
