"""Service configuration from ``BASEWATCH_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting can be given as ``BASEWATCH_<NAME>`` (e.g. ``BASEWATCH_PORT=9000``)."""

    model_config = SettingsConfigDict(env_prefix="BASEWATCH_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Folder for the database (SQLite), scenes and products.")
    host: str = Field("127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(8000, description="Port `serve` listens on.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the data folder. "
                                                          "PostgreSQL: postgresql+psycopg://user@host/db")
    workers: int = Field(1, ge=1, le=64, description="Analysis worker processes (analyses never run in the API process).")
    dask_address: str | None = Field(None, description="Dask distributed scheduler (tcp://host:8786); analyses are submitted there when set.")
    max_upload_mb: int = Field(4096, ge=1, description="Largest scene upload accepted, MB.")
    max_scene_pixels: int = Field(400_000_000, description="Largest scene (width x height) accepted from its header.")
    max_analysis_pixels: int = Field(120_000_000, description="Largest analysis grid (pixels).")
    cors_origins: list[str] = Field(["*"], description="Origins allowed to call the API and fetch tiles (JSON list).")
    tile_cache_items: int = Field(4096, ge=0, description="Rendered tiles kept in memory per process.")
    tile_max_age_s: int = Field(31_536_000, description="Cache-Control max-age of tiles of a finished analysis, seconds.")
    tile_threads: int = Field(8, ge=1, description="Threads rendering tiles (separate from the API's own pool).")
    gdal_cachemax_mb: int = Field(256, ge=16, description="GDAL block cache per process, MB.")
    lease_s: int = Field(60, ge=5, description="A running analysis whose worker has not reported for this long is taken over.")
    max_attempts: int = Field(3, ge=1, description="Times an interrupted analysis is retried before it fails.")
    public_url: str | None = Field(None, description="Base URL clients use to reach the service (for TileJSON/WMTS); default from the request.")
    attribution: str = Field("basewatch", description="Attribution added to TileJSON and WMTS.")
    log_level: str = Field("info", description="Log level.")

    @cached_property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'basewatch.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def scenes_dir(self) -> Path:
        return self.data_dir / "scenes"

    @property
    def products_dir(self) -> Path:
        return self.data_dir / "analyses"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.scenes_dir, self.products_dir, self.uploads_dir):
            d.mkdir(parents=True, exist_ok=True)

    def binds_loopback_only(self) -> bool:
        host = self.host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def described(self) -> list[tuple[str, str, str]]:
        """(variable, value, description) for every setting, for `basewatch config`."""
        rows = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name == "database_url" and value is None:
                value = f"(SQLite) {self.db_url}"
            rows.append((f"BASEWATCH_{name.upper()}", str(value), field.description or ""))
        return rows
