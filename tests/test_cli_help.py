"""The command line's help: every command's --help works, shows defaults and an example, names the program as it
was started, prints once under torchrun, and imports neither torch nor numpy (timings: bench/cli_help_times.py)."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dmcmc_edu.cli import build_parser, choices
from dmcmc_edu.cli.common import is_rank_zero, prog_name

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120")
ENV.pop("RANK", None)
ENV.pop("LOCAL_RANK", None)


def commands(parser=None, prefix=()):
    """Every command path of the parser: ("sample",), ("assignments", "release"), ..."""
    parser = parser or build_parser("python -m dmcmc_edu")
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = commands(sub, (*prefix, name))
                out += inner or [(*prefix, name)]
    return out


COMMANDS = commands()


def run(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env or ENV,
                          cwd=cwd or ROOT, timeout=120)


def test_every_command_is_listed():
    names = {c[0] for c in COMMANDS}
    assert {"demo", "sample", "ladder", "sample-mnist", "sample-distributed", "fid", "assignments",
            "course"} <= names
    assert ("assignments", "release") in COMMANDS and ("course", "init") in COMMANDS


# one subprocess prints every help screen (the parsers are built as python -m dmcmc_edu builds them) and reports
# which modules were imported: neither torch nor numpy may be
HELP_SCRIPT = r"""
import contextlib, io, json, sys
from dmcmc_edu.cli import main
screens = {}
for argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main([*argv, "--help"])
            code = None
        except SystemExit as exc:
            code = exc.code
    screens[" ".join(argv)] = [code, buf.getvalue()]
heavy = sorted(m for m in ("torch", "numpy", "torchvision", "matplotlib", "scipy", "PIL") if m in sys.modules)
print(json.dumps({"screens": screens, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def screens():
    import json

    proc = run("-c", HELP_SCRIPT, json.dumps([[]] + [list(c) for c in COMMANDS]))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_help_imports_neither_torch_nor_numpy(screens):
    assert screens["heavy"] == [], f"--help imported {screens['heavy']}"


@pytest.mark.parametrize("command", [()] + COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_of_every_command(screens, command):
    code, text = screens["screens"][" ".join(command)]
    assert code == 0
    assert text.startswith(f"usage: python -m dmcmc_edu {' '.join(command)}".rstrip())
    assert text.count("usage:") == 1
    assert "\nexample:\n  python -m dmcmc_edu " in text  # one example command line, in the epilog
    assert "``" not in text and ":func:" not in text and ":class:" not in text  # no reST markup


def test_help_shows_defaults(screens):
    text = screens["screens"]["sample"][1]
    assert "(default: 18)" in text and "default: kar1" in text and "(default: 4096)" in text
    assert "Gibbs steps per output (default: 1)" in text and re.search(r"--seed SEED\s+default: 0\n", text)
    assert "--quiet\n" in text  # a flag (default False) shows none


def test_root_help_in_a_subprocess_and_version():
    proc = run("-m", "dmcmc_edu", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m dmcmc_edu ")
    proc = run("-m", "dmcmc_edu", "--version")
    import dmcmc_edu

    assert proc.returncode == 0 and proc.stdout.strip() == f"python -m dmcmc_edu {dmcmc_edu.__version__}"


def test_usage_names_the_program_as_started():
    assert prog_name("/usr/lib/python3/site-packages/dmcmc_edu/__main__.py") == "python -m dmcmc_edu"
    assert prog_name("/x/dmcmc_edu/cli/__main__.py") == "python -m dmcmc_edu.cli"
    assert prog_name("/home/me/.venv/bin/dmcmc-edu") == "dmcmc-edu"
    script = Path(sys.executable).parent / "dmcmc-edu"
    if script.exists():  # the console script of this environment
        proc = subprocess.run([str(script), "sample", "--help"], capture_output=True, text=True, env=ENV,
                              timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: dmcmc-edu sample ")
        assert "example:\n  dmcmc-edu sample " in proc.stdout


def test_the_distributed_usage_says_how_to_launch_it():
    """sample-distributed's usage names the program as started; under torchrun (TORCHELASTIC_RUN_ID, as torchrun
    sets it) the torchrun command that relaunches it, and the help's example shows the torchrun form either way."""
    torchrun_env = dict(ENV, TORCHELASTIC_RUN_ID="test", RANK="0", LOCAL_RANK="0", WORLD_SIZE="2")
    cases = [(["-m", "dmcmc_edu", "sample-distributed"], ENV, "python -m dmcmc_edu sample-distributed"),
             (["-m", "dmcmc_edu.cli.distributed"], ENV, "python -m dmcmc_edu.cli.distributed"),
             (["-m", "dmcmc_edu", "sample-distributed"], torchrun_env,
              "torchrun --nproc-per-node N -m dmcmc_edu sample-distributed"),
             (["-m", "dmcmc_edu.cli.distributed"], torchrun_env,
              "torchrun --nproc-per-node N -m dmcmc_edu.cli.distributed")]
    for args, env, prog in cases:
        proc = run(*args, "--help", env=env)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {prog} ["), proc.stdout[:300]
        assert f"example:\n  {prog} --target ring" in proc.stdout
        relaunch = prog.replace("python -m", "torchrun --nproc-per-node N -m")
        assert f"  {relaunch} --target ring" in proc.stdout
    script = Path(sys.executable).parent / "dmcmc-edu"
    if script.exists():  # the console script: as started; torchrun runs it by its path
        proc = subprocess.run([str(script), "sample-distributed", "--help"], capture_output=True, text=True, env=ENV,
                              timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: dmcmc-edu sample-distributed ["), proc.stdout
        assert f"  torchrun --nproc-per-node N {script} sample-distributed --target ring" in proc.stdout
        proc = subprocess.run([str(script), "sample-distributed", "--help"], capture_output=True, text=True,
                              env=torchrun_env, timeout=120)
        # argparse wraps a usage line that a long script path makes too wide: the options may start on the next line
        usage = re.match(rf"usage: {re.escape(f'torchrun --nproc-per-node N {script} sample-distributed')}\s+\[",
                         proc.stdout)
        assert usage is not None, proc.stdout[:400]


@pytest.mark.parametrize("env,prints", [({}, True), ({"RANK": "0", "LOCAL_RANK": "0"}, True),
                                        ({"RANK": "1", "LOCAL_RANK": "1"}, False), ({"LOCAL_RANK": "3"}, False)])
def test_help_is_printed_by_rank_zero_only(env, prints):
    for args in (["-m", "dmcmc_edu", "sample-distributed", "--help"], ["-m", "dmcmc_edu.cli.distributed", "--help"]):
        proc = run(*args, env=dict(ENV, **env))
        assert proc.returncode == 0, proc.stderr
        assert ("usage:" in proc.stdout) == prints and proc.stdout.count("usage:") <= 1


def test_is_rank_zero(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert not is_rank_zero()
    monkeypatch.setenv("RANK", "0")  # RANK wins, as in dmcmc_edu.experiments.distributed.setup
    assert is_rank_zero()


def test_the_parsers_names_equal_the_librarys():
    """cli.choices copies the library's tables (so --help needs no torch); a copy that drifts fails here."""
    from dmcmc_edu.core.langevin import X_UPDATES
    from dmcmc_edu.core.sigma_updates import SIGMA_UPDATES
    from dmcmc_edu.evaluation.mnist_fid import FEATURE_NET_NAME, REFERENCE_NAME
    from dmcmc_edu.experiments.mnist import SIGMA_MAX, SIGMA_MIN
    from dmcmc_edu.grading.course import RUN_SECONDS
    from dmcmc_edu.registry import integrator_table

    assert choices.INTEGRATORS == tuple(integrator_table())
    assert choices.SIGMA_UPDATES == tuple(SIGMA_UPDATES) and choices.X_UPDATES == tuple(X_UPDATES)
    assert (choices.MNIST_SIGMA_MIN, choices.MNIST_SIGMA_MAX) == (SIGMA_MIN, SIGMA_MAX)
    assert (choices.FEATURE_NET_NAME, choices.REFERENCE_NAME) == (FEATURE_NET_NAME, REFERENCE_NAME)
    assert choices.GRADING_RUN_SECONDS == RUN_SECONDS


def readme_commands() -> list[list[str]]:
    """The ``python -m dmcmc_edu ...`` lines of the README's "Command line" block (continuations joined)."""
    import shlex

    text = (ROOT / "README.md").read_text().split("## Command line", 1)[1]
    block = text.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", "dmcmc_edu"]:
            out.append(words[3:])
    return out


def test_the_readme_commands_parse():
    """Every command the README shows is accepted by the parser as written (options, values, their ranges)."""
    found = readme_commands()
    assert len(found) >= 10
    for argv in found:
        if "--help" in argv or "--version" in argv:
            continue
        args = build_parser("python -m dmcmc_edu").parse_args(argv)
        assert callable(args.func), argv
