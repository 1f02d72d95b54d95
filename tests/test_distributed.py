"""Distributed DLG sampling: 2 processes under torchrun (gloo, CPU) on the ring mixture and the tiny NCSN++ fixture.

The ring run goes through ``-m dmcmc_edu sample-distributed``, the NCSN++ run through ``-m dmcmc_edu.cli.distributed``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dmcmc_edu.cli import build_parser
from dmcmc_edu.cli.distributed import model_spec, run_config
from dmcmc_edu.core.sampler import DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.experiments.distributed import (
    DistEnv,
    build_config,
    derive_seed,
    load_distributed_samples,
    sample_distributed,
)
from dmcmc_edu.models.classifier import NoiseLevelClassifier, SimpleCNN
from dmcmc_edu.targets import load_target

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "score_sde" / "tiny_cifar10_ncsnpp_continuous"
RING_ARGS = ["--target", "ring", "--chains", "8", "--outputs-per-chain", "2", "--steps", "2", "--init-steps", "2",
             "--burn-in", "2:", "--eta", "0.01", "--seed", "3"]


SUBCOMMAND = ("-m", "dmcmc_edu", "sample-distributed")
PACKAGE_ENTRY = ("-m", "dmcmc_edu.cli.distributed")


def torchrun(args, cwd, nproc=2, entry=SUBCOMMAND, check=True):
    """Launch ``entry`` (the sub-command, or the package's own entry) with torchrun on ``nproc`` CPU processes."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           *entry, *args, "--quiet"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_derive_seed_is_per_rank_and_stable():
    seeds = [derive_seed(0, r) for r in range(4)]
    assert len(set(seeds)) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert seeds == [derive_seed(0, r) for r in range(4)]
    assert derive_seed(1, 0) != derive_seed(0, 0)


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "ring"
    torchrun([*RING_ARGS, "--out", str(out)], cwd=ROOT)
    return out


def test_two_ranks_on_the_ring(ring_run):
    manifest = json.loads((ring_run / "manifest.json").read_text())
    assert manifest["complete"] and manifest["world_size"] == 2 and manifest["backend"] == "gloo"
    assert [s["rank"] for s in manifest["shards"]] == [0, 1]
    assert [s["seed"] for s in manifest["shards"]] == [derive_seed(3, 0), derive_seed(3, 1)]
    assert manifest["n_outputs"] == 2 * 8 * 2
    for s in manifest["shards"]:
        shard = ring_run / s["dir"]
        assert (shard / "checkpoint.pt").is_file() and (shard / "ledger.json").is_file()
        assert json.loads((shard / "run.json").read_text())["rank"] == s["rank"]
    samples = load_distributed_samples(ring_run)
    assert samples.shape == (32, 2) and np.isfinite(samples).all()
    assert not np.allclose(samples[:16], samples[16:])  # the shards are different chains


def test_a_shard_is_the_single_process_run_with_the_rank_seed(ring_run):
    """Rank r's outputs are exactly what DMCMCSampler gives with seed derive_seed(seed, r) in one process."""
    cfg = build_config(None, sigma_min=0.01, sigma_max=load_target("ring").default_sigma_max(), eta=0.01, steps=2,
                       init_steps=2, burn_in=[[2, None]], n_chains=8, outputs_per_chain=2, sigma_update="exact",
                       seed=derive_seed(3, 1))
    res = DMCMCSampler(load_target("ring"), cfg, data_shape=(2,)).run()
    np.testing.assert_array_equal(np.load(ring_run / "rank_1" / "samples.npy"), res.samples.numpy())


def test_command_line_gives_the_config_of_a_direct_call():
    """The options of sample-distributed map onto build_config's fields (sigma range: the ring's own)."""
    args = build_parser().parse_args(["sample-distributed", *RING_ARGS, "--out", "unused"])
    cfg = run_config(args, model_spec(args))
    assert cfg == build_config(None, sigma_min=load_target("ring").default_sigma_min(),
                               sigma_max=load_target("ring").default_sigma_max(), eta=0.01, steps=2, init_steps=2,
                               burn_in=[[2, None]], n_chains=8, outputs_per_chain=2, sigma_update="exact", seed=3)


def test_package_entry_help_runs_without_warnings():
    proc = subprocess.run([sys.executable, *PACKAGE_ENTRY, "--help"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0 and "--score-sde" in proc.stdout and "derive_seed" in proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


def test_relaunch_resumes_and_other_world_sizes_are_refused(ring_run):
    before = load_distributed_samples(ring_run)
    mtime = (ring_run / "rank_0" / "rounds" / "round_000000.npy").stat().st_mtime_ns
    # a single-process relaunch (same code path as a torchrun rank, world size 1) is refused
    cfg = build_config(None, sigma_min=0.01, sigma_max=load_target("ring").default_sigma_max(), eta=0.01, steps=2,
                       init_steps=2, burn_in=[[2, None]], n_chains=8, outputs_per_chain=2, sigma_update="exact", seed=3)
    with pytest.raises(ValueError, match="world_size"):
        sample_distributed({"kind": "mixture", "target": "ring"}, cfg, ring_run, env=DistEnv(), progress=False)
    # relaunching a rank on its finished shard recomputes nothing and returns the same outputs
    from dmcmc_edu.runs import run_to_directory

    sampler = DMCMCSampler(load_target("ring"), dataclasses.replace(cfg, seed=derive_seed(3, 1)), data_shape=(2,))
    res = run_to_directory(sampler, ring_run / "rank_1", progress=False)
    np.testing.assert_array_equal(res.samples.numpy(), before[16:])
    assert (ring_run / "rank_0" / "rounds" / "round_000000.npy").stat().st_mtime_ns == mtime


def test_two_ranks_on_the_tiny_ncsnpp(tmp_path):
    torch.manual_seed(0)
    grid = noise_level_grid(0.01, 50.0, 20)
    clf_path = tmp_path / "clf.pt"
    NoiseLevelClassifier(SimpleCNN(3, 20, 32), grid).save(clf_path)  # random weights: a plumbing test
    out = tmp_path / "ncsnpp"
    torchrun(["--score-sde", str(FIXTURE / "checkpoint.pth"), "--config", str(FIXTURE / "config.json"),
              "--classifier", str(clf_path), "--sigma-update", "classifier-argmax", "--chains", "2",
              "--outputs-per-chain", "2", "--n-skip", "2", "--integrator", "kar1", "--steps", "2", "--init-steps", "1",
              "--burn-in", "1:", "--eta", "0.01", "--final-tweedie", "always", "--out", str(out)], cwd=ROOT,
             entry=PACKAGE_ENTRY)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["data_shape"] == [3, 32, 32]
    assert manifest["nfe_per_output"]["paper"] == pytest.approx(2 + 3 + 1)
    samples = load_distributed_samples(out)
    assert samples.shape == (2 * 2 * 2, 3, 32, 32) and np.isfinite(samples).all()


@pytest.mark.parametrize("extra,fragment", [
    (["--chains", "100000000"], "error: this run is estimated at "),
    (["--sigma-max", "0.5"], "error: --sigma-max 0.5 is below the data's spread"),
], ids=["too-large", "sigma-max-below-spread"])
def test_a_refused_run_stops_every_rank_and_rank_zero_says_why_once(tmp_path, extra, fragment):
    """sample's size and scale checks under torchrun: one error line (rank 0's), every rank exits with status 2
    (no rank waits for the others), and nothing is written."""
    out = tmp_path / "refused"
    proc = torchrun([*RING_ARGS[:2], *extra, "--out", str(out)], cwd=ROOT, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(fragment), proc.stderr[-3000:]
    if fragment.startswith("error: this run"):
        assert "pass --yes to run it anyway" in errors[0]
    assert "exitcode  : 2" in proc.stderr, proc.stderr[-3000:]  # torchrun's report: the ranks end with status 2
    assert not out.exists()


def test_build_config_takes_every_config_field_and_refuses_others():
    """per_chain_seeds (left out of to_dict when unset) is an override like any field; a typo is refused."""
    assert build_config(None, per_chain_seeds=True).per_chain_seeds is True
    assert build_config(None).per_chain_seeds is False
    with pytest.raises(TypeError, match="unknown DMCMCConfig field 'per_chain_seed'"):
        build_config(None, per_chain_seed=True)
