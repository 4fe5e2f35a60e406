"""Prometheus metrics: request latency and database queries by route, tile cache outcomes, analysis duration,
the caller's analyses by status."""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event

from app import store

#: The ASGI scope of the request being served (None in background work such as the dispatcher).
_request_scope: ContextVar[dict | None] = ContextVar("basewatch_request_scope", default=None)


def route_template(scope: dict) -> str:
    """The route a request matched (its path template), or ``unmatched``."""
    return getattr(scope.get("route"), "path", "unmatched")


@contextmanager
def serving(scope: dict):
    """Within this block, database queries count against this request's route."""
    token = _request_scope.set(scope)
    try:
        yield
    finally:
        _request_scope.reset(token)


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
        self.db_queries = Counter("basewatch_db_queries_total", "SQL statements run by this service, by the route of "
                                  "the request that caused them ('' for background work)", ["route"], registry=self.registry)

    def count_queries(self, engine) -> None:
        """Count every statement ``engine`` runs in :attr:`db_queries`."""
        def counted(*_):
            scope = _request_scope.get()
            self.db_queries.labels(route_template(scope) if scope is not None else "").inc()

        event.listen(engine, "before_cursor_execute", counted)

    def render(self, sessions, team: str) -> tuple[bytes, str]:
        """The registry, plus ``basewatch_analyses`` by status for ``team`` only."""
        with sessions() as session:
            counts = store.count_by_status(session, team)
        gauge = GaugeMetricFamily("basewatch_analyses", "Analyses of the caller's team by status", labels=["status"])
        for status in ("queued", "running", "succeeded", "failed"):
            gauge.add_metric([status], counts.get(status, 0))
        team_registry = CollectorRegistry()
        team_registry.register(_Fixed([gauge]))
        return generate_latest(self.shared()) + generate_latest(team_registry), CONTENT_TYPE_LATEST

    def shared(self) -> CollectorRegistry:
        """This process's registry, or under ``serve`` with several HTTP workers, the sum over all of them
        (Prometheus multi-process mode: each process writes its values to ``PROMETHEUS_MULTIPROC_DIR``)."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry


class _Fixed:
    """A collector that yields the metric families it was given."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)
