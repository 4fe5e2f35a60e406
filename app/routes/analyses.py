"""Analyses: queue, list, status, delete, and the product files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from app import services, store
from app.deps import AnalystDep, MapPrincipalDep, PrincipalDep, SessionDep, SettingsDep
from app.errors import NotFound
from app.schemas import AnalysisCreate, AnalysisOut, Page
from app.views import analysis_out, etag_matches
from imagery.products import PRODUCT_MEDIA_TYPES

router = APIRouter(prefix="/v1", tags=["analyses"])

#: What ``files/{name}`` serves: the binary products (JSON and CSV have routes of their own, so that a generated
#: client never reads a GeoTIFF as JSON or text).
FILES = {name: media for name, media in PRODUCT_MEDIA_TYPES.items() if not name.endswith((".json", ".geojson", ".csv"))}



@router.post("/aois/{aoi_id}/analyses", status_code=202, response_model=AnalysisOut)
def create_analysis(aoi_id: str, body: AnalysisCreate, request: Request, response: Response, session: SessionDep,
                    settings: SettingsDep, principal: AnalystDep) -> AnalysisOut:
    """Queue an analysis of two scenes over an AOI; answers 202 at once with a Location to poll."""
    row = services.queue_analysis(session, principal.team, aoi_id, body.before_scene_id, body.after_scene_id,
                                  body.method, body.params)
    request.app.state.dispatcher_wake()
    response.headers["Location"] = f"/v1/analyses/{row.id}"
    return analysis_out(row, settings.base_url(str(request.base_url)))


@router.get("/analyses", response_model=Page[AnalysisOut])
def list_analyses(
    request: Request, session: SessionDep, settings: SettingsDep, principal: PrincipalDep,
    aoi_id: str | None = None,
    status: Annotated[Literal["queued", "running", "succeeded", "failed"] | None, Query()] = None,
    cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=store.MAX_LIMIT)] = store.DEFAULT_LIMIT,
) -> Page[AnalysisOut]:
    rows, nxt = store.list_analyses(session, principal.team, aoi_id=aoi_id, status=status, cursor=cursor, limit=limit)
    base = settings.base_url(str(request.base_url))
    return Page[AnalysisOut](items=[analysis_out(r, base) for r in rows], next=nxt)


@router.get("/analyses/{analysis_id}", response_model=AnalysisOut)
def get_analysis(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep,
                 principal: PrincipalDep) -> AnalysisOut:
    """Status, progress, error (a reason a person can act on), summary and links."""
    return analysis_out(store.get_analysis(session, principal.team, analysis_id), settings.base_url(str(request.base_url)))


@router.delete("/analyses/{analysis_id}", status_code=204)
def delete_analysis(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep,
                    principal: AnalystDep) -> Response:
    # the tile cache closes its readers of the products and drops their tiles before the files go
    services.delete_analysis(session, settings.data_dir, principal.team, analysis_id,
                             release=request.app.state.products.forget)
    return Response(status_code=204)


def product_path(session, settings, principal, analysis_id: str, name: str) -> Path:
    row = store.get_analysis(session, principal.team, analysis_id)
    if row.status != "succeeded" or not row.product_dir:
        raise NotFound("the analysis has no products yet")
    path = settings.data_dir / row.product_dir / name
    if not path.is_file():
        raise NotFound(f"this analysis has no {name} (it was made by an older version: run it again)")
    return path


def serve_product(request: Request, session, settings, principal, analysis_id: str, name: str, *,
                  download_as: str | None = None) -> Response:
    """A product file with its media type, ETag (304 on If-None-Match) and, for downloads, a file name."""
    path = product_path(session, settings, principal, analysis_id, name)
    stat = path.stat()
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type=PRODUCT_MEDIA_TYPES[name], headers=headers, filename=download_as,
                        content_disposition_type="attachment")


def content(name: str) -> dict:
    """OpenAPI responses of a route answering one product file (see app.openapi)."""
    return {200: {"content": {PRODUCT_MEDIA_TYPES[name]: {}}}, 304: {"description": "not modified (If-None-Match)"}}


@router.get("/analyses/{analysis_id}/changes.geojson", responses=content("changes.geojson"))
def get_changes(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep, principal: MapPrincipalDep):
    """The change objects (GeoJSON FeatureCollection, EPSG:4326)."""
    return serve_product(request, session, settings, principal, analysis_id, "changes.geojson")


@router.get("/analyses/{analysis_id}/report.png", responses=content("report.png"))
def get_report_png(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep, principal: MapPrincipalDep):
    """The report page as a PNG (200 dpi, A4 landscape width)."""
    return serve_product(request, session, settings, principal, analysis_id, "report.png")


@router.get("/analyses/{analysis_id}/report.pdf", responses=content("report.pdf"))
def get_report_pdf(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep, principal: MapPrincipalDep):
    """The report page as a PDF (text kept as text)."""
    return serve_product(request, session, settings, principal, analysis_id, "report.pdf")


@router.get("/analyses/{analysis_id}/summary.json", responses=content("summary.json"))
def get_summary(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep, principal: MapPrincipalDep):
    """Counts, areas, grid, shift, method, caveats, sources and AOI of the analysis."""
    return serve_product(request, session, settings, principal, analysis_id, "summary.json")


@router.get("/analyses/{analysis_id}/exports/kml", responses=content("changes.kml"))
def get_export_kml(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep, principal: MapPrincipalDep):
    """The change objects for Google Earth: styled by change, with a description each and the provenance."""
    return serve_product(request, session, settings, principal, analysis_id, "changes.kml",
                         download_as=f"basewatch-{analysis_id}.kml")


@router.get("/analyses/{analysis_id}/exports/gpkg", responses=content("changes.gpkg"))
def get_export_gpkg(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep, principal: MapPrincipalDep):
    """The change objects as a GeoPackage (QGIS, ArcGIS), with the provenance in its metadata."""
    return serve_product(request, session, settings, principal, analysis_id, "changes.gpkg",
                         download_as=f"basewatch-{analysis_id}.gpkg")


@router.get("/analyses/{analysis_id}/exports/csv", responses=content("changes.csv"))
def get_export_csv(analysis_id: str, request: Request, session: SessionDep, settings: SettingsDep, principal: MapPrincipalDep):
    """The change objects as a table (centre lon/lat, MGRS, attributes, provenance columns) for spreadsheets."""
    return serve_product(request, session, settings, principal, analysis_id, "changes.csv",
                         download_as=f"basewatch-{analysis_id}.csv")


@router.get("/analyses/{analysis_id}/files/{name}",
            responses={200: {"content": {t: {} for t in dict.fromkeys(FILES.values())}}, 304: {"description": "not modified"}})
def get_product_file(analysis_id: str, name: str, request: Request, session: SessionDep, settings: SettingsDep,
                     principal: MapPrincipalDep):
    """A binary product by file name, with HTTP range requests for GDAL: the COGs (change_mask.tif, change_score.tif,
    before.tif, after.tif), report.png, report.pdf, changes.kml, changes.gpkg."""
    if name not in FILES:
        raise NotFound()
    return serve_product(request, session, settings, principal, analysis_id, name)
