"""Prometheus metrics: request latency by route, tile cache hits, analyses by status, analysis duration."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from app import store


class Metrics:
    """One registry per app instance (tests create many apps in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "basewatch_request_seconds", "HTTP request latency by route template", ["method", "route", "status"],
            registry=self.registry, buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.tile_requests = Counter("basewatch_tile_requests_total", "Tile requests by cache outcome",
                                     ["layer", "cache"], registry=self.registry)
        self.analyses = Gauge("basewatch_analyses", "Analyses by status", ["status"], registry=self.registry)
        self.analysis_seconds = Histogram("basewatch_analysis_seconds", "Wall time of analyses run by this process",
                                          ["status"], registry=self.registry,
                                          buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))

    def render(self, sessions) -> tuple[bytes, str]:
        with sessions() as session:
            counts = store.count_by_status(session)
        for status in ("queued", "running", "succeeded", "failed"):
            self.analyses.labels(status).set(counts.get(status, 0))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
