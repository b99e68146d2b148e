"""satdask_daily: every day, run the registry's model over a list of scenes.

validate_scenes -> run_scene (one mapped task instance per scene) -> health_gate

Params (a run's conf overrides them; the defaults of scheduled runs come from
SATDASK_AIRFLOW_* environment variables read when the file is parsed):
  scenes        list of scene paths or URLs          SATDASK_AIRFLOW_SCENES (JSON list)
  registry      model registry directory             SATDASK_AIRFLOW_REGISTRY
  model         model id in the registry, or latest  SATDASK_AIRFLOW_MODEL
  out_root      run stores go to {out_root}/{date}/{scene stem}.zarr
                                                     SATDASK_AIRFLOW_OUT_ROOT
  scheduler     threads, local or tcp://host:port    SATDASK_AIRFLOW_SCHEDULER
  retrain_gate  fail health_gate when a run recommends retraining
  overwrite     replace a complete store of the same date made by another model or scene

One mapped task per scene rather than one looping task: a failed scene is
retried alone, without redoing the scenes that finished, each scene has its own
log and state in the UI, and Airflow may run scenes side by side.

Only Airflow is imported at the top: the work lives in satdask_jobs (beside
this file), imported inside the tasks, so parsing this file stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger("satdask.airflow")

RETRIES = 2
RETRY_DELAY = timedelta(minutes=5)


def _env_list(name: str) -> list[str]:
    value = json.loads(os.environ.get(name) or "[]")
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a JSON list of scene paths or URLs")
    return value


def _run_date() -> str:
    """The run's logical date (YYYY-MM-DD); a manual run without one uses when it ran."""
    run = get_current_context()["dag_run"]
    return (run.logical_date or run.run_after).date().isoformat()


def _fail_fast(exc: Exception, *, retryable: tuple[type[Exception], ...] = ()) -> None:
    """Fail without retries on errors a retry cannot fix: bad params, scenes, models, paths.

    Anything else (a worker lost, a remote cluster gone, an unexpected crash), and
    the `retryable` satdask errors, propagate and are retried.
    """
    from satdask.errors import SatdaskError

    if isinstance(exc, SatdaskError) and not isinstance(exc, retryable):
        raise AirflowFailException(str(exc)) from exc


@dag(
    dag_id="satdask_daily",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    params={
        "scenes": Param(
            _env_list("SATDASK_AIRFLOW_SCENES"),
            type="array",
            items={"type": "string"},
            description="scene paths or URLs (GeoTIFF/COG)",
        ),
        "registry": Param(
            os.environ.get("SATDASK_AIRFLOW_REGISTRY", "models"),
            type="string",
            description="model registry directory",
        ),
        "model": Param(
            os.environ.get("SATDASK_AIRFLOW_MODEL", "latest"),
            type="string",
            description="model id in the registry, or latest",
        ),
        "out_root": Param(
            os.environ.get("SATDASK_AIRFLOW_OUT_ROOT", "runs"),
            type="string",
            description="run stores go to {out_root}/{date}/{scene stem}.zarr",
        ),
        "scheduler": Param(
            os.environ.get("SATDASK_AIRFLOW_SCHEDULER", "threads"),
            type="string",
            description="threads, local or tcp://host:port of a Dask scheduler",
        ),
        "retrain_gate": Param(
            True, type="boolean", description="fail when a run recommends retraining"
        ),
        "overwrite": Param(
            False,
            type="boolean",
            description="replace a complete store of the same date from another model or scene",
        ),
    },
    tags=["satdask"],
    doc_md=__doc__,
)
def satdask_daily() -> None:
    @task
    def validate_scenes() -> list[dict[str, str]]:
        """Open and validate every scene and pin the model, before any inference."""
        import satdask_jobs

        params = get_current_context()["params"]
        try:
            planned = satdask_jobs.plan_runs(
                params["scenes"],
                registry=params["registry"],
                model=params["model"],
                out_root=params["out_root"],
                run_date=_run_date(),
            )
        except Exception as exc:
            _fail_fast(exc)
            raise
        for p in planned:
            log.info(
                "planned %s -> %s (model %s) %s", p["scene"], p["out"], p["model_id"], p["warnings"]
            )
        return planned

    @task
    def run_scene(planned: dict[str, str]) -> dict[str, Any]:
        """Infer every tile of one scene; a retry keeps or replaces its own earlier output."""
        import satdask_jobs

        params = get_current_context()["params"]
        try:
            summary = satdask_jobs.run_scene(
                planned, scheduler=params["scheduler"], overwrite=params["overwrite"]
            )
        except Exception as exc:
            # validate_scenes opened every scene: a read failing now may be transient.
            from satdask.errors import IngestError, SceneError

            _fail_fast(exc, retryable=(SceneError, IngestError))
            raise
        log.info("run summary: %s", json.dumps(summary))
        return summary

    @task(retries=0)
    def health_gate(runs: list[dict[str, Any]]) -> dict[str, Any]:
        """A run whose health recommends retraining fails this task when the gate is on."""
        import satdask_jobs

        params = get_current_context()["params"]
        try:
            verdict = satdask_jobs.health_gate(list(runs), enabled=params["retrain_gate"])
        except satdask_jobs.RetrainRecommendedError as exc:
            raise AirflowFailException(str(exc)) from exc
        for line in verdict["retrain"]:
            log.warning("retraining recommended (gate off): %s", line)
        return verdict

    planned = validate_scenes()
    runs = run_scene.expand(planned=planned)
    health_gate(runs)


satdask_daily()
