"""XYZ tiles, TileJSON and WMTS capabilities of a finished analysis."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Path as PathParam, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from app import store
from app.deps import MapPrincipalDep, Principal, SettingsDep
from app.errors import NotFound
from app.tilecache import ProductRef
from app.views import as_utc, etag_matches

router = APIRouter(prefix="/v1/analyses", tags=["tiles"])


class Layer(str, Enum):
    before = "before"
    after = "after"
    score = "score"
    changes = "changes"


def load_ref(request: Request, analysis_id: str) -> ProductRef:
    """A succeeded analysis from the database, remembered per process (products never change once written)."""
    with request.app.state.sessions() as session:
        row = store.load_analysis(session, analysis_id)
        if row is None or row.status != "succeeded" or not row.product_dir:
            raise NotFound()
        ref = ProductRef(row.id, row.team, request.app.state.settings.data_dir / row.product_dir,
                         as_utc(row.finished_at).isoformat() if row.finished_at else "")
    request.app.state.products.remember(ref)
    return ref


def lookup(request: Request, principal: Principal, analysis_id: str) -> ProductRef:
    """The caller's succeeded analysis (a database query only on a cache miss)."""
    ref = request.app.state.products.ref(analysis_id) or load_ref(request, analysis_id)
    if ref.team != principal.team:
        raise NotFound()
    return ref


async def lookup_async(request: Request, principal: Principal, analysis_id: str) -> ProductRef:
    ref = request.app.state.products.ref(analysis_id) or await run_in_threadpool(load_ref, request, analysis_id)
    if ref.team != principal.team:
        raise NotFound()
    return ref


def tile_url_template(request: Request, settings, analysis_id: str, layer: str, token: str | None) -> str:
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    url = f"{base}/v1/analyses/{analysis_id}/tiles/{{z}}/{{x}}/{{y}}.png?layer={layer}"
    return url + (f"&token={token}" if token else "")


async def disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (the request has no body left to read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def render_unless_gone(request: Request, *args) -> tuple[bytes, str] | None:
    """Render on the tile threads; None if the client went first (a render not yet started never runs)."""
    job = request.app.state.products.submit(request.app.state.products.tile, *args)
    result = asyncio.wrap_future(job)
    gone = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():
        job.cancel()
        result.cancel()
        return None
    return result.result()


@router.get("/{analysis_id}/tiles/{z}/{x}/{y}.png", responses={200: {"content": {"image/png": {}}}, 304: {}})
async def tile(
    request: Request,
    analysis_id: str,
    z: Annotated[int, PathParam(ge=0, le=30)],
    x: Annotated[int, PathParam(ge=0)],
    y: Annotated[int, PathParam(ge=0)],
    principal: MapPrincipalDep,
    settings: SettingsDep,
    layer: Annotated[Layer, Query(description="before | after | score | changes")] = Layer.changes,
) -> Response:
    """A 256 px Web Mercator (WebMercatorQuad) PNG tile. Tiles outside the analysis are transparent;
    a z/x/y outside the tile matrix, or a zoom below the TileJSON's minzoom, is 404."""
    if x >= 2**z or y >= 2**z:
        raise NotFound("tile outside the tile matrix")
    ref = await lookup_async(request, principal, analysis_id)
    etag = ref.etag(layer.value, z, x, y)
    cache_control = "private" if principal.token else "public"
    headers = {"ETag": etag, "Cache-Control": f"{cache_control}, max-age={settings.tile_max_age_s}, immutable"}
    metrics = request.app.state.metrics
    if etag_matches(request.headers.get("if-none-match"), etag):
        metrics.tile_requests.labels(layer.value, "not_modified").inc()
        return Response(status_code=304, headers=headers)
    data, source = request.app.state.products.cached(ref, layer.value, z, x, y), "memory"
    if data is None:
        got = await render_unless_gone(request, ref, layer.value, z, x, y)
        if got is None:
            metrics.tile_requests.labels(layer.value, "cancelled").inc()
            return Response(status_code=499)  # nobody is listening
        data, source = got
    metrics.tile_requests.labels(layer.value, source).inc()
    return Response(content=data, media_type="image/png", headers=headers)


@router.get("/{analysis_id}/tilejson.json")
def tilejson(request: Request, analysis_id: str, principal: MapPrincipalDep, settings: SettingsDep,
             layer: Annotated[Layer, Query()] = Layer.changes) -> dict:
    """TileJSON 3.0.0 for map clients; embeds ``?token=`` only when the caller sent its key that way."""
    from imagery.tiles import tilejson as make_tilejson

    ref = lookup(request, principal, analysis_id)
    info = request.app.state.products.renderer(ref).info()
    return make_tilejson(info, tile_url_template(request, settings, analysis_id, layer.value, principal.token),
                         layer=layer.value, attribution=settings.attribution)


@router.get("/{analysis_id}/WMTSCapabilities.xml", responses={200: {"content": {"application/xml": {}}}})
def wmts(request: Request, analysis_id: str, principal: MapPrincipalDep, settings: SettingsDep) -> Response:
    """OGC WMTS 1.0.0 capabilities (QGIS, ArcGIS) listing the four layers; tile URLs carry ``?token=`` only
    when the caller sent its key that way."""
    from imagery.tiles import wmts_capabilities

    ref = lookup(request, principal, analysis_id)
    info = request.app.state.products.renderer(ref).info()
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    xml = wmts_capabilities(info, f"{base}/v1/analyses/{analysis_id}", token=principal.token, title=f"basewatch analysis {analysis_id}")
    return Response(content=xml, media_type="application/xml")
