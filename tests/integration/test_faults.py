"""Faults injected for real: SIGKILLed runs and workers, racing runs, a flaky HTTP server.

Each test compares against an undisturbed threaded run of the same scene: the
promise is not only that the run finishes, but that its arrays are bit-identical.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import zarr
from procs import dask_cluster
from support import RangeHandler, assert_same_arrays, corrupt_block, serving

from satdask import ModelRegistry, open_run, run_batch
from satdask.io._journal import journal_path
from satdask.io.sample import write_sample
from satdask.io.source import REMOTE_RETRIES
from satdask.io.store import decode_attrs

SATDASK = Path(sys.executable).parent / "satdask"
TIMEOUT = 180  # seconds for any one command; never reached normally
BLOCKS = 256  # a 4096 px scene at one tile per block


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("faults") / "scene.tif", size=4096, bands=4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, scene: Path, sample_registry: Path) -> Path:
    """The undisturbed run every faulty one must equal."""
    out = tmp_path_factory.mktemp("reference") / "run.zarr"
    succeeded(satdask("infer", scene, *model_and_out(sample_registry, out)))
    return out


def model_and_out(registry: Path, out: Path, *extra: object) -> list[object]:
    return ["--model", registry, "--out", out, "--tiles-per-chunk", 1, *extra]


def satdask(*args: object) -> subprocess.CompletedProcess[str]:
    cmd = [str(SATDASK), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def launch(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SATDASK), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def succeeded(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str] | tuple[int, str]) -> str:
    code, stderr = (proc.returncode, proc.stderr) if not isinstance(proc, tuple) else proc
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def wait_for_segments(out: Path, proc: subprocess.Popen[str], *, at_least: int = 1) -> None:
    """Until the run has made blocks durable; fails if it ends first."""
    segments = journal_path(out) / "segments"
    deadline = time.monotonic() + TIMEOUT
    while len(list(segments.glob("*.npz"))) < at_least:
        assert proc.poll() is None, f"the run ended before any block was durable: {proc.stderr}"
        assert time.monotonic() < deadline
        time.sleep(0.002)


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def resume_counts(out: Path) -> dict[str, int]:
    return decode_attrs(zarr.open_group(out, mode="r").attrs["satdask"])["resume"]


def kill_midway(*args: object, out: Path) -> None:
    proc = launch("infer", *args)
    wait_for_segments(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL


def test_killed_run_resumes_computing_only_what_is_missing(
    scene: Path, reference: Path, sample_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    kill_midway(scene, *model_and_out(sample_registry, out), out=out)
    assert not out.exists()  # nothing at the destination, so nothing says complete
    assert (journal_path(out) / "run.json").exists()

    # Neither reused nor discarded unasked; a resume with another config is refused.
    message = one_line_error(satdask("infer", scene, *model_and_out(sample_registry, out)))
    assert str(out) in message and "--resume" in message
    other = model_and_out(sample_registry, out, "--resume", "--tiles-per-chunk", 2)
    message = one_line_error(satdask("infer", scene, *other))
    assert "different run" in message and "chunks" in message

    stdout = succeeded(satdask("infer", scene, *model_and_out(sample_registry, out, "--resume")))
    counts = resume_counts(out)
    assert counts["blocks_reused"] >= 1  # at least the first durable segment
    assert counts["blocks_computed"] >= 1  # killed midway, not after the last block
    assert counts["blocks_reused"] + counts["blocks_computed"] == BLOCKS
    assert f"{counts['blocks_computed']} computed, {counts['blocks_reused']} reused" in stdout
    assert_same_arrays(out, reference)
    assert not journal_path(out).exists()


def test_killed_overwrite_leaves_the_earlier_run_intact(
    scene: Path, reference: Path, sample_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    succeeded(satdask("infer", scene, *model_and_out(sample_registry, out)))
    earlier, before = open_run(out).run_id, snapshot(out)

    kill_midway(scene, *model_and_out(sample_registry, out, "--overwrite"), out=out)
    assert snapshot(out) == before and open_run(out).run_id == earlier

    succeeded(
        satdask("infer", scene, *model_and_out(sample_registry, out, "--overwrite", "--resume"))
    )
    assert open_run(out).run_id != earlier
    assert resume_counts(out)["blocks_reused"] >= 1
    assert_same_arrays(out, reference)


def test_two_runs_racing_for_one_destination(
    scene: Path, reference: Path, sample_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    procs = [launch("infer", scene, *model_and_out(sample_registry, out)) for _ in range(2)]
    ended = [(p.communicate(timeout=TIMEOUT)[1], p.returncode) for p in procs]
    ended = [(code, stderr) for stderr, code in ended]
    codes = sorted(code for code, _ in ended)
    assert codes == [0, 1], ended
    loser = next(e for e in ended if e[0] == 1)
    message = one_line_error(loser)
    assert str(out) in message
    assert "another run is writing it" in message or "already exists" in message
    assert_same_arrays(out, reference)
    assert not journal_path(out).exists()


def test_a_worker_killed_mid_run_does_not_stop_it(
    scene: Path, reference: Path, sample_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.zarr"
    with dask_cluster(tmp_path / "cluster", workers=2, nanny=False) as cluster:
        proc = launch(
            "infer", scene, *model_and_out(sample_registry, out, "--scheduler", cluster.address)
        )
        wait_for_segments(out, proc)
        cluster.workers[0].send_signal(signal.SIGKILL)
        assert cluster.workers[0].wait(timeout=TIMEOUT) == -signal.SIGKILL
        assert proc.poll() is None  # the run was still going when the worker died
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, stderr
    assert_same_arrays(out, reference)
    assert open_run(out).counts["tiles_failed"] == 0


class FlakyRangeHandler(RangeHandler):
    """Drops the connection, unanswered, on the requests numbered in `drop`."""

    drop: ClassVar[set[int]] = set()
    seen: ClassVar[int] = 0
    lock = threading.Lock()

    def send_head(self):  # type: ignore[no-untyped-def]
        with self.lock:
            type(self).seen += 1
            dropped = self.seen in self.drop
        if dropped:
            self.close_connection = True
            return None
        return super().send_head()


@pytest.fixture
def flaky_server(tmp_path: Path) -> Iterator[tuple[str, Path, type[FlakyRangeHandler]]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (FlakyRangeHandler,), {"drop": set(), "seen": 0})
    with serving(handler, root) as base:
        yield base, root, handler


def test_transient_remote_read_failures_are_retried_and_counted(
    flaky_server: tuple[str, Path, Any], sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    base, root, handler = flaky_server
    (root / "scene.tif").write_bytes(sample_tif.read_bytes())
    model = ModelRegistry(sample_registry).load()
    local = run_batch(sample_tif, model, tmp_path / "local.zarr", scheduler="threads")

    opened = handler.seen  # nothing yet; the scene's header is read on open, then blocks
    handler.drop = {opened + n for n in range(3, 9)}  # six requests after the open, in a row
    remote = run_batch(f"{base}/scene.tif", model, tmp_path / "remote.zarr", scheduler="threads")

    assert remote.counts == local.counts and remote.counts["tiles_failed"] == 0
    assert remote.monitoring["counts"]["read_retries"] >= 1
    assert_same_arrays(remote.path, local.path)


def test_a_corrupt_remote_block_is_retried_a_bounded_number_of_times(
    flaky_server: tuple[str, Path, Any], sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    base, root, _ = flaky_server
    corrupted = root / "scene.tif"
    corrupted.write_bytes(sample_tif.read_bytes())
    corrupt_block(corrupted, x=1, y=2)  # tile row 2, col 1
    model = ModelRegistry(sample_registry).load()

    run = run_batch(f"{base}/scene.tif", model, tmp_path / "run.zarr", scheduler="threads")

    assert run.counts["tiles_failed"] == 1
    assert [e["tile"] for e in run.errors] == [[2, 1]]
    # the failing block read is retried REMOTE_RETRIES times; its tiles are then read once
    assert run.monitoring["counts"]["read_retries"] == REMOTE_RETRIES
    assert run.attrs["config"]["blocks"] == 1
