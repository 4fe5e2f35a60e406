"""Scenes: upload or register from a STAC item (validated, stored as COG), list, read, delete."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from app import services, stac, store
from app.deps import AnalystDep, PrincipalDep, SessionDep, SettingsDep
from app.errors import InvalidRequest
from app.ingest import ingest, receive_upload
from app.schemas import IsoDate, Page, SceneOut, StacRegister
from app.views import scene_out

log = logging.getLogger("basewatch")

router = APIRouter(prefix="/v1/scenes", tags=["scenes"])


@router.post("", status_code=201, response_model=SceneOut, openapi_extra={
    "requestBody": {"content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "GeoTIFF or COG."},
                "acquired_at": {"type": "string", "format": "date", "description": "ISO 8601; optional if the file carries a date tag."},
                "sensor": {"type": "string"},
                "bands": {"type": "string", "description": "Band roles in file order, e.g. blue,green,red,nir."},
            }}},
        "application/json": {"schema": StacRegister.model_json_schema()},
    }}})
async def upload_scene(request: Request, settings: SettingsDep, principal: AnalystDep, response: Response) -> SceneOut:
    """Ingest a scene: an upload (multipart) streamed to disk, or the GeoTIFF asset of a STAC item (JSON
    ``{"stac_item": URL or item, "aoi_id": ...}``, hosts of BASEWATCH_STAC_HOSTS) read by range requests, only the
    AOI's window copied; validated from its header, converted to COG in a
    separate process, footprint recorded (no database connection is held meanwhile). Watched AOIs it covers
    queue their analyses."""
    convert = request.app.state.converter
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        body = stac_request(await request.body())
        aoi_geometry = await run_in_threadpool(stac_aoi, request, principal.team, body.aoi_id) if body.aoi_id else None
        scene = await run_in_threadpool(stac.register, body, settings, principal.team, convert=convert,
                                        aoi_geometry=aoi_geometry)
    else:
        upload = await receive_upload(request, settings)
        scene = await run_in_threadpool(ingest, upload, settings, principal.team, convert=convert)
    await run_in_threadpool(record_scene, request, scene)
    response.headers["Location"] = f"/v1/scenes/{scene.id}"
    return scene_out(scene)


def stac_request(raw: bytes) -> StacRegister:
    try:
        return StacRegister.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise InvalidRequest(f"{where + ': ' if where else ''}{first['msg']}") from None


def stac_aoi(request: Request, team: str, aoi_id: str) -> dict:
    """The geometry of the team's AOI whose window a STAC asset is copied for (404 if not the team's)."""
    with request.app.state.sessions() as session:
        return store.get_aoi(session, team, aoi_id).geometry


def record_scene(request: Request, scene) -> None:
    """Register the scene (:func:`app.services.register_scene`); wake the job dispatcher if it queued analyses."""
    if services.register_scene(request.app.state.sessions, request.app.state.settings.data_dir, scene):
        request.app.state.dispatcher_wake()


@router.get("", response_model=Page[SceneOut])
def list_scenes(
    session: SessionDep, principal: PrincipalDep,
    aoi_id: Annotated[str | None, Query(description="Only scenes intersecting this AOI.")] = None,
    acquired_from: Annotated[IsoDate | None, Query(description="Acquired on or after (ISO date).")] = None,
    acquired_to: Annotated[IsoDate | None, Query(description="Acquired on or before (ISO date).")] = None,
    cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=store.MAX_LIMIT)] = store.DEFAULT_LIMIT,
) -> Page[SceneOut]:
    aoi = store.get_aoi(session, principal.team, aoi_id) if aoi_id else None
    rows, nxt = store.list_scenes(session, principal.team, aoi=aoi, acquired_from=acquired_from, acquired_to=acquired_to,
                                  cursor=cursor, limit=limit)
    return Page[SceneOut](items=[scene_out(r) for r in rows], next=nxt)


@router.get("/{scene_id}", response_model=SceneOut)
def get_scene(scene_id: str, session: SessionDep, principal: PrincipalDep) -> SceneOut:
    return scene_out(store.get_scene(session, principal.team, scene_id))


@router.delete("/{scene_id}", status_code=204)
def delete_scene(scene_id: str, session: SessionDep, settings: SettingsDep, principal: AnalystDep) -> Response:
    services.delete_scene(session, settings.data_dir, principal.team, scene_id)
    return Response(status_code=204)
