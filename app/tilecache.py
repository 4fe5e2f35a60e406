"""Rendered tiles of finished analyses: a bounded in-memory LRU, a disk cache, and open renderers.

Products never change once an analysis succeeded, so a tile rendered once is
valid until the analysis is deleted: bytes are cached in memory (per process,
as a :class:`CachedTile` whose response headers are computed with them) and on
disk under ``<data_dir>/tilecache/<analysis_id>/`` (shared by every process and
kept across restarts). The analyses whose tiles a process serves are remembered
too, until one is deleted (``analyses.stamp`` tells every process at once).
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
from app.stamps import Stamp
from imagery.errors import first_line

#: Bump when rendering changes, so ETags and disk caches of older renderings are not reused.
RENDER_VERSION = "4"


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


#: Media type of each tile format.
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class CachedTile:
    """A tile's bytes with the ASGI headers of its 200 and 304 answers, each for a public (key in the
    ``Authorization`` header) and a private (key in the URL) response."""

    body: bytes
    etag: str
    ok: tuple[list, list]
    not_modified: tuple[list, list]

    def __len__(self) -> int:
        return len(self.body)

    def answer(self, *, private: bool, not_modified: bool) -> tuple[int, list, bytes]:
        """(status, headers, body)."""
        if not_modified:
            return 304, self.not_modified[private], b""
        return 200, self.ok[private], self.body


class LRU:
    """A thread-safe LRU bounded by item count and total size (``len`` of the values)."""

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
        size = len(value)
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._bytes += size
            while self._data and (len(self._data) > self.max_items or self._bytes > self.max_bytes):
                _, old = self._data.popitem(last=False)
                self._bytes -= len(old)

    def drop(self, predicate) -> None:
        with self._lock:
            for key in [k for k in self._data if predicate(k)]:
                self._bytes -= len(self._data.pop(key))


#: Niceness of the tile threads (0 normal, 19 lowest).
RENDER_NICENESS = 10


def yield_cpu() -> None:
    """Lower this thread's scheduling priority (Linux niceness is per thread): renders take the CPU the event
    loop, answering cached tiles and the API, leaves."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RENDER_NICENESS)
    except (OSError, AttributeError):  # not Linux
        pass


class ProductCache:
    """Everything the tile routes keep between requests."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.disk_root = settings.data_dir / "tilecache"
        self.tiles = LRU(settings.tile_cache_items, 256 * 1024 * 1024)
        self._cache_control = {private: f"{'private' if private else 'public'}, max-age={settings.tile_max_age_s}, "
                                        "immutable".encode() for private in (False, True)}
        self._deleted = Stamp(settings.data_dir / "analyses.stamp")
        self._deleted_seen = self._deleted.read()
        self._refs: dict[str, ProductRef] = {}
        self._renderers: OrderedDict = OrderedDict()
        self._broken: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=settings.tile_threads, thread_name_prefix="basewatch-tiles",
                                       initializer=yield_cpu)
        self._pending = threading.BoundedSemaphore(settings.tile_queue)

    # analysis lookups -------------------------------------------------------------------

    def ref(self, analysis_id: str) -> ProductRef | None:
        """The remembered analysis, or None (load it from the database); one ``stat`` of ``analyses.stamp``
        so that an analysis deleted by any process is forgotten here too."""
        seen = self._deleted.read()
        if seen != self._deleted_seen:
            self._refs.clear()
            self._deleted_seen = seen
        return self._refs.get(analysis_id)

    def remember(self, ref: ProductRef) -> None:
        if len(self._refs) > 10_000:
            self._refs.clear()
        self._refs[ref.analysis_id] = ref

    def forget(self, analysis_id: str) -> None:
        """Drop a deleted analysis here and, through ``analyses.stamp``, in every process."""
        self._deleted.touch()
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

    def disk_path(self, ref: ProductRef, layer: str, z: int, x: int, y: int, fmt: str) -> Path:
        return self.disk_root / ref.analysis_id / RENDER_VERSION / layer / str(z) / str(x) / f"{y}.{fmt}"

    def etag(self, ref: ProductRef, layer: str, z: int, x: int, y: int, fmt: str) -> str:
        return ref.etag(layer, z, x, y, fmt)

    def headers(self, etag: str, *, private: bool, body: bytes | None = None, fmt: str = "png") -> list:
        """ASGI headers of a tile answer: a 200 with ``body``, else a 304."""
        headers = [(b"etag", etag.encode()), (b"cache-control", self._cache_control[private]), (b"vary", b"Accept")]
        if body is None:
            return headers
        return [(b"content-type", MEDIA_TYPES[fmt].encode()), (b"content-length", str(len(body)).encode()), *headers]

    def _entry(self, ref: ProductRef, key: tuple, body: bytes) -> CachedTile:
        """Bytes as a CachedTile, kept in memory."""
        fmt = key[-1]
        etag = self.etag(ref, *key[1:])
        entry = CachedTile(body, etag, tuple(self.headers(etag, private=p, body=body, fmt=fmt) for p in (False, True)),
                           tuple(self.headers(etag, private=p) for p in (False, True)))
        self.tiles.put(key, entry)
        return entry

    def broken(self, ref: ProductRef, exc: BaseException) -> ProductUnavailable:
        """Remember (for a minute) and log once that a product cannot be read; the error to raise."""
        message = f"the products of analysis {ref.analysis_id} cannot be read (corrupt or missing files); see the server log"
        self._broken[ref.analysis_id] = (message, time.monotonic())
        log_once(f"broken-product-{ref.analysis_id}", "analysis %s: product files unreadable: %s",
                 ref.analysis_id, first_line(exc))
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

    def cached(self, ref: ProductRef, layer: str, z: int, x: int, y: int, fmt: str) -> CachedTile | None:
        """A tile from memory, without touching the disk (safe on the event loop)."""
        return self.tiles.get((ref.analysis_id, layer, z, x, y, fmt))

    def tile(self, ref: ProductRef, layer: str, z: int, x: int, y: int, fmt: str) -> tuple[CachedTile, str]:
        """A tile (``fmt``: png or webp) and where it came from (``memory``, ``disk`` or ``rendered``)."""
        key = (ref.analysis_id, layer, z, x, y, fmt)
        entry = self.tiles.get(key)
        if entry is not None:
            return entry, "memory"
        path = self.disk_path(ref, layer, z, x, y, fmt)
        try:
            return self._entry(ref, key, path.read_bytes()), "disk"
        except OSError:
            pass
        try:
            data = self.renderer(ref).render(layer, z, x, y, fmt=fmt)
        except RasterioError as exc:  # a block that cannot be read: the file is damaged
            raise self.broken(ref, exc) from None
        entry = self._entry(ref, key, data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # a full or read-only disk costs only the disk cache
        return entry, "rendered"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for renderer in self._renderers.values():
                if hasattr(renderer, "close"):
                    renderer.close()
            self._renderers.clear()
