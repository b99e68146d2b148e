"""Who may talk to the service: the Host allow-list, then the optional API key.

The Host check stops DNS rebinding: a web page the user visits can make the browser send
requests to 127.0.0.1 under the page's own host name, but not with a Host header this
server answers to. Only the host name is compared, not the port (a browser writes the
port it was given, a proxy may write none); `*.example.org` takes its subdomains, `*`
turns the check off. Litestar's own allowed-hosts middleware compares the whole header,
port included, and redirects `www.` names, so the service keeps this one as a guard that
answers like every other refusal.

API key: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time. Every
credential presented must be valid: a wrong `Authorization` header is refused even beside
a right `X-API-Key`, so a bad credential never rides along with a good one. A header sent
twice is refused whatever its values, so no component in front of the service (a proxy
that keeps the first, or the last) can be made to see another key than the service did.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import ClientException, NotAuthorizedException

PUBLIC = "public"  # handler opt key: the route needs no key (only /health)
CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], Any], None]
AsyncGuard = Callable[[ASGIConnection[Any, Any, Any, Any], Any], Awaitable[None]]


def on_the_loop(check: Guard) -> AsyncGuard:
    """`check` as an async guard. Litestar runs a plain function guard on a worker thread
    (anyio.to_thread) for every request, a hop that costs far more than these checks,
    which are a few microseconds of Python and never block."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
        check(connection, handler)

    return guard


def default_hosts(bound: str) -> str:
    """The allow-list when none is set: the address the server binds, and loopback names."""
    bound = f"[{bound}]" if bound.count(":") >= 2 and not bound.startswith("[") else bound
    return ",".join(dict.fromkeys([bound.lower(), *LOOPBACK_NAMES]))


def host_name(header: str) -> str:
    """The host of a Host header: without its port, lower-case, IPv6 in brackets."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[: text.find("]") + 1] if "]" in text else text
    return text.partition(":")[0].rstrip(".")


def host_guard(allowed: str) -> Guard | None:
    """A guard admitting requests whose Host is in `allowed` (comma-separated, as
    `Settings.allowed_hosts`); None when `allowed` holds `*`."""
    names = allowed.split(",")
    if "*" in names:
        return None
    exact = frozenset(n for n in names if not n.startswith("*."))
    suffixes = tuple(n[1:] for n in names if n.startswith("*."))  # ".example.org"

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
        given = connection.headers.getall("host", [])
        name = host_name(given[0]) if len(given) == 1 else ""
        if name and (name in exact or (suffixes and name.endswith(suffixes))):
            return
        raise ClientException(
            "the Host header names no host this server answers to (SATDASK_ALLOWED_HOSTS)"
        )

    return guard


def presented_keys(connection: ASGIConnection[Any, Any, Any, Any]) -> list[str]:
    """The credentials in the request; an Authorization header that is not a Bearer token
    counts as a wrong key."""
    headers = connection.headers
    keys = []
    for value in headers.getall("authorization", []):
        scheme, _, token = value.partition(" ")
        keys.append(token.strip() if scheme.lower() == "bearer" else "")
    keys.extend(headers.getall("x-api-key", []))
    return keys


def api_key_guard(key: str) -> Guard:
    expected = key.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
        if handler.opt.get(PUBLIC):
            return
        for name in CREDENTIAL_HEADERS:
            if len(connection.headers.getall(name, [])) > 1:
                raise NotAuthorizedException(
                    f"more than one {name} header: send one credential, once",
                    headers={"WWW-Authenticate": 'Bearer realm="satdask"'},
                )
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
