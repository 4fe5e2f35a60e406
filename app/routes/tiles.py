"""XYZ tiles, TileJSON and WMTS capabilities of a finished analysis.

A tile request takes one of two paths. :class:`WarmTiles`, an ASGI layer in front of the routes, answers a
tile whose bytes this process holds in memory: key and analysis from memory, headers computed with the
bytes, no dependency injection, no database session, no thread. Everything else goes on to the
:func:`tile` route, which authenticates, loads the analysis, answers 304 from the ETag alone, reads the disk
cache or renders on the tile threads, and answers every error.
"""

from __future__ import annotations

import asyncio
import re
from enum import Enum
from functools import lru_cache
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path as PathParam, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from app import store
from app.deps import MapPrincipalDep, Principal, SettingsDep, identify, map_credentials, parse_bearer
from app.errors import NotFound, ServiceError
from app.tilecache import MEDIA_TYPES, CachedTile, ProductRef
from app.views import as_utc, etag_matches
from imagery.contract import LAYERS

router = APIRouter(prefix="/v1/analyses", tags=["tiles"])


#: The map layers of the product contract, as the routes' enum (OpenAPI lists them).
Layer = Enum("Layer", {name: name for name in LAYERS}, type=str)


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
    base = settings.base_url(str(request.base_url))
    url = f"{base}/v1/analyses/{analysis_id}/tiles/{{z}}/{{x}}/{{y}}.png?layer={layer}"
    return url + (f"&token={token}" if token else "")


async def disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (the request has no body left to read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@lru_cache(maxsize=256)
def negotiate(accept: str | None) -> str:
    """``webp`` when ``Accept`` names image/webp with a quality above zero and at least image/png's (the most
    specific media range applies, RFC 9110 12.5.1), else ``png``, the URL's own type: browsers and MapLibre
    name image/webp; QGIS and curl (``*/*``) get PNG."""
    quality = {}
    for item in (accept or "").lower().split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            quality[media] = min(max(float(q), 0.0), 1.0)
        except ValueError:
            continue

    def q(media: str) -> float:
        return next((quality[m] for m in (media, "image/*", "*/*") if m in quality), 0.0)

    return "webp" if 0 < quality.get("image/webp", 0.0) >= q("image/png") else "png"


async def render_unless_gone(request: Request, *args) -> tuple[CachedTile, str] | None:
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


def tile_response(status: int, headers: list, body: bytes = b"") -> Response:
    """A response with ready ASGI headers (those of :class:`~app.tilecache.CachedTile`)."""
    response = Response(content=body, status_code=status)
    response.raw_headers = list(headers)
    return response


@router.get("/{analysis_id}/tiles/{z}/{x}/{y}.png",
            responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()},
                             "description": "PNG, or WebP when the client's Accept prefers image/webp"}, 304: {}})
async def tile(
    request: Request,
    analysis_id: str,
    z: Annotated[int, PathParam(ge=0, le=30)],
    x: Annotated[int, PathParam(ge=0)],
    y: Annotated[int, PathParam(ge=0)],
    principal: MapPrincipalDep,
    layer: Annotated[Layer, Query(description=" | ".join(LAYERS))] = Layer.changes,
) -> Response:
    """A 256 px Web Mercator (WebMercatorQuad) tile: PNG, or WebP (lossy for imagery, lossless for the
    overlays) when ``Accept`` prefers image/webp. Tiles outside the analysis are transparent; a z/x/y
    outside the tile matrix, or a zoom below the TileJSON's minzoom, is 404."""
    if x >= 2**z or y >= 2**z:
        raise NotFound("tile outside the tile matrix")
    ref = await lookup_async(request, principal, analysis_id)
    products, metrics = request.app.state.products, request.app.state.metrics
    where = (ref, layer.value, z, x, y, negotiate(request.headers.get("accept")))
    private = principal.token is not None
    etag = products.etag(*where)
    if etag_matches(request.headers.get("if-none-match"), etag):
        metrics.tile_requests.labels(layer.value, "not_modified").inc()
        return tile_response(304, products.headers(etag, private=private))
    cached, source = products.cached(*where), "memory"
    if cached is None:
        got = await render_unless_gone(request, *where)
        if got is None:
            metrics.tile_requests.labels(layer.value, "cancelled").inc()
            return Response(status_code=499)  # nobody is listening
        cached, source = got
    metrics.tile_requests.labels(layer.value, source).inc()
    return tile_response(*cached.answer(private=private, not_modified=False))


#: Paths of :func:`tile` (FastAPI validates z <= 30 and the layer again on the way to the route).
TILE_PATH = re.compile(r"/v1/analyses/([^/]+)/tiles/(\d{1,2})/(\d{1,10})/(\d{1,10})\.png")
TILE_ROUTE = next(route for route in router.routes if getattr(route, "endpoint", None) is tile)
WANTED_HEADERS = {b"authorization", b"host", b"accept", b"if-none-match"}


class WarmTiles:
    """ASGI layer between the middleware and the routes: a GET of a tile whose bytes this process holds in
    memory is answered here, from memory only, with the headers computed with the bytes; anything else (a
    tile on disk or to render, no valid key, a key table or analysis to load, a malformed request) goes on
    to the route, which answers it in full. Security headers, CORS and request metrics still apply."""

    def __init__(self, app: ASGIApp, *, state):
        self.app, self.state = app, state
        self.outcomes = {(layer, outcome): state.metrics.tile_requests.labels(layer, outcome)
                         for layer in LAYERS for outcome in ("memory", "not_modified")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = TILE_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        answer = self.answer(scope, match) if match else None
        if answer is None:
            return await self.app(scope, receive, send)
        scope["route"] = TILE_ROUTE  # for the request metrics
        status, headers, body = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def answer(self, scope: Scope, match: re.Match) -> tuple[int, list, bytes] | None:
        """(status, headers, body) of a tile held in memory, or None: let the route answer."""
        state = self.state
        if state.keys.stale():
            return None
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        layer = query.get("layer", Layer.changes.value)
        if layer not in LAYERS:
            return None
        headers = {}
        for name, value in scope["headers"]:
            if name in WANTED_HEADERS:
                headers.setdefault(name, value.decode("latin-1"))
        key, from_query = map_credentials(parse_bearer(headers.get(b"authorization")), query.get("token"))
        try:
            principal = identify(state, key, from_query=from_query, client=scope["client"][0] if scope.get("client") else "",
                                 host_header=headers.get(b"host"))
        except ServiceError:
            return None
        ref = state.products.ref(match[1])
        if ref is None or ref.team != principal.team:
            return None
        cached = state.products.cached(ref, layer, int(match[2]), int(match[3]), int(match[4]), negotiate(headers.get(b"accept")))
        if cached is None:
            return None
        not_modified = etag_matches(headers.get(b"if-none-match"), cached.etag)
        self.outcomes[layer, "not_modified" if not_modified else "memory"].inc()
        return cached.answer(private=principal.token is not None, not_modified=not_modified)


@router.get("/{analysis_id}/tilejson.json")
def tilejson(request: Request, analysis_id: str, principal: MapPrincipalDep, settings: SettingsDep,
             layer: Annotated[Layer, Query()] = Layer.changes) -> dict:
    """TileJSON 3.0.0 for map clients; embeds ``?token=`` only when the caller sent its key that way."""
    from app.mapdocs import tilejson as make_tilejson

    ref = lookup(request, principal, analysis_id)
    info = request.app.state.products.renderer(ref).info()
    return make_tilejson(info, tile_url_template(request, settings, analysis_id, layer.value, principal.token),
                         layer=layer.value, attribution=settings.attribution)


@router.get("/{analysis_id}/WMTSCapabilities.xml", responses={200: {"content": {"application/xml": {}}}})
def wmts(request: Request, analysis_id: str, principal: MapPrincipalDep, settings: SettingsDep) -> Response:
    """OGC WMTS 1.0.0 capabilities (QGIS, ArcGIS) listing the four layers; tile URLs carry ``?token=`` only
    when the caller sent its key that way."""
    from app.mapdocs import wmts_capabilities

    ref = lookup(request, principal, analysis_id)
    info = request.app.state.products.renderer(ref).info()
    base = settings.base_url(str(request.base_url))
    xml = wmts_capabilities(info, f"{base}/v1/analyses/{analysis_id}", token=principal.token, title=f"basewatch analysis {analysis_id}")
    return Response(content=xml, media_type="application/xml")
