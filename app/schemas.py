"""API models (request and response bodies). Tables are in app.models; domain values in imagery/aoi."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from imagery.change import METHODS

T = TypeVar("T")

Status = Literal["queued", "running", "succeeded", "failed"]


def _iso_date_only(value):
    """Dates as ISO 8601 text (YYYY-MM-DD) only: pydantic would also read numbers as Unix times."""
    if isinstance(value, str) and not (len(value) == 10 and value[4] == value[7] == "-"):
        raise ValueError("expected an ISO 8601 date, YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_only)]


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="What went wrong (a list of problems for request validation errors).")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: str | None = Field(None, description="Cursor for the next page (pass as ?cursor=), null on the last page.")


class SceneOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str
    acquired_at: dt.date
    sensor: str | None
    bands: list[str] = Field(description="Band roles in file order ('-' for a band without a role).")
    crs: str
    pixel_size_m: float
    width: int
    height: int
    dtype: str
    footprint: dict = Field(description="GeoJSON Polygon, EPSG:4326.")
    bbox: list[float] = Field(description="[west, south, east, north], degrees.")
    checksum: str = Field(description="SHA-256 of the uploaded file.")
    size_bytes: int
    source_url: str | None = Field(None, description="The STAC item the scene was registered from.")
    created_at: dt.datetime


class StacRegister(BaseModel):
    """Register a scene from a STAC item (the item's datetime and bands unless given here)."""

    model_config = ConfigDict(extra="forbid")

    stac_item: Annotated[str, Field(min_length=1, max_length=2000)] | dict[str, Any] = Field(
        description="URL of a STAC item on a host of BASEWATCH_STAC_HOSTS, or the item itself (its asset href then absolute).")
    aoi_id: str | None = Field(None, max_length=100, description="Copy only this AOI's window (plus 100 m) of the asset; "
                                                                "default the whole asset.")
    acquired_at: IsoDate | None = Field(None, description="Overrides the item's datetime.")
    sensor: str | None = Field(None, max_length=200, description="Overrides the item's platform.")
    bands: list[str] | None = Field(None, max_length=64, description="Band roles in file order; overrides the item's eo:bands.")


class AoiCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon/MultiPolygon/Feature/FeatureCollection, lon/lat (RFC 7946).")
    description: str | None = Field(None, max_length=5000)


class AoiOut(BaseModel):
    id: str
    name: str
    description: str | None
    geometry: dict
    bbox: list[float]
    area_m2: float
    watch: bool = Field(False, description="Every scene registered over the AOI is analysed against the previous one by date.")
    baseline_scene_id: str | None = Field(None, description="Watched scenes are also analysed against this scene.")
    created_at: dt.datetime
    scenes: list[SceneOut] | None = Field(None, description="Scenes whose footprint intersects the AOI (single-AOI reads only).")


class AoiUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    watch: bool | None = Field(None, description="Start (true) or stop (false) watching the AOI.")
    baseline_scene_id: str | None = Field(None, description="A scene covering the AOI to analyse every new scene against; "
                                                            "null clears it.")


class ZoneCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon/MultiPolygon/Feature, lon/lat, within the AOI.")


class ZoneOut(BaseModel):
    id: str
    aoi_id: str
    name: str
    geometry: dict
    area_m2: float
    created_at: dt.datetime


class AlertRule(BaseModel):
    """Met when the analysis found at least ``min`` objects of this class and change (in ``zone``, when given)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    cls: Literal["vehicle", "vehicle_group", "tent", "structure", "other", "any"] = Field(alias="class")
    change: Literal["appeared", "disappeared", "changed", "any"]
    min: int = Field(ge=1, le=1_000_000)
    zone: str | None = Field(None, min_length=1, max_length=200, description="A zone of the AOI by name; default the whole AOI.")


class AlertCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(min_length=1, max_length=2000, description="Receiver (http or https) on a host of BASEWATCH_ALERT_HOSTS.")
    secret: str = Field(min_length=16, max_length=256, description="Key of the HMAC-SHA256 signature of each event's body "
                                                                   "(header X-Basewatch-Signature: sha256=HEX); never answered.")
    rule: AlertRule


class AlertOut(BaseModel):
    id: str
    aoi_id: str
    url: str
    rule: AlertRule
    created_at: dt.datetime


class AttemptOut(BaseModel):
    at: dt.datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null when it could not be reached.")
    error: str | None
    seconds: float


class DeliveryOut(BaseModel):
    id: str = Field(description="Also sent as X-Basewatch-Delivery: a receiver that sees an id twice has the event already.")
    alert_id: str
    analysis_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[AttemptOut]
    next_attempt_at: dt.datetime | None = Field(description="When a pending delivery is tried next.")
    delivered_at: dt.datetime | None
    created_at: dt.datetime
    event: dict = Field(description="The JSON body POSTed to the receiver.")


class TimelineItem(BaseModel):
    date: dt.date
    scene_id: str
    analysis_id: str | None = Field(description="The analysis of this scene against the previous one by date, if any.")
    status: Status | None
    counts: dict | None = Field(description="The analysis's counts (objects by change and class, vehicles estimated).")
    zones: dict[str, dict] = Field(description="Zone name -> counts.")
    analysed_fraction: float | None = Field(description="Share of the AOI analysed (clouds, nodata and partial coverage "
                                                        "lower it).")
    gap: bool = Field(description="No usable count for this date: no analysis yet, a failed one, or less than 80 % of the AOI "
                                  "analysed (cloud, nodata, partial coverage). The chain's first date is not a gap.")


def method_enum(schema: dict) -> None:
    """Lists the change methods of :data:`imagery.change.METHODS` as the OpenAPI enum of ``method`` (the route
    checks the name, so an unknown one is a 422 that names the choices)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["enum"] = list(METHODS)


class AnalysisCreate(BaseModel):
    before_scene_id: str
    after_scene_id: str
    method: str | None = Field(None, json_schema_extra=method_enum, description=(
        "Change method (default: auto). " + "; ".join(f"{name}: {m.summary}" for name, m in METHODS.items()) + "."))
    params: dict[str, Any] = Field(default_factory=dict, description="Optional: pixel_size_m, margin_m, coregister, mask_clouds.")


class AnalysisOut(BaseModel):
    id: str
    aoi_id: str
    before_scene_id: str
    after_scene_id: str
    method: str
    params: dict
    status: Status
    progress: float = Field(description="0-1.")
    stage: str | None
    error: str | None
    summary: dict | None
    attempts: int
    watched: bool = Field(False, description="Queued by the AOI's watch.")
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    links: dict[str, str] = Field(default_factory=dict)


class KeyOut(BaseModel):
    id: str
    name: str
    team: str
    role: str
    prefix: str
    created_at: dt.datetime
