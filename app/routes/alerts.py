"""Alerts of an AOI: create, list, delete, and the deliveries of each (the outbox, with every attempt)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app import alerts, store
from app.deps import AnalystDep, PrincipalDep, SessionDep, SettingsDep
from app.schemas import AlertCreate, AlertOut, DeliveryOut, Page
from app.views import alert_out, delivery_out

router = APIRouter(prefix="/v1/aois/{aoi_id}/alerts", tags=["alerts"])

Limit = Annotated[int, Query(ge=1, le=store.MAX_LIMIT)]


@router.post("", status_code=201, response_model=AlertOut)
def create_alert(aoi_id: str, body: AlertCreate, session: SessionDep, settings: SettingsDep, principal: AnalystDep,
                 response: Response) -> AlertOut:
    """When a finished analysis of the AOI has at least ``rule.min`` objects of ``rule.class`` and ``rule.change``
    (in ``rule.zone``, if given), POST a signed JSON event to ``url`` (a host of BASEWATCH_ALERT_HOSTS)."""
    row = alerts.create_alert(session, settings, principal.team, aoi_id, body)
    response.headers["Location"] = f"/v1/aois/{aoi_id}/alerts/{row.id}"
    return alert_out(row)


@router.get("", response_model=Page[AlertOut])
def list_alerts(aoi_id: str, session: SessionDep, principal: PrincipalDep, cursor: str | None = None,
                limit: Limit = store.DEFAULT_LIMIT) -> Page[AlertOut]:
    aoi = store.get_aoi(session, principal.team, aoi_id)
    rows, nxt = store.list_alerts(session, aoi, cursor=cursor, limit=limit)
    return Page[AlertOut](items=[alert_out(r) for r in rows], next=nxt)


@router.delete("/{alert_id}", status_code=204)
def delete_alert(aoi_id: str, alert_id: str, session: SessionDep, principal: AnalystDep) -> Response:
    """The alert and its deliveries (pending ones are not sent)."""
    store.delete_alert(session, store.get_aoi(session, principal.team, aoi_id), alert_id)
    return Response(status_code=204)


@router.get("/{alert_id}/deliveries", response_model=Page[DeliveryOut])
def list_deliveries(aoi_id: str, alert_id: str, session: SessionDep, principal: PrincipalDep, cursor: str | None = None,
                    limit: Limit = store.DEFAULT_LIMIT) -> Page[DeliveryOut]:
    """Events of the alert, newest first: status (pending, delivered, failed), every attempt, the event sent."""
    alert = store.get_alert(session, store.get_aoi(session, principal.team, aoi_id), alert_id)
    rows, nxt = store.list_deliveries(session, alert, cursor=cursor, limit=limit)
    return Page[DeliveryOut](items=[delivery_out(r) for r in rows], next=nxt)
