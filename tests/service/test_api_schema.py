"""schemathesis against the OpenAPI schema that `satdask serve` serves, over the wire.

schemathesis 4.32's lazy loader (`schemathesis.pytest.from_fixture`) fails under pytest 9
(it reads `request.node._nodeid`, which pytest 9 removed), and loading from a URL would
need a server at import time. So the schema is built at import from the same app factory
with the same settings as the live server, a test checks it equals the schema that server
serves, and every generated case is sent to the live `satdask serve` process.

Bounded: MAX_EXAMPLES generated cases per operation and phase, no deadline (the server
shares the machine with the test run); the `slow` run takes MAX_EXAMPLES_SLOW. Every
response is checked against the schema: no 5xx, documented status codes, content types,
headers and bodies.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from svc_support import API_KEY, LiveServer

from service import Settings, create_app

MAX_EXAMPLES = 100
MAX_EXAMPLES_SLOW = 1000


def build_schema() -> dict[str, Any]:
    """The schema of an app configured like the live server (the data root plays no part)."""
    with tempfile.TemporaryDirectory() as root:
        app = create_app(Settings(data_root=root, api_key=API_KEY))
        return json.loads(msgspec.json.encode(app.openapi_schema.to_schema()))  # as served


RAW_SCHEMA = build_schema()
schema = schemathesis.openapi.from_dict(RAW_SCHEMA)
# Valid data (must be answered as documented) and invalid data (must be refused with a 4xx).
# The key is sent by the test, not generated: generated keys would stop nearly every case
# at the 401 door (schemathesis still checks that requests without the key are refused).
schema.config.generation.update(
    modes=list(schemathesis.GenerationMode), with_security_parameters=False
)
# An invalid body over the size limit is refused before it is parsed: 413 is a refusal too,
# and so is 414 for a query over the server's request-line limit (service/protocol.py).
rejection = schema.config.checks.negative_data_rejection
rejection.expected_statuses = [*rejection.expected_statuses, "413", "414"]


def test_the_schema_under_test_is_the_served_one(live_server: LiveServer) -> None:
    with live_server.client() as http:
        assert http.get("/schema/openapi.json").json() == RAW_SCHEMA


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_served_schema_holds(case: schemathesis.Case, live_server: LiveServer) -> None:
    case.call_and_validate(base_url=live_server.url, headers={"X-API-Key": API_KEY}, timeout=30)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES_SLOW,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_served_schema_holds_at_length(
    case: schemathesis.Case, live_server: LiveServer
) -> None:
    case.call_and_validate(base_url=live_server.url, headers={"X-API-Key": API_KEY}, timeout=30)
