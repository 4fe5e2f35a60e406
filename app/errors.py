"""Domain errors of the service and the one table that maps every error to an HTTP status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from aoi import InvalidAOIError
from imagery.errors import (
    AnalysisError,
    BandError,
    GridTooLargeError,
    InvalidSceneError,
    NoOverlapError,
    SceneTooLargeError,
)


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


#: Exception class -> HTTP status; the most specific class is looked up first.
STATUS_CODES: dict[type[Exception], int] = {
    NotFound: 404,
    Unauthorized: 401,
    Forbidden: 403,
    Conflict: 409,
    PayloadTooLarge: 413,
    InvalidRequest: 422,
    InvalidAOIError: 422,
    SceneTooLargeError: 422,
    InvalidSceneError: 422,
    BandError: 422,
    NoOverlapError: 422,
    GridTooLargeError: 422,
    AnalysisError: 422,
}


def install_error_handlers(app: FastAPI) -> None:
    """Answer every mapped error as ``{"detail": message}`` with its status."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in STATUS_CODES.items() if isinstance(exc, cls))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    for cls in STATUS_CODES:
        app.add_exception_handler(cls, handler)
