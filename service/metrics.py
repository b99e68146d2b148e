"""Prometheus metrics, all named `satdask_*`, in a registry owned by one app instance.

Under `satdask serve --workers N` each worker process has its own registry, so a
scrape sees the worker that answered it; sum across scrapes per `instance`/`pid`
or run one worker per container for exact totals.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from litestar.middleware import ASGIMiddleware
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from satdask.io.registry import ModelArtifact

# The classic text exposition format; Litestar appends the charset.
CONTENT_TYPE = "text/plain; version=0.0.4"
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
CLASS_NAMES = {-1: "none", 0: "dark", 1: "bright"}
# What became of a file the service looked at after path resolution (see SceneStore);
# missing and unavailable happen under a remote data root only (a local path is resolved
# before anything is looked at).
OPEN_OUTCOMES = ("ok", "empty", "not_tiff", "unreadable", "missing", "unavailable")
_SEEN = "satdask.metrics"


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: they double the output for nothing
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "satdask_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ("route", "method", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "satdask_http_request_duration_seconds",
            "Time from routing to the last byte of the response, by route template.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "satdask_predictions",
            "Tile predictions served, by class (bright, dark, none).",
            ("class",),
            registry=r,
        )
        self.tile_read_failures = Counter(
            "satdask_tile_read_failures", "Tiles whose pixels could not be decoded.", registry=r
        )
        self.remote_read_retries = Counter(
            "satdask_remote_read_retries",
            "Remote tile reads retried after a failure (up to satdask's REMOTE_RETRIES per read).",
            registry=r,
        )
        self.model_info = Info("satdask_model", "The loaded model.", registry=r)
        self.model_loaded = Gauge(
            "satdask_model_loaded", "1 when a model is loaded (ready), else 0.", registry=r
        )
        self.scenes_cached = Gauge(
            "satdask_scene_cache_entries", "Scenes held in the open-scene cache.", registry=r
        )
        self.scene_opens = Counter(
            "satdask_scene_opens",
            "Files under the data root looked at after path resolution, by outcome: ok "
            "(opened as a scene), empty, not_tiff (sniffed, never given to GDAL), unreadable, "
            "and for a remote root missing and unavailable (the store did not answer).",
            ("outcome",),
            registry=r,
        )
        self.refused = Counter(
            "satdask_http_refused",
            "Connections and requests refused or closed by the server's bounds, by reason: "
            "malformed (400: not HTTP), request_line (414), headers (431), timeout (408, or "
            "an idle socket closed), connections (503: at the limit, none idle), evicted (an "
            "idle connection closed to make room) and in_flight (503: too many requests "
            "being handled).",
            ("reason",),
            registry=r,
        )
        self.listings = Counter(
            "satdask_scene_listings",
            "GET /scenes answers, by source: walk (a walk of the tree was started), shared "
            "(waited for the walk under way) or cache (a recent walk's answer).",
            ("source",),
            registry=r,
        )
        self.listing_in_flight = Gauge(
            "satdask_scene_listing_in_flight",
            "1 while a walk of the data root for GET /scenes is running, else 0.",
            registry=r,
        )
        ProcessCollector(namespace="satdask", registry=r)
        self._classes = {k: self.predictions.labels(v) for k, v in CLASS_NAMES.items()}
        self._opens = {k: self.scene_opens.labels(k) for k in OPEN_OUTCOMES}
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def set_model(self, artifact: ModelArtifact | None) -> None:
        if artifact is None:
            self.model_loaded.set(0)
            return
        self.model_info.info(
            {"id": artifact.id, "sha256": artifact.sha256, "kind": artifact.model.kind}
        )
        self.model_loaded.set(1)

    def count_prediction(self, prediction: int) -> None:
        self._classes[prediction].inc()

    def count_scene_open(self, outcome: str) -> None:
        self._opens[outcome].inc()

    def count_refused(self, reason: str) -> None:
        self.refused.labels(reason).inc()

    def observe(self, route: str, method: str, status: int, seconds: float | None) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        if seconds is not None:
            hist = self._latency_children.get(route)
            if hist is None:
                hist = self._latency_children[route] = self.latency.labels(route)
            hist.observe(seconds)

    def observe_unmatched(self, scope: Scope, status: int) -> None:
        """Requests that never reached a route (404/405 from the router), counted once."""
        if scope.get(_SEEN):  # type: ignore[misc]
            return
        scope[_SEEN] = True  # type: ignore[literal-required]
        method = scope.get("method", "")  # type: ignore[misc]
        self.observe(scope.get("path_template") or UNMATCHED, method, status, None)  # type: ignore[misc]

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware(ASGIMiddleware):
    """Counts and times every routed request by its route template (bounded labels)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        start = perf_counter()
        status = 500
        scope[_SEEN] = True  # type: ignore[literal-required]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, send_wrapper)
        finally:
            route = scope.get("path_template") or UNMATCHED  # type: ignore[misc]
            self.metrics.observe(route, scope["method"], status, perf_counter() - start)  # type: ignore[typeddict-item]
