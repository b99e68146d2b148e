from __future__ import annotations

import json
import logging

import pytest

from satdask._logs import configure_logging, run_logger


@pytest.fixture(autouse=True)
def restore_satdask_logger():
    logger = logging.getLogger("satdask")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_json_format_gives_one_object_per_line_with_the_run_context(capsys) -> None:
    configure_logging(environ={"SATDASK_LOG_FORMAT": "json"})
    log = run_logger("satdask.batch", run_id="r1", model_id="m1", scene="/data/a.tif")
    log.info("run started: %d tiles", 16)
    log.warning("tile %s failed", [1, 2])
    lines = capsys.readouterr().err.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["message"] for r in records] == ["run started: 16 tiles", "tile [1, 2] failed"]
    for r in records:
        assert (r["run_id"], r["model_id"], r["scene"]) == ("r1", "m1", "/data/a.tif")
        assert r["logger"] == "satdask.batch"


def test_text_format_appends_the_context(capsys) -> None:
    configure_logging(environ={})
    run_logger("satdask.batch", run_id="r1", model_id="m1", scene="a.tif").info("done")
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO satdask.batch done [run_id=r1 model_id=m1 scene=a.tif]")
