"""A small keep-alive HTTP/1.1 load generator over asyncio streams, for loopback use.

Shared by `benchmarks/api.py` (figures) and `tests/service/test_stress.py` (assertions).
Pure Python, about 0.05 ms of CPU per request, so it can share a small machine with the
server it drives; uvloop makes it cheaper still when installed. It speaks just enough
HTTP for the service's answers: a status line, headers and a Content-Length body.

`concurrency` connections pull requests from one shared iterator until it runs out or
the time is up, and every request's status is recorded in the order it was taken, so a
caller that knows what each request deserves can check every answer. A request that gets
no answer (connection refused, reset or closed mid-answer, or no answer within
`timeout`) records status 0 and one line in `errors`; its connection is then replaced.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

NO_ANSWER = 0


def post_json(path: str, body: bytes, *, headers: Mapping[str, str] | None = None) -> bytes:
    """One POST request with a JSON body, as bytes on the wire (`body` is sent as is)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class LoadResult:
    statuses: list[int] = field(default_factory=list)  # per request in the order taken
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests only
    errors: list[str] = field(default_factory=list)  # one line per request left unanswered
    connections: int = 0  # connections opened (concurrency, plus one per replacement)
    elapsed: float = 0.0

    @property
    def counts(self) -> Counter[int]:
        return Counter(self.statuses)

    @property
    def answered(self) -> int:
        return len(self.statuses) - self.statuses.count(NO_ANSWER)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """(status, whether the server keeps the connection open) for one request."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length, keep = None, True
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length is None:
        raise ValueError(f"answer without Content-Length: {head[:80]!r}")
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), keep


async def _connection(
    host: str,
    port: int,
    requests: Iterator[bytes],
    until: float,
    timeout: float,
    result: LoadResult,
) -> None:
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while time.perf_counter() < until:
            request = next(requests, None)
            if request is None:
                break
            index = len(result.statuses)
            result.statuses.append(NO_ANSWER)
            start = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    if stream is None:
                        stream = await asyncio.open_connection(host, port)
                        result.connections += 1
                    status, keep = await _exchange(*stream, request)
            except (OSError, EOFError, ValueError, TimeoutError) as exc:
                # IncompleteReadError is an EOFError, a reset an OSError
                result.errors.append(f"request {index}: {type(exc).__name__}: {exc}")
                keep = False
            else:
                result.statuses[index] = status
                result.latencies.append(time.perf_counter() - start)
            if not keep and stream is not None:
                stream[1].close()
                stream = None
    finally:
        if stream is not None:
            stream[1].close()


async def run_load(
    port: int,
    requests: Iterable[bytes],
    *,
    concurrency: int,
    seconds: float | None = None,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
) -> LoadResult:
    """Send `requests` over `concurrency` keep-alive connections; stop when the iterable
    runs out or after `seconds`. The iterable is shared: each request is sent once."""
    shared = iter(requests)
    result = LoadResult()
    start = time.perf_counter()
    until = float("inf") if seconds is None else start + seconds
    await asyncio.gather(
        *(_connection(host, port, shared, until, timeout, result) for _ in range(concurrency))
    )
    result.elapsed = time.perf_counter() - start
    return result
