"""Database tables (SQLAlchemy 2). API models live in :mod:`app.schemas`, queries in :mod:`app.store`."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Scene(Base):
    __tablename__ = "scenes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team: Mapped[str] = mapped_column(String(200), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    acquired_at: Mapped[dt.date] = mapped_column(Date, index=True)
    sensor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    bands: Mapped[list] = mapped_column(JSON)
    crs: Mapped[str] = mapped_column(Text)
    pixel_size_m: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    footprint: Mapped[dict] = mapped_column(JSON)
    west: Mapped[float] = mapped_column(Float)
    south: Mapped[float] = mapped_column(Float)
    east: Mapped[float] = mapped_column(Float)
    north: Mapped[float] = mapped_column(Float)
    checksum: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    source_url: Mapped[str | None] = mapped_column(Text, nullable=True)  # the STAC item it was registered from
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Aoi(Base):
    __tablename__ = "aois"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    geometry: Mapped[dict] = mapped_column(JSON)
    west: Mapped[float] = mapped_column(Float)
    south: Mapped[float] = mapped_column(Float)
    east: Mapped[float] = mapped_column(Float)
    north: Mapped[float] = mapped_column(Float)
    area_m2: Mapped[float] = mapped_column(Float)
    watch: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    #: When the watch began: scenes registered since then are analysed against their neighbours by date.
    watched_since: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    baseline_scene_id: Mapped[str | None] = mapped_column(ForeignKey("scenes.id", name="fk_aois_baseline_scene_id_scenes"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Analysis(Base):
    __tablename__ = "analyses"
    #: The watch queues each pair of an AOI once, whichever process sees the scene first (manual ones: watched NULL).
    __table_args__ = (Index("ux_analyses_watched_pair", "aoi_id", "before_scene_id", "after_scene_id", "watched", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team: Mapped[str] = mapped_column(String(200), index=True)
    aoi_id: Mapped[str] = mapped_column(ForeignKey("aois.id"), index=True)
    before_scene_id: Mapped[str] = mapped_column(ForeignKey("scenes.id"))
    after_scene_id: Mapped[str] = mapped_column(ForeignKey("scenes.id"))
    method: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    watched: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # True: queued by the AOI's watch
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(80), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    product_dir: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(120), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Zone(Base):
    """A named part of an AOI (motor pool, barracks): every analysis counts its objects per zone."""

    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("aoi_id", "name", name="uq_zones_aoi_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team: Mapped[str] = mapped_column(String(200), index=True)
    aoi_id: Mapped[str] = mapped_column(ForeignKey("aois.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    geometry: Mapped[dict] = mapped_column(JSON)
    area_m2: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Alert(Base):
    """A webhook: when a finished analysis of the AOI meets ``rule``, an event is POSTed to ``url``."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team: Mapped[str] = mapped_column(String(200), index=True)
    aoi_id: Mapped[str] = mapped_column(ForeignKey("aois.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(256))  # the HMAC key; never answered
    rule: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Delivery(Base):
    """The outbox: one event of one alert, kept until delivered (or out of attempts), with every attempt."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "analysis_id", name="uq_alert_deliveries_alert_analysis"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    analysis_id: Mapped[str] = mapped_column(String(32))  # no foreign key: the record outlives a deleted analysis
    body: Mapped[str] = mapped_column(Text)  # the exact JSON bytes signed and sent
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending, delivered, failed
    attempts: Mapped[list] = mapped_column(JSON, default=list)  # [{"at", "status_code", "error", "seconds"}]
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
