"""The timeline of an AOI: counts per date (JSON pages) and timeline.png."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app import store, timeline
from app.deps import MapPrincipalDep, PrincipalDep, SessionDep
from app.schemas import Page, TimelineItem

router = APIRouter(prefix="/v1/aois/{aoi_id}", tags=["timeline"])


@router.get("/timeline", response_model=Page[TimelineItem])
def get_timeline(aoi_id: str, session: SessionDep, principal: PrincipalDep, cursor: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=store.MAX_LIMIT)] = store.DEFAULT_LIMIT) -> Page[TimelineItem]:
    """Each scene covering the AOI in date order, with its analysis against the previous one (the watch's chain):
    counts by change and class, per zone, and the share of the AOI analysed."""
    items, nxt = timeline.page(session, principal.team, aoi_id, cursor=cursor, limit=limit)
    return Page[TimelineItem](items=items, next=nxt)


@router.get("/timeline.png", responses={200: {"content": {"image/png": {}}}})
def get_timeline_png(aoi_id: str, session: SessionDep, principal: MapPrincipalDep) -> Response:
    """Objects that appeared and disappeared per class against date, for the AOI and each zone (the latest
    366 dates); dates without a usable analysis (none, failed, cloudy or partial coverage) show as gaps."""
    return Response(timeline.png(session, principal.team, aoi_id), media_type="image/png",
                    headers={"Cache-Control": "private, no-cache"})
