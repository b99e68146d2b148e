"""Each HTTP connection under bounds: uvicorn's httptools protocol, guarded.

uvicorn (0.54) bounds none of these under httptools: the request line and headers (its
h11 protocol has one size limit, answered 400), the time a client takes to send a request
(its keep-alive timeout runs only between requests and any byte resets it), or the number
of open sockets (`limit_concurrency` answers 503 but still accepts and keeps every
socket, idle ones included, until file descriptors run out). `GuardedProtocol` adds:

- a request line over `max_request_line` bytes: 414; a request head (line and headers)
  over `max_header_bytes`: 431. Counted as bytes arrive, so a 128 MiB URL costs no more
  than its first chunk over the bound;
- `request_timeout`: from a connection's opening, or a request's first byte, to the
  request's last byte (head and body); then 408 (or, if nothing was sent, a plain close).
  A client sending a byte at a time cannot hold a connection longer. Between requests
  uvicorn's keep-alive timeout (`keepalive_timeout`) closes idle connections;
- `max_connections`: a connection past it closes the connection that has been idle
  longest (no request being handled: between requests, or still sending one), as nginx
  reuses keep-alive connections when it runs out; when none is idle, the newcomer gets
  503. Idle sockets cannot lock other clients out, and the process raises its own
  descriptor limit to fit (`ensure_descriptors`).

A refusal is a JSON error body like every other answer, with `Connection: close`. The
connection then reads and drops what the client still sends (up to LINGER_BYTES, for up
to LINGER_SECONDS) before closing, so the client reads the answer rather than a reset:
nginx's lingering close.

`InFlightLimit` wraps the ASGI app: past `max_in_flight` requests being handled at once,
a request gets 503 with `Retry-After` and is not run.

`service.server.app_from_env` hands both their limits (`GuardedProtocol.limits`), in
every worker process, before uvicorn opens the first connection.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("satdask.service")

PROTOCOL = "service.protocol:GuardedProtocol"  # what `satdask serve` gives uvicorn as `http`
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0
FD_RESERVE = 256  # descriptors beyond connections: GDAL handles, logs, the listening socket
UNLIMITED = frozenset({"/health"})  # paths InFlightLimit lets through
REASONS = ("malformed", "request_line", "headers", "timeout", "connections", "evicted", "in_flight")


@dataclass(frozen=True)
class Limits:
    max_request_line: int
    max_header_bytes: int
    request_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_request_line=settings.max_request_line,
            max_header_bytes=settings.max_header_bytes,
            request_timeout=settings.request_timeout,
            max_connections=settings.max_connections,
        )


def error_response(status: int, detail: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer with the service's JSON error body, closing the connection."""
    body = json.dumps({"status_code": status, "detail": detail}).encode()
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        lines.append(f"retry-after: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above; one instance per connection."""

    limits: ClassVar[Limits | None] = None
    # Told the reason (one of REASONS) of each refusal; the app's metrics count them.
    on_refuse: ClassVar[Callable[[str], None] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self).limits is None:
            from service.settings import Settings

            GuardedProtocol.limits = Limits.of(Settings.from_env())
        assert self.limits is not None
        self.bounds: Limits = self.limits
        self.url = b""
        self._head = True  # the next bytes belong to a request's line and headers
        self._head_bytes = 0  # raw bytes since the head began (counted per read)
        self._header_bytes = 0  # header lines parsed so far
        self._deadline: asyncio.TimerHandle | None = None
        self._since = 0.0  # when it last went idle or began a request (whom to evict)
        self._linger = -1  # bytes still to drop after a refusal; -1: not refused

    # -- connections --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        self._arm()
        if len(self.connections) > self.bounds.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    @property
    def idle(self) -> bool:
        """No request of this connection is being handled (it may be sending one)."""
        return (
            self._linger < 0
            and not self.transport.is_closing()
            and (self.cycle is None or self.cycle.response_complete)
        )

    def _make_room(self) -> None:
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedProtocol) and c.idle
        ]
        if idle:
            oldest = min(idle, key=lambda c: c._since)
            oldest._count("evicted")
            oldest.transport.close()
        else:
            self._refuse(
                503, "the server is at its connection limit; try again later", "connections"
            )

    # -- bytes in -----------------------------------------------------------------
    # The parser's callbacks check the bounds exactly (the URL as it grows, each header
    # as it completes, the whole head at its end); `data_received` also counts raw bytes,
    # for a header value the parser is still gathering. Once a request is refused, every
    # callback does nothing, so the rest of the bytes already read never reach the app.

    def data_received(self, data: bytes) -> None:
        if self._linger >= 0:  # refused: drop what the client still sends
            self._linger -= len(data)
            if self._linger < 0:
                self.transport.abort()
            return
        if self._head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head and self._linger < 0 and self._head_bytes > self.bounds.max_header_bytes:
            self._too_large()

    def on_message_begin(self) -> None:
        if self._linger >= 0:
            return
        super().on_message_begin()
        self._header_bytes = 0
        self._since = self.loop.time()
        if self._deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        if self._linger >= 0:
            return
        if len(self.url) + len(url) > self.bounds.max_request_line:
            detail = f"request line over {self.bounds.max_request_line} bytes"
            self._refuse(414, detail, "request_line")
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._linger >= 0:
            return
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if len(self.url) + self._header_bytes > self.bounds.max_header_bytes:
            self._too_large()
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._linger >= 0:
            return
        self._head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._linger < 0:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._linger >= 0:
            return
        self._head = True  # whatever follows is the next request's head
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, as a JSON error body like the rest."""
        if self._linger < 0:  # else: bytes after a refusal, already answered
            self._refuse(400, "malformed HTTP request", "malformed")

    def _too_large(self) -> None:
        detail = f"request headers over {self.bounds.max_header_bytes} bytes"
        self._refuse(431, detail, "headers")

    def on_response_complete(self) -> None:
        self._since = self.loop.time()
        super().on_response_complete()

    # -- the request timeout ------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.bounds.request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._linger >= 0:
            return
        if self._head and self._head_bytes == 0 and not self.url:
            self._count("timeout")
            self.transport.close()  # nothing was asked: nothing to answer
            return
        if not self._head and self.cycle is not None:  # the body is late
            if self.cycle.response_started:  # answered without it (a 413): just close
                self._count("timeout")
                self.transport.close()
                return
            self.cycle.disconnected = True  # stop the handler waiting for it
            self.cycle.message_event.set()
        detail = f"request not received within {self.bounds.request_timeout:g} s"
        self._refuse(408, detail, "timeout")

    # -- refusing -----------------------------------------------------------------

    def _refuse(self, status: int, detail: str, reason: str) -> None:
        """Answer `status` and close; a pipelined answer still being written is cut."""
        self._count(reason)
        self._disarm()
        self._unset_keepalive_if_required()
        cycle = self.cycle
        running = cycle is not None and not cycle.response_complete
        if running and (self._head or cycle.response_started):
            self.transport.abort()  # an answer to an earlier request is under way: no room
            return
        retry = 1 if status == 503 else None
        self.transport.write(error_response(status, detail, retry_after=retry))
        self._linger = LINGER_BYTES
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _count(self, reason: str) -> None:
        hook = type(self).on_refuse
        if hook is not None:
            hook(reason)
        log.debug("connection refused or closed: %s", reason)


class InFlightLimit:
    """An ASGI wrapper: past `limit` requests being handled at once, answer 503 at once.

    `/health` is let through and not counted: it costs nothing, and a liveness probe that
    failed whenever the server is busy would get a busy server restarted.
    """

    def __init__(
        self, app: Any, *, limit: int, on_refuse: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.on_refuse = on_refuse
        self._body = json.dumps(
            {"status_code": 503, "detail": "the server is busy; try again later"}
        ).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            if self.on_refuse is not None:
                self.on_refuse("in_flight")
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self._body)).encode()),
                (b"retry-after", b"1"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def ensure_descriptors(max_connections: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to fit `max_connections` (as far as the hard
    limit allows); warn when it cannot. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + FD_RESERVE
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < want:
        raised = want if hard == infinite else min(want, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft != infinite and soft < want:
        log.warning(
            "SATDASK_MAX_CONNECTIONS=%d needs about %d file descriptors, but the limit is %d "
            "(ulimit -n): idle sockets could exhaust them; lower SATDASK_MAX_CONNECTIONS "
            "or raise the limit",
            max_connections,
            want,
            soft,
        )
    return soft
