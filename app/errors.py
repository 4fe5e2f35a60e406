"""Domain errors of the service and the one table that maps every error to an HTTP status."""

from __future__ import annotations

import errno
import logging
import threading
import time

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from aoi import InvalidAOIError
from imagery.errors import (
    AnalysisError,
    BandError,
    GridTooLargeError,
    InvalidSceneError,
    NoOverlapError,
    SceneTooLargeError,
    first_line,
)
from imagery.tiles import TileOutOfRange

log = logging.getLogger("basewatch")


class ServiceError(Exception):
    """Root of the service's own errors."""


class NotFound(ServiceError, LookupError):
    """No such resource for this caller (also answered for other teams' ids)."""

    def __init__(self, message: str = "not found"):
        super().__init__(message)


class Unauthorized(ServiceError):
    """Missing or invalid API key."""


class Forbidden(ServiceError):
    """The key's role may not do this."""


class Conflict(ServiceError):
    """The request conflicts with the current state (e.g. a scene still used by analyses)."""


class PayloadTooLarge(ServiceError):
    """The upload exceeds the size limit."""


class InvalidRequest(ServiceError, ValueError):
    """The request is well-formed but its content cannot be used."""


class HostNotAllowed(InvalidRequest):
    """An outbound URL (alert receiver, STAC item or asset) names a host outside its allow-list."""


class UpstreamError(ServiceError):
    """A fetch from an allowed host failed (unreachable, timed out, error status, too large)."""


class RetryLater(ServiceError):
    """Base of errors a client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequests(RetryLater):
    """Too many failed API keys from one client address."""


class Overloaded(RetryLater):
    """The server is busy (queues full, no database connection free)."""


class InsufficientStorage(ServiceError):
    """The data folder's disk is (or would be) full."""


class ProductUnavailable(ServiceError):
    """An analysis's product files cannot be read (corrupt or missing); logged once."""


#: Exception class -> HTTP status; the most specific class is looked up first.
STATUS_CODES: dict[type[Exception], int] = {
    NotFound: 404,
    TileOutOfRange: 404,
    Unauthorized: 401,
    Forbidden: 403,
    Conflict: 409,
    PayloadTooLarge: 413,
    InvalidRequest: 422,
    HostNotAllowed: 422,
    InvalidAOIError: 422,
    SceneTooLargeError: 422,
    InvalidSceneError: 422,
    BandError: 422,
    NoOverlapError: 422,
    GridTooLargeError: 422,
    AnalysisError: 422,
    TooManyRequests: 429,
    ProductUnavailable: 500,
    UpstreamError: 502,
    Overloaded: 503,
    InsufficientStorage: 507,
}

DISK_FULL = "the server's disk is full; free space in the data folder and retry"


def error_responses() -> dict:
    """OpenAPI ``responses`` of every route: each error status the service may answer, as ``{"detail"}``."""
    from app.schemas import ErrorOut

    described = {400: "malformed request", 401: "no or invalid API key", 403: "not allowed for this key or origin", 404: "not found",
                 409: "conflicts with the current state", 413: "request too large", 422: "cannot be used",
                 429: "too many invalid keys; see Retry-After", 500: "internal error or unreadable product",
                 502: "a fetch from an allowed host (STAC item or asset) failed", 503: "overloaded; see Retry-After", 507: "the server's disk is full"}
    return {status: {"model": ErrorOut, "description": text} for status, text in described.items()}


def as_service_error(exc: Exception) -> Exception:
    """Foreign exceptions that have a meaning for clients, as service errors (others unchanged)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(DISK_FULL)
    if isinstance(exc, PoolTimeout):
        return Overloaded("the server is busy (no database connection free); retry shortly", retry_after=2)
    if isinstance(exc, OperationalError):
        text = str(exc.orig)
        if "disk is full" in text or "No space left" in text:
            return InsufficientStorage(DISK_FULL)
        if "locked" in text or "could not connect" in text:
            return Overloaded("the database is busy; retry shortly", retry_after=2)
    return exc


_last_logged: dict[str, float] = {}
_log_lock = threading.Lock()


def log_once(key: str, message: str, *args, every_s: float = 3600.0, exc_info=None) -> None:
    """Log a warning for ``key`` at most once every ``every_s`` seconds (per process)."""
    now = time.monotonic()
    with _log_lock:
        if now - _last_logged.get(key, -every_s) < every_s:
            return
        _last_logged[key] = now
    log.warning(message, *args, exc_info=exc_info)


def error_response(exc: Exception) -> JSONResponse:
    """``{"detail": message}`` with the mapped status (500 for anything unmapped)."""
    exc = as_service_error(exc)
    status = next((code for cls, code in STATUS_CODES.items() if isinstance(exc, cls)), 500)
    headers = {"X-Content-Type-Options": "nosniff"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RetryLater):
        headers["Retry-After"] = str(exc.retry_after)
    if status == 507:
        log_once("disk-full", "disk full: %s", exc, every_s=60.0)
    if status == 500 and not isinstance(exc, ServiceError):
        message = "internal error; see the server log"
    else:
        message = first_line(exc)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every mapped error, disk-full, pool timeouts and unexpected errors as ``{"detail": message}``."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:  # Allow: every method of every route of this path, not just the first route's
            path = request.scope["path"]
            routes = (ctx.original_route for ctx in iter_route_contexts(request.app.routes))  # with routers' prefixes
            methods = {m for r in routes if getattr(r, "methods", None) and r.path_regex.match(path) for m in r.methods}
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        return await http_exception_handler(request, exc)

    for cls in (*STATUS_CODES, OSError, OperationalError, PoolTimeout, Exception):
        app.add_exception_handler(cls, handler)
    app.add_exception_handler(StarletteHTTPException, http_error)
