"""Benches that do what they say (issue 22, item 5): a re-run without ``--out`` writes a new folder under ``runs/``.

Each script's arguments are parsed with no ``--out``; the folder (or file) it would write must lie under ``runs/``,
not exist yet, and never be a committed result under ``bench/results``.  An explicit ``--out`` is used as given.
Nothing is run: only ``build_parser()`` and ``out_folder(args)`` of each script.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: script -> its arguments besides --out
SCRIPTS = {
    "explorer_redraw": [],
    "ledger_costs": [],
    "overhead": ["--target", "ring"],
    "peers": ["--target", "ring"],
    "pick_rule": [],
    "schedule_table": [],
    "unipc_final_orders": [],
    "grading_mutants": [],
    "modern_solvers": ["--target", "ring"],
}


def _load(name: str):
    sys.path.insert(0, str(ROOT / "bench"))  # overhead.py imports peers.py as a sibling
    try:
        spec = importlib.util.spec_from_file_location(f"bench_defaults_{name}", ROOT / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_without_out_a_bench_writes_a_new_folder_under_runs(name, tmp_path, monkeypatch):
    module = _load(name)
    parser = module.build_parser()
    out_action = next(a for a in parser._actions if "--out" in a.option_strings)
    assert out_action.default is None, f"{name}: --out defaults to {out_action.default}"
    assert f"runs/{name}-<UTC time>" in (out_action.help or ""), f"{name}: --out's help does not name the default"
    assert "bench/results" not in (out_action.help or "")

    monkeypatch.chdir(tmp_path)  # fresh_folder's runs/ is relative to the working folder
    args = parser.parse_args(SCRIPTS[name])
    where = Path(module.out_folder(args))
    assert where.parts[0] == "runs" and where.parts[1].startswith(f"{name}-"), f"{name}: writes {where}"
    assert "bench/results" not in where.as_posix()
    assert not (tmp_path / where.parts[0] / where.parts[1]).exists(), "the folder must be new (and not made yet)"

    named = tmp_path / "named" / ("unipc_final_orders.json" if name == "unipc_final_orders" else "x")
    args = parser.parse_args([*SCRIPTS[name], "--out", str(named)])
    assert Path(module.out_folder(args)) == named, f"{name}: an explicit --out is used as given"


def test_helpers_that_only_read_or_rewrite_a_folder_need_out(tmp_path, capsys):
    """--report-only / --from-json / --plot-only rewrite a named folder's files: without --out they refuse."""
    modules = {name: _load(name) for name in ("peers", "grading_mutants", "ledger_costs", "pick_rule")}
    for module in modules.values():  # scripts of before the rule would rewrite committed results: stop here
        assert module.build_parser().get_default("out") is None
    peers = modules["peers"]
    with pytest.raises(SystemExit) as stop:
        peers.main(["--target", "ring", "--report-only"])
    assert stop.value.code == 2 and "--report-only needs --out" in capsys.readouterr().err
    gm = modules["grading_mutants"]
    assert gm.main(["--report-only"]) == 2 and "--report-only needs --out" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--from-json needs --out"):
        modules["ledger_costs"].main(["--from-json"])
    with pytest.raises(SystemExit) as stop:
        modules["pick_rule"].main(["--plot-only"])
    assert stop.value.code == 2 and "--plot-only needs --out" in capsys.readouterr().err


def test_peers_into_a_folder_made_with_other_settings_is_refused(tmp_path, capsys):
    """A peers file made with other settings (budgets, n, seed, floors) is refused in one line, never replaced."""
    import shutil

    peers = _load("peers")
    shutil.copy(ROOT / "bench" / "results" / "toy" / "peers_ring.json", tmp_path / "peers_ring.json")
    before = (tmp_path / "peers_ring.json").read_bytes()
    assert peers.main(["--target", "ring", "--out", str(tmp_path), "--budgets", "10,20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "peers_ring.json: made with other settings: budgets" in err, err
    assert (tmp_path / "peers_ring.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peers_ring.json"]


def test_peers_report_only_rewrites_the_named_folder_atomically(tmp_path):
    """--report-only --out DIR re-reads DIR/peers_<target>.json and rewrites its three files (no temporary left)."""
    import json
    import shutil

    peers = _load("peers")
    assert peers.build_parser().get_default("out") is None  # (before the rule, a slip of --out hit committed files)
    shutil.copy(ROOT / "bench" / "results" / "toy" / "peers_ring.json", tmp_path / "peers_ring.json")
    doc = json.loads((tmp_path / "peers_ring.json").read_text())
    ladder = ROOT / "bench" / "results" / "toy" / "ring.json"
    assert peers.main(["--target", "ring", "--report-only", "--out", str(tmp_path), "--ladder", str(ladder)]) == 0
    again = json.loads((tmp_path / "peers_ring.json").read_text())
    def ours(d):
        return [(r["family"], r["sampler"], r["budget"], r.get("nfe"))
                for r in d["rows"] if not r["family"].startswith("DLG")]

    assert again["meta"]["target"] == "ring" and ours(again) == ours(doc)
    assert (tmp_path / "peers_ring.md").read_text().strip() and (tmp_path / "peers_ring.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["peers_ring.json", "peers_ring.md", "peers_ring.png"]
