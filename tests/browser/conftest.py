"""Fixtures of the browser tests: a JupyterLab server on 127.0.0.1 and the folder for screenshots.

The tests run only with ``DMCMC_BROWSER_TEST=1`` (``make browser-test`` sets it); otherwise ``pytest tests``
(``make unit``) collects and skips them.  With the variable set, a missing Playwright or browser is an error.

Environment: ``CHROMIUM`` (default ``/usr/bin/chromium``), ``DMCMC_BROWSER_ARTIFACTS`` (where screenshots go,
default ``runs/browser``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The folder for screenshots (emptied of earlier screenshots first)."""
    out = Path(os.environ.get("DMCMC_BROWSER_ARTIFACTS", ROOT / "runs" / "browser"))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (a local server)
        return r.status, r.read()


def _wait_ready(proc, base: str, token: str, log: Path, limit: float = 90.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _get(f"{base}/api/status?token={token}")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {limit:.0f} s:\n{log.read_text()[-3000:]}")


def _settings(folder: Path) -> None:
    """JupyterLab settings for a test: every cell in the page (no windowing), no news or update checks."""
    tracker = folder / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    ext = folder / "@jupyterlab" / "apputils-extension"
    ext.mkdir(parents=True)
    (ext / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                      "checkForUpdates": False}))


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 (a free port, a random token) serving a temporary copy of the notebooks folder.

    Yields ``(base_url, token, folder)``; shuts the server down through its API at the end (then SIGTERM, SIGKILL).
    """
    tmp = tmp_path_factory.mktemp("lab")
    folder = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder, ignore=shutil.ignore_patterns("assignments", ".ipynb_checkpoints"))
    for name in ("settings", "workspaces", "config", "data", "runtime"):
        (tmp / name).mkdir()
    _settings(tmp / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONPATH=str(ROOT))
    log = tmp / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base, token, log)
        yield base, token, folder
    finally:
        _shutdown(proc, base, token)


def _shutdown(proc, base: str, token: str) -> None:
    if proc.poll() is None:
        try:
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=5).close()  # noqa: S310 (a local server)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue
