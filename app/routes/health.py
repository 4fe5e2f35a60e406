"""Liveness and Prometheus metrics (async: never queued behind tile rendering or API work)."""

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness: answers as long as the event loop runs."""
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format."""
    body, content_type = request.app.state.metrics.render(request.app.state.sessions)
    return PlainTextResponse(body, media_type=content_type)
