"""The analysis viewer page (before/after swipe, changes overlay, object list)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.deps import MapPrincipalDep
from app.routes.tiles import lookup

router = APIRouter(prefix="/v1/analyses", tags=["viewer"])


@router.get("/{analysis_id}/viewer", response_class=HTMLResponse)
def viewer(request: Request, analysis_id: str, principal: MapPrincipalDep) -> HTMLResponse:
    lookup(request, principal, analysis_id)
    return HTMLResponse(f"<!doctype html><title>basewatch {analysis_id}</title><p>viewer pending</p>")
