"""Optional API key: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time.

Every credential presented must be valid: a wrong `Authorization` header is refused even
beside a right `X-API-Key`, so a bad credential never rides along with a good one.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException

PUBLIC = "public"  # handler opt key: the route needs no key (only /health)


def presented_keys(connection: ASGIConnection[Any, Any, Any, Any]) -> list[str]:
    """The credentials in the request; an Authorization header that is not a Bearer token
    counts as a wrong key."""
    headers = connection.headers
    keys = []
    if "authorization" in headers:
        scheme, _, token = headers["authorization"].partition(" ")
        keys.append(token.strip() if scheme.lower() == "bearer" else "")
    if "x-api-key" in headers:
        keys.append(headers["x-api-key"])
    return keys


def api_key_guard(key: str) -> Callable[[ASGIConnection[Any, Any, Any, Any], Any], None]:
    expected = key.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
        if handler.opt.get(PUBLIC):
            return
        given = presented_keys(connection)
        # compare_digest takes as long for any wrong key of a given length; every key is
        # compared, so the time does not tell which header was wrong either
        valid = [hmac.compare_digest(k.encode(), expected) for k in given]
        if not valid or not all(valid):
            raise NotAuthorizedException(
                "missing or invalid API key",
                headers={"WWW-Authenticate": 'Bearer realm="satdask"'},
            )

    return guard
