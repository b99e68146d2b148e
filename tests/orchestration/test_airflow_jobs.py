"""The DAG's work without Airflow: planning, retry-safe runs and the retraining gate.

Real GeoTIFFs, a real model registry and real run stores; the Airflow run itself
is in test_airflow_dag.py.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import zarr

import satdask
from satdask import ModelRegistry, RegistryError, RunError, SatdaskError, SceneError
from satdask.io.store import ATTRS_KEY, decode_attrs

DATE = "2026-06-01"


def plan(jobs: ModuleType, scenes: list[str], registry: Path, out_root: Path, **kw: str):
    return jobs.plan_runs(
        scenes,
        registry=str(registry),
        model=kw.get("model", "latest"),
        out_root=str(out_root),
        run_date=kw.get("run_date", DATE),
    )


@pytest.mark.parametrize(
    ("scene", "stem"),
    [
        ("/data/s2/T33UUP_20260601.tif", "T33UUP_20260601"),
        ("https://example.org/cogs/scene.tif?X-Amz-Signature=abc", "scene"),
        ("s3://bucket/a/b/B04.TIF", "B04"),
    ],
)
def test_output_path_is_root_date_and_scene_stem(jobs: ModuleType, scene: str, stem: str) -> None:
    assert jobs.output_path("/runs", DATE, scene) == Path(f"/runs/{DATE}/{stem}.zarr")


def test_a_scene_without_a_file_name_is_refused(jobs: ModuleType) -> None:
    with pytest.raises(SatdaskError, match="has no file name"):
        jobs.output_path("/runs", DATE, "https://example.org/")


def test_plan_validates_scenes_and_pins_the_latest_model(
    jobs: ModuleType, sample_tif: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "models"
    first = ModelRegistry(registry).save(satdask.train([sample_tif], scheduler="threads"))
    planned = plan(jobs, [str(sample_tif)], registry, tmp_path / "runs")
    assert planned == [
        {
            "scene": str(sample_tif.resolve()),
            "out": str(tmp_path / "runs" / DATE / "sample.zarr"),
            "registry": str(registry),
            "model_id": first.id,
            "warnings": "",
        }
    ]
    assert (tmp_path / "runs" / DATE).is_dir()

    # A model saved while the DAG runs moves `latest`, but not the planned runs.
    ModelRegistry(registry).save(satdask.train([sample_tif], scheduler="threads"))
    run = jobs.run_scene(planned[0])
    assert run["model_id"] == first.id
    assert satdask.open_run(run["out"]).attrs["model"]["id"] == first.id


@pytest.mark.parametrize(
    ("scenes", "message"),
    [
        ([], "params.scenes: give a non-empty list"),
        ("scene.tif", "params.scenes: give a non-empty list"),
        ([""], "every scene must be a non-empty string"),
    ],
)
def test_plan_refuses_a_bad_scene_list(
    jobs: ModuleType, sample_registry: Path, tmp_path: Path, scenes: object, message: str
) -> None:
    with pytest.raises(SatdaskError, match=message):
        plan(jobs, scenes, sample_registry, tmp_path)  # type: ignore[arg-type]


def test_plan_names_a_missing_scene_and_a_missing_registry(
    jobs: ModuleType, sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.tif"
    with pytest.raises(SceneError, match=f"{missing}: no such file"):
        plan(jobs, [str(sample_tif), str(missing)], sample_registry, tmp_path / "runs")
    with pytest.raises(RegistryError, match="registry does not exist"):
        plan(jobs, [str(sample_tif)], tmp_path / "empty", tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="registry has no model yet"):
        plan(jobs, [str(sample_tif)], tmp_path / "empty", tmp_path / "runs")
    assert not (tmp_path / "runs").exists(), "nothing is created before the plan is valid"


def test_plan_refuses_two_scenes_that_would_share_a_store(
    jobs: ModuleType, sample_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere" / sample_tif.name
    other.parent.mkdir()
    other.write_bytes(sample_tif.read_bytes())
    with pytest.raises(SatdaskError, match=r"would both write .*sample\.zarr"):
        plan(jobs, [str(sample_tif), str(other)], sample_registry, tmp_path / "runs")


@pytest.fixture
def planned(jobs: ModuleType, sample_tif: Path, sample_registry: Path, tmp_path: Path) -> dict:
    """One planned run, with a registry of its own that a test may add models to."""
    registry = tmp_path / "models"
    ModelRegistry(registry).save(ModelRegistry(sample_registry).load().model)
    return plan(jobs, [str(sample_tif)], registry, tmp_path / "runs")[0]


def test_a_repeated_run_keeps_its_complete_store(jobs: ModuleType, planned: dict) -> None:
    first = jobs.run_scene(planned, scheduler="threads")
    again = jobs.run_scene(planned, scheduler="threads")
    assert first["reused"] is False and again["reused"] is True
    assert again["run_id"] == first["run_id"]
    assert first["counts"]["tiles_inferred"] == 16
    assert satdask.open_run(planned["out"]).run_id == first["run_id"]


def test_a_store_never_marked_complete_is_replaced(jobs: ModuleType, planned: dict) -> None:
    crashed = jobs.run_scene(planned)
    group = zarr.open_group(planned["out"], mode="r+")
    group.attrs[ATTRS_KEY] = {**decode_attrs(group.attrs[ATTRS_KEY]), "complete": False}
    with pytest.raises(RunError, match="incomplete"):
        satdask.open_run(planned["out"])

    retried = jobs.run_scene(planned)
    assert retried["reused"] is False and retried["run_id"] != crashed["run_id"]
    assert satdask.open_run(planned["out"]).run_id == retried["run_id"]


def test_a_directory_that_is_no_run_store_is_never_replaced(
    jobs: ModuleType, planned: dict
) -> None:
    out = Path(planned["out"])
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(RunError, match=f"{out}: exists and is not a satdask run store"):
            jobs.run_scene(planned, overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "mine"


def test_another_models_store_is_replaced_only_with_overwrite(
    jobs: ModuleType, planned: dict
) -> None:
    old = jobs.run_scene(planned)
    newer = ModelRegistry(planned["registry"]).save(
        satdask.ThresholdModel(threshold=1.0, training={})
    )
    replan = {**planned, "model_id": newer.id}
    with pytest.raises(RunError, match=f"already holds a complete run of model {old['model_id']}"):
        jobs.run_scene(replan)
    assert satdask.open_run(planned["out"]).run_id == old["run_id"]

    replaced = jobs.run_scene(replan, overwrite=True)
    assert replaced["model_id"] == newer.id and replaced["run_id"] != old["run_id"]
    assert satdask.open_run(planned["out"]).attrs["model"]["id"] == newer.id


def test_the_gate_fails_on_drift_only_when_enabled(
    jobs: ModuleType, sample_tif: Path, bright_tif: Path, sample_registry: Path, tmp_path: Path
) -> None:
    runs = [
        jobs.run_scene(p)
        for p in plan(jobs, [str(sample_tif), str(bright_tif)], sample_registry, tmp_path)
    ]
    assert [r["should_retrain"] for r in runs] == [False, True]

    with pytest.raises(jobs.RetrainRecommendedError) as failed:
        jobs.health_gate(runs, enabled=True)
    message = str(failed.value)
    assert message.startswith("retraining recommended for 1 of 2 runs: ")
    assert f"{runs[1]['out']}: Retrain: " in message and runs[0]["out"] not in message

    verdict = jobs.health_gate(runs, enabled=False)
    assert verdict["gate"] is False and len(verdict["retrain"]) == 1
    assert jobs.health_gate(runs[:1], enabled=True)["retrain"] == []


def test_the_gate_reads_the_stores_not_the_summaries(jobs: ModuleType, planned: dict) -> None:
    run = jobs.run_scene(planned)
    with pytest.raises(RunError, match=r"gone\.zarr: does not exist"):
        jobs.health_gate(
            [{**run, "out": str(Path(run["out"]).with_name("gone.zarr"))}], enabled=True
        )


def test_airflow_stays_out_of_the_test_venv_and_the_other_extras() -> None:
    import importlib.util
    import tomllib

    assert importlib.util.find_spec("airflow") is None, "Airflow belongs in .venv-airflow"
    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["airflow"] == ["apache-airflow>=3.3"]
    for name, specs in extras.items():
        if name != "airflow":
            assert not any("airflow" in s for s in specs), f"extra {name} pulls in Airflow"
