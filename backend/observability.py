"""Metrics (Prometheus), the event-loop lag monitor and an access log that never prints secrets."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)
access_log = logging.getLogger("tic.access")

# Stream keys travel in paths and query strings of client URLs; tokens in query strings too.
_SECRET_QUERY = re.compile(r"(?i)\b(stream_key|token|ticket|api_key|password|username|auth)=([^&\s]+)")
_SECRET_PATH = re.compile(r"(/tic-api/hdhr_device/)([^/]+)")


def redact_target(target: str) -> str:
    target = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", target)
    return _SECRET_PATH.sub(lambda m: f"{m.group(1)}***", target)


class Metrics:
    """One registry per app, so several apps in one test process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tic_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "tic_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.task_runs = Counter(
            "tic_task_runs_total", "Finished task runs", ["name", "status"], registry=self.registry
        )
        self.queue_length = Gauge("tic_task_queue_length", "Queued task runs", registry=self.registry)
        self.loop_lag = Gauge(
            "tic_event_loop_lag_seconds", "Latest event-loop lag sample", registry=self.registry
        )
        self.loop_lag_max = Gauge(
            "tic_event_loop_lag_max_seconds", "Largest lag in the last minute", registry=self.registry
        )


class LoopLagMonitor:
    """Samples how late a periodic wake-up fires; that delay is what every request would feel."""

    def __init__(self, metrics: Metrics | None = None, interval: float = 0.25) -> None:
        self.metrics = metrics
        self.interval = interval
        self.last = 0.0
        self.max_recent = 0.0
        self._window_start = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tic-loop-lag")

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.monotonic() - before - self.interval)
            self.last = lag
            now = time.monotonic()
            if now - self._window_start > 60:
                self._window_start, self.max_recent = now, 0.0
            self.max_recent = max(self.max_recent, lag)
            if self.metrics is not None:
                self.metrics.loop_lag.set(lag)
                self.metrics.loop_lag_max.set(self.max_recent)
            if lag > 0.5:
                log.warning("Event loop was blocked for %.2f s", lag)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
