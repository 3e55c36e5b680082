"""Prometheus metrics: HTTP requests by route and status, outbox depth and age."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

REQUESTS = Counter(
    "palmhall_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "palmhall_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    labels = (method, route, str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)


def render(outbox: dict[str, Any], *, hall_sync_lag_seconds: float | None = None) -> tuple[bytes, str]:
    """Process metrics (all processes' when multi-process) plus gauges read from the database."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    gauges = CollectorRegistry()
    gauges.register(_OutboxCollector(outbox))
    if hall_sync_lag_seconds is not None:
        gauges.register(_HallSyncCollector(hall_sync_lag_seconds))
    return text + generate_latest(gauges), CONTENT_TYPE_LATEST


class _OutboxCollector:
    def __init__(self, outbox: dict[str, Any]) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = GaugeMetricFamily("palmhall_outbox_events", "Outbox events by status", labels=["status"])
        for status, n in sorted(self.outbox["counts"].items()):
            rows.add_metric([status], n)
        yield rows
        yield GaugeMetricFamily(
            "palmhall_outbox_oldest_pending_age_seconds",
            "Age of the oldest event not yet done (pending or running)",
            value=self.outbox["oldest_pending_age_seconds"],
        )


class _HallSyncCollector:
    def __init__(self, lag_seconds: float) -> None:
        self.lag_seconds = lag_seconds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "palmhall_hall_sync_lag_seconds",
            "Age of the oldest event the main hall has not acknowledged yet",
            value=self.lag_seconds,
        )
