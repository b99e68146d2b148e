"""The satdask_daily DAG in a real Airflow: loaded by its DagBag and run with dag.test().

Airflow lives in its own virtualenv (.venv-airflow, made by `make test`), so this
module drives it through a subprocess: tests/orchestration/run_dag.py runs every DAG run
of the spec there, against a temporary AIRFLOW_HOME with SQLite and no webserver,
and the assertions here read the run stores it left with the test venv's satdask.
`make test` sets SATDASK_AIRFLOW_PYTHON, and then a missing venv fails the test
instead of skipping it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import satdask

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "orchestration" / "dags"
DRIVER = Path(__file__).with_name("run_dag.py")
TIMEOUT_S = 480  # a retry that should not happen waits 300 s: fail rather than hang


def airflow_python() -> Path:
    given = os.environ.get("SATDASK_AIRFLOW_PYTHON")
    if given:
        if not Path(given).is_file():
            pytest.fail(f"SATDASK_AIRFLOW_PYTHON={given} does not exist (make test creates it)")
        return Path(given)
    default = ROOT / ".venv-airflow" / "bin" / "python"
    if not default.is_file():
        pytest.skip(
            "no Airflow venv at .venv-airflow: `make test` (or "
            "`make .venv-airflow/.installed-airflow`) creates it"
        )
    return default


def run_in_airflow(python: Path, home: Path, env_defaults: dict[str, str], spec: dict) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "SATDASK_AIRFLOW_", "VIRTUAL_ENV"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        **env_defaults,
    )
    log = home / "airflow.log"
    spec_path, result_path = home / "spec.json", home / "result.json"
    spec_path.write_text(json.dumps(spec))
    airflow = python.with_name("airflow")
    with log.open("w") as out:
        for argv in (
            [str(airflow), "db", "migrate"],
            [str(python), str(DRIVER), str(DAGS), str(spec_path), str(result_path)],
        ):
            done = subprocess.run(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT_S
            )
            if done.returncode:
                tail = log.read_text()[-4000:]
                pytest.fail(f"{' '.join(argv[:3])} exited {done.returncode}:\n{tail}")
    return {**json.loads(result_path.read_text()), "log": log.read_text()}


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory,
    sample_tif: Path,
    bright_tif: Path,
    sample_registry: Path,
) -> dict[str, Any]:
    """Five DAG runs in order; their task states and stores, and Airflow's log."""
    python = airflow_python()
    home = tmp_path_factory.mktemp("airflow-home")
    out_root = tmp_path_factory.mktemp("runs")
    scene, bright = str(sample_tif), str(bright_tif)

    def run(name: str, date: str, **conf: Any) -> dict[str, Any]:
        return {
            "name": name,
            "logical_date": f"{date}T00:00:00+00:00",
            "conf": {"out_root": str(out_root), **conf},
        }

    spec = {
        "runs": [
            run("daily", "2026-06-01", scenes=[scene]),
            run("again", "2026-06-01", scenes=[scene]),
            run("drift", "2026-06-02", scenes=[scene, bright]),
            run("drift_gate_off", "2026-06-02", scenes=[scene, bright], retrain_gate=False),
            run("missing", "2026-06-03", scenes=[str(out_root / "nope.tif")]),
        ]
    }
    # registry and scheduler are left to the defaults a deployment sets in the environment
    env = {"SATDASK_AIRFLOW_REGISTRY": str(sample_registry), "SATDASK_AIRFLOW_SCHEDULER": "threads"}
    return {**run_in_airflow(python, home, env, spec), "out_root": out_root}


def test_the_dag_loads_daily_with_params_and_retries(
    airflow: dict[str, Any], sample_registry: Path
) -> None:
    assert airflow["import_errors"] == {}
    assert airflow["dag_ids"] == ["satdask_daily"], "satdask_jobs.py is not parsed as a DAG"
    dag = airflow["dag"]
    assert dag["schedule"] == "@daily" and dag["catchup"] is False
    assert dag["params"] == {
        "scenes": [],
        "registry": str(sample_registry),
        "model": "latest",
        "out_root": "runs",
        "scheduler": "threads",
        "retrain_gate": True,
        "overwrite": False,
    }
    tasks = dag["tasks"]
    assert tasks["validate_scenes"]["upstream"] == []
    assert tasks["run_scene"]["upstream"] == ["validate_scenes"]
    assert tasks["health_gate"]["upstream"] == ["run_scene"]
    assert tasks["run_scene"]["retries"] == 2 and tasks["run_scene"]["retry_delay_s"] == 300
    assert tasks["health_gate"]["retries"] == 0


def test_a_daily_run_writes_a_complete_store_with_predictions(
    airflow: dict[str, Any], sample_tif: Path, sample_registry: Path
) -> None:
    daily = airflow["runs"]["daily"]
    assert daily["state"] == "success", daily
    assert daily["tasks"] == {
        "validate_scenes": "success",
        "run_scene[0]": "success",
        "health_gate": "success",
    }
    assert daily["stores"] == {"2026-06-01/sample.zarr": daily["stores"]["2026-06-01/sample.zarr"]}

    run = satdask.open_run(airflow["out_root"] / "2026-06-01" / "sample.zarr")  # refuses incomplete
    assert run.run_id == daily["stores"]["2026-06-01/sample.zarr"]
    assert run.attrs["complete"] is True
    assert run.attrs["scene"]["uri"] == str(sample_tif.resolve())
    assert run.attrs["model"]["id"] == satdask.ModelRegistry(sample_registry).load().id
    assert run.counts == {
        "tiles_total": 16,
        "tiles_inferred": 16,
        "tiles_skipped": 0,
        "tiles_failed": 0,
    }
    prediction = run.dataset()["prediction"].values
    assert prediction.shape == (4, 4)
    assert set(np.unique(prediction)) == {0, 1}, "bright and dark tiles both predicted"
    assert run.health["status"] == "healthy"


def test_the_same_date_run_again_keeps_its_store(airflow: dict[str, Any]) -> None:
    first, again = airflow["runs"]["daily"], airflow["runs"]["again"]
    assert again["state"] == "success", again
    assert again["stores"]["2026-06-01/sample.zarr"] == first["stores"]["2026-06-01/sample.zarr"]


def test_the_gate_fails_the_run_when_a_scene_drifted(airflow: dict[str, Any]) -> None:
    drift = airflow["runs"]["drift"]
    assert drift["state"] == "failed"
    assert drift["tasks"] == {
        "validate_scenes": "success",
        "run_scene[0]": "success",
        "run_scene[1]": "success",
        "health_gate": "failed",
    }
    assert drift["tries"]["health_gate"] == 1
    day = airflow["out_root"] / "2026-06-02"
    assert not satdask.open_run(day / "sample.zarr").should_retrain()
    assert satdask.open_run(day / "bright.zarr").should_retrain()
    assert (
        f"retraining recommended for 1 of 2 runs: {day / 'bright.zarr'}: Retrain:"
        in (airflow["log"])
    )


def test_with_the_gate_off_drift_is_logged_and_the_run_succeeds(airflow: dict[str, Any]) -> None:
    gate_off, drift = airflow["runs"]["drift_gate_off"], airflow["runs"]["drift"]
    assert gate_off["state"] == "success", gate_off
    assert gate_off["tasks"]["health_gate"] == "success"
    for store in ("2026-06-02/sample.zarr", "2026-06-02/bright.zarr"):
        assert gate_off["stores"][store] == drift["stores"][store], "kept, not recomputed"
    assert "retraining recommended (gate off)" in airflow["log"]


def test_a_missing_scene_fails_validation_without_retries(airflow: dict[str, Any]) -> None:
    missing = airflow["runs"]["missing"]
    assert missing["state"] == "failed"
    assert missing["tasks"]["validate_scenes"] == "failed"
    assert missing["tries"]["validate_scenes"] == 1
    assert missing["tasks"]["health_gate"] == "upstream_failed"
    assert not any(store.startswith("2026-06-03/") for store in missing["stores"])
    assert f"{airflow['out_root'] / 'nope.tif'}: no such file" in airflow["log"]
