"""satdask.core._html: readable, well-formed and escaped HTML for Jupyter."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from satdask import (
    ModelRegistry,
    RunResult,
    ThresholdModel,
    run_batch,
    validate,
)
from satdask.core._html import artifact_html, report_html, run_html

HOSTILE = '<script>alert("x")</script>'
HOSTILE_NAME = "<img src=x onerror=alert(1)>"  # no slash: it can be a file name
TAGS = {"div", "span", "table", "tr", "th", "td", "ul", "li", "details", "summary", "code"}


class _Checker(HTMLParser):
    """Fails on unbalanced tags and on any tag the renderers do not write (<script>, <img>)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in TAGS, f"<{tag}>: markup from a value reached the page"
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def well_formed_text(html: str) -> str:
    """The visible text of `html`, after checking the tags balance."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert not checker.stack, f"unclosed tags: {checker.stack}"
    return " ".join(" ".join(checker.text).split())


@pytest.fixture(scope="module")
def run(sample_tif: Path, sample_registry: Path, tmp_path_factory) -> RunResult:
    artifact = ModelRegistry(sample_registry).load()
    out = tmp_path_factory.mktemp("reprs") / "run.zarr"
    return run_batch(sample_tif, artifact, out, scheduler="threads")


def test_run_html_shows_counts_health_scene_and_model(run: RunResult) -> None:
    text = well_formed_text(run_html(run.record, path=str(run.path)))
    assert f"satdask run {run.run_id}" in text
    assert "16 inferred, 0 nodata, 0 failed of 16 tiles" in text
    assert "healthy" in text and "sample.tif" in text
    assert run.attrs["model"]["id"] in text
    assert "EPSG:32633" in text
    assert "4 bands x 1024 rows x 1024 cols, uint16" in text
    assert "Errors" not in text  # no error section without errors
    assert "in no tile" not in text  # the tiles cover the scene


def test_run_html_draws_one_row_per_health_check_with_its_verdict(run: RunResult) -> None:
    record = run.record
    checks = [
        {"name": "PSI", "value": 0.61, "limit": 0.2, "verdict": "retrain", "reason": "x"},
        {"name": "p95 tile latency ms", "value": None, "limit": 50.0, "verdict": "not assessed"}
        | {"reason": "no timed blocks with tiles"},
    ]
    health = {**record["health"], "status": "degraded", "checks": checks}
    text = well_formed_text(run_html({**record, "health": health}, path="run.zarr"))
    assert "PSI 0.61 (limit 0.2) retrain" in text
    assert "p95 tile latency ms - (limit 50) not assessed" in text
    assert "mean shift" not in text  # the rows are the report's, not re-derived here


def test_run_html_says_how_many_pixels_no_tile_covers(run: RunResult) -> None:
    coverage = {
        "pixels_total": 567_198,
        "pixels_uncovered": 51_066,
        "rows_uncovered": 206,
        "cols_uncovered": 23,
        "fraction_uncovered": 51_066 / 567_198,
    }
    text = well_formed_text(run_html({**run.record, "coverage": coverage}, path="run.zarr"))
    assert "of 16 tiles in" in text and " s; 51,066 px (9%) in no tile" in text
    assert "the last 206 rows and 23 cols hold no whole tile" in text
    nothing_left = {**coverage, "pixels_uncovered": 0, "rows_uncovered": 0, "cols_uncovered": 0}
    plain = well_formed_text(run_html({**run.record, "coverage": nothing_left}, path="run.zarr"))
    assert "in no tile" not in plain


def test_run_repr_is_one_short_line(run: RunResult) -> None:
    text = repr(run)
    assert text == (
        f"<RunResult {run.run_id[:8]} at {run.path}: 16 tiles, 16 inferred, 0 nodata, "
        "0 failed; healthy>"
    )
    assert len(text) < 120 + len(str(run.path))


def test_run_repr_names_the_pixels_in_no_tile(run: RunResult) -> None:
    coverage = {
        "pixels_total": 400,
        "pixels_uncovered": 9,
        "rows_uncovered": 1,
        "cols_uncovered": 0,
        "fraction_uncovered": 9 / 400,
    }
    shifted = RunResult(run.path, {**run.attrs, "coverage": coverage})
    assert repr(shifted).endswith("0 failed, 2.2% of pixels in no tile; healthy>")


def test_artifact_repr_is_short_and_names_its_lineage_once(
    sample_registry: Path, tmp_path: Path
) -> None:
    artifact = ModelRegistry(sample_registry).load()
    text = repr(artifact)
    assert "\n" not in text and len(text) < 200 + len(artifact.uri)
    tiles = artifact.lineage["tile_count"]
    assert text == (
        f"<ModelArtifact {artifact.id}: threshold model, "
        f"threshold={artifact.model.threshold:.6g}, trained on {tiles} tiles of 1 scene; "
        f"{artifact.uri}>"
    )
    ad_hoc = ModelRegistry(tmp_path).save(ThresholdModel(threshold=3.5))
    assert repr(ad_hoc).endswith(f"threshold=3.5, no training lineage; {ad_hoc.uri}>")


def test_registry_repr_counts_its_models_and_names_the_latest(tmp_path: Path) -> None:
    missing = ModelRegistry(tmp_path / "none")
    assert repr(missing) == f"<ModelRegistry {tmp_path / 'none'}: no models yet>"
    registry = ModelRegistry(tmp_path / "models")
    registry.save(ThresholdModel(threshold=1.0))
    second = registry.save(ThresholdModel(threshold=2.0))
    assert repr(registry) == (
        f"<ModelRegistry {tmp_path / 'models'}: 2 models, latest {second.id}>"
    )


def test_run_html_escapes_every_value_and_lists_errors(run: RunResult) -> None:
    attrs = dict(run.attrs)
    attrs["scene"] = {**attrs["scene"], "uri": f"/data/{HOSTILE}.tif"}
    attrs["errors"] = [{"tile": [0, i], "message": f"bad {HOSTILE}"} for i in range(12)]
    attrs["health"] = {**attrs["health"], "status": "degraded", "reasons": [HOSTILE]}
    html = run_html(attrs, path=str(run.path))
    text = well_formed_text(html)  # fails on any <script> element
    assert HOSTILE in text  # shown as text, literally
    assert "Errors (12)" in text and "and 2 more in run.errors" in text
    assert "degraded" in text


def test_artifact_html_shows_parameters_training_and_lineage(sample_registry: Path) -> None:
    artifact = ModelRegistry(sample_registry).load()
    html = artifact_html(artifact.to_dict())
    text = well_formed_text(html)
    assert f"satdask model {artifact.id}" in text
    assert f"threshold={artifact.model.threshold:.6g}" in text
    assert "sample.tif" in text and "tile count" in text
    assert html.count('title="') >= 10  # ten histogram bars with their ranges, and the hashes


def test_artifact_html_escapes_lineage(sample_registry: Path) -> None:
    artifact = ModelRegistry(sample_registry).load()
    lineage = {**artifact.lineage, "scenes": [{"uri": HOSTILE, "tiles": 1, "sha256": HOSTILE}]}
    hostile = dataclasses.replace(artifact, lineage=lineage, uri=HOSTILE)
    assert HOSTILE in well_formed_text(artifact_html(hostile.to_dict()))


def test_report_html_shows_warnings_in_plain_sight(sample_tif: Path, geotiff) -> None:
    clean = well_formed_text(report_html(validate(sample_tif).to_dict()))
    assert "validation of sample.tif" in clean and "warnings none" in clean
    bare = geotiff(np.ones((1, 256, 512), dtype=np.uint8), name=f"{HOSTILE_NAME}.tif")
    text = well_formed_text(report_html(validate(bare).to_dict()))
    assert "2 warnings" in text
    assert "no nodata value" in text and "no acquisition time" in text
    assert f"validation of {HOSTILE_NAME}.tif" in text
    assert "1 band x 256 rows x 512 cols, uint8" in text  # one order for sizes


def test_classes_render_through_reprs_in_jupyter(
    run: RunResult, sample_registry: Path, sample_tif: Path
) -> None:
    """Each `_repr_html_` calls down into the renderer with its plain data."""
    artifact = ModelRegistry(sample_registry).load()
    report = validate(sample_tif)
    assert run._repr_html_() == run_html(run.record, path=str(run.path))
    assert artifact._repr_html_() == artifact_html(artifact.to_dict())
    assert report._repr_html_() == report_html(report.to_dict())


def test_model_without_training_statistics_renders(tmp_path: Path) -> None:
    artifact = ModelRegistry(tmp_path).save(ThresholdModel(threshold=3.5))
    text = well_formed_text(artifact_html(artifact.to_dict()))
    assert "threshold=3.5" in text and "Training statistics" not in text
