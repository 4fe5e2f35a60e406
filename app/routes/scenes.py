"""Scenes: upload (streamed, validated, stored as COG), list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from app import store
from app.deps import AnalystDep, PrincipalDep, SessionDep, SettingsDep
from app.ingest import ingest, receive_upload
from app.schemas import IsoDate, Page, SceneOut
from app.views import scene_out

router = APIRouter(prefix="/v1/scenes", tags=["scenes"])


@router.post("", status_code=201, response_model=SceneOut, openapi_extra={
    "requestBody": {"content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "GeoTIFF or COG."},
            "acquired_at": {"type": "string", "format": "date", "description": "ISO 8601; optional if the file carries a date tag."},
            "sensor": {"type": "string"},
            "bands": {"type": "string", "description": "Band roles in file order, e.g. blue,green,red,nir."},
        }}}}}})
async def upload_scene(request: Request, settings: SettingsDep, principal: AnalystDep, response: Response) -> SceneOut:
    """Ingest a scene: streamed to disk, validated from its header, converted to COG in a separate process,
    footprint recorded (no database connection is held meanwhile)."""
    upload = await receive_upload(request, settings)
    scene = await run_in_threadpool(ingest, upload, settings, principal.team, convert=request.app.state.converter)
    await run_in_threadpool(record_scene, request, scene)
    response.headers["Location"] = f"/v1/scenes/{scene.id}"
    return scene_out(scene)


def record_scene(request: Request, scene) -> None:
    settings = request.app.state.settings
    try:
        with request.app.state.sessions() as session:
            store.add_scene(session, scene)
    except BaseException:
        (settings.data_dir / scene.path).unlink(missing_ok=True)
        raise


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
    scene = store.delete_scene(session, principal.team, scene_id)
    (settings.data_dir / scene.path).unlink(missing_ok=True)
    return Response(status_code=204)
