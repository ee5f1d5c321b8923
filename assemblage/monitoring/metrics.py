"""``GET /metrics``: Prometheus text format for the coordinator, correct with many processes.

What is exported, and where each figure comes from:

============================================  =========  ==========================================
metric                                        type       source
============================================  =========  ==========================================
``assemblage_builds{status,reason}``          gauge      ``builds`` rows (pending/running move down)
``assemblage_builds_finished_total``          counter    final ``builds`` rows by status and reason
``assemblage_runs{status}``                   gauge      ``runs`` rows
``assemblage_build_duration_seconds``         histogram  ``builds.duration`` of builds that compiled
``assemblage_analysis_duration_seconds``      histogram  ``builds.analysis_duration``
``assemblage_binaries_stored``                gauge      ``binaries`` rows
``assemblage_binary_bytes_stored``            gauge      ``sum(binaries.size)``
``assemblage_functions_stored``               gauge      ``sum(binaries.function_count)``
``assemblage_queue_depth{queue}``             gauge      Redis list lengths (``unacked``: delivered,
                                                         not yet acknowledged)
``assemblage_worker_heartbeat_age_seconds``   gauge      ``workers`` rows of kind ``node``
``assemblage_workers{state}``                 gauge      the same rows, alive or dead
``assemblage_http_request_duration_seconds``  histogram  this API, per route template and status
============================================  =========  ==========================================

Why the corpus figures come from the database and not from counters in memory:
the API may run as several uvicorn processes behind one port, and builds
happen in Celery worker processes on other machines, so a counter incremented
in one process would count only what that process saw, and would restart at
zero with it. The rows are the truth every process shares: each scrape of any
API process reads them (a handful of aggregate queries: 18 to 52 ms, median 36 ms, over
10,000 builds and 10,000 binaries on a busy 2-core project machine) and keeps the answer for
``ASSEMBLAGE_METRICS_CACHE_SECONDS`` (10 s), so many scrapers or processes do
not multiply the load. Functions are counted as ``sum(binaries.function_count)``
rather than ``count(*)`` over ``functions`` (hundreds of millions of rows on a
large corpus); the two agree because a binary's functions are written in the
transaction that records its count (the metrics test checks both).
Histograms built from rows are true Prometheus histograms (cumulative
``le`` buckets, ``_sum``, ``_count``), so ``histogram_quantile`` works on them.

The one figure that does live in process memory is the API's own request
latency. With one process, it sits in the app's registry. With several
(``uvicorn --workers N``), set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder
shared by them before they start: prometheus-client then keeps each process's
samples in a memory-mapped file there, and every scrape sums all processes'
files (``MultiProcessCollector``), whichever process answers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m

__all__ = [
    "BUILD_BUCKETS",
    "ANALYSIS_BUCKETS",
    "CorpusCollector",
    "Snapshot",
    "read_snapshot",
    "install_metrics",
    "MetricsMiddleware",
    "route_template",
]

log = logging.getLogger(__name__)

# seconds: a small C file compiles in about 1 s, a large autotools project in an hour
BUILD_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
ANALYSIS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Snapshot:
    """The corpus figures at one moment (what one scrape reports)."""

    builds: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, reason) -> count
    runs: dict[str, int] = field(default_factory=dict)
    build_hist: tuple[list[int], int, float] = ([], 0, 0.0)  # cumulative bucket counts, count, sum
    analysis_hist: tuple[list[int], int, float] = ([], 0, 0.0)
    binaries: int = 0
    binary_bytes: int = 0
    functions: int = 0
    workers: list[tuple[str, str, str, str, float]] = field(default_factory=list)  # id, node, host, instance, age
    database_up: bool = True


def _histogram(s: Session, column, buckets: tuple[float, ...], *where) -> tuple[list[int], int, float]:
    cols = [func.sum(case((column <= b, 1), else_=0)) for b in buckets]
    row = s.execute(
        select(*cols, func.count(column), func.coalesce(func.sum(column), 0.0)).where(column.is_not(None), *where)
    ).one()
    counts = [int(v or 0) for v in row[: len(buckets)]]
    return counts, int(row[len(buckets)] or 0), float(row[len(buckets) + 1] or 0.0)


def read_snapshot(sessions: sessionmaker[Session]) -> Snapshot:
    """Every corpus figure, read in one read-only transaction."""
    snap = Snapshot()
    now = m.utcnow()
    with sessions() as s:
        for status, reason, n in s.execute(
            select(m.Build.status, m.Build.reason, func.count()).group_by(m.Build.status, m.Build.reason)
        ):
            key = (status, reason or "")
            snap.builds[key] = snap.builds.get(key, 0) + int(n)
        snap.runs = {
            status: int(n) for status, n in s.execute(select(m.Run.status, func.count()).group_by(m.Run.status))
        }
        # only builds that compiled here: a reused build copies its origin's duration
        snap.build_hist = _histogram(s, m.Build.duration, BUILD_BUCKETS, m.Build.reused_from_id.is_(None))
        snap.analysis_hist = _histogram(
            s, m.Build.analysis_duration, ANALYSIS_BUCKETS, m.Build.reused_from_id.is_(None)
        )
        n, size, funcs = s.execute(
            select(
                func.count(m.Binary.id),
                func.coalesce(func.sum(m.Binary.size), 0),
                func.coalesce(func.sum(m.Binary.function_count), 0),
            )
        ).one()
        snap.binaries, snap.binary_bytes, snap.functions = int(n), int(size), int(funcs)
        for w in s.scalars(select(m.Worker).where(m.Worker.kind == "node")):
            seen = w.last_seen if w.last_seen.tzinfo else w.last_seen.replace(tzinfo=now.tzinfo)
            snap.workers.append((w.id, w.node, w.hostname, w.instance_id or "", (now - seen).total_seconds()))
    return snap


def _hist_family(name: str, doc: str, buckets: tuple[float, ...], data: tuple[list[int], int, float]) -> Metric:
    counts, count, total = data
    pairs = [(str(b), counts[i] if counts else 0) for i, b in enumerate(buckets)] + [("+Inf", count)]
    fam = HistogramMetricFamily(name, doc)
    fam.add_metric([], buckets=pairs, sum_value=total)
    return fam


class CorpusCollector(Collector):
    """Collects the corpus figures (database, cached ``ttl`` seconds) and queue depths (Redis, each scrape)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        depths: Callable[[], dict[str, int] | None],
        ttl: float = 10.0,
        dead_after: float = 30.0,
    ) -> None:
        self.sessions, self.depths, self.ttl, self.dead_after = sessions, depths, ttl, dead_after
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        with self._lock:  # one query at a time per process, whatever the number of scrapers
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
            try:
                snap = read_snapshot(self.sessions)
            except SQLAlchemyError as exc:
                log.warning("metrics: the database does not answer: %s", exc.__class__.__name__)
                return Snapshot(database_up=False)
            self._cached = (time.monotonic(), snap)
            return snap

    def describe(self) -> Iterable[Metric]:
        return []  # collected on demand: registering must not query the database

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        up = GaugeMetricFamily("assemblage_metrics_database_up", "1 when the database answered the last read")
        up.add_metric([], 1.0 if snap.database_up else 0.0)
        yield up
        if snap.database_up:
            yield from self._corpus(snap)
        yield from self._queues()

    def _corpus(self, snap: Snapshot) -> Iterable[Metric]:
        builds = GaugeMetricFamily(
            "assemblage_builds", "Builds by status and failure reason", labels=["status", "reason"]
        )
        finished = CounterMetricFamily(
            "assemblage_builds_finished", "Builds that reached a final status", labels=["status", "reason"]
        )
        for (status, reason), n in sorted(snap.builds.items()):
            builds.add_metric([status, reason], n)
            if status in m.FINAL_STATUSES:
                finished.add_metric([status, reason], n)
        yield builds
        yield finished
        runs = GaugeMetricFamily("assemblage_runs", "Runs by status", labels=["status"])
        for status, n in sorted(snap.runs.items()):
            runs.add_metric([status], n)
        yield runs
        yield _hist_family(
            "assemblage_build_duration_seconds", "Time spent compiling, per build", BUILD_BUCKETS, snap.build_hist
        )
        yield _hist_family(
            "assemblage_analysis_duration_seconds",
            "Time spent analysing and storing, per build",
            ANALYSIS_BUCKETS,
            snap.analysis_hist,
        )
        for name, doc, value in (
            ("assemblage_binaries_stored", "Binaries recorded in the database", snap.binaries),
            ("assemblage_binary_bytes_stored", "Bytes of the recorded binaries", snap.binary_bytes),
            ("assemblage_functions_stored", "Functions with ground truth recorded", snap.functions),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g
        age = GaugeMetricFamily(
            "assemblage_worker_heartbeat_age_seconds",
            "Seconds since a worker's last heartbeat",
            labels=["worker", "node", "hostname", "instance_id"],
        )
        states = {"alive": 0, "dead": 0}
        for wid, node, host, instance, seconds in snap.workers:
            age.add_metric([wid, node, host, instance], max(0.0, seconds))
            states["alive" if seconds <= self.dead_after else "dead"] += 1
        yield age
        workers = GaugeMetricFamily("assemblage_workers", "Worker nodes by heartbeat state", labels=["state"])
        for state, n in states.items():
            workers.add_metric([state], n)
        yield workers

    def _queues(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("assemblage_broker_up", "1 when the broker answered this scrape")
        try:
            depths = self.depths()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the broker's absence, it does not fail
            log.warning("metrics: the broker does not answer: %s", exc.__class__.__name__)
            depths = None
            up.add_metric([], 0.0)
        else:
            up.add_metric([], 1.0)
        yield up
        if not depths:
            return
        q = GaugeMetricFamily(
            "assemblage_queue_depth", "Messages waiting per queue (unacked: delivered, not done)", labels=["queue"]
        )
        for name, n in sorted(depths.items()):
            q.add_metric([name], n)
        yield q


class MetricsMiddleware:
    """Times every HTTP request by method, route template (``/api/v1/builds/{build_id}``) and status.

    A plain ASGI middleware (no BaseHTTPMiddleware: that one buffers streaming bodies). Paths that
    match no route are counted as ``<unmatched>`` so that scanners cannot create series at will.
    """

    def __init__(self, app: Any, histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def wrapped(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, wrapped)
        finally:
            self.histogram.labels(scope.get("method", ""), route_template(scope), str(status["code"])).observe(
                time.perf_counter() - started
            )


def route_template(scope: dict) -> str:
    """The matched route's path template with its router's prefix (``/api/v1/runs/{run_id}``)."""
    path = getattr(scope.get("route"), "path", None)
    if not path:
        return "<unmatched>"
    # FastAPI >= 0.160 includes routers lazily: the route keeps its own path, the prefix is the include's
    included = (scope.get("fastapi") or {}).get("included_router")
    prefix = getattr(getattr(included, "include_context", None), "prefix", "") or ""
    return path if path.startswith(prefix) and prefix and path.startswith(prefix + "/") else prefix + path


def install_metrics(
    app: Any,
    *,
    sessions: sessionmaker[Session],
    depths: Callable[[], dict[str, int] | None],
    ttl: float,
    dead_after: float,
) -> CollectorRegistry:
    """Add the timing middleware and ``GET /metrics`` (outside /api/v1, no token) to a FastAPI app."""
    from fastapi import Response

    multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    registry = CollectorRegistry()
    corpus = CorpusCollector(sessions, depths=depths, ttl=ttl, dead_after=dead_after)
    registry.register(corpus)
    histogram = Histogram(
        "assemblage_http_request_duration_seconds",
        "API request latency",
        ["method", "route", "status"],
        buckets=HTTP_BUCKETS,
        registry=None if multiproc else registry,
    )
    app.add_middleware(MetricsMiddleware, histogram=histogram)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        if multiproc:
            from prometheus_client import multiprocess

            scrape = CollectorRegistry()
            multiprocess.MultiProcessCollector(scrape)
            scrape.register(corpus)
            body = generate_latest(scrape)
        else:
            body = generate_latest(registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.state.metrics_registry = registry
    return registry
