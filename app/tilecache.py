"""Rendered tiles of finished analyses: a bounded in-memory LRU, a disk cache, and open renderers.

Products never change once an analysis succeeded, so a tile rendered once is
valid until the analysis is deleted: bytes are cached in memory (per process)
and on disk under ``<data_dir>/tilecache/<analysis_id>/`` (shared by every
process and kept across restarts).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rasterio.errors import RasterioError

from app.errors import Overloaded, ProductUnavailable, log_once
from app.settings import Settings

#: Bump when rendering changes, so ETags and disk caches of older renderings are not reused.
RENDER_VERSION = "3"


@dataclass(frozen=True)
class ProductRef:
    """A succeeded analysis the caller may see."""

    analysis_id: str
    team: str
    product_dir: Path
    finished: str

    def etag(self, *parts) -> str:
        key = "|".join([RENDER_VERSION, self.analysis_id, self.finished, *map(str, parts)])
        return '"' + hashlib.sha1(key.encode()).hexdigest()[:20] + '"'


class LRU:
    """A thread-safe LRU of bytes bounded by item count and total size."""

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        size = len(value) if isinstance(value, (bytes, bytearray)) else 1
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._bytes += size
            while self._data and (len(self._data) > self.max_items or self._bytes > self.max_bytes):
                _, old = self._data.popitem(last=False)
                self._bytes -= len(old) if isinstance(old, (bytes, bytearray)) else 1

    def drop(self, predicate) -> None:
        with self._lock:
            for key in [k for k in self._data if predicate(k)]:
                old = self._data.pop(key)
                self._bytes -= len(old) if isinstance(old, (bytes, bytearray)) else 1


class ProductCache:
    """Everything the tile routes keep between requests."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.disk_root = settings.data_dir / "tilecache"
        self.tiles = LRU(settings.tile_cache_items, 256 * 1024 * 1024)
        self._refs: dict[str, tuple[ProductRef, float]] = {}
        self._renderers: OrderedDict = OrderedDict()
        self._broken: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=settings.tile_threads, thread_name_prefix="basewatch-tiles")
        self._pending = threading.BoundedSemaphore(settings.tile_queue)

    # analysis lookups -------------------------------------------------------------------

    def ref(self, analysis_id: str, ttl_s: float = 60.0) -> ProductRef | None:
        hit = self._refs.get(analysis_id)
        if hit and time.monotonic() - hit[1] < ttl_s:
            return hit[0]
        return None

    def remember(self, ref: ProductRef) -> None:
        if len(self._refs) > 10_000:
            self._refs.clear()
        self._refs[ref.analysis_id] = (ref, time.monotonic())

    def forget(self, analysis_id: str) -> None:
        self._refs.pop(analysis_id, None)
        self._broken.pop(analysis_id, None)
        with self._lock:
            renderer = self._renderers.pop(analysis_id, None)
        if renderer is not None and hasattr(renderer, "close"):
            renderer.close()
        self.tiles.drop(lambda key: key[0] == analysis_id)
        shutil.rmtree(self.disk_root / analysis_id, ignore_errors=True)

    # renderers --------------------------------------------------------------------------

    def renderer(self, ref: ProductRef):
        """The open renderer of a product; ProductUnavailable (logged once) when its files cannot be read."""
        from imagery.tiles import TileRenderer

        with self._lock:
            renderer = self._renderers.get(ref.analysis_id)
            if renderer is not None:
                self._renderers.move_to_end(ref.analysis_id)
                return renderer
        broken = self._broken.get(ref.analysis_id)
        if broken and time.monotonic() - broken[1] < 60:
            raise ProductUnavailable(broken[0])
        try:
            renderer = TileRenderer(ref.product_dir, max_read_pixels=self.settings.tile_max_read_pixels)
        except (RasterioError, OSError, ValueError) as exc:
            raise self.broken(ref, exc) from None
        with self._lock:
            self._renderers[ref.analysis_id] = renderer
            while len(self._renderers) > 16:
                _, old = self._renderers.popitem(last=False)
                if hasattr(old, "close"):
                    old.close()
        return renderer

    # tiles --------------------------------------------------------------------------------

    def disk_path(self, ref: ProductRef, layer: str, z: int, x: int, y: int) -> Path:
        return self.disk_root / ref.analysis_id / RENDER_VERSION / layer / str(z) / str(x) / f"{y}.png"

    def broken(self, ref: ProductRef, exc: BaseException) -> ProductUnavailable:
        """Remember (for a minute) and log once that a product cannot be read; the error to raise."""
        message = f"the products of analysis {ref.analysis_id} cannot be read (corrupt or missing files); see the server log"
        self._broken[ref.analysis_id] = (message, time.monotonic())
        log_once(f"broken-product-{ref.analysis_id}", "analysis %s: product files unreadable: %s",
                 ref.analysis_id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return ProductUnavailable(message)

    def submit(self, fn, *args) -> Future:
        """Queue work on the tile threads; Overloaded (503) when ``tile_queue`` tiles already wait."""
        if not self._pending.acquire(blocking=False):
            raise Overloaded("too many tiles are being rendered; retry shortly", retry_after=1)
        try:
            future = self.pool.submit(fn, *args)
        except BaseException:
            self._pending.release()
            raise
        future.add_done_callback(lambda _: self._pending.release())
        return future

    def cached(self, ref: ProductRef, layer: str, z: int, x: int, y: int) -> bytes | None:
        """A tile from memory, without touching the disk (safe on the event loop)."""
        return self.tiles.get((ref.analysis_id, layer, z, x, y))

    def tile(self, ref: ProductRef, layer: str, z: int, x: int, y: int) -> tuple[bytes, str]:
        """PNG bytes of a tile and where they came from (``memory``, ``disk`` or ``rendered``)."""
        key = (ref.analysis_id, layer, z, x, y)
        data = self.tiles.get(key)
        if data is not None:
            return data, "memory"
        path = self.disk_path(ref, layer, z, x, y)
        try:
            data = path.read_bytes()
            self.tiles.put(key, data)
            return data, "disk"
        except OSError:
            pass
        try:
            data = self.renderer(ref).render(layer, z, x, y)
        except RasterioError as exc:  # a block that cannot be read: the file is damaged
            raise self.broken(ref, exc) from None
        self.tiles.put(key, data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a full or read-only disk costs only the disk cache
        return data, "rendered"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for renderer in self._renderers.values():
                if hasattr(renderer, "close"):
                    renderer.close()
            self._renderers.clear()
