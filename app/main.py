"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import logging
import os
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.db import make_engine, migrate, session_factory
from app.deps import AuthState
from app.errors import install_error_handlers
from app.jobs import Dispatcher, make_executor
from app.metrics import Metrics
from app.routes import aois, analyses, health, scenes, tiles, viewer
from app.settings import Settings
from app.tilecache import ProductCache

log = logging.getLogger("basewatch")


def create_app(settings: Settings | None = None, *, run_jobs: bool = True) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings : Settings, optional
        Default: from ``BASEWATCH_*`` environment variables.
    run_jobs : bool
        Start the dispatcher and worker pool (False for an API-only process).
    """
    settings = settings or Settings()
    settings.ensure_dirs()
    os.environ.setdefault("GDAL_CACHEMAX", str(settings.gdal_cachemax_mb))
    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    sessions = session_factory(engine)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        dispatcher = None
        if run_jobs:
            executor = make_executor(settings)
            dispatcher = Dispatcher(settings, sessions, executor, worker_id=f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
                                    on_done=lambda aid, status, s: metrics.analysis_seconds.labels(status).observe(s))
            # Embedded SQLite: this server owns the data folder, so anything left running was interrupted.
            dispatcher.start(recover_all_running=settings.is_sqlite)
            app.state.dispatcher_wake = dispatcher.wake
        if not app.state.auth.enabled():
            log.warning("no API key exists: the service is OPEN (anyone who can reach it may read and write); "
                        "create a key with `basewatch keys create` to turn authentication on")
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()
                dispatcher.executor.shutdown()
            app.state.products.close()
            engine.dispose()

    app = FastAPI(title="basewatch", version=__version__, lifespan=lifespan,
                  description="Change detection between satellite images of an area of interest: "
                              "scenes, AOIs, analyses, change objects (GeoJSON), map tiles, WMTS and a viewer.")
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.metrics = metrics
    app.state.auth = AuthState(sessions)
    app.state.products = ProductCache(settings)
    app.state.dispatcher_wake = lambda: None
    install_error_handlers(app)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                       allow_headers=["Authorization", "Content-Type", "If-None-Match"], expose_headers=["ETag", "Location"],
                       max_age=86400)

    @app.middleware("http")
    async def record_latency(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.request_seconds.labels(request.method, template, str(response.status_code)).observe(time.perf_counter() - started)
        return response

    for module in (health, scenes, aois, analyses, tiles, viewer):
        app.include_router(module.router)
    return app
