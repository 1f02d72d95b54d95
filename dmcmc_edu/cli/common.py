"""Helpers that more than one command module needs.

Loading a mixture target (a bad name or file ends the command with one
``error:`` line), the sigma range of a target, the torch device and thread
count of a command, the seed of a chunk of a resumable vanilla run, the
settings record of a run, and turning expected exceptions into one-line
errors.  JSON files are written with :func:`dmcmc_edu.runs.write_json`.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from dmcmc_edu.targets import load_target as _load_target

__all__ = ["TARGET_HELP", "load_target", "sigma_range", "device", "set_threads", "chunk_seed", "settings",
           "errors_as_exit"]

TARGET_HELP = "ring | grid | lowrank | PATH.json (a mixture file: weights, means, covariances or factors+diagonal)"


def load_target(spec: str):
    """The mixture target ``spec`` names; an unknown name or a malformed file becomes one ``error: --target`` line."""
    try:
        return _load_target(spec)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: --target {spec!r}: {e}") from None


def sigma_range(args, mix) -> tuple[float, float]:
    """``(sigma_min, sigma_max)`` from ``--sigma-min/--sigma-max``, each defaulting to the target's own choice."""
    smin = args.sigma_min if args.sigma_min is not None else mix.default_sigma_min()
    smax = args.sigma_max if args.sigma_max is not None else mix.default_sigma_max()
    if not 0 < smin < smax:
        raise SystemExit(f"error: need 0 < --sigma-min < --sigma-max, got {smin} and {smax}")
    return smin, smax


def device(name: str) -> torch.device:
    """The device of ``--device``: ``auto`` picks CUDA when present, else the CPU; CUDA without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but torch.cuda.is_available() is False")
    return torch.device(name)


def set_threads(args) -> None:
    """Apply ``--threads`` (0 leaves torch's default)."""
    if args.threads:
        torch.set_num_threads(args.threads)


def chunk_seed(seed: int, k: int) -> int:
    """The generator seed of chunk ``k`` of a chunked vanilla run with base seed ``seed``.

    It depends on nothing but ``(seed, k)``, so a resumed run redraws exactly
    the chunks an uninterrupted run would have drawn.
    """
    return seed * 100003 + k


def settings(args) -> dict:
    """The parsed command line as the settings record of a run (the handler function left out)."""
    return {k: v for k, v in vars(args).items() if k != "func"}


@contextlib.contextmanager
def errors_as_exit(*types: type[BaseException], prefix: str = "error"):
    """Turn the listed exceptions raised inside the block into ``SystemExit("<prefix>: <message>")``."""
    try:
        yield
    except types as err:
        raise SystemExit(f"{prefix}: {err}") from None


def add_command(sub, name: str, handler):
    """Add the sub-command ``name`` run by ``handler``; its docstring gives the help line and the description.

    The first paragraph of the docstring is the one-line help of ``--help``'s command list; the rest (if any)
    is the description of ``<name> --help``.  Returns the new parser for its arguments.
    """
    doc = inspect.cleandoc(handler.__doc__ or "")
    help_line, _, description = doc.partition("\n\n")
    parser = sub.add_parser(name, help=" ".join(help_line.split()), description=" ".join(description.split()) or None)
    parser.set_defaults(func=handler)
    return parser
