"""The defaults of the commands agree: the DLG chains follow --n, and a run writes exactly the n outputs asked for."""

import json

import numpy as np
import pytest

from dmcmc_edu.cli import main
from dmcmc_edu.cli.toy import MAX_DEFAULT_CHAINS, dlg_shape

FAST = ["--target", "ring", "--dlg", "--steps", "2", "--n-levels", "50", "--seed", "2", "--quiet"]


@pytest.mark.parametrize("n,chains,opc", [(1, 1, 1), (200, 200, 1), (512, 512, 1), (513, 257, 2), (2000, 500, 4),
                                          (2001, 501, 4), (10**6, 512, 1954)])
def test_default_chains_follow_n(n, chains, opc):
    assert dlg_shape(n) == (chains, opc)
    assert chains <= MAX_DEFAULT_CHAINS and chains <= n and 0 <= chains * opc - n < opc


def test_one_given_option_sets_the_other():
    assert dlg_shape(100, chains=30) == (30, 4)  # 120 made, 20 discarded
    assert dlg_shape(100, outputs_per_chain=3) == (34, 3)
    assert dlg_shape(100, chains=10, outputs_per_chain=20) == (10, 20)


def test_dlg_with_n_below_the_old_default_chains_runs(tmp_path):
    """``sample --dlg --n 200`` was refused: the default --chains 512 exceeded --n."""
    out = tmp_path / "dlg"
    assert main(["sample", *FAST, "--n", "200", "--out", str(out)]) == 0
    assert np.load(out / "samples.npy").shape == (200, 2)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["n_chains"] == 200 and run["config"]["outputs_per_chain"] == 1
    assert run["result"]["outputs_discarded"] == 0


def test_dlg_writes_exactly_n_and_records_what_it_discarded(tmp_path):
    """``--n 1030``: 3 rounds of 344 chains make 1032 outputs; samples.npy holds 1030 (it held 3 x 512 = 1536)."""
    out = tmp_path / "dlg"
    assert main(["sample", *FAST, "--n", "1030", "--out", str(out)]) == 0
    x = np.load(out / "samples.npy")
    assert x.shape == (1030, 2) and x.dtype == np.float64
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["n_chains"] == 344 and run["config"]["outputs_per_chain"] == 3
    assert run["result"]["n_outputs"] == 1030
    assert run["result"]["outputs_made"] == 1032 and run["result"]["outputs_discarded"] == 2
    # the kept outputs are the first ones, round by round: round 0 then round 1 then the start of round 2
    rounds = [np.load(out / "rounds" / f"round_{r:06d}.npy") for r in range(3)]
    assert np.array_equal(x, np.concatenate(rounds)[:1030])
    # the same command again reports the finished run and writes nothing
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["sample", *FAST, "--n", "1030", "--out", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_explicit_chains_that_do_not_divide_n(tmp_path):
    out = tmp_path / "dlg"
    assert main(["sample", *FAST, "--n", "20", "--chains", "7", "--out", str(out)]) == 0
    assert np.load(out / "samples.npy").shape == (20, 2)
    run = json.loads((out / "run.json").read_text())
    assert run["result"]["outputs_made"] == 21 and run["result"]["outputs_discarded"] == 1


def test_explicit_chains_above_n_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", *FAST, "--n", "5", "--chains", "300", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--chains 300 is more than --n 5" in err
    assert not (tmp_path / "o").exists()


def test_sample_mnist_dlg_writes_exactly_n(tmp_path):
    """3 chains x 2 outputs make 6 digits for --n 5: images.npy and samples.npy both hold 5."""
    out = tmp_path / "mnist"
    assert main(["sample-mnist", "--dlg", "--n", "5", "--outputs-per-chain", "2", "--steps", "1", "--n-skip", "1",
                 "--threads", "1", "--quiet", "--out", str(out)]) == 0
    assert np.load(out / "images.npy").shape == (5, 1, 28, 28)
    assert np.load(out / "samples.npy").shape == (5, 1, 28, 28)
    result = json.loads((out / "run.json").read_text())["result"]
    assert result["n_chains"] == 3 and result["outputs_made"] == 6 and result["outputs_discarded"] == 1


def test_per_chain_seeds_make_a_chain_independent_of_the_number_of_chains(tmp_path):
    """--per-chain-seeds: chain k's first output is the same with 4 and with 8 chains; without it, it is not."""
    def first_round(chains: int, *flag) -> np.ndarray:
        out = tmp_path / f"dlg_{chains}_{len(flag)}"
        assert main(["sample", *FAST, "--n", "8", "--chains", str(chains), *flag, "--out", str(out)]) == 0
        return np.load(out / "rounds" / "round_000000.npy")

    a, b = first_round(4, "--per-chain-seeds"), first_round(8, "--per-chain-seeds")
    assert np.array_equal(a, b[:4])
    c, d = first_round(4), first_round(8)
    assert not np.allclose(c, d[:4])
