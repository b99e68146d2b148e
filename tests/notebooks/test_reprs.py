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
    text = well_formed_text(run_html(run.attrs, path=str(run.path)))
    assert f"satdask run {run.run_id}" in text
    assert "16 inferred, 0 nodata, 0 failed of 16 tiles" in text
    assert "healthy" in text and "sample.tif" in text
    assert run.attrs["model"]["id"] in text
    assert "EPSG:32633" in text
    assert "Errors" not in text  # no error section without errors


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
    bare = geotiff(np.ones((1, 64, 64), dtype=np.uint8), name=f"{HOSTILE_NAME}.tif")
    text = well_formed_text(report_html(validate(bare).to_dict()))
    assert "2 warnings" in text
    assert "no nodata value" in text and "no acquisition time" in text
    assert f"validation of {HOSTILE_NAME}.tif" in text


def test_classes_render_through_reprs_in_jupyter(
    run: RunResult, sample_registry: Path, sample_tif: Path
) -> None:
    """Each `_repr_html_` calls down into the renderer with its plain data."""
    artifact = ModelRegistry(sample_registry).load()
    report = validate(sample_tif)
    assert run._repr_html_() == run_html(run.attrs, path=str(run.path))
    assert artifact._repr_html_() == artifact_html(artifact.to_dict())
    assert report._repr_html_() == report_html(report.to_dict())


def test_model_without_training_statistics_renders(tmp_path: Path) -> None:
    artifact = ModelRegistry(tmp_path).save(ThresholdModel(threshold=3.5))
    text = well_formed_text(artifact_html(artifact.to_dict()))
    assert "threshold=3.5" in text and "Training statistics" not in text
