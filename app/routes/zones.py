"""Zones of an AOI: create, list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app import store, zones
from app.deps import AnalystDep, PrincipalDep, SessionDep
from app.schemas import Page, ZoneCreate, ZoneOut
from app.views import zone_out

router = APIRouter(prefix="/v1/aois/{aoi_id}/zones", tags=["zones"])


@router.post("", status_code=201, response_model=ZoneOut)
def create_zone(aoi_id: str, body: ZoneCreate, session: SessionDep, principal: AnalystDep, response: Response) -> ZoneOut:
    """Name a part of the AOI (within it, overlapping no other zone): every analysis then counts its objects."""
    row = zones.create_zone(session, principal.team, aoi_id, body)
    response.headers["Location"] = f"/v1/aois/{aoi_id}/zones/{row.id}"
    return zone_out(row)


@router.get("", response_model=Page[ZoneOut])
def list_zones(aoi_id: str, session: SessionDep, principal: PrincipalDep, cursor: str | None = None,
               limit: Annotated[int, Query(ge=1, le=store.MAX_LIMIT)] = store.DEFAULT_LIMIT) -> Page[ZoneOut]:
    aoi = store.get_aoi(session, principal.team, aoi_id)
    rows, nxt = store.list_zones(session, aoi, cursor=cursor, limit=limit)
    return Page[ZoneOut](items=[zone_out(r) for r in rows], next=nxt)


@router.delete("/{zone_id}", status_code=204)
def delete_zone(aoi_id: str, zone_id: str, session: SessionDep, principal: AnalystDep) -> Response:
    """Analyses from then on no longer count it (409 while an alert watches it)."""
    store.delete_zone(session, store.get_aoi(session, principal.team, aoi_id), zone_id)
    return Response(status_code=204)
