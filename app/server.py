"""``basewatch serve``: the listening socket and the processes behind it.

With ``BASEWATCH_HTTP_WORKERS=1`` (the default) one process serves HTTP and runs the analysis dispatcher.
With more, this process owns the data folder (it migrates the database, sweeps what a crash left and runs
the dispatcher and its analysis workers) and uvicorn's supervisor starts that many HTTP worker processes
on the one socket: each keeps its own memory tile cache in front of the shared disk cache, dies with this
process, and adds to the ``/metrics`` of all of them (Prometheus multi-process mode).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

from app.settings import Settings

#: Tells an HTTP worker process its supervisor's pid (not a setting).
SUPERVISOR_ENV = "_BASEWATCH_SUPERVISOR_PID"


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket whose accepted connections get ``TCP_NODELAY``.

    asyncio turns Nagle's algorithm off on an accepted connection only when the listening socket was
    created with ``IPPROTO_TCP``; uvicorn's own listener leaves the protocol at 0, so on Linux every
    keep-alive response after the first waited ~40 ms for the client's delayed ACK (the body held back
    behind the headers).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.set_inheritable(True)
    return sock


def uvicorn_config(settings: Settings, app, **kw):
    import uvicorn

    # Keep-alive longer than clients' own idle expiry (httpx: 5 s), so a client never reuses a connection
    # the server is closing at that moment.
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                          timeout_graceful_shutdown=5, timeout_keep_alive=30, **kw)


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM."""
    sock = listen_socket(settings.host, settings.port)
    if settings.http_workers == 1:
        import uvicorn

        from app.main import create_app

        server = uvicorn.Server(uvicorn_config(settings, create_app(settings)))
        server.run(sockets=[sock])
        if not server.started:
            sys.exit(3)
        return
    metrics_dir = tempfile.mkdtemp(prefix="basewatch-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported here or in a worker
    os.environ.update(BASEWATCH_HOST=settings.host, BASEWATCH_PORT=str(settings.port))  # the workers read Settings()
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    try:
        supervise(settings, sock)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def supervise(settings: Settings, sock: socket.socket) -> None:
    from uvicorn.supervisors import Multiprocess

    from app.db import make_engine, migrate, session_factory
    from app.jobs import start_dispatcher
    from app.metrics import Metrics
    from app.sweep import sweep_at_start

    settings.ensure_dirs()
    migrate(settings.db_url)
    engine = make_engine(settings.db_url)
    sessions = session_factory(engine)
    sweep_at_start(settings, sessions)
    metrics = Metrics()
    dispatcher = start_dispatcher(settings, sessions,
                                  on_done=lambda aid, status, s: metrics.analysis_seconds.labels(status).observe(s))
    try:
        config = uvicorn_config(settings, "app.server:http_worker_app", factory=True, workers=settings.http_workers)
        Multiprocess(config, sockets=[sock]).run()
    finally:
        dispatcher.stop()
        dispatcher.executor.shutdown()
        engine.dispose()


def http_worker_app():
    """The app of one HTTP worker process (a uvicorn factory): the API without the dispatcher; the kernel
    kills it when the supervisor dies (even by ``kill -9``, even before this ran), so it never serves alone."""
    from app.jobs import die_with_parent
    from app.main import create_app

    die_with_parent(int(os.environ[SUPERVISOR_ENV]))
    return create_app(Settings(), run_jobs=False)
