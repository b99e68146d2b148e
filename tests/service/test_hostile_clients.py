"""Hostile clients against a real `satdask serve` on loopback (issue 14, items 4, 5, 8, 9).

Two servers run for this module, on the same data root and with the same API key:

- `guarded`: small bounds (request line, head, time to send a request, keep-alive,
  connections, requests in flight), so each can be crossed with a few requests;
- `lenient`: every bound raised and the Host check off. It is each test's control: the
  same attack that the guarded server refuses gets through there, so a test that passes
  does so because of the bound, not because the attack was harmless.

Both run with RLIMIT_NOFILE at FD_LIMIT, so that idle sockets can exhaust file
descriptors as they did in the issue (1,100 sockets under a 1,024 limit). Every wait is
bounded; nothing asserts on wall-clock durations: a timeout either closes a connection
before the client finishes a slow send, or it does not.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import stop_process
from svc_support import (
    API_KEY,
    DataRoot,
    LiveServer,
    clean_env,
    free_port,
    serve_command,
    wait_until_ready,
)

from service import Settings
from service.auth import default_hosts, host_name
from service.errors import ConfigError

Client = TestClient[Litestar]
FD_LIMIT = 256
MAX_REQUEST_LINE = 4096
MAX_HEADER_BYTES = 8192
MAX_CONNECTIONS = 48
MAX_IN_FLIGHT = 4
GUARDED = {
    "SATDASK_MAX_REQUEST_LINE": str(MAX_REQUEST_LINE),
    "SATDASK_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    "SATDASK_REQUEST_TIMEOUT": "2",
    "SATDASK_KEEPALIVE_TIMEOUT": "2",
    "SATDASK_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "SATDASK_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
}
LENIENT = {
    "SATDASK_MAX_REQUEST_LINE": str(256 * 2**20),
    "SATDASK_MAX_HEADER_BYTES": str(256 * 2**20),
    "SATDASK_REQUEST_TIMEOUT": "600",
    "SATDASK_KEEPALIVE_TIMEOUT": "600",
    "SATDASK_MAX_CONNECTIONS": "100000",
    "SATDASK_MAX_IN_FLIGHT": "100000",
    "SATDASK_ALLOWED_HOSTS": "*",
}
INFER = b'{"scene": "sample.tif", "row": 0, "col": 0}'


def limited_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@contextlib.contextmanager
def server_with(
    data_root: Path, registry: Path, log: Path, env: dict[str, str]
) -> Iterator[LiveServer]:
    """`satdask serve` (one worker, API_KEY, RLIMIT_NOFILE = FD_LIMIT) on 127.0.0.1."""
    port = free_port()
    cmd = serve_command(
        "--data-root", str(data_root), "--model", str(registry), "--port", str(port)
    )
    variables = clean_env(SATDASK_API_KEY=API_KEY, **env)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=variables, stdout=out, stderr=subprocess.STDOUT, preexec_fn=limited_fds
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, proc, log, headers={"X-API-Key": API_KEY})
        yield LiveServer(url=url, log=log, process=proc)
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def guarded(
    data: DataRoot, sample_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    with server_with(data.root, sample_registry, log, GUARDED) as server:
        yield server


@pytest.fixture(scope="module")
def lenient(
    data: DataRoot, sample_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("lenient") / "server.log"
    with server_with(data.root, sample_registry, log, LENIENT) as server:
        yield server


# ---------------------------------------------------------------------------
# A raw HTTP/1.1 client: requests as bytes, answers read to their Content-Length
# ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: the connection closed (or was reset) without an answer
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> object:
        return json.loads(self.body)


def request(
    method: str,
    target: str,
    *,
    host: str = "127.0.0.1",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    key: bool = True,
) -> bytes:
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if key:
        pairs.append(("X-API-Key", API_KEY))
    if body is not None:
        pairs.append(("Content-Length", str(len(body))))
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in pairs)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def connect(port: int, *, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_answer(sock: socket.socket) -> Answer:
    """One answer, or status 0 if the server closed (or reset) the connection first."""
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return Answer(0)
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except ConnectionResetError:
        return Answer(0)
    return Answer(int(lines[0].split(" ")[1]), headers, rest[:length])


def exchange(port: int, raw: bytes) -> Answer:
    with connect(port) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def closed_by_server(sock: socket.socket, *, within: float) -> bool:
    """Whether the server closes `sock` (EOF or reset, any answer read and dropped) before
    `within` seconds pass. A bounded wait: it proves a close happened, not when."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def still_open(sock: socket.socket) -> bool:
    """True if the server has not closed `sock` (nothing to read, no EOF): no waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.setblocking(True)


def health_ok(server: LiveServer) -> bool:
    return exchange(server.port, request("GET", "/health", key=False)).status == 200


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


# ---------------------------------------------------------------------------
# 4. Request line, headers, idle and slow connections, connections and requests in flight
# ---------------------------------------------------------------------------


def test_a_long_request_line_is_refused_with_414(guarded: LiveServer, lenient: LiveServer) -> None:
    target = "/health?pad=" + "a" * (4 * MAX_REQUEST_LINE)
    refused = exchange(guarded.port, request("GET", target, key=False))
    assert refused.status == 414, refused
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.headers.get("connection") == "close"
    detail = refused.json()
    assert detail["status_code"] == 414 and "request line" in detail["detail"]  # type: ignore[index]
    assert health_ok(guarded)
    # control: the same request line, where the bound is raised, is served
    assert exchange(lenient.port, request("GET", target, key=False)).status == 200


def test_a_malformed_request_gets_a_json_400(guarded: LiveServer) -> None:
    for raw in (b"NOT HTTP AT ALL\r\n\r\n", b"GET /health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n"):
        answer = exchange(guarded.port, raw)
        assert answer.status == 400, answer
        assert answer.headers["content-type"].startswith("application/json"), answer
        assert answer.json() == {"status_code": 400, "detail": "malformed HTTP request"}
    assert health_ok(guarded)


def test_a_long_header_is_refused_with_431(guarded: LiveServer, lenient: LiveServer) -> None:
    one_big = request("GET", "/health", headers={"X-Pad": "a" * (2 * MAX_HEADER_BYTES)})
    many = request("GET", "/health", headers=[(f"X-Pad-{i}", "a" * 40) for i in range(400)])
    for raw in (one_big, many):
        refused = exchange(guarded.port, raw)
        assert refused.status == 431, refused
        assert refused.json()["detail"].startswith("request headers over")  # type: ignore[index]
        assert exchange(lenient.port, raw).status == 200  # control
    assert health_ok(guarded)


@pytest.mark.parametrize(
    "start", [b"GET /health?pad=", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "]
)
def test_a_huge_request_line_or_header_is_cut_off_while_others_are_answered(
    guarded: LiveServer, start: bytes
) -> None:
    """A 64 MiB URL, or header, sent in 1 MiB pieces: the server answers or resets long
    before the end, its peak memory stays put, and another client's /health is answered
    meanwhile."""
    total, piece = 64 * 2**20, b"a" * 2**20
    before = vm_hwm_kb(guarded.process.pid)
    sent = 0
    with connect(guarded.port) as sock:
        sock.sendall(start)
        try:
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
                if sent == 8 * len(piece):
                    assert health_ok(guarded)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            pytest.fail("the server read a 64 MiB request head to the end")
    assert sent < total // 2
    assert vm_hwm_kb(guarded.process.pid) - before < 32 * 1024
    assert health_ok(guarded)


def test_idle_sockets_do_not_shut_clients_out(guarded: LiveServer, lenient: LiveServer) -> None:
    """More idle sockets than the server has file descriptors: a normal client is still
    answered (the oldest idle connections make room). The control: the lenient server,
    under the same descriptor limit, runs out of them and leaves the client unanswered."""
    idle = FD_LIMIT + 64
    for server, answered in ((guarded, True), (lenient, False)):
        sockets = [connect(server.port) for _ in range(idle)]
        try:
            # the control waits 3 s for an answer that cannot come; the guarded server
            # gets 30 s for one that must
            with connect(server.port, timeout=30.0 if answered else 3.0) as sock:
                sock.sendall(request("GET", "/health", key=False))
                try:
                    status = read_answer(sock).status
                except TimeoutError:
                    status = 0
            assert (status == 200) is answered, (server.url, status)
            if answered:
                closed = sum(closed_by_server(s, within=0.01) for s in sockets)
                assert closed >= idle - MAX_CONNECTIONS
            else:
                assert open_fds(server.process.pid) >= FD_LIMIT - 8  # the limit was hit
        finally:
            for s in sockets:
                s.close()
    assert health_ok(guarded)


def test_an_idle_connection_is_closed(guarded: LiveServer, lenient: LiveServer) -> None:
    """A connection that never sends, and one idle after an answer, are closed; the
    lenient server still holds both when the guarded one has closed them."""
    fresh = [connect(guarded.port), connect(lenient.port)]
    kept = [connect(guarded.port), connect(lenient.port)]
    try:
        for sock in kept:
            sock.sendall(request("GET", "/health", key=False))
            assert read_answer(sock).status == 200
        assert closed_by_server(fresh[0], within=30)
        assert closed_by_server(kept[0], within=30)
        assert still_open(fresh[1]) and still_open(kept[1])  # control
    finally:
        for sock in fresh + kept:
            sock.close()


def test_slow_headers_are_cut_off(guarded: LiveServer, lenient: LiveServer) -> None:
    """Headers sent a byte at a time: the guarded server closes the connection (after a
    408) before the client is done; the lenient one waits and answers."""
    head = request("GET", "/health", headers={"X-Slow": "b" * 60}, key=False)
    for server, cut in ((guarded, True), (lenient, False)):
        with connect(server.port) as sock:
            sock.sendall(head[:20])
            sent = 20
            try:
                for byte in head[20:]:
                    sock.sendall(bytes([byte]))
                    sent += 1
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = read_answer(sock)
        if cut:
            assert sent < len(head), "the whole slow request was read"
            assert answer.status in (0, 408), answer
        else:
            assert sent == len(head) and answer.status == 200, answer


def test_a_stalled_body_is_cut_off_without_an_error_log(
    guarded: LiveServer, lenient: LiveServer
) -> None:
    """A request whose body stops half-way: 408 and closed (its handler is stopped, and no
    ERROR is logged for it); the lenient server still waits for the rest."""
    post = request("POST", "/infer", headers={"Content-Type": "application/json"}, body=INFER)
    before = guarded.log.read_text()
    stalled = [connect(guarded.port), connect(lenient.port)]
    try:
        for sock in stalled:
            sock.sendall(post[:-10])
        answer = read_answer(stalled[0])
        assert answer.status == 408, answer
        assert "not received within" in answer.json()["detail"]  # type: ignore[index]
        assert closed_by_server(stalled[0], within=30)
        assert still_open(stalled[1])  # control
    finally:
        for sock in stalled:
            sock.close()
    assert health_ok(guarded)
    added = guarded.log.read_text()[len(before) :]
    assert "ERROR" not in added and "Traceback" not in added, added


def test_a_body_still_coming_after_its_answer_gets_no_second_answer(guarded: LiveServer) -> None:
    """A body far over the limit is answered 413 at once; the client sending on is cut off
    at the request timeout, and the connection carries that one answer only."""
    head = request(
        "POST", "/infer", headers={"Content-Type": "application/json"}, body=b""
    ).replace(b"Content-Length: 0", b"Content-Length: 100000000")
    with connect(guarded.port) as sock:
        sock.sendall(head + b"[" * 65536)
        answer = read_answer(sock)
        assert answer.status == 413, answer
        rest = b""
        try:
            for _ in range(200):  # bounded: 20 s of a trickle, far past the 2 s timeout
                sock.sendall(b"[" * 1024)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            pytest.fail("the connection was never closed")
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                rest += chunk
    assert b"HTTP/1.1" not in rest, rest[:200]


def test_requests_over_the_in_flight_limit_get_503(guarded: LiveServer) -> None:
    """MAX_IN_FLIGHT requests held open (their bodies unfinished) fill the server; the
    next request gets a JSON 503 and is not run; once they finish, requests pass again."""
    post = request("POST", "/infer", headers={"Content-Type": "application/json"}, body=INFER)
    assert exchange(guarded.port, post).status == 200  # control: answered when not full
    held = [connect(guarded.port) for _ in range(MAX_IN_FLIGHT)]
    try:
        for sock in held:
            sock.sendall(post[: -len(INFER) + 5])  # the head and 5 bytes of the body
        busy = wait_for(lambda: exchange(guarded.port, post), lambda a: a.status == 503)
        assert busy.headers["content-type"].startswith("application/json")
        assert busy.json()["status_code"] == 503  # type: ignore[index]
        assert "retry-after" in busy.headers
        assert health_ok(guarded)  # liveness is answered even when the server is full
        for sock in held:
            sock.sendall(INFER[5:])
            assert read_answer(sock).status == 200
    finally:
        for sock in held:
            sock.close()
    assert exchange(guarded.port, post).status == 200


def wait_for(call, done, *, tries: int = 50):  # type: ignore[no-untyped-def]
    """Call until `done(result)`; bounded (the held requests reach the app asynchronously)."""
    for _ in range(tries):
        result = call()
        if done(result):
            return result
        time.sleep(0.05)
    raise AssertionError(f"not done after {tries} tries: last {result}")


def test_many_clients_at_once_are_all_answered(guarded: LiveServer) -> None:
    """The bounds leave ordinary concurrent clients alone: as many keep-alive clients as
    MAX_CONNECTIONS allows, a few requests each, every one answered 200 or 503 (busy)."""
    errors: list[str] = []
    statuses: list[int] = []

    def client() -> None:
        try:
            with connect(guarded.port) as sock:
                for _ in range(5):
                    sock.sendall(request("GET", "/health", key=False))
                    statuses.append(read_answer(sock).status)
        except OSError as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(MAX_CONNECTIONS // 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(statuses) == 5 * len(threads)
    assert set(statuses) <= {200, 503} and statuses.count(200) > 0


# ---------------------------------------------------------------------------
# 5. Deeply nested JSON
# ---------------------------------------------------------------------------


def test_deeply_nested_json_is_a_400_and_logs_no_error(guarded: LiveServer) -> None:
    before = guarded.log.read_text()
    assert "serving" in before  # control: this is the server's log, and it is written
    for depth in (1000, 4000):
        nested = b"[" * depth + b"]" * depth
        for body in (nested, b'{"scene": ' + nested + b', "row": 0, "col": 0}'):
            raw = request("POST", "/infer", headers={"Content-Type": "application/json"}, body=body)
            answer = exchange(guarded.port, raw)
            assert answer.status == 400, (depth, answer)
            assert "nested" in answer.json()["detail"]  # type: ignore[index]
    assert health_ok(guarded)
    added = guarded.log.read_text()[len(before) :]
    assert "ERROR" not in added and "Traceback" not in added, added


# ---------------------------------------------------------------------------
# 8. Host header, content type, duplicate credentials
# ---------------------------------------------------------------------------


def test_a_foreign_host_header_is_refused(guarded: LiveServer, lenient: LiveServer) -> None:
    port = guarded.port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "[::2]"):
        for raw in (
            request("GET", "/health", host=host, key=False),
            request("GET", "/model", host=host),
            request("POST", "/infer", host=host, body=INFER,
                    headers={"Content-Type": "application/json"}),
        ):  # fmt: skip
            refused = exchange(port, raw)
            assert refused.status == 400, (host, refused)
            assert "Host" in refused.json()["detail"]  # type: ignore[index]
            assert exchange(lenient.port, raw).status == 200  # control: no Host check
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST"):
        assert exchange(port, request("GET", "/model", host=host)).status == 200, host


def test_json_bodies_need_the_json_content_type(guarded: LiveServer) -> None:
    for media in ("text/plain", None, "application/x-www-form-urlencoded"):
        headers = {"Content-Type": media} if media else {}
        refused = exchange(guarded.port, request("POST", "/infer", headers=headers, body=INFER))
        assert refused.status == 415, (headers, refused)
        assert "application/json" in refused.json()["detail"]  # type: ignore[index]
    for media in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        raw = request("POST", "/infer", headers={"Content-Type": media}, body=INFER)
        assert exchange(guarded.port, raw).status == 200, media  # control


@pytest.mark.parametrize(
    "credentials",
    [
        [("X-API-Key", API_KEY), ("X-API-Key", "wrong")],
        [("X-API-Key", "wrong"), ("X-API-Key", API_KEY)],
        [("X-API-Key", API_KEY), ("X-API-Key", API_KEY)],
        [("Authorization", f"Bearer {API_KEY}"), ("Authorization", "Bearer wrong")],
        [("Authorization", f"Bearer {API_KEY}"), ("Authorization", f"Bearer {API_KEY}")],
    ],
)
def test_duplicate_credential_headers_are_refused(
    guarded: LiveServer, credentials: list[tuple[str, str]]
) -> None:
    refused = exchange(guarded.port, request("GET", "/model", headers=credentials, key=False))
    assert refused.status == 401, refused
    assert "more than one" in refused.json()["detail"]  # type: ignore[index]
    good = [pair for pair in credentials if pair[1].endswith(API_KEY)][:1]
    control = exchange(guarded.port, request("GET", "/model", headers=good, key=False))
    assert control.status == 200  # the right key, once, is let in


# ---------------------------------------------------------------------------
# 9. HEAD /health
# ---------------------------------------------------------------------------


def test_head_health_is_200(guarded: LiveServer) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        head = http.head("/health")
        assert head.status_code == 200 and head.content == b""
        assert http.get("/health").status_code == 200
        assert http.head("/no-such-route").status_code == 404  # control: HEAD is routed


# ---------------------------------------------------------------------------
# The Host allow-list in-process, and its setting
# ---------------------------------------------------------------------------


def test_an_app_built_with_an_allow_list_checks_the_host(
    make_client: Callable[..., Client],
) -> None:
    """`create_app` checks Host only when `allowed_hosts` is set (`satdask serve` always sets
    it); the TestClient's requests carry Host: testserver.local."""
    assert make_client().get("/health").status_code == 200  # control: no list, no check
    refused = make_client(allowed_hosts="example.org").get("/health")
    assert refused.status_code == 400 and "Host" in refused.json()["detail"]
    assert make_client(allowed_hosts="*.local").get("/health").status_code == 200
    named = make_client(allowed_hosts="example.org, testserver.local")
    assert named.get("/health", headers={"Host": "TestServer.Local.:8000"}).status_code == 200


@pytest.mark.parametrize("value", ["a.org:8000", "http://a.org", "a.org/x", "*a.org", "u@a.org"])
def test_a_bad_allowed_hosts_setting_names_the_variable(data: DataRoot, value: str) -> None:
    with pytest.raises(ConfigError, match=r"SATDASK_ALLOWED_HOSTS: .* is not a host name"):
        Settings(data_root=data.root, allowed_hosts=value)


def test_host_names_are_compared_without_port_or_case(data: DataRoot) -> None:
    given = Settings(data_root=data.root, allowed_hosts=" Example.ORG, ::1 ,*.x.io,")
    assert given.allowed_hosts == "example.org,[::1],*.x.io"
    assert default_hosts("127.0.0.1") == "127.0.0.1,localhost,[::1]"
    assert default_hosts("::") == "[::],localhost,127.0.0.1,[::1]"
    assert [host_name(h) for h in ("[::1]:8000", "Example.org.:80", "a.b", "[::1")] == [
        "[::1]",
        "example.org",
        "a.b",
        "[::1",
    ]


def test_the_guards_run_on_the_event_loop(make_client: Callable[..., Client]) -> None:
    """Litestar runs a guard that is a plain function on a worker thread for every request
    (measured: 0.23 ms of CPU and 0.42 ms of wall time per request, more than the checks
    themselves by far); the service's guards are coroutines, run on the loop."""
    client = make_client(api_key=API_KEY, allowed_hosts="testserver.local")
    guards = client.app.guards
    assert len(guards) == 2
    assert all(inspect.iscoroutinefunction(guard) for guard in guards)
    assert client.get("/model", headers={"X-API-Key": API_KEY}).status_code == 200
    assert client.get("/model", headers={"X-API-Key": "wrong"}).status_code == 401


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SATDASK_ALLOWED_HOSTS", "tiles.example.org:443"),
        ("SATDASK_REQUEST_TIMEOUT", "0"),
        ("SATDASK_KEEPALIVE_TIMEOUT", "soon"),
        ("SATDASK_MAX_CONNECTIONS", "-1"),
        ("SATDASK_LIST_SECONDS", "nan"),
    ],
)
def test_a_bad_bound_stops_serve_with_one_line(
    data: DataRoot, sample_registry: Path, variable: str, value: str
) -> None:
    out = subprocess.run(
        serve_command("--data-root", str(data.root), "--model", str(sample_registry)),
        env=clean_env(**{variable: value}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("satdask: error: "), out.stderr
    assert variable in lines[0] and value in lines[0]
