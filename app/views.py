"""Table rows -> API models (kept out of routes so routes stay thin)."""

from __future__ import annotations

import datetime as dt
import json

from app.models import Alert, Analysis, Aoi, Delivery, Scene, Zone
from app.schemas import AlertOut, AnalysisOut, AoiOut, DeliveryOut, SceneOut, ZoneOut
from imagery.contract import LAYERS


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def scene_out(row: Scene) -> SceneOut:
    return SceneOut(
        id=row.id, filename=row.filename, acquired_at=row.acquired_at, sensor=row.sensor, bands=row.bands, crs=row.crs,
        pixel_size_m=row.pixel_size_m, width=row.width, height=row.height, dtype=row.dtype, footprint=row.footprint,
        bbox=[row.west, row.south, row.east, row.north], checksum=row.checksum, size_bytes=row.size_bytes,
        source_url=row.source_url, created_at=as_utc(row.created_at),
    )


def aoi_out(row: Aoi, scenes: list[Scene] | None = None) -> AoiOut:
    return AoiOut(
        id=row.id, name=row.name, description=row.description, geometry=row.geometry,
        bbox=[row.west, row.south, row.east, row.north], area_m2=row.area_m2, watch=bool(row.watch),
        baseline_scene_id=row.baseline_scene_id, created_at=as_utc(row.created_at),
        scenes=[scene_out(s) for s in scenes] if scenes is not None else None,
    )


def analysis_links(analysis_id: str, base: str, status: str) -> dict[str, str]:
    root = f"{base}/v1/analyses/{analysis_id}"
    links = {"self": root}
    if status == "succeeded":
        links.update({
            "changes": f"{root}/changes.geojson",
            "report": f"{root}/report.png",
            "report_pdf": f"{root}/report.pdf",
            **{f"export_{fmt}": f"{root}/exports/{fmt}" for fmt in ("kml", "gpkg", "csv")},
            "summary": f"{root}/summary.json",
            "viewer": f"{root}/viewer",
            "wmts": f"{root}/WMTSCapabilities.xml",
            **{f"tilejson_{layer}": f"{root}/tilejson.json?layer={layer}" for layer in LAYERS},
            **{f"{name}_tif": f"{root}/files/{name}.tif" for name in ("change_mask", "change_score", "before", "after")},
        })
    return links


def analysis_out(row: Analysis, base: str) -> AnalysisOut:
    return AnalysisOut(
        id=row.id, aoi_id=row.aoi_id, before_scene_id=row.before_scene_id, after_scene_id=row.after_scene_id,
        method=row.method, params=row.params or {}, status=row.status, progress=row.progress, stage=row.stage,
        error=row.error, summary=row.summary, attempts=row.attempts, watched=bool(row.watched), created_at=as_utc(row.created_at),
        started_at=as_utc(row.started_at), finished_at=as_utc(row.finished_at), links=analysis_links(row.id, base, row.status),
    )


def zone_out(row: Zone) -> ZoneOut:
    return ZoneOut(id=row.id, aoi_id=row.aoi_id, name=row.name, geometry=row.geometry, area_m2=row.area_m2,
                   created_at=as_utc(row.created_at))


def alert_out(row: Alert) -> AlertOut:
    return AlertOut(id=row.id, aoi_id=row.aoi_id, url=row.url, rule=row.rule, created_at=as_utc(row.created_at))


def delivery_out(row: Delivery) -> DeliveryOut:
    return DeliveryOut(id=row.id, alert_id=row.alert_id, analysis_id=row.analysis_id, status=row.status, attempts=row.attempts,
                       next_attempt_at=as_utc(row.next_attempt_at) if row.status == "pending" else None,
                       delivered_at=as_utc(row.delivered_at), created_at=as_utc(row.created_at), event=json.loads(row.body))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 ``If-None-Match``: ``*``, or a comma-separated list compared weakly (``W/`` ignored)."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    own = etag.removeprefix("W/")
    return "*" in tags or any(t.removeprefix("W/") == own for t in tags)
