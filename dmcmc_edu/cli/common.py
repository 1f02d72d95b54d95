"""Helpers that more than one command module needs.

* **Argument types** (:func:`positive_int`, :func:`nonnegative_int`,
  :func:`seed`, :func:`positive_float`, :func:`nonnegative_float`,
  :func:`finite_float`, :func:`probability`, :func:`int_at_least`, ...): every
  numeric option of every command is parsed by one of them, so a zero chain
  count, a NaN step size or an infinite sigma is an argparse error (exit 2,
  the usage line and one ``error:`` line) before anything runs.
* **The error boundary** (:func:`run_handler`): the expected failures of a
  command (a refused combination of options, a missing, unreadable, empty or
  truncated file, a refused resume) end it with one line ``error: <message>``
  on stderr and exit status 2; other exceptions are bugs and keep their
  traceback.  Handlers refuse with :class:`CommandError`.
* Loading a mixture target, the sigma range of a target, the torch device
  and thread count of a command, the seed of a chunk of a resumable vanilla
  run, the settings record of a run, files that must not be overwritten.
  JSON files are written with :func:`dmcmc_edu.runs.write_json`.
* **Help** (:func:`add_command`, :class:`HelpFormatter`, :func:`prog_name`): every command's ``--help`` shows the
  defaults and one example, and names the program as it was started.

This module and the parsers of every command import neither torch nor numpy: ``--help`` must be fast, so the
heavy imports happen inside the handlers (``tests/test_cli_help.py`` checks it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import math
import os
import pickle
import sys
import textwrap
from pathlib import Path

__all__ = ["TARGET_HELP", "CommandError", "CommandFailed", "EXPECTED_ERRORS", "run_handler", "one_line",
           "positive_int", "nonnegative_int", "int_at_least", "seed", "seed_list", "finite_float", "positive_float",
           "nonnegative_float", "probability", "decay", "positive_int_list", "value_range", "name_list",
           "check_sigma_order", "refuse_existing", "check_torch_files", "read_npy", "load_target", "sigma_range",
           "device", "set_threads", "chunk_seed", "settings", "errors_as_exit", "add_command", "HelpFormatter",
           "prog_name", "is_rank_zero", "under_torchrun", "torchrun_prog", "parse_args_once", "plain",
           "LARGE_RUN_HOURS", "LARGE_RUN_GB", "add_yes", "check_run_size", "human_duration", "check_scale",
           "pilot_cost", "dlg_estimate"]

TARGET_HELP = "ring | grid | lowrank | PATH.json (a mixture file: weights, means, covariances or factors+diagonal)"

SEED_MAX = 2**32 - 1


# ----------------------------------------------------------------------------- refusals and the error boundary


class CommandError(Exception):
    """A command refuses its input: options that do not go together, an output that would be overwritten, ...

    ``prefix`` starts the printed line (``error``, or ``error (rank 3)`` for one
    rank of a distributed run); ``quiet`` prints nothing (the ranks other than 0 of a distributed run that rank 0
    refused: it prints the line once, every rank exits with status 2).
    """

    def __init__(self, message: str, *, prefix: str = "error", quiet: bool = False):
        super().__init__(message)
        self.prefix = prefix
        self.quiet = quiet


class CommandFailed(SystemExit):
    """Raised by :func:`run_handler` after it printed the ``error:`` line: exit status 2, like argparse's errors.

    ``str()`` of it is the message, so ``pytest.raises(SystemExit, match=...)`` can look at the message.
    """

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


#: what a command may fail with because of its input (files, options, a refused resume); anything else is a bug
EXPECTED_ERRORS = (CommandError, ValueError, OSError, EOFError, RuntimeError, FloatingPointError,
                   pickle.UnpicklingError, ImportError)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; an empty message becomes the exception's name.

    An ``OSError`` whose text does not show the file it concerns gets the file appended.
    """
    text = " ".join(str(err).split())
    filename = getattr(err, "filename", None)
    if isinstance(err, OSError) and filename is not None and os.fspath(filename) not in text:
        text = f"{text}: {os.fspath(filename)}" if text else os.fspath(filename)
    return text or type(err).__name__


def run_handler(args) -> int:
    """Run ``args.func(args)``, turning an expected failure into one ``error:`` line and exit status 2.

    With ``args.debug`` (the global ``--debug``) the exception propagates with its traceback.  The status of a
    failure is delivered as :class:`CommandFailed` (a ``SystemExit``), so ``python -m dmcmc_edu`` and an
    in-process ``main([...])`` end the same way.
    """
    try:
        return args.func(args)
    except EXPECTED_ERRORS as err:
        if getattr(args, "debug", False):
            raise
        message = one_line(err)
        prefix = err.prefix if isinstance(err, CommandError) else "error"
        if not getattr(err, "quiet", False):
            print(f"{prefix}: {message}", file=sys.stderr)
        raise CommandFailed(message) from None


@contextlib.contextmanager
def errors_as_exit(*types: type[BaseException], prefix: str = "error"):
    """Turn the listed exceptions raised inside the block into :class:`CommandError` with ``prefix``."""
    try:
        yield
    except types as err:
        raise CommandError(one_line(err), prefix=prefix) from err  # the cause shows with --debug


# ----------------------------------------------------------------------------- argument types


def _number(text: str, kind: type, what: str):
    """``kind(text)`` or an argparse error saying what was expected."""
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (not finite)")
    return value


def int_at_least(low: int):
    """An argparse type: an integer ``>= low``."""

    def parse(text: str) -> int:
        value = _number(text, int, f"an integer >= {low}")
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"int_at_least_{low}"
    return parse


positive_int = int_at_least(1)
positive_int.__doc__ = "An argparse type: an integer >= 1 (a count, a number of steps, a batch size, ...)."
nonnegative_int = int_at_least(0)
nonnegative_int.__doc__ = "An argparse type: an integer >= 0."


def seed(text: str) -> int:
    """An argparse type: a random seed, an integer in [0, 2**32 - 1]."""
    value = _number(text, int, f"an integer seed in [0, {SEED_MAX}]")
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, {SEED_MAX}], got {text!r}")
    return value


def seed_list(text: str) -> list[int]:
    """An argparse type: seeds such as ``0-7`` or ``0,1,5`` -> a sorted list of distinct seeds."""
    out = set()
    try:
        for part in text.split(","):
            a, _, b = part.partition("-")
            out.update(range(int(a), int(b) + 1) if b else [int(a)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0-7 or 0,1,5, got {text!r}") from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative seeds, got {text!r}")
    return sorted(out)


def finite_float(text: str) -> float:
    """An argparse type: a finite number (no NaN, no inf)."""
    return _number(text, float, "a finite number")


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a step size, a sigma, a learning rate, a budget, ...)."""
    value = _number(text, float, "a finite number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _number(text, float, "a finite number >= 0")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    value = _number(text, float, "a number in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def decay(text: str) -> float:
    """An argparse type: a decay rate in [0, 1) (an EMA's)."""
    value = _number(text, float, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def positive_int_list(text: str) -> str:
    """An argparse type: a comma list of integers >= 1 (``"24,48,96"``); returned as given, without spaces."""
    parts = [p.strip() for p in text.split(",")]
    for part in parts:
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(f"expected a comma list of integers >= 1, got {text!r}")
    return ",".join(parts)


def value_range(text: str) -> tuple[float, float]:
    """An argparse type: ``"lo,hi"``, two finite numbers with lo < hi."""
    lo, sep, hi = text.partition(",")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers with LO < HI), got {text!r}")
    low, high = finite_float(lo.strip()), finite_float(hi.strip())
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LO,HI with LO < HI, got {text!r}")
    return low, high


def name_list(known, what: str):
    """An argparse type: a comma list of distinct names out of ``known`` (a mapping or a sequence, read at parse time).

    An unknown name is refused with the list of known ones; the value is returned as a comma string.
    """

    def parse(text: str) -> str:
        names = [p.strip() for p in text.split(",")]
        if not all(names):
            raise argparse.ArgumentTypeError(f"expected a comma list of {what} names, got {text!r}")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, unknown))}; "
                                             f"known: {', '.join(known)}")
        if len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"{what} names repeated in {text!r}")
        return ",".join(names)

    parse.__name__ = f"{what}_list"
    return parse


# ----------------------------------------------------------------------------- checks shared by several commands


def check_sigma_order(sigma_min, sigma_max) -> None:
    """Refuse ``--sigma-min >= --sigma-max`` (each may be None: not given)."""
    if sigma_min is not None and sigma_max is not None and not sigma_min < sigma_max:
        raise CommandError(f"--sigma-min ({sigma_min:g}) must be smaller than --sigma-max ({sigma_max:g})")


def refuse_existing(path, option: str = "--out", *, overwrite_flag: str | None = None) -> Path:
    """Refuse to write ``path`` when something is there already (a user's file is not replaced); returns it.

    ``overwrite_flag`` names the option that allows replacing it, if the command has one.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        kind = "a folder" if path.is_dir() else "a file"
        fix = f"pass {overwrite_flag} to replace it" if overwrite_flag else "it is never overwritten"
        raise CommandError(f"{option}: {path} exists ({kind}); choose another {option} or delete it ({fix})")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise CommandError(f"{option} {path}: {parent} is a file, not a folder")
    return path


def check_torch_files(folder, names) -> None:
    """Refuse, by name, any of the torch files ``folder/name`` that exists but is empty or cut short.

    For files that code outside this package's loaders reads with ``torch.load`` (a run's checkpoint, weights
    read by the evaluation code), so that the error names the file instead of being a bare ``EOFError``.
    """
    from dmcmc_edu.models.files import check_torch_file

    for name in names:
        path = Path(folder) / name
        if path.is_file():
            check_torch_file(path)


def read_npy(path):
    """``np.load(path)`` of an array file; an empty, truncated or foreign file raises a ValueError naming it."""
    import numpy as np

    try:
        if os.path.getsize(path) == 0:
            raise ValueError("it has 0 bytes")
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"{os.fspath(path)}: cannot be read as a .npy array ({one_line(err)}) "
                         "(empty or truncated file)") from None


def load_target(spec: str):
    """The mixture target ``spec`` names; an unknown name or a malformed file becomes one ``error: --target`` line."""
    from dmcmc_edu.targets import load_target as _load_target

    try:
        return _load_target(spec)
    except (OSError, ValueError) as e:
        raise CommandError(f"--target: {one_line(e)}") from e  # the cause shows with --debug


def sigma_range(args, mix) -> tuple[float, float]:
    """``(sigma_min, sigma_max)`` from ``--sigma-min/--sigma-max``, each defaulting to the target's own choice.

    A range far from the data's scale is refused (one line with the suggested range), a doubtful one printed as
    a ``warning:`` line on stderr: :func:`dmcmc_edu.targets.scale.check_sigma_scale`, the check the Python API
    uses too.
    """
    smin = args.sigma_min if args.sigma_min is not None else mix.default_sigma_min()
    smax = args.sigma_max if args.sigma_max is not None else mix.default_sigma_max()
    if not 0 < smin < smax:
        raise CommandError(f"need 0 < --sigma-min < --sigma-max, got {smin:g} and {smax:g} (a missing one is the "
                           "target's default)")
    check_scale(smin, smax, mix)
    return smin, smax


def check_scale(sigma_min: float, sigma_max: float, mix, *, quiet: bool = False) -> None:
    """The command line's form of :func:`dmcmc_edu.targets.scale.check_sigma_scale` (``sample``,
    ``sample-distributed``): a refusal is a :class:`CommandError` (one line, with the suggested range), each
    warning a ``warning:`` line on stderr; ``quiet`` (the ranks other than 0 of a distributed run) prints nothing
    and refuses silently, so the line appears once."""
    from dmcmc_edu.targets.scale import check_sigma_scale

    def warn(message: str) -> None:
        if not quiet:
            print(f"warning: {message}", file=sys.stderr)

    try:
        check_sigma_scale(sigma_min, sigma_max, mix, names=("--sigma-min", "--sigma-max"), warn=warn)
    except ValueError as err:
        raise CommandError(str(err), quiet=quiet) from None


LARGE_RUN_HOURS = 1.0
"""A run whose estimated time exceeds this many hours is refused unless confirmed (:func:`check_run_size`)."""

LARGE_RUN_GB = 2.0
"""A run whose estimated disk use exceeds this many GB (1e9 bytes) is refused unless confirmed."""


def human_duration(seconds: float) -> str:
    """``seconds`` as a short duration: ``"42 s"``, ``"7.5 min"``, ``"3.2 h"``, ``"450,000 h"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 100 else f"{hours:,.0f} h"


def add_yes(parser, *, time: str = "the estimated time", disk: str = "the disk use") -> None:
    """The ``--yes`` switch that confirms a run :func:`check_run_size` would refuse (``time`` / ``disk`` name what
    the command estimates, e.g. "the estimated time (per rank)")."""
    parser.add_argument("--yes", action="store_true",
                        help=f"run even when {time} exceeds {LARGE_RUN_HOURS:g} h or {disk} {LARGE_RUN_GB:g} GB "
                             "(otherwise such a run is refused with the estimate)")


def check_run_size(seconds: float, disk_bytes: float, how: str, *, confirmed: bool, flag: str = "--yes",
                   lower: str = "--n") -> None:
    """Refuse (CommandError, one line with the estimate) a run estimated above :data:`LARGE_RUN_HOURS` or
    :data:`LARGE_RUN_GB`, unless the user confirmed it with ``flag``; ``how`` says how the estimate was made,
    ``lower`` the option(s) that make the run smaller."""
    too_long, too_big = seconds > 3600 * LARGE_RUN_HOURS, disk_bytes > 1e9 * LARGE_RUN_GB
    if confirmed or not (too_long or too_big):
        return
    over = " and ".join(w for w, hit in ((f"{LARGE_RUN_HOURS:g} h", too_long), (f"{LARGE_RUN_GB:g} GB", too_big))
                        if hit)
    raise CommandError(f"this run is estimated at {human_duration(seconds)} and {disk_bytes / 1e9:,.3g} GB on disk "
                       f"({how}), more than {over}; lower {lower}, or pass {flag} to run it anyway")


def pilot_cost(model, shape: tuple, integrator: str, steps: int, sigma_min: float, sigma_max: float, *,
               device="cpu", dtype=None, options: dict | None = None, final_tweedie=None) -> tuple[float, float]:
    """``(nfe, seconds)``: the NFE per sample of ``steps`` steps of ``integrator`` from ``sigma_max``, and the
    seconds of one denoiser evaluation per sample, measured by a pilot run on ``shape`` (``[rows, ...]``).

    The pilot runs at most 4 steps; beyond that the NFE is extrapolated from pilots with 3 and 4 steps (it is
    affine in the steps, e.g. KAR's ``2 steps - 1``; rk45 chooses its own).  The size checks of ``sample``,
    ``sample-mnist`` and ``sample-distributed`` (:func:`check_run_size`) start from it.  ``integrator`` is any name
    of :func:`dmcmc_edu.registry.integrator_table` (the core is handed the function).
    """
    import time

    import torch

    from dmcmc_edu.core.integrators import sample_from_noise
    from dmcmc_edu.registry import get_integrator

    rows = shape[0]
    dtype = torch.float64 if dtype is None else dtype
    fn = get_integrator(integrator)  # the core's six and the solvers; the core's own table knows only the six

    def pilot(k: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        with torch.no_grad():
            _, info = sample_from_noise(model, shape, integrator=fn, steps=k, sigma_max=sigma_max,
                                        sigma_min=sigma_min, dtype=dtype, device=device,
                                        generator=torch.Generator(device=device).manual_seed(0),
                                        final_tweedie=final_tweedie, **(options or {}))
        return float(info.nfe), time.perf_counter() - t0

    nfe, seconds = pilot(min(steps, 4))
    per_eval = seconds / max(nfe, 1) / rows
    if steps > 4 and integrator != "rk45":  # the NFE is affine in the steps: extrapolate from 3 and 4
        nfe = nfe + (nfe - pilot(3)[0]) * (steps - 4)
    return nfe, per_eval


def _per_eval(seconds: float) -> str:
    return f"{seconds * 1e3:.2g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.2g} us"


def dlg_estimate(cfg, nfe: float, per_eval: float, *, elements: int, kept: int, pilot: str, round_bytes: int = 8,
                 ranks: int = 1, extra_disk: float = 0.0) -> tuple[float, float, str]:
    """``(seconds, bytes, how)`` of a DLG run with config ``cfg`` (:class:`~dmcmc_edu.core.sampler.DMCMCConfig`),
    from :func:`pilot_cost`'s ``nfe`` (of the denoising run) and ``per_eval``.

    Evaluations: every chain's initialisation (KAR2, ``2 init_steps - 1``) and burn-in, then per output ``n_skip``
    Gibbs steps and the denoising run; a Gibbs step costs a score evaluation (two for MALA) and, with a classifier
    sigma-update, a classifier evaluation (counted as one more).  Disk: the output rounds (``round_bytes`` per
    number, and a float64 sigma per output) and samples.npy (float64, the ``kept`` outputs), with ``elements``
    numbers per output, plus ``extra_disk``.  ``ranks`` processes run side by side (the time is one rank's, the disk
    every rank's; ``cfg`` and ``kept`` are per rank).  ``pilot`` says what the pilot ran on.
    """
    gibbs = (2 if cfg.x_update == "mala" else 1) + (1 if str(cfg.sigma_update).startswith("classifier") else 0)
    burn = sum(int(phase[0] if isinstance(phase, (list, tuple)) else phase.steps) for phase in (cfg.burn_in or ()))
    start = max(2 * cfg.init_steps - 1, 0) + gibbs * burn
    per_output = gibbs * cfg.n_skip + nfe
    made = cfg.n_chains * cfg.outputs_per_chain
    seconds = (cfg.n_chains * start + made * per_output) * per_eval
    disk = ranks * (made * (round_bytes * elements + 8.0) + 8.0 * kept * elements) + extra_disk
    where = f" per rank ({ranks} ranks)" if ranks > 1 else ""
    how = (f"{cfg.n_chains:,} chains x {start} evaluations to start + {made:,} outputs x {per_output:,.0f}"
           f"{where}, x {_per_eval(per_eval)} per evaluation (pilot of {pilot})")
    return seconds, disk, how


def device(name: str):
    """The ``torch.device`` of ``--device``: ``auto`` picks CUDA when present, else the CPU; CUDA without CUDA is an
    error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {name} asked for, but torch.cuda.is_available() is False")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise CommandError(f"--device {name!r}: {one_line(err)}") from None


def set_threads(args) -> None:
    """Apply ``--threads`` (0 leaves torch's default)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def chunk_seed(seed: int, k: int) -> int:
    """The generator seed of chunk ``k`` of a chunked vanilla run with base seed ``seed``.

    It depends on nothing but ``(seed, k)``, so a resumed run redraws exactly
    the chunks an uninterrupted run would have drawn.
    """
    return seed * 100003 + k


def settings(args) -> dict:
    """The parsed command line as the settings record of a run (the handler function and ``--debug`` left out)."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "debug")}


# ----------------------------------------------------------------------------- help


HELP_WIDTH = 100
"""The width descriptions are wrapped to."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default (unless it is None or False) and keeps the description's and the
    example's lines (descriptions are wrapped by :func:`add_command`)."""

    @staticmethod
    def _shows_default(action) -> bool:
        """An option whose default is worth printing: not None, True, False or SUPPRESS (by identity: 0 and 1
        are defaults to print)."""
        return bool(action.option_strings) and not any(action.default is v for v in (None, False, True,
                                                                                       argparse.SUPPRESS))

    def _format_action(self, action):
        if action.help is None and self._shows_default(action):
            action = copy.copy(action)  # an option without help still shows its default
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or not self._shows_default(action):
            return text  # the help says what the default is, or there is none to show
        return f"{text} (default: %(default)s)"


def plain(text: str) -> str:
    """``text`` without reST markup (double backquotes, ``:func:`` roles), for a help screen."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def prog_name(argv0: str | None = None) -> str:
    """The program as it was started: ``python -m dmcmc_edu`` (``.cli``, ``.cli.distributed``) under ``-m``, else the
    script's name (``dmcmc-edu``).

    ``argv0`` defaults to ``sys.argv[0]``, which is the path of ``dmcmc_edu/__main__.py`` under ``python -m`` and
    the console script's path when run as ``dmcmc-edu``.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    path = Path(argv0 or "dmcmc-edu")
    if path.name == "__main__.py":
        names = [folder.name for folder in path.parents][:3]  # dmcmc_edu, dmcmc_edu/cli, dmcmc_edu/cli/distributed
        if "dmcmc_edu" in names:
            return "python -m " + ".".join(reversed(names[:names.index("dmcmc_edu") + 1]))
        return f"python -m {path.parent.name}"
    if path.name in ("", "-c"):
        return "dmcmc-edu"
    return path.name


def under_torchrun() -> bool:
    """True in a process that torchrun (torch.distributed.run) started: it sets ``TORCHELASTIC_RUN_ID``, and
    ``LOCAL_RANK`` beside ``WORLD_SIZE`` for each worker."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ)


def torchrun_prog(prog: str) -> str:
    """The command line that relaunches ``prog`` (a :func:`prog_name`) under torchrun: ``python -m dmcmc_edu``
    becomes ``torchrun --nproc-per-node N -m dmcmc_edu``; a script (the console script ``dmcmc-edu``) is named by
    the path torchrun was given (``sys.argv[0]``), since torchrun runs a module or a file, not a command."""
    if prog.startswith("python -m "):
        return f"torchrun --nproc-per-node N -m {prog[len('python -m '):]}"
    if prog.startswith("torchrun "):
        return prog
    return f"torchrun --nproc-per-node N {sys.argv[0] or prog}"


def is_rank_zero() -> bool:
    """False in a process that torchrun started with ``RANK`` (or else ``LOCAL_RANK``) other than 0."""
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value is not None:
            return value.strip() in ("", "0")
    return True


def parse_args_once(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; in a rank other than 0 of torchrun (:func:`is_rank_zero`) ``--help`` and
    ``--version`` print nothing, so a help screen is printed once, by rank 0 (errors still print in every rank)."""
    if is_rank_zero():
        return parser.parse_args(argv)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        return parser.parse_args(argv)


def add_command(sub, name: str, handler, example: str | None = None):
    """Add the sub-command ``name`` run by ``handler``; its docstring gives the help line and the description.

    The first paragraph of the docstring is the one-line help of ``--help``'s command list; the rest (if any)
    is the description of ``<name> --help``; ``example`` (the arguments after the command's name) makes its
    epilog, one example command line.  Returns the new parser for its arguments.
    """
    doc = inspect.cleandoc(handler.__doc__ or "")
    help_line, _, description = doc.partition("\n\n")
    paragraphs = [textwrap.fill(plain(" ".join(par.split())), HELP_WIDTH) for par in description.split("\n\n")]
    parser = sub.add_parser(name, help=plain(" ".join(help_line.split())),
                            description="\n\n".join(filter(None, paragraphs)) or None, formatter_class=HelpFormatter)
    if example is not None:
        parser.epilog = f"example:\n  {parser.prog} {example}"
    parser.set_defaults(func=handler)
    # also after the command name; SUPPRESS keeps a --debug given before it
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a failure instead of the one-line error message")
    return parser
