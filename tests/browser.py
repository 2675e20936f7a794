"""What the browser tests share: node, npm and Chromium found (or the test skipped, saying
which is missing), the extension's npm packages, a real Jupyter server (JupyterLab or
Notebook 7) on loopback, and running a playwright-core script of labextension/scripts/
with a JSON spec (its JSON summary, the last line it prints, returned).

Screenshots land in labextension/test-artifacts/. The scripts' own helpers are in
labextension/scripts/lib.mjs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LABEXTENSION = ROOT / "labextension"
ARTIFACTS = LABEXTENSION / "test-artifacts"
BUILT = ROOT / "jupyter_delegate" / "labextension"  # the extension built by npm
CHROMIUM = Path("/usr/bin/chromium")
NPM = shutil.which("npm")

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or NPM is None,
    reason="node and npm are not installed: the front end cannot be tested (CI has both)",
)
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing (apt-get install -y chromium; CI installs it)",
)


def npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert NPM is not None
    return subprocess.run(
        [NPM, *args], cwd=LABEXTENSION, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def node_modules() -> None:
    if not (LABEXTENSION / "node_modules" / ".package-lock.json").exists():
        done = npm("ci", "--no-audit", "--no-fund")
        assert done.returncode == 0, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """JupyterLab on 127.0.0.1, token disabled, rooted in a temp dir, its own settings."""
    with jupyter_server(tmp_path, "jupyterlab") as served:
        yield served


@contextlib.contextmanager
def jupyter_server(
    tmp_path: Path, app: str = "jupyterlab", extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """`app` ("jupyterlab", "notebook" for Notebook 7, or "jupyter_server" alone) on
    127.0.0.1, token disabled, rooted in `tmp_path`/root, with settings of its own and
    `env` added to its environment: (base URL, root)."""
    root = tmp_path / "root"
    root.mkdir()
    settings = tmp_path / "lab-settings"
    apputils = settings / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    # The extension as built in this checkout (first on the labextensions path), whichever
    # copy `pip install` put in the environment.
    data = tmp_path / "jupyter-data"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "jupyter-delegate").symlink_to(BUILT)
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
        JUPYTER_DATA_DIR=str(data),
        JUPYTER_PREFER_ENV_PATH="0",  # the data dir above first
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        **(extra_env or {}),
    )
    port = free_port()
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            app,
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={root}",
            *(["--LabApp.news_url="] if app == "jupyterlab" else []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()
                    ) from None
                time.sleep(0.3)
        yield base, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def kernel_notebook(cells: list[Any]) -> Any:
    """A notebook of `cells` that names the Python 3 kernel (opened, it starts one)."""
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return notebook


def run_script(script: str, spec: dict[str, Any], tmp_path: Path, timeout: float = 400) -> Any:
    """Run labextension/scripts/`script` with `spec` (plus the Chromium path and the
    artifacts folder); its JSON summary. Fails the test with the script's output."""
    spec = {"chromium": str(CHROMIUM), "artifacts": str(ARTIFACTS), **spec}
    path = tmp_path / f"{Path(script).stem}-spec.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        ["node", f"scripts/{script}", str(path)],
        cwd=LABEXTENSION,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(done.stderr)  # all of it (dialogs met, the summary so far): pytest shows it on failure
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(summary, indent=1))  # shown by pytest -rP
    return summary
