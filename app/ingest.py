"""Scene ingest: a multipart upload streamed to disk, validated, converted to COG, recorded.

Nothing of a refused upload stays on disk or in the database: the upload and every temporary of its
conversion live in one private folder under ``uploads/``, removed when the request ends (and swept at
start-up after a crash). The conversion reads every pixel, so it runs in a process of its own
(:class:`Converter`), after the header has shown it fits the decompression and disk budgets.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from rasterio.errors import RasterioError
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import mapping
from starlette.requests import Request

from app.errors import DISK_FULL, InsufficientStorage, InvalidRequest, Overloaded, PayloadTooLarge
from app.models import Scene, new_id
from app.settings import Settings
from imagery.errors import InvalidSceneError, first_line
from imagery.scenes import SceneInfo, SceneLimits, gdal_env, inspect_scene, open_scene, parse_date

MAX_FIELD_BYTES = 10_000


@dataclass
class Upload:
    """A streamed multipart form: small text fields in memory, the one file on disk."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    size: int = 0
    sha256: str = ""

    def discard(self) -> None:
        """Remove the uploaded file, its private folder and whatever the conversion left there."""
        if self.path is not None:
            shutil.rmtree(self.path.parent, ignore_errors=True)


async def receive_upload(request: Request, settings: Settings) -> Upload:
    """Parse ``multipart/form-data`` from the request stream, writing the ``file`` part to the uploads folder.

    Raises PayloadTooLarge as soon as the body exceeds ``max_upload_mb``
    (from Content-Length before reading, else while streaming).
    """
    limit = settings.max_upload_mb * 1024 * 1024
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidRequest("send the scene as multipart/form-data with a 'file' part")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 1_000_000:
        raise PayloadTooLarge(f"the upload is larger than the limit of {settings.max_upload_mb} MB")
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    check_disk(settings, int(declared) if declared and declared.isdigit() else 0, "receive this upload")
    form = UploadForm(settings.uploads_dir, limit, settings.max_upload_mb)
    parser = MultipartParser(params[b"boundary"], callbacks=form.callbacks())
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except FormParserError as exc:
            raise InvalidRequest(f"the multipart/form-data body is malformed ({exc})") from None
    except BaseException:
        form.close()
        form.upload.discard()
        raise
    if form.upload.path is None:
        raise InvalidRequest("the form has no 'file' part")
    form.upload.sha256 = form.digest.hexdigest()
    return form.upload


class UploadForm:
    """The multipart parser's callbacks: the one ``file`` part streamed into a new folder of ``uploads_dir``
    (refused past ``limit`` bytes) and hashed, the other fields kept as text (each at most
    :data:`MAX_FIELD_BYTES`)."""

    def __init__(self, uploads_dir: Path, limit: int, limit_mb: int):
        self.uploads_dir, self.limit, self.limit_mb = uploads_dir, limit, limit_mb
        self.upload = Upload()
        self.digest = hashlib.sha256()
        self.name: str | None = None
        self.headers: dict = {}
        self.field = b""
        self.header_field = b""
        self.header_value = b""
        self.fh = None

    def callbacks(self) -> dict:
        return {"on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished,
                "on_part_data": self.on_part_data, "on_part_end": self.on_part_end}

    def on_header_field(self, data, start, end):
        self.header_field += data[start:end]

    def on_header_value(self, data, start, end):
        self.header_value += data[start:end]

    def on_header_end(self):
        self.headers[self.header_field.decode("latin-1").lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self):
        _, disp = parse_options_header(self.headers.get("content-disposition", b""))
        self.name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        if self.name == "file" and filename is not None:
            if self.upload.path is not None:
                raise InvalidRequest("send exactly one file")
            self.upload.filename = safe_filename(filename.decode("utf-8", "replace"))
            folder = self.uploads_dir / uuid.uuid4().hex
            folder.mkdir()
            self.upload.path = folder / self.upload.filename
            self.fh = open(self.upload.path, "wb")

    def on_part_data(self, data, start, end):
        chunk = data[start:end]
        if self.fh is not None:
            self.upload.size += len(chunk)
            if self.upload.size > self.limit:
                raise PayloadTooLarge(f"the upload is larger than the limit of {self.limit_mb} MB")
            self.digest.update(chunk)
            self.fh.write(chunk)
        else:
            self.field += chunk
            if len(self.field) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"form field {self.name!r} is too long")

    def on_part_end(self):
        if self.fh is not None:
            self.close()
        elif self.name:
            self.upload.fields[self.name] = self.field.decode("utf-8", "replace")
        self.name, self.headers, self.field = None, {}, b""

    def close(self):
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def safe_filename(name: str) -> str:
    """The last path component of a client-supplied name, printable, at most 120 characters."""
    base = Path(name.replace("\\", "/")).name
    base = "".join(ch if ch.isalnum() or ch in "._-+ " else "_" for ch in base).strip(" .")
    return base[:120] or "scene.tif"


def parse_bands(text: str | None) -> list[str] | None:
    """Band roles from 'blue,green,red,nir' or a flat JSON list of strings."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            values = None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidRequest("bands must be a JSON list of role names or comma-separated roles")
        return values
    return [b.strip() for b in text.split(",")]


def check_disk(settings: Settings, needed_bytes: int, what: str) -> None:
    """InsufficientStorage (507) unless ``needed_bytes`` fit on the data folder's disk above ``min_free_disk_mb``."""
    free = shutil.disk_usage(settings.data_dir).free
    reserve = settings.min_free_disk_mb * 1024 * 1024
    if free - needed_bytes < reserve:
        raise InsufficientStorage(f"not enough disk space to {what}: it needs {needed_bytes / 1e6:,.0f} MB, "
                                  f"{max(free - reserve, 0) / 1e6:,.0f} MB are available")


def check_budget(info: SceneInfo, file_bytes: int, settings: Settings) -> None:
    """Before any pixel is read: the decompressed size against the file size (bombs) and the free disk."""
    decompressed = info.grid.rows * info.grid.cols * info.count * np.dtype(info.dtype).itemsize
    ratio = decompressed / max(file_bytes, 1)
    if ratio > settings.max_scene_compression_ratio:
        raise InvalidSceneError(
            f"{Path(info.path).name}: {decompressed / 1e6:,.0f} MB of pixels declared in a {file_bytes / 1e3:,.0f} KB file "
            f"would decompress {ratio:,.0f} times (limit {settings.max_scene_compression_ratio:,.0f}): "
            "refused as a sparse or decompression-bomb TIFF")
    # the conversion's temporary copy (uncompressed, with overviews) and the COG (at worst as large)
    check_disk(settings, int(decompressed * 8 / 3), "convert this scene")


def convert_to_cog(src: Path, dst: Path, dtype: str) -> None:
    """Re-encode a validated scene as a COG (reads every pixel, so a truncated file fails here).

    rio-cogeo's temporary file is written next to ``dst``. Raises InvalidSceneError for unreadable pixels
    and OSError(ENOSPC) when the disk fills up.
    """
    profile = dict(cog_profiles.get("deflate"))
    profile.update(blockxsize=512, blockysize=512, predictor=2 if dtype.startswith(("uint", "int")) else 3)
    try:
        with gdal_env(), open_scene(str(src)) as ds:
            cog_translate(ds, str(dst), profile, in_memory=False, quiet=True, forward_band_tags=True,
                          forward_ns_tags=False, overview_resampling="average",
                          config={"GDAL_NUM_THREADS": "2", "GDAL_TIFF_INTERNAL_MASK": "YES"})
    except RasterioError as exc:
        dst.unlink(missing_ok=True)
        if "space" in str(exc).lower():
            raise OSError(errno.ENOSPC, DISK_FULL) from None
        raise InvalidSceneError(f"{Path(src).name}: the pixels cannot be read; the file is corrupt or truncated ({first_line(exc)})") from None
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


class Converter:
    """Runs :func:`convert_to_cog` in a child process (``python -m app.convert``), ``convert_workers`` at a time.

    The API process stays responsive whatever GDAL does (it holds the GIL while it closes a large file);
    a conversion past ``convert_timeout_s`` is killed; the child dies with the server (``app.convert``).
    """

    #: Longest wait for a free conversion slot before the upload is answered 503.
    QUEUE_WAIT_S = 60.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self._slots = threading.BoundedSemaphore(settings.convert_workers)

    def __call__(self, src: Path, dst: Path, dtype: str) -> None:
        if not self._slots.acquire(timeout=self.QUEUE_WAIT_S):
            raise Overloaded("every scene conversion slot is busy; retry later", retry_after=30)
        try:
            self._run(src, dst, dtype)
        finally:
            self._slots.release()

    def _run(self, src: Path, dst: Path, dtype: str) -> None:
        env = {**os.environ, "GDAL_CACHEMAX": str(self.settings.gdal_cachemax_mb)}
        cmd = [sys.executable, "-m", "app.convert", str(src), str(dst), dtype, str(os.getpid())]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        try:
            _, err = proc.communicate(timeout=self.settings.convert_timeout_s)
        except BaseException as exc:
            proc.kill()
            proc.wait()
            dst.unlink(missing_ok=True)
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            raise InvalidSceneError(f"{src.name}: the conversion to COG took longer than {self.settings.convert_timeout_s} s "
                                    "(BASEWATCH_CONVERT_TIMEOUT_S); the scene is too large for this server") from None
        message = (err or "").strip().splitlines()[-1:] or [""]
        if proc.returncode == 2:
            raise InvalidSceneError(message[0])
        if proc.returncode == 3:
            raise InsufficientStorage(DISK_FULL)
        if proc.returncode != 0:
            raise RuntimeError(f"scene conversion failed (exit {proc.returncode}): {message[0]}")


def ingest(upload: Upload, settings: Settings, team: str, *, convert=convert_to_cog) -> Scene:
    """Validate the uploaded file, store it as a COG and return the (unsaved) Scene row.

    ``convert(src, dst, dtype)`` does the conversion (a :class:`Converter` in the service). The upload's
    folder is always removed; the COG only survives if this returns.
    """
    scene_id = new_id()
    final = settings.scenes_dir / f"{scene_id}.tif"
    partial = upload.path.parent / f".{scene_id}.cog.tif"
    try:
        acquired_text = upload.fields.get("acquired_at") or None
        try:
            acquired = parse_date(acquired_text) if acquired_text else None
        except ValueError:
            raise InvalidRequest(f"acquired_at must be an ISO 8601 date, got {acquired_text!r}") from None
        roles = parse_bands(upload.fields.get("bands"))
        info = inspect_scene(upload.path, bands=roles, acquired=acquired,
                             limits=SceneLimits(max_pixels=settings.max_scene_pixels))
        if info.acquired is None:
            raise InvalidRequest("acquired_at is required (the file carries no acquisition date tag)")
        check_budget(info, upload.size, settings)
        settings.scenes_dir.mkdir(parents=True, exist_ok=True)
        convert(upload.path, partial, info.dtype)
        os.replace(partial, final)
        role_of_band = {index: role for role, index in info.band_index.items()}
        roles_in_order = [role_of_band.get(index, "-") for index in info.data_bands]
        footprint = info.footprint_lonlat()
        west, south, east, north = footprint.bounds
        return Scene(
            id=scene_id, team=team, filename=upload.filename or "scene.tif", path=str(final.relative_to(settings.data_dir)),
            acquired_at=info.acquired, sensor=(upload.fields.get("sensor") or None), bands=roles_in_order, crs=info.grid.crs.to_string(),
            pixel_size_m=info.pixel_size_m, width=info.grid.cols, height=info.grid.rows, dtype=info.dtype,
            footprint=mapping(footprint), west=west, south=south, east=east, north=north,
            checksum=upload.sha256, size_bytes=upload.size, created_at=dt.datetime.now(dt.timezone.utc),
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise
    finally:
        upload.discard()
