"""bench/ladder_seeds.py and bench/floors.py refuse what they must not overwrite, in one line (issue 18)."""

import importlib.util
import json
from pathlib import Path

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
