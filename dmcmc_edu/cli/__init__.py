"""Command-line interface: ``python -m dmcmc_edu <command> ...`` (also installed as ``dmcmc-edu``).

Commands
--------
demo                    the 2D demo of ``make demo``: figures and a results table in runs/demo
sample                  vanilla sampling with any integrator, or DLG with ``--dlg``; resumable
train-classifier        train a noise-level classifier (MLP) on a mixture target
inspect-checkpoint      print what a score_sde checkpoint holds
ladder                  NFE-quality sweep: six integrators from noise, two controls, DLG; resumable
train-score             train the MNIST U-Net score model; resumable, with a wall-clock budget
train-mnist-classifier  train the SimpleCNN noise-level classifier on MNIST
train-mnist-features    train the MNIST-FID feature network and its test-set statistics
sample-mnist            MNIST digits, vanilla from noise or DLG (--dlg); resumable
train-image-classifier  train the paper's noise-level classifier on CIFAR10 or an image folder
save-images             write samples as PNG or the paper's JPEG files
fid                     FID with pytorch-fid (optional extra 'fid')
sample-distributed      DLG across processes (torchrun); one resumable shard per rank and a manifest
assignments release     build the student versions of the course's assignments with nbgrader (extra 'assignments')
assignments grade       autograde returned assignment notebooks with nbgrader and write grades.csv
assignments feedback    one HTML feedback file per graded student and assignment (nbgrader)
course init             copy the walkthroughs, the nbgrader course and the MNIST data into a new folder

Bad input (an option out of range, options that do not go together, a missing, empty or truncated file, a
refused resume, an output that would be overwritten) ends a command with one line "error: ..." on stderr and
exit status 2; nothing already written is changed.  --debug shows the traceback instead.

The parsers import neither torch nor the library: each command's handler imports what it needs, so ``--help`` is
fast (``bench/cli_help_times.py`` measures it).
"""

from __future__ import annotations

import argparse

import dmcmc_edu
from dmcmc_edu.cli import assignments, course, distributed, gpu, ladder, mnist, toy
from dmcmc_edu.cli.common import HelpFormatter, parse_args_once, prog_name, run_handler

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Denoising MCMC (Denoising Langevin Gibbs) for diffusion models: sampling, sweeps, training, and the course.

Bad input (an option out of range, options that do not go together, a missing, empty or truncated file, a
refused resume, an output that would be overwritten) ends a command with one line "error: ..." on stderr and
exit status 2; nothing already written is changed.  --debug shows the traceback instead."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m dmcmc_edu``, with the sub-commands of every command module.

    ``prog`` names the program in usage lines (default: as it was started, :func:`~dmcmc_edu.cli.common.prog_name`).
    """
    prog = prog or prog_name()
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, formatter_class=HelpFormatter,
                                epilog=f"example:\n  {prog} sample --target ring --n 2000 --out runs/kar2\n"
                                       f"  {prog} COMMAND --help   (the options of a command)")
    p.add_argument("--version", action="version", version=f"%(prog)s {dmcmc_edu.__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of a failure instead of the one-line error message")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    toy.add_parsers(sub)  # demo, sample, train-classifier, inspect-checkpoint
    ladder.add_parsers(sub)  # ladder
    mnist.add_parsers(sub)  # train-score, train-mnist-classifier, train-mnist-features, sample-mnist
    gpu.add_parsers(sub)  # train-image-classifier, save-images, fid
    distributed.add_parsers(sub)  # sample-distributed
    assignments.add_parsers(sub)  # assignments release | grade | feedback
    course.add_parsers(sub)  # course init
    return p


def main(argv=None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen command; returns its exit status.

    A bad argument ends with argparse's usage error, an expected failure of the command with one ``error:`` line
    (:func:`dmcmc_edu.cli.common.run_handler`); both raise ``SystemExit`` with status 2.  Under torchrun only
    rank 0 prints ``--help`` and ``--version``.
    """
    # in-process calls (argv given: tests, notebooks) show the -m form; a command line names what was started
    args = parse_args_once(build_parser(None if argv is None else "python -m dmcmc_edu"), argv)
    return run_handler(args)
