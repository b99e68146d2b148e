"""Runs in the Airflow virtualenv, not the test one: load the DAG with Airflow's own
DagBag, describe it, execute the runs of a spec with dag.test() and write it all as JSON.

Usage: python run_dag.py DAGS_FOLDER SPEC_JSON RESULT_JSON
SPEC: {"runs": [{"name": ..., "logical_date": ISO, "conf": {...}}, ...]}, run in order.
AIRFLOW_HOME and the database come from the environment the test sets.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any


def main(dags_folder: str, spec_path: str, result_path: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    spec = json.loads(Path(spec_path).read_text())
    bag = DagBag(dag_folder=dags_folder)
    result: dict[str, Any] = {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dag_ids": sorted(bag.dag_ids),
        "runs": {},
    }
    dag = bag.dags.get("satdask_daily")
    if dag is not None:
        result["dag"] = describe(dag)
        for run in spec["runs"]:
            dag_run = dag.test(
                logical_date=datetime.fromisoformat(run["logical_date"]), run_conf=run["conf"]
            )
            result["runs"][run["name"]] = {
                "state": str(dag_run.state),
                "tasks": {key(ti): str(ti.state) for ti in dag_run.get_task_instances()},
                "tries": {key(ti): ti.try_number for ti in dag_run.get_task_instances()},
                "stores": stores(Path(run["conf"]["out_root"])),
            }
    Path(result_path).write_text(json.dumps(result, indent=2))


def key(ti: Any) -> str:
    return f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id


def stores(out_root: Path) -> dict[str, str | None]:
    """run_id of every complete store under out_root, None for one that is not."""
    import satdask

    found: dict[str, str | None] = {}
    for path in sorted(out_root.glob("*/*.zarr")):
        try:
            found[str(path.relative_to(out_root))] = satdask.open_run(path).run_id
        except satdask.SatdaskError:
            found[str(path.relative_to(out_root))] = None
    return found


def describe(dag: Any) -> dict[str, Any]:
    return {
        "schedule": str(dag.schedule),
        "catchup": dag.catchup,
        "params": {name: dag.params[name] for name in dag.params},
        "tasks": {
            t.task_id: {
                "retries": t.retries,
                "retry_delay_s": t.retry_delay.total_seconds(),
                "upstream": sorted(t.upstream_task_ids),
            }
            for t in dag.tasks
        },
    }


if __name__ == "__main__":
    main(*sys.argv[1:])
