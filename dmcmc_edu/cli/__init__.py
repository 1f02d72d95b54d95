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

Bad input (an option out of range, options that do not go together, a missing, empty or truncated file, a
refused resume, an output that would be overwritten) ends a command with one line "error: ..." on stderr and
exit status 2; nothing already written is changed.  --debug shows the traceback instead.
"""

from __future__ import annotations

import argparse

from dmcmc_edu.cli import assignments, distributed, gpu, ladder, mnist, toy
from dmcmc_edu.cli.common import run_handler

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m dmcmc_edu``, with the sub-commands of every command module."""
    p = argparse.ArgumentParser(prog="python -m dmcmc_edu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of a failure instead of the one-line error message")
    sub = p.add_subparsers(dest="command", required=True)
    toy.add_parsers(sub)  # demo, sample, train-classifier, inspect-checkpoint
    ladder.add_parsers(sub)  # ladder
    mnist.add_parsers(sub)  # train-score, train-mnist-classifier, train-mnist-features, sample-mnist
    gpu.add_parsers(sub)  # train-image-classifier, save-images, fid
    distributed.add_parsers(sub)  # sample-distributed
    assignments.add_parsers(sub)  # assignments release | grade
    return p


def main(argv=None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen command; returns its exit status.

    A bad argument ends with argparse's usage error, an expected failure of the command with one ``error:`` line
    (:func:`dmcmc_edu.cli.common.run_handler`); both raise ``SystemExit`` with status 2.
    """
    args = build_parser().parse_args(argv)
    return run_handler(args)

