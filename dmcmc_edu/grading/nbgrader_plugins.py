"""The course's plug-ins to ``nbgrader autograde``: the student's kernel in a sandbox, the checks judged outside it.

``notebooks/assignments/nbgrader_config.py`` puts two preprocessors in place of nbgrader's ``Execute`` in
``Autograde.autograde_preprocessors``; everything else -- restoring the graded cells and hidden tests from the
gradebook, ``SaveAutoGrades`` writing the scores, late penalties, ``nbgrader export`` -- is nbgrader's own:

* :class:`SandboxExecute` -- nbgrader's ``Execute`` (same per-cell time-out, same error outputs) whose kernel is
  started by :class:`SandboxKernelManager` inside bubblewrap (:mod:`dmcmc_edu.grading.sandbox`), with a wall-clock
  limit per notebook and a limit on the size of its outputs.  A kernel that dies (``os._exit``, killed for memory),
  a cell that runs past the per-cell time-out (the kernel is then stopped: a kernel that ignores interrupts cannot
  hold the batch), a notebook past its time or output limit: the notebook stops there, the error is put in the cell
  and logged as ``dmcmc_edu-sandbox: <why>``, and the grading goes on -- the cells that did not run have no record
  and score nothing; the other students are not affected.
* :class:`JudgeChecks` -- replaces the outputs of every autograded test cell with the verdict of
  :func:`dmcmc_edu.grading.judge.judge_cell`, computed in this (the grader's) process from the cell's trusted
  source and the records the kernel displayed.  ``SaveAutoGrades``, which comes after, scores a test cell by
  whether it has an error output: so the score is the judge's, not the kernel's.

This module imports nbgrader; it is loaded only by nbgrader (through the course's configuration).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import from_dict
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Float, Integer

from dmcmc_edu.grading.feedback import HIDDEN_ENV, RECORD_ENV
from dmcmc_edu.grading.judge import JudgeError, judge_cell, records_of, verdict_outputs
from dmcmc_edu.grading.sandbox import NOBODY, Limits, SandboxError, kernel_command, sandbox_mode

__all__ = ["SandboxKernelManager", "SandboxExecute", "JudgeChecks", "NotebookStopped", "LOG_TAG"]

LOG_TAG = "dmcmc_edu-sandbox:"
# the secret of this grading run's hidden cases (feedback.hidden_seed): handed to every kernel this process starts,
# used by the judge in this process; a student's own session never has it
os.environ.setdefault(HIDDEN_ENV, secrets.token_hex(16))
STOPPED_KEY = "dmcmc_edu_stopped"


class NotebookStopped(RuntimeError):
    """The grader stopped a notebook (time or output limit, a dead kernel); the message says why."""


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in the sandbox (``DMCMC_EDU_SANDBOX=plain``: without it, unsafe).

    In the sandbox the kernel talks over Unix sockets (``transport = ipc``) in a fresh folder of its own, the only
    writable place it shares with the grader; the kernel's environment holds ``DMCMC_EDU_RECORD_CHECKS=1`` so that
    the checks hand their records over.
    """

    sandbox_limits = Limits()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sandbox = sandbox_mode()
        self.runtime_dir: Path | None = None
        if self.sandbox == "bwrap":
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="dmcmc-kernel-"))
            if os.geteuid() == 0:
                os.chown(self.runtime_dir, NOBODY, NOBODY)
            self.transport = "ipc"
            self.connection_file = str(self.runtime_dir / "kernel.json")
            self.ip = str(self.runtime_dir / "ipc")

    def write_connection_file(self, **kwargs) -> None:
        """Write it as usual; in the sandbox, readable by the sandbox's user (uid 65534 when run as root)."""
        super().write_connection_file(**kwargs)
        if self.runtime_dir is not None and os.geteuid() == 0:
            os.chown(self.connection_file, NOBODY, NOBODY)

    async def _async_pre_start_kernel(self, **kw):
        self._kernel_cwd = kw.get("cwd")
        return await super()._async_pre_start_kernel(**kw)

    def _release_folder(self) -> Path | None:
        """``<course>/release/<a>`` of the notebook being graded (nbgrader runs it in ``autograded/<student>/<a>``)."""
        cwd = getattr(self, "_kernel_cwd", None)
        if not cwd:
            return None
        here = Path(cwd).resolve()
        if len(here.parents) < 3 or here.parents[1].name != "autograded":
            return None
        folder = here.parents[2] / "release" / here.name
        return folder if folder.is_dir() else None

    def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
        """The kernel's command, wrapped in bubblewrap (:func:`dmcmc_edu.grading.sandbox.kernel_command`), with
        the files of the assignment's release (not its notebooks) in the working folder."""
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.runtime_dir is not None:
            return kernel_command(cmd, self.runtime_dir, self.sandbox_limits, release=self._release_folder())
        return cmd

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        env = dict(kw.get("env") or os.environ)
        env[RECORD_ENV] = "1"
        env[HIDDEN_ENV] = os.environ[HIDDEN_ENV]
        kw["env"] = env
        return await super()._async_launch_kernel(kernel_cmd, **kw)

    def kill_now(self) -> None:
        """Kill the kernel's process (in the sandbox: the whole sandbox) at once; from any thread."""
        process = getattr(self.provisioner, "process", None) if self.provisioner is not None else None
        if process is not None and process.poll() is None:
            process.kill()

    def remove_runtime_dir(self) -> None:
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


class SandboxExecute(Execute):
    """nbgrader's ``Execute`` with the kernel in the sandbox and limits per notebook (see the module's docstring)."""

    notebook_seconds = Float(Limits.notebook_seconds, help="wall-clock limit of one notebook, in seconds").tag(
        config=True)
    output_bytes = Integer(Limits.output_bytes, help="the most output one notebook may send back, in bytes").tag(
        config=True)

    def __init__(self, *args, **kwargs):
        kwargs["kernel_manager_class"] = SandboxKernelManager
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self):
        """nbclient's, remembered: nbclient lets go of it at the end, before the sandbox's folder is removed."""
        self._manager = super().create_kernel_manager()
        if isinstance(self._manager, SandboxKernelManager):
            self._manager.sandbox_limits = replace(Limits(), notebook_seconds=self.notebook_seconds,
                                                   output_bytes=self.output_bytes)
        return self._manager

    def _stop(self, reason: str) -> None:
        if self._stopped is None:
            self._stopped = reason
        km = self._manager
        if isinstance(km, SandboxKernelManager):
            km.kill_now()

    def preprocess(self, nb, resources=None, km=None):
        self._stopped: str | None = None
        self._manager = None
        self._output_seen = 0
        self._cell_index = -1
        timer = threading.Timer(self.notebook_seconds, self._stop,
                                args=(f"the notebook ran past its time limit of {self.notebook_seconds:g} s",))
        timer.daemon = True
        timer.start()
        try:
            return super().preprocess(nb, resources, km)
        except SandboxError:
            raise
        except (DeadKernelError, CellTimeoutError, NotebookStopped, RuntimeError, TimeoutError) as err:
            if self._cell_index < 0 and self._stopped is None:
                # no student code ran yet: the sandbox or the kernel failed to start -- the grader's problem, not a
                # zero for the student (nbgrader reports this submission as not processed)
                raise SandboxError(f"the kernel did not start ({type(err).__name__}: {str(err)[:200]})") from None
            reason = self._stopped or f"the kernel died ({type(err).__name__}: {str(err)[:200]})"
            self._record_stop(nb, resources, reason)
            return nb, resources
        finally:
            timer.cancel()
            manager = self._manager
            if isinstance(manager, SandboxKernelManager):
                manager.kill_now()
                manager.remove_runtime_dir()

    def _record_stop(self, nb, resources, reason: str) -> None:
        index = max(self._cell_index, 0)
        where = (resources or {}).get("metadata", {}).get("path") or (resources or {}).get("unique_key", "?")
        self.log.error("%s %s (at cell %d of %s)", LOG_TAG, reason, index, where)
        if resources is not None:
            resources[STOPPED_KEY] = {"cell": index, "reason": reason}
        if 0 <= index < len(nb.cells) and nb.cells[index].cell_type == "code":
            nb.cells[index].outputs.append(from_dict({
                "output_type": "error", "ename": "NotebookStopped", "evalue": reason,
                "traceback": [f"NotebookStopped: {reason}; the cells after this one did not run"]}))

    def preprocess_cell(self, cell, resources, index):
        self._cell_index = index
        if self._stopped is not None:
            raise NotebookStopped(self._stopped)
        return super().preprocess_cell(cell, resources, index)

    async def _async_handle_timeout(self, timeout, cell=None):
        """A cell past the per-cell time-out stops the notebook (a kernel may ignore interrupts)."""
        self._stop(f"a cell ran past the time limit of {timeout} s per cell")
        raise NotebookStopped(self._stopped)

    def output(self, outs, msg, display_id, cell_index):
        """Keep an output only while the notebook's outputs stay under :attr:`output_bytes`."""
        if self._stopped is not None:
            return None
        self._output_seen += len(json.dumps(msg.get("content", {}), default=str))
        if self._output_seen > self.output_bytes:
            self._stop(f"the notebook's output passed its limit of {self.output_bytes} bytes")
            return None
        return super().output(outs, msg, display_id, cell_index)


KEPT_MIME = ("text/plain", "image/png", "image/jpeg")  # what a student's cell may show in the graded notebook


def _plain_output(out):
    """An output of a student's cell reduced to text and images: no HTML or scripts reach the instructor's
    formgrader or the feedback pages, no record outside a test cell."""
    if out.get("output_type") not in ("display_data", "execute_result"):
        return out
    data = {k: v for k, v in out.get("data", {}).items() if k in KEPT_MIME}
    if not data:
        return None
    out["data"] = data
    return out


class JudgeChecks(NbGraderPreprocessor):
    """Replace each autograded test cell's outputs by the judge's verdict (see the module's docstring); keep only
    text and images in the other cells' outputs."""

    def preprocess(self, nb, resources):
        stopped = (resources or {}).get(STOPPED_KEY)
        for index, cell in enumerate(nb.cells):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type != "code":
                continue
            if not meta.get("grade") or meta.get("solution"):
                cell.outputs = [o for o in map(_plain_output, cell.get("outputs", [])) if o is not None]
                continue
            why = None
            if stopped and index >= stopped["cell"]:
                why = f"the notebook was stopped at cell {stopped['cell']}: {stopped['reason']}"
            try:
                verdict = judge_cell(cell.source, records_of(cell.get("outputs")), stopped=why)
            except JudgeError as err:
                raise JudgeError(f"cell {meta.get('grade_id', index)}: {err}") from None
            cell.outputs = [from_dict(o) for o in verdict_outputs(verdict)]
            if not verdict.passed:
                self.log.info("%s %s: %s", LOG_TAG.replace("sandbox", "judge"), meta.get("grade_id"),
                              verdict.message)
        return nb, resources
