"""Prometheus metrics: request latency by route, tile cache outcomes, analysis duration, the caller's analyses by status."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

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
        self.analysis_seconds = Histogram("basewatch_analysis_seconds", "Wall time of analyses run by this process",
                                          ["status"], registry=self.registry,
                                          buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))

    def render(self, sessions, team: str) -> tuple[bytes, str]:
        """The registry, plus ``basewatch_analyses`` by status for ``team`` only."""
        with sessions() as session:
            counts = store.count_by_status(session, team)
        gauge = GaugeMetricFamily("basewatch_analyses", "Analyses of the caller's team by status", labels=["status"])
        for status in ("queued", "running", "succeeded", "failed"):
            gauge.add_metric([status], counts.get(status, 0))
        team_registry = CollectorRegistry()
        team_registry.register(_Fixed([gauge]))
        return generate_latest(self.registry) + generate_latest(team_registry), CONTENT_TYPE_LATEST


class _Fixed:
    """A collector that yields the metric families it was given."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)
