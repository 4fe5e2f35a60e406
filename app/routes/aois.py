"""Areas of interest: register, list, read (with the scenes that cover it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app import services, store, watch
from app.deps import AnalystDep, PrincipalDep, SessionDep
from app.schemas import AoiCreate, AoiOut, AoiUpdate, Page
from app.views import aoi_out

router = APIRouter(prefix="/v1/aois", tags=["aois"])


@router.post("", status_code=201, response_model=AoiOut)
def create_aoi(body: AoiCreate, session: SessionDep, principal: AnalystDep, response: Response) -> AoiOut:
    """Register an AOI (validated: valid polygon, lon/lat, size limits, not across the antimeridian)."""
    row = services.create_aoi(session, principal.team, body.geometry, body.name, body.description)
    response.headers["Location"] = f"/v1/aois/{row.id}"
    return aoi_out(row)


@router.get("", response_model=Page[AoiOut])
def list_aois(session: SessionDep, principal: PrincipalDep, cursor: str | None = None,
              limit: Annotated[int, Query(ge=1, le=store.MAX_LIMIT)] = store.DEFAULT_LIMIT) -> Page[AoiOut]:
    rows, nxt = store.list_aois(session, principal.team, cursor=cursor, limit=limit)
    return Page[AoiOut](items=[aoi_out(r) for r in rows], next=nxt)


@router.get("/{aoi_id}", response_model=AoiOut)
def get_aoi(aoi_id: str, session: SessionDep, principal: PrincipalDep) -> AoiOut:
    row = store.get_aoi(session, principal.team, aoi_id)
    return aoi_out(row, watch.covering(session, principal.team, row))


@router.patch("/{aoi_id}", response_model=AoiOut)
def update_aoi(aoi_id: str, body: AoiUpdate, request: Request, session: SessionDep, principal: AnalystDep) -> AoiOut:
    """Watch the AOI (``watch``: every scene registered over it from now on is analysed against the previous
    one by date) and set or clear its ``baseline_scene_id`` (each new scene is also analysed against it)."""
    row = watch.update_watch(session, principal.team, aoi_id, body)
    request.app.state.dispatcher_wake()
    return aoi_out(row)
