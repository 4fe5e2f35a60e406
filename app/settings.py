"""Service configuration from ``BASEWATCH_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

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
    dask_address: str | None = Field(None, description="Dask distributed scheduler (tcp://host:8786); when set, analyses and the "
                                                        "blocks of a large one are tasks there (every worker must reach the "
                                                        "data folder at the same path).")
    block_px: int = Field(1536, ge=256, description="An analysis grid with a side longer than this (pixels) is analysed block by "
                                                     "block, in blocks of about this side (unless it fits BASEWATCH_WHOLE_BAND_PIXELS): memory then depends "
                                                     "on it, not on the grid.")
    whole_band_pixels: int = Field(4096 * 4096 * 4, ge=0, description="A grid of at most this many pixels x bands is analysed "
                                   "whole in one process whatever its side (default 4096² x 4 bands: peak about 2.4 GB, faster "
                                   "than block-wise); 0: block-wise whenever a side exceeds BASEWATCH_BLOCK_PX.")
    block_workers: int | None = Field(None, ge=1, le=64, description="Local processes running the blocks of one large analysis "
                                                                      "(without BASEWATCH_DASK_ADDRESS); default one per CPU.")
    max_upload_mb: int = Field(4096, ge=1, description="Largest scene upload accepted, MB.")
    max_scene_pixels: int = Field(400_000_000, description="Largest scene (width x height) accepted from its header.")
    max_scene_compression_ratio: float = Field(
        1000.0, gt=0, description="A scene whose pixels would decompress to more than this many times its file size "
                                  "(a sparse or decompression-bomb TIFF) is refused before conversion.")
    convert_workers: int = Field(2, ge=1, le=64, description="Scene conversions (to COG) run at once, each in its own process.")
    convert_timeout_s: int = Field(1800, ge=1, description="A scene conversion taking longer is stopped and the upload refused.")
    min_free_disk_mb: int = Field(1024, ge=0, description="Disk space kept free in the data folder: uploads and conversions "
                                                           "that would need it are refused with 507.")
    max_analysis_pixels: int = Field(2_000_000_000, description="Largest analysis grid (pixels): a bound on time, not memory "
                                                                 "(large grids run block by block); an analysis whose products "
                                                                 "could not fit on the data folder's disk is refused too.")
    max_json_kb: int = Field(1024, ge=1, description="Largest request body accepted on JSON routes, KB (413 beyond).")
    max_json_depth: int = Field(32, ge=2, description="Deepest nesting of arrays/objects accepted in a JSON body (422 beyond).")
    auth: Literal["auto", "on", "off"] = Field(
        "auto", description="API keys: auto (on once any key has been created, even if all are revoked), "
                            "on (always), off (open service: loopback clients only).")
    auth_failures_per_minute: int = Field(20, ge=1, description="Failed API keys accepted per client address and minute (429 beyond).")
    cors_origins: list[str] = Field(["*"], description="Origins whose web pages may read map resources: tiles, TileJSON, WMTS, "
                                                       "viewer files and product downloads (JSON list).")
    cors_api_origins: list[str] = Field([], description="Origins whose web pages may call the rest of the API, writes "
                                                        "included (JSON list; default none: same origin only).")
    http_workers: int = Field(1, ge=1, le=64, description="Processes serving HTTP on the one port (uvicorn workers, sharing the "
                                                          "disk tile cache); with more than one, `serve`'s own process runs "
                                                          "the analyses and owns the data folder.")
    api_threads: int = Field(40, ge=4, le=512, description="Threads serving the API's synchronous routes (per HTTP process).")
    db_pool_timeout_s: float = Field(10.0, gt=0, description="Longest wait for a database connection before 503.")
    tile_cache_items: int = Field(4096, ge=0, description="Rendered tiles kept in memory per process.")
    tile_max_age_s: int = Field(31_536_000, description="Cache-Control max-age of tiles of a finished analysis, seconds.")
    tile_threads: int = Field(2, ge=1, description="Threads rendering tiles per HTTP process, at a lower CPU priority than "
                                                   "the event loop that answers cached tiles and the API.")
    tile_queue: int = Field(256, ge=1, description="Tiles waiting to be rendered before further ones are answered 503.")
    tile_max_read_pixels: int = Field(4_000_000, ge=65_536, description="Pixel budget of one tile layer read (404 beyond: zoom in).")
    gdal_cachemax_mb: int = Field(256, ge=16, description="GDAL block cache per process, MB.")
    lease_s: int = Field(60, ge=5, description="A running analysis whose worker has not reported for this long is taken over.")
    max_attempts: int = Field(3, ge=1, description="Times an interrupted analysis is retried before it fails.")
    alert_hosts: list[str] = Field([], description="Hosts alert webhooks may be sent to, as host (ports 80/443) or host:port "
                                                   "(JSON list; default none: no alert can be created).")
    alert_timeout_s: float = Field(10.0, gt=0, le=300, description="Longest wait for an alert receiver to answer, seconds.")
    alert_retry_s: float = Field(30.0, gt=0, description="Wait before the first retry of an undelivered alert; doubled after each "
                                                        "failed attempt, at most an hour.")
    alert_max_attempts: int = Field(12, ge=1, le=100, description="Attempts to deliver an alert event before it is marked failed.")
    stac_hosts: list[str] = Field([], description="Hosts STAC items and their assets may be fetched from, as host (ports 80/443) "
                                                  "or host:port (JSON list; default none).")
    stac_timeout_s: float = Field(600.0, gt=0, description="Longest fetch of a STAC item and its asset together, seconds.")
    max_stac_item_kb: int = Field(1024, ge=1, description="Largest STAC item document accepted, KB.")
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

    @property
    def keys_stamp(self) -> Path:
        """Touched whenever a key is created or revoked: API processes reload their keys when it changes."""
        return self.data_dir / "keys.stamp"

    def binds_loopback_only(self) -> bool:
        return is_loopback(self.host)

    def base_url(self, request_base_url: str | None = None) -> str:
        """The root URL clients reach the service at, without a trailing slash: ``public_url`` when set, else
        the URL the request came in at, else the address `serve` binds to (for links sent outside a request)."""
        return (self.public_url or request_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def described(self) -> list[tuple[str, str, str]]:
        """(variable, value, description) for every setting, for `basewatch config`."""
        rows = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name == "database_url" and value is None:
                value = f"(SQLite) {self.db_url}"
            rows.append((f"BASEWATCH_{name.upper()}", str(value), field.description or ""))
        return rows


def is_loopback(host: str | None) -> bool:
    """Whether a host name or address (optionally ``[v6]``) is this machine's loopback."""
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
