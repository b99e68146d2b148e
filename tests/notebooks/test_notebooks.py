"""The notebooks run top to bottom on a real Jupyter kernel, and JupyterLab starts.

The kernel is this interpreter (the venv that has satdask), through a
kernelspec written to a private JUPYTER_PATH, so a `python3` kernel installed
elsewhere on the machine can never be picked up. Every Jupyter and IPython
directory points into the test's temporary folder: nothing is read from or
written to the user's home.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = [
    "01_explore_scene.ipynb",
    "02_batch_inference.ipynb",
    "03_http_service.ipynb",
    "04_pixel_model.ipynb",
    "05_cloud_mask.ipynb",
]
CELL_TIMEOUT_S = 120  # a bound, not a benchmark: each notebook takes a few seconds
LAB_START_TIMEOUT_S = 60
# Cell metadata that only execution or a UI writes (what nbstripout removes).
VOLATILE_CELL_METADATA = {"execution", "ExecuteTime", "collapsed", "scrolled"}


def _ids(path: Path) -> str:
    return path.stem


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Private Jupyter/IPython dirs and a `python3` kernelspec that runs this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    kernel_dir = root / "path" / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (satdask tests)",
        "language": "python",
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))
    env = {
        # jupyter_core warns (DeprecationWarning) unless the platformdirs layout is chosen
        "JUPYTER_PLATFORM_DIRS": "1",
        "JUPYTER_PATH": str(root / "path"),  # searched first: our python3 wins
        "JUPYTER_DATA_DIR": str(root / "data"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "IPYTHONDIR": str(root / "ipython"),
        "MPLCONFIGDIR": str(root / "matplotlib"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        # The kernel must choose its inline backend itself, or no figure becomes a PNG.
        mp.delenv("MPLBACKEND", raising=False)
        yield env


def test_the_notebooks_are_those_of_the_issue() -> None:
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_is_committed_with_outputs_stripped(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = []
    for index, cell in enumerate(nb.cells):
        volatile = VOLATILE_CELL_METADATA & set(cell.metadata)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            dirty.append(f"cell {index}: outputs or execution count")
        if volatile:
            dirty.append(f"cell {index}: metadata {sorted(volatile)}")
    if "widgets" in nb.metadata:
        dirty.append("notebook metadata: widget state")
    assert not dirty, f"{path.name} is not stripped ({'; '.join(dirty)}); clear all outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_without_error_and_draws(path: Path, jupyter_env: dict[str, str]) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no figure"
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    for noise in ("Warning", "Traceback", "Error"):
        assert noise not in stderr, f"{path.name} printed to stderr:\n{stderr}"


@pytest.mark.slow
def test_jupyterlab_starts_and_serves_lab(jupyter_env: dict[str, str], tmp_path: Path) -> None:
    port, token = free_port(), secrets.token_hex(16)
    command = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--allow-root",  # CI runs as root
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={NOTEBOOKS_DIR}",
    ]
    log_path = tmp_path / "jupyterlab.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        lab = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            status, body = _poll(f"{base}/lab?token={token}", lab, log_path)
            assert status == 200
            assert b"jupyter-config-data" in body  # the JupyterLab page, not a login form
            assert _get(f"{base}/api/status")[0] == 403  # no token, no API
        finally:
            lab.send_signal(signal.SIGTERM)
            try:
                lab.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait(timeout=10)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _poll(url: str, process: subprocess.Popen[bytes], log_path: Path) -> tuple[int, bytes]:
    """GET url until it answers 200, the process dies, or the time bound passes."""
    deadline = time.monotonic() + LAB_START_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            status, body = _get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = str(exc)
        else:
            if status == 200:
                return status, body
            last = f"HTTP {status}"
        time.sleep(0.25)
    pytest.fail(f"{url}: no 200 within {LAB_START_TIMEOUT_S} s ({last}):\n{log_path.read_text()}")
