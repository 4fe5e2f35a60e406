"""ASGI middleware of the service: security headers, latency metrics, CORS by route, JSON body limits,
and a filter that keeps API keys out of the access log."""

from __future__ import annotations

import logging
import re
import time

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import Forbidden, InvalidRequest, PayloadTooLarge, error_response
from app.metrics import route_template, serving

#: Routes map clients fetch (cross-origin from ``cors_origins``, ``?token=`` accepted); the rest is the API.
MAP_ROUTE = re.compile(r"^/v1/(viewer-assets/|aois/[^/]+/timeline\.png$|analyses/[^/]+/(tiles/|files/|tilejson\.json$"
                       r"|WMTSCapabilities\.xml$|changes\.geojson$|report\.(png|pdf)$|summary\.json$|exports/(kml|gpkg|csv)$|viewer$))")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class SecurityHeaders:
    """``X-Content-Type-Options: nosniff`` on every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                message["headers"] = headers + [(b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestMetrics:
    """Latency by method, route template and status into ``metrics.request_seconds``; the request's database
    queries count against its route (``metrics.db_queries``)."""

    def __init__(self, app: ASGIApp, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            with serving(scope):
                await self.app(scope, receive, recording_send)
        finally:
            self.metrics.request_seconds.labels(scope["method"], route_template(scope), str(status[0])).observe(
                time.perf_counter() - started)


class CorsByRoute:
    """Map resources may be read cross-origin from ``map_origins``; the API (writes included) only from
    ``api_origins`` or its own origin. A cross-origin write from any other page is refused (403)
    before it reaches a route, preflighted or not (a multipart form needs no preflight)."""

    def __init__(self, app: ASGIApp, *, map_origins: list[str], api_origins: list[str]):
        common = {"allow_headers": ["Authorization", "Content-Type", "If-None-Match", "Range"],
                  "expose_headers": ["ETag", "Location", "Retry-After", "Content-Range"], "max_age": 86400}
        self.map_cors = CORSMiddleware(app, allow_origins=map_origins, allow_methods=list(SAFE_METHODS), **common)
        self.api_cors = CORSMiddleware(app, allow_origins=api_origins, allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
                                       **common)
        self.api_origins = set(api_origins)
        self.app = app

    def _cross_origin_write(self, scope: Scope, headers: Headers) -> str | None:
        """The foreign origin of a write (or of a write's preflight) not allowed to write, else None."""
        origin = headers.get("origin")
        method = headers.get("access-control-request-method", "").upper() if scope["method"] == "OPTIONS" else scope["method"]
        if not origin or method in SAFE_METHODS or not method:
            return None
        if "*" in self.api_origins or origin in self.api_origins:
            return None
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        if origin.rstrip("/").lower() == own.lower():
            return None
        return origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        foreign = self._cross_origin_write(scope, headers)
        if foreign:
            response = error_response(Forbidden(f"writes from web pages of {foreign} are not allowed "
                                                "(BASEWATCH_CORS_API_ORIGINS)"))
            return await response(scope, receive, send)
        cors = self.map_cors if MAP_ROUTE.match(scope["path"]) else self.api_cors
        await cors(scope, receive, send)


class BodyLimit:
    """Request bodies other than multipart uploads: at most ``max_bytes`` (413) and, for JSON, nested at
    most ``max_depth`` deep (422). The body is read here (bounded) and replayed to the route."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int):
        self.app, self.max_bytes, self.max_depth = app, max_bytes, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":  # scene uploads: streamed to disk with their own limit
            return await self.app(scope, receive, send)
        too_large = PayloadTooLarge(f"the request body is larger than {self.max_bytes // 1024} KB (BASEWATCH_MAX_JSON_KB)")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await error_response(too_large)(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await error_response(too_large)(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if "json" in ctype and json_depth(body) > self.max_depth:
            error = InvalidRequest(f"the JSON body is nested deeper than {self.max_depth} levels")
            return await error_response(error)(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays and objects in a JSON text (strings skipped); linear, no recursion."""
    depth = deepest = 0
    for b in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET):
        if b in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


class RedactTokens(logging.Filter):
    """Replaces the value of every ``token=`` query parameter in a log record with ``[redacted]``."""

    PATTERN = re.compile(r"(?i)([?&]token=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(self.PATTERN.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = self.PATTERN.sub(r"\1[redacted]", record.msg)
        return True
