"""API models (request and response bodies). Tables are in app.models; domain values in imagery/aoi."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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
    created_at: dt.datetime


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
    created_at: dt.datetime
    scenes: list[SceneOut] | None = Field(None, description="Scenes whose footprint intersects the AOI (single-AOI reads only).")


class AnalysisCreate(BaseModel):
    before_scene_id: str
    after_scene_id: str
    method: str | None = Field(None, description="Change method (default: the product default).")
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
