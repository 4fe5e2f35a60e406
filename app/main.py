"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from app import __version__
from app.auth import FailureLimiter, KeyRing
from app.db import make_engine, migrate, session_factory
from app.errors import error_responses, install_error_handlers
from app.ingest import Converter
from app.jobs import start_dispatcher
from app.metrics import Metrics
from app.middleware import BodyLimit, CorsByRoute, RedactTokens, RequestMetrics, SecurityHeaders
from app.openapi import install_openapi
from app.routes import add_head_routes, alerts, aois, analyses, health, scenes, tiles, timeline, viewer, zones
from app.settings import Settings
from app.sweep import sweep_at_start
from app.tilecache import ProductCache

log = logging.getLogger("basewatch")

#: Database connections the API needs beyond one per API thread (dispatcher, key reloads).
EXTRA_CONNECTIONS = 4

def create_app(settings: Settings | None = None, *, run_jobs: bool = True) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings : Settings, optional
        Default: from ``BASEWATCH_*`` environment variables.
    run_jobs : bool
        This process owns the data folder: it sweeps a crash's leftovers now and runs the analysis dispatcher
        and its worker pool (False for an API-only process, such as one of several HTTP workers of ``serve``).
    """
    settings = settings or Settings()
    settings.ensure_dirs()
    os.environ.setdefault("GDAL_CACHEMAX", str(settings.gdal_cachemax_mb))
    migrate(settings.db_url)
    engine = make_engine(settings.db_url, pool_size=settings.api_threads + EXTRA_CONNECTIONS,
                         pool_timeout=settings.db_pool_timeout_s)
    sessions = session_factory(engine)
    metrics = Metrics()
    metrics.count_queries(engine)
    if run_jobs:
        sweep_at_start(settings, sessions)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        redact = RedactTokens()
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addFilter(redact)
        dispatcher = None
        if run_jobs:
            dispatcher = start_dispatcher(settings, sessions,
                                          on_done=lambda aid, status, s: metrics.analysis_seconds.labels(status).observe(s))
            app.state.dispatcher_wake = dispatcher.wake
        app.state.keys.reload()
        if not app.state.keys.enabled():
            log.warning("no API key exists: the service is OPEN to loopback clients (anyone on this machine may read "
                        "and write); create a key with `basewatch keys create` to turn authentication on")
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()
                dispatcher.executor.shutdown()
            app.state.products.close()
            engine.dispose()

    app = FastAPI(title="basewatch", version=__version__, lifespan=lifespan, responses=error_responses(),
                  description="Change detection between satellite images of an area of interest: "
                              "scenes, AOIs, analyses, change objects (GeoJSON), map tiles, WMTS and a viewer.")
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.metrics = metrics
    app.state.keys = KeyRing(settings, sessions)
    app.state.failures = FailureLimiter(settings.auth_failures_per_minute)
    app.state.products = ProductCache(settings)
    app.state.converter = Converter(settings)
    app.state.dispatcher_wake = lambda: None
    install_error_handlers(app)
    # Added innermost first: SecurityHeaders wraps everything, WarmTiles sits next to the routes.
    app.add_middleware(tiles.WarmTiles, state=app.state)
    app.add_middleware(BodyLimit, max_bytes=settings.max_json_kb * 1024, max_depth=settings.max_json_depth)
    app.add_middleware(CorsByRoute, map_origins=settings.cors_origins, api_origins=settings.cors_api_origins)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(SecurityHeaders)

    for module in (health, scenes, aois, zones, timeline, alerts, analyses, tiles, viewer):
        app.include_router(module.router)
    add_head_routes(app)
    install_openapi(app)
    return app
