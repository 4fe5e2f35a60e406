"""Scenes registered from STAC items: the item is fetched (or given inline), its GeoTIFF asset opened by GDAL
over HTTP range requests, and only the window an AOI needs copied; the copy then goes through the same
validation, limits and conversion as an upload (:func:`app.ingest.ingest`).

Only hosts of ``BASEWATCH_STAC_HOSTS`` are contacted (:mod:`app.outbound`), for the item and its asset alike.
GDAL never opens a URL itself: it reads through a Python file object (rasterio's ``opener``) whose every
read is a range request to the one allowed URL, so there is no redirect, ``file://`` or ``/vsi`` path it
could be led to. An asset host that does not answer range requests is read whole, with the upload size limit.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from app.errors import InvalidRequest, UpstreamError
from app.ingest import Upload, check_disk, ingest, safe_filename
from app.models import Scene
from app.outbound import CHUNK, MAX_REDIRECTS, allowed_url, client, fetch
from app.schemas import StacRegister
from app.settings import Settings
from imagery.errors import first_line
from imagery.raster import BAND_ROLES

SETTING = "BASEWATCH_STAC_HOSTS"
#: Asset keys tried first, in order (the STAC best-practice names), then any GeoTIFF asset with a data role.
ASSET_KEYS = ("analytic", "visual", "image", "data")
GEOTIFF_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")
#: Ground kept around the AOI when its window is copied, metres: room for the co-registration search and the
#: scene statistics at the AOI's edge.
WINDOW_MARGIN_M = 100.0
#: Bytes GDAL reads per range request at least (it asks for a TIFF's header and blocks in small pieces).
RANGE_BUFFER = 256 * 1024
#: Rows copied at a time (bounds the memory of a window copy).
STRIP_ROWS = 1024


def is_geotiff(asset, *, typed: bool) -> bool:
    """An asset with an href whose media type is GeoTIFF (or, unless ``typed``, not given)."""
    if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
        return False
    kind = str(asset.get("type") or "").lower()
    return kind.startswith(GEOTIFF_TYPES) if kind or typed else True


def pick_asset(item: dict) -> dict:
    """The item's GeoTIFF asset; InvalidRequest if it has none."""
    assets = item.get("assets")
    if not isinstance(assets, dict):
        raise InvalidRequest("the STAC item has no assets")
    for key in ASSET_KEYS:
        if is_geotiff(assets.get(key), typed=False):
            return assets[key]
    for asset in assets.values():
        if is_geotiff(asset, typed=True) and {"data", "visual"} & set(asset.get("roles") or []):
            return asset
    raise InvalidRequest(f"the STAC item has no GeoTIFF asset (looked for {', '.join(ASSET_KEYS)} or a GeoTIFF with role data)")


def asset_bands(item: dict, asset: dict) -> list[str] | None:
    """Band roles from the asset's (or item's) ``bands`` (STAC 1.1) or ``eo:bands`` (eo extension); ``-`` for
    a band basewatch has no role for; None when the item does not describe the bands."""
    for bands in (asset.get("bands"), asset.get("eo:bands"), (item.get("properties") or {}).get("eo:bands")):
        if isinstance(bands, list) and bands and all(isinstance(b, dict) for b in bands):
            names = [str(b.get("eo:common_name") or b.get("common_name") or b.get("name") or "").lower() for b in bands]
            return [n if n in BAND_ROLES else "-" for n in names]
    return None


def describe(item, body: StacRegister) -> tuple[dict[str, str], dict]:
    """The upload form fields the item stands for (what the request gives overrides the item) and its asset."""
    props = item.get("properties") if isinstance(item, dict) and item.get("type") == "Feature" else None
    if not isinstance(props, dict):
        raise InvalidRequest("the document is not a STAC item (a GeoJSON Feature with properties)")
    acquired = body.acquired_at.isoformat() if body.acquired_at else (props.get("datetime") or props.get("start_datetime"))
    if not isinstance(acquired, str):
        raise InvalidRequest("the STAC item has no datetime; give acquired_at")
    fields = {"acquired_at": acquired[:10]}
    sensor = body.sensor or props.get("platform") or props.get("constellation")
    if isinstance(sensor, str):
        fields["sensor"] = sensor[:200]
    asset = pick_asset(item)
    bands = body.bands or asset_bands(item, asset)
    if bands:
        fields["bands"] = ",".join(bands)
    return fields, asset


def register(body: StacRegister, settings: Settings, team: str, *, convert, aoi_geometry: dict | None = None) -> Scene:
    """Read the item (from its URL, or inline), open its asset's header by GDAL over HTTP, copy the window of
    ``aoi_geometry`` (lon/lat GeoJSON; None: the whole asset) plus :data:`WINDOW_MARGIN_M`, and validate and
    convert the copy like an upload; returns the (unsaved) Scene row."""
    deadline = time.monotonic() + settings.stac_timeout_s
    hosts, common = settings.stac_hosts, {"setting": SETTING, "deadline": deadline}
    with client(min(60.0, settings.stac_timeout_s)) as http:
        if isinstance(body.stac_item, dict):
            item, item_url = body.stac_item, None
        else:
            raw = bytearray()
            item_url = fetch(http, body.stac_item, raw.extend, hosts=hosts, what="STAC item",
                             max_bytes=settings.max_stac_item_kb * 1024, **common)
            try:
                item = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise InvalidRequest("the STAC item is not JSON") from None
        fields, asset = describe(item, body)
        try:
            href = item_url.join(asset["href"]) if item_url else httpx.URL(asset["href"])
        except httpx.InvalidURL:
            raise InvalidRequest("the STAC asset's href is not a valid URL") from None
        if item_url is None and not href.is_absolute_url:
            raise InvalidRequest("an inline STAC item's asset href must be an absolute http(s) URL")
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        check_disk(settings, 0, "copy this asset")
        folder = settings.uploads_dir / uuid.uuid4().hex
        folder.mkdir()
        name = safe_filename(href.path.rsplit("/", 1)[-1]) or "asset.tif"
        upload = Upload(fields=fields, path=folder / name, filename=name)
        try:
            copy_asset(http, str(href), upload.path, settings, aoi_geometry, proj_fields(item, asset), **common)
        except BaseException:
            upload.discard()
            raise
    upload.size = upload.path.stat().st_size
    with open(upload.path, "rb") as fh:
        upload.sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
    scene = ingest(upload, settings, team, convert=convert)
    scene.source_url = str(item_url or href)
    return scene


def proj_fields(item: dict, asset: dict) -> dict:
    """The projection extension's ``proj:epsg`` / ``proj:code`` and ``proj:shape`` of the asset (or the item)."""
    props = item.get("properties") or {}
    return {k: asset.get(k, props.get(k)) for k in ("proj:epsg", "proj:code", "proj:shape") if asset.get(k, props.get(k)) is not None}


class RangeReader(io.RawIOBase):
    """A remote file of ``size`` bytes read by HTTP range requests to one allowed URL (redirects are not
    followed), within ``max_bytes`` read in all and before ``deadline`` (time.monotonic())."""

    def __init__(self, http: httpx.Client, url: httpx.URL, size: int, *, max_bytes: int, deadline: float):
        super().__init__()
        self.http, self.url, self.size, self.max_bytes, self.deadline = http, url, size, max_bytes, deadline
        self.pos = self.read_bytes = 0
        self.error: UpstreamError | None = None  # GDAL turns an exception in a read into its own I/O error

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def readinto(self, buffer) -> int:
        try:
            return self._readinto(buffer)
        except UpstreamError as exc:
            self.error = exc
            raise
        except httpx.HTTPError as exc:
            self.error = UpstreamError(f"STAC asset: {self.url.host} could not be read ({type(exc).__name__})")
            raise self.error from None

    def _readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.pos)
        if n <= 0:
            return 0
        if time.monotonic() > self.deadline:
            raise UpstreamError(f"STAC asset: {self.url.host} took too long")
        got = 0
        with self.http.stream("GET", self.url, headers={"Range": f"bytes={self.pos}-{self.pos + n - 1}"}) as r:
            if r.status_code != 206:
                raise UpstreamError(f"STAC asset: {self.url.host} answered a range request with HTTP {r.status_code}")
            for chunk in r.iter_raw(CHUNK):
                take = chunk[: n - got]
                buffer[got:got + len(take)] = take
                got += len(take)
                if got >= n:
                    break
        self.read_bytes += got
        if self.read_bytes > self.max_bytes:
            raise UpstreamError(f"STAC asset: more than the limit of {self.max_bytes:,} bytes read")
        self.pos += got
        return got


def probe(http: httpx.Client, url: str, hosts: list[str], setting: str) -> tuple[httpx.URL, int | None]:
    """The asset's final URL (redirects followed to allowed hosts only) and its size when the host answers range
    requests (None when it does not)."""
    current = allowed_url(url, hosts, setting=setting, what="STAC asset")
    for _ in range(MAX_REDIRECTS + 1):
        try:
            with http.stream("GET", current, headers={"Range": "bytes=0-0"}) as r:
                if r.is_redirect:
                    current = allowed_url(str(current.join(r.headers.get("location", ""))), hosts, setting=setting,
                                          what="STAC asset (redirected)")
                    continue
                total = re.fullmatch(r"bytes 0-0/(\d+)", r.headers.get("content-range", "").strip())
                if r.status_code == 206 and total:
                    return current, int(total.group(1))
                if r.status_code == 200:
                    return current, None
                raise UpstreamError(f"STAC asset: {current.host} answered HTTP {r.status_code}")
        except httpx.HTTPError as exc:
            raise UpstreamError(f"STAC asset: {current.host} could not be read ({type(exc).__name__})") from None
    raise UpstreamError(f"STAC asset: more than {MAX_REDIRECTS} redirects")


def copy_asset(http: httpx.Client, url: str, dst: Path, settings: Settings, aoi_geometry: dict | None, proj: dict, *,
               setting: str, deadline: float) -> None:
    """Open the asset's header with GDAL (over range requests, or from a whole download when the host does not
    answer them), check it against the item's ``proj:`` fields, and write the AOI's window to ``dst``."""
    import rasterio
    from rasterio._err import CPLE_BaseError

    max_bytes = settings.max_upload_mb * 1024 * 1024
    final, size = probe(http, url, settings.stac_hosts, setting)
    readers: list[RangeReader] = []
    if size is None:
        whole = dst.with_suffix(".download")
        with open(whole, "wb") as fh:
            fetch(http, str(final), fh.write, hosts=settings.stac_hosts, setting=setting, what="STAC asset",
                  max_bytes=max_bytes, deadline=deadline)
        opened = lambda: rasterio.open(whole)  # noqa: E731
    else:
        name = "asset.tif"

        def opener(path, mode="rb"):
            if Path(str(path)).name != name:  # GDAL looking for side-car files (.ovr, .aux.xml, .msk)
                raise FileNotFoundError(path)
            readers.append(RangeReader(http, final, size, max_bytes=max_bytes, deadline=deadline))
            return io.BufferedReader(readers[-1], RANGE_BUFFER)

        opened = lambda: rasterio.open(name, opener=opener)  # noqa: E731
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), opened() as src:
            check_header(src, proj)
            write_window(src, dst, aoi_window(src, aoi_geometry), settings.max_scene_pixels)
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        failed = next((r.error for r in readers if r.error is not None), None)
        if failed is not None:
            raise failed from None
        raise InvalidRequest(f"the STAC asset is not a readable GeoTIFF ({first_line(exc)[:200]})") from None
    finally:
        if size is None:
            whole.unlink(missing_ok=True)


def check_header(src, proj: dict) -> None:
    """InvalidRequest unless the asset is georeferenced and agrees with the item's ``proj:`` fields."""
    if src.crs is None:
        raise InvalidRequest("the STAC asset has no coordinate reference system")
    declared = proj.get("proj:code") or (f"EPSG:{proj['proj:epsg']}" if proj.get("proj:epsg") else None)
    if declared and str(declared).upper() != f"EPSG:{src.crs.to_epsg()}":
        raise InvalidRequest(f"the STAC item says {declared} but the asset's header says {src.crs.to_string()}")
    shape_ = proj.get("proj:shape")
    if isinstance(shape_, list) and len(shape_) == 2 and list(shape_) != [src.height, src.width]:
        raise InvalidRequest(f"the STAC item says proj:shape {shape_} but the asset is {src.height} x {src.width} pixels")


def aoi_window(src, aoi_geometry: dict | None):
    """The pixel window of the AOI's bounds plus :data:`WINDOW_MARGIN_M` in the asset (the whole asset without
    an AOI); InvalidRequest when the asset does not reach the AOI."""
    from rasterio.errors import WindowError
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window, from_bounds
    from shapely.geometry import shape

    full = Window(0, 0, src.width, src.height)
    if aoi_geometry is None:
        return full
    west, south, east, north = transform_bounds("EPSG:4326", src.crs, *shape(aoi_geometry).bounds)
    margin = WINDOW_MARGIN_M if src.crs.is_projected else WINDOW_MARGIN_M / 111_320.0
    window = from_bounds(west - margin, south - margin, east + margin, north + margin, src.transform)
    col, row = math.floor(window.col_off), math.floor(window.row_off)
    window = Window(col, row, math.ceil(window.col_off + window.width) - col, math.ceil(window.row_off + window.height) - row)
    try:
        return window.intersection(full)
    except WindowError:
        raise InvalidRequest("the STAC asset does not cover the AOI") from None


def write_window(src, dst: Path, window, max_pixels: int) -> None:
    """Copy ``window`` of every band of ``src`` (tags, band names, nodata and mask kept) to a tiled GeoTIFF."""
    import rasterio
    from rasterio.enums import MaskFlags
    from rasterio.windows import Window

    width, height = int(window.width), int(window.height)
    if width < 1 or height < 1:
        raise InvalidRequest("the STAC asset does not cover the AOI")
    if width * height > max_pixels:
        raise InvalidRequest(f"the window to copy is {width} x {height} pixels, more than the limit of {max_pixels:,}; "
                             "give a smaller aoi_id")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": src.count, "dtype": src.dtypes[0],
               "crs": src.crs, "transform": src.window_transform(window), "nodata": src.nodata, "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    has_mask = MaskFlags.per_dataset in src.mask_flag_enums[0]
    with rasterio.open(dst, "w", **profile) as out:
        out.update_tags(**src.tags())
        for i, name in enumerate(src.descriptions, start=1):
            if name:
                out.set_band_description(i, name)
        for row in range(0, height, STRIP_ROWS):
            strip = Window(window.col_off, window.row_off + row, width, min(STRIP_ROWS, height - row))
            target = Window(0, row, width, strip.height)
            out.write(src.read(window=strip), window=target)
            if has_mask:
                out.write_mask(src.dataset_mask(window=strip).astype(np.uint8), window=target)
