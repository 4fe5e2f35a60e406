"""Liveness and Prometheus metrics."""

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from app.deps import PrincipalDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness: answers as long as the event loop runs (never queued behind tile rendering or API work)."""
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, principal: PrincipalDep) -> PlainTextResponse:
    """Prometheus text format (needs a key): service-wide latency and tile counters, analyses of the caller's team."""
    body, content_type = request.app.state.metrics.render(request.app.state.sessions, principal.team)
    return PlainTextResponse(body, media_type=content_type)
