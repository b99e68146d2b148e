"""Real processes for integration tests: a dask scheduler and workers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import stop_process

BIN = Path(sys.executable).parent
DASK = BIN / "dask"
START_TIMEOUT = 30.0  # seconds for the scheduler file and the workers to appear


@dataclass(frozen=True)
class Cluster:
    address: str
    logs: Path
    workers: list[subprocess.Popen[bytes]]


def start(
    args: list[str | Path], log: Path, cwd: Path, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A process with its output in a file (a PIPE nobody reads would block it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(a) for a in args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,  # its own process group: a nanny's worker is ours too
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate gracefully, then kill the process group if it does not go."""
    stop_process(proc)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its group (the nanny's worker)


def log_tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))


@contextlib.contextmanager
def dask_cluster(root: Path, *, workers: int = 2, nanny: bool = True) -> Iterator[Cluster]:
    """`dask scheduler` plus single-threaded `dask worker` processes on loopback.

    Without a nanny, a worker killed with SIGKILL stays dead: its tasks must move.
    Workers start without any GDAL_* variable of this process: satdask must set its own.
    """
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith(("GDAL_", "VSI_"))}
    from distributed import Client

    logs = root / "logs"
    logs.mkdir(parents=True)
    scheduler_file = root / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start(
                [
                    DASK,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    scheduler_file,
                ],
                logs / "scheduler.log",
                root,
            )
        )
        deadline = time.monotonic() + START_TIMEOUT
        address = None
        while address is None:
            if procs[0].poll() is not None:
                pytest.fail(f"dask scheduler exited early\n{log_tail(logs)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no scheduler file after {START_TIMEOUT} s\n{log_tail(logs)}")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                address = json.loads(scheduler_file.read_text())["address"]
            if address is None:
                time.sleep(0.1)
        assert address.startswith("tcp://127.0.0.1:"), address

        for i in range(workers):
            procs.append(
                start(
                    [DASK, "worker", address, "--nworkers", "1", "--nthreads", "1"]
                    + ["--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}"]
                    + ["--local-directory", root / f"w{i}", "--death-timeout", "60"]
                    + ([] if nanny else ["--no-nanny"]),
                    logs / f"worker-{i}.log",
                    root,
                    env=worker_env,
                )
            )
        with Client(address, timeout=START_TIMEOUT) as client:
            try:
                client.wait_for_workers(workers, timeout=START_TIMEOUT)
            except TimeoutError:
                pytest.fail(f"workers did not join in {START_TIMEOUT} s\n{log_tail(logs)}")
        yield Cluster(address, logs, procs[1:])
    finally:
        for proc in reversed(procs):  # workers first, then the scheduler
            stop(proc)
