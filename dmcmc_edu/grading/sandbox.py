"""Where a student's notebook runs when it is graded: a bubblewrap sandbox around the kernel, with limits.

nbgrader executes a submission by starting a Jupyter kernel and sending it the notebook's cells.  With this
course's configuration (``notebooks/assignments/nbgrader_config.py``, :mod:`dmcmc_edu.grading.nbgrader_plugins`)
that kernel -- the only process that runs student code -- is started inside `bubblewrap
<https://github.com/containers/bubblewrap>`_ (Debian's package ``bubblewrap``) by :func:`kernel_command`:

* **a scratch filesystem**: read-only binds of the system (``/usr``, ``/etc``, ...), of this Python and its
  environment and of the installed ``dmcmc_edu`` package only; a private, size-limited ``/tmp`` and working folder
  (a fresh ``tmpfs``: what the student's code writes there is gone when the kernel ends), which holds the files
  of the assignment's release (read-only, its notebooks left out), as the student had them.  The course folder
  (``source/`` with the model answers and hidden tests, ``gradebook.db``, other students' work), the repository
  and the instructor's home are not in it; the notebook file itself is not either (the cells arrive one by one over
  the kernel's sockets, so a hidden test cell is seen only when it runs);
* **an unprivileged user**: run as root, the sandbox drops to uid/gid 65534 (``nobody``) with no capabilities and
  ``no_new_privs`` before Python starts; run as another user, it keeps that user's uid inside a user namespace
  (it still sees only the binds above);
* **no network** (a new network namespace holds only its own loopback), its own process, IPC and UTS namespaces,
  a new session (no terminal to write to);
* **limits**: address space (memory) and CPU seconds of each process, processes of the sandbox's user, the size
  of any written file, open files, no core files (``prlimit``); nbgrader's per-cell time-out, and the per-notebook
  and whole-run wall-clock limits of :mod:`dmcmc_edu.grading.nbgrader_plugins` and :mod:`dmcmc_edu.grading.course`;
  the size of the output a notebook may send back (:data:`Limits.output_bytes`).  Memory is bounded per process,
  not in total (that needs cgroups, e.g. ``systemd-run --scope -p MemoryMax=...`` around the grader);
* **nothing left behind**: the kernel is the first process of its own PID namespace, and ``--die-with-parent``
  ties the namespace to the sandbox's launcher: when the kernel is shut down or killed, every process it started
  (daemonised or not) is killed by the operating system.

The only way in and out is the kernel's connection: ZeroMQ over Unix sockets (``transport = ipc``) in a fresh
per-kernel folder that holds nothing else.

The **plain mode** (``DMCMC_EDU_SANDBOX=plain``) starts the kernel without bubblewrap, as the user running the
grader: for a laptop without bubblewrap, to grade one's own or trusted notebooks.  It is **not safe for hostile
code**: student code can then read and change anything that user can, use the network and leave processes
behind.  The checks are still judged outside the kernel (:mod:`dmcmc_edu.grading.judge`), so patching them in the
notebook still gains nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SandboxError", "Limits", "MODE_ENV", "sandbox_mode", "kernel_command", "check_sandbox", "NOBODY",
           "package_dir"]

MODE_ENV = "DMCMC_EDU_SANDBOX"
MODES = ("bwrap", "plain")
NOBODY = 65534  # uid and gid of the sandbox when the grader runs as root
WORKDIR = "/home/student/work"
BWRAP_MISSING = ("bubblewrap (bwrap) is not installed: grading runs each student's kernel in a bwrap sandbox "
                 "(Debian/Ubuntu: apt-get install bubblewrap); on a laptop, for trusted notebooks only, "
                 f"{MODE_ENV}=plain grades without the sandbox")


class SandboxError(RuntimeError):
    """The sandbox cannot be set up (no bubblewrap, an unknown mode); one line."""


@dataclass(frozen=True)
class Limits:
    """The limits of one graded notebook (defaults sized for this course: every notebook runs in about 10 s)."""

    notebook_seconds: float = 600.0  # wall clock of one notebook, all cells together
    memory_bytes: int = 6 << 30  # address space of each sandboxed process (torch maps ~2 GiB on import)
    processes: int = 128  # tasks (processes and threads) of the sandbox's user (a kernel uses about 12)
    file_bytes: int = 64 << 20  # the largest file the sandbox may write
    open_files: int = 512
    tmp_bytes: int = 256 << 20  # the private /tmp, and the working folder, each
    output_bytes: int = 16 << 20  # everything one notebook may send back (outputs of all cells)


def sandbox_mode() -> str:
    """``"bwrap"`` (the default) or ``"plain"`` (``DMCMC_EDU_SANDBOX=plain``); refuses bwrap mode without bwrap."""
    mode = os.environ.get(MODE_ENV, "bwrap") or "bwrap"
    if mode not in MODES:
        raise SandboxError(f"{MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "bwrap" and shutil.which("bwrap") is None:
        raise SandboxError(BWRAP_MISSING)
    return mode


def package_dir() -> Path:
    """The folder of the installed ``dmcmc_edu`` package (the only part of a clone the sandbox sees)."""
    return Path(__file__).resolve().parents[1]


def _system_binds() -> list[str]:
    args = []
    for path in ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/sbin", "/etc"):
        if os.path.lexists(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    return args


def _python_binds() -> list[str]:
    """This Python (its base installation and the environment) and the package, read-only, at their own paths."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent,
             package_dir()}
    args, parents = [], set()
    for path in sorted(paths, key=lambda p: len(p.parts)):
        if any(str(path).startswith(prefix + "/") or str(path) == prefix for prefix in ("/usr", "/etc")):
            continue
        for parent in reversed(path.parents[:-1]):  # mount points bwrap would make 0700: make them 0755 first
            if parent not in parents and str(parent) not in ("/usr", "/etc"):
                parents.add(parent)
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(path), str(path)]
    return args


def _nproc_per_namespace() -> bool:
    """Whether this Linux counts RLIMIT_NPROC per user namespace (5.14 and later)."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def _release_binds(release: Path | None) -> list[str]:
    """Read-only binds of the release folder's files (its notebooks left out) into the working folder."""
    if release is None:
        return []
    args, made = [], set()
    for path in sorted(Path(release).rglob("*")):
        rel = path.relative_to(release)
        if path.is_symlink() or not path.is_file() or path.suffix == ".ipynb" or any(
                part.startswith(".") for part in rel.parts):
            continue
        for parent in reversed(rel.parents[:-1]):
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0777", "--dir", f"{WORKDIR}/{parent.as_posix()}"]
        args += ["--ro-bind", str(path), f"{WORKDIR}/{rel.as_posix()}"]
    return args


def kernel_command(argv: list[str], runtime_dir: Path, limits: Limits, *, as_root: bool | None = None,
                   release: Path | None = None) -> list[str]:
    """The command that starts the kernel ``argv`` inside the sandbox (see the module's docstring).

    ``runtime_dir`` is the kernel's own folder for its connection file and sockets (bound read-write at the same
    path; it must hold nothing else); ``as_root`` (default: whether this process is root) drops to uid 65534;
    ``release`` is the assignment's release folder, whose files but the notebooks (data a notebook reads) are put
    read-only into the working folder, as the student had them.
    """
    root = os.geteuid() == 0 if as_root is None else as_root
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(BWRAP_MISSING)
    cpu = int(limits.notebook_seconds) + 60  # CPU seconds of each process: a bound even if the wall clock fails
    prefix = [shutil.which("prlimit") or "prlimit", f"--as={limits.memory_bytes}", f"--cpu={cpu}",
              f"--fsize={limits.file_bytes}", f"--nofile={limits.open_files}", "--core=0"]
    if root or _nproc_per_namespace():
        # RLIMIT_NPROC counts the tasks of a uid: of uid 65534 (root's sandbox), or, as another user, of the sandbox's
        # own user namespace (Linux >= 5.14); on an older kernel it would count the user's whole desktop session
        prefix.append(f"--nproc={limits.processes}")
    prefix.append("--")
    env = {"HOME": "/tmp", "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8",
           "DMCMC_EDU_RECORD_CHECKS": "1", "JPY_PARENT_PID": "1"}
    if os.environ.get("DMCMC_EDU_HIDDEN_SEED"):  # this grading run's secret of the hidden cases (feedback.HIDDEN_ENV)
        env["DMCMC_EDU_HIDDEN_SEED"] = os.environ["DMCMC_EDU_HIDDEN_SEED"]
    cmd = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
           "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--clearenv"]
    if not root:
        cmd += ["--unshare-user"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd += _system_binds()
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--perms", "01777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--perms", "0755", "--dir", "/home",
            "--perms", "0777", "--size", str(limits.tmp_bytes), "--tmpfs", "/home/student",
            "--perms", "0777", "--dir", WORKDIR]
    # after the private /tmp and home: an environment installed under /tmp (or /home/student) is bound on top of
    # them rather than hidden by them
    cmd += _python_binds()
    cmd += _release_binds(release)
    for parent in reversed(Path(runtime_dir).parents[:-1]):  # its mount point's folders, traversable by the kernel
        if str(parent) not in ("/tmp", "/home", "/home/student"):
            cmd += ["--perms", "0755", "--dir", str(parent)]
    cmd += ["--bind", str(runtime_dir), str(runtime_dir),
            "--chdir", WORKDIR, "--"]
    if root:
        cmd += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs",
                "--inh-caps=-all", "--bounding-set=-all", "--"]
    return prefix + cmd + list(argv)


def check_sandbox() -> str:
    """The sandbox mode, after proving that it works: a sandboxed Python imports ``dmcmc_edu`` as the kernel would.

    Raises :class:`SandboxError` (one line) when bubblewrap is missing or cannot set up the sandbox here (e.g. a
    container without user namespaces), so that grading stops before any notebook rather than scoring every
    notebook of the class 0 for a kernel that never started.
    """
    mode = sandbox_mode()
    if mode != "bwrap":
        return mode
    runtime = Path(tempfile.mkdtemp(prefix="dmcmc-kernel-check-"))
    try:
        if os.geteuid() == 0:
            os.chown(runtime, NOBODY, NOBODY)
        cmd = kernel_command([sys.executable, "-c", "import dmcmc_edu.grading.feedback, ipykernel"], runtime,
                             Limits())
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SandboxError(f"the bubblewrap sandbox does not start here ({err}); {MODE_ENV}=plain grades "
                               "without it, for trusted notebooks only") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1][:300]
            raise SandboxError(f"the bubblewrap sandbox does not work here ({last}); {MODE_ENV}=plain grades "
                               "without it, for trusted notebooks only")
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    return mode
