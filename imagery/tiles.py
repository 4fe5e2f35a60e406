"""Web Mercator XYZ map tiles of a product folder: pure rendering, no HTTP.

A :class:`TileRenderer` is created once per product folder (``before.tif``,
``after.tif``, ``change_score.tif``, ``change_mask.tif``, ``changes.geojson``)
and renders 256 px PNG tiles of the OGC *WebMercatorQuad* tile matrix set
(EPSG:3857, the XYZ scheme of web maps: tile ``(0, 0)`` is the north-west
corner, ``y`` grows southwards) for four layers:

``before`` / ``after``
    True colour (red, green, blue bands; grey when the scene has a single
    band), with one linear 2-98 % stretch computed once from the *before*
    scene and applied to both, so a swipe compares like with like; then a
    gamma. Transparent where the scene's internal mask says "no data".
``score``
    The change score (0-1) as a heat ramp (matplotlib *inferno*, upper part)
    whose opacity grows with the score: transparent for low scores and nodata
    (the ramp's range adapts to the AOI's scores, see :class:`TileRenderer`).
``changes``
    The annotated overlay: change mask filled by change type, not-analysed
    pixels hatched grey, and object outlines from ``changes.geojson``. No text:
    object numbers are for the client to draw (the viewer places them as
    vector markers that declutter at every zoom; QGIS labels ``changes.gpkg``),
    so tiles stay exact palette images and never collide with a client's labels.

Reading goes through rio-tiler's :class:`~rio_tiler.io.Reader` (which warps the
UTM product grid into the tile): bilinear resampling for the imagery and the
score, nearest for the change mask (classes must not be blended). Readers are
kept open in a small pool (one set per concurrent thread: GDAL datasets are
not thread-safe), so a renderer can serve concurrent tile requests from a
thread pool.

Speed (a cold 256 px tile costs ~8-15 ms of CPU, about half of titiler's
with the same rendering): readers stay open; ``changes.geojson`` is parsed
and indexed (shapely STRtree, Web Mercator) once; PNGs are written by :mod:`imagery.tileencode` with
the "Up" filter and zlib level 1 (2-3x faster than Pillow's encoder); and past
the data's resolution imagery and score are read at about twice the data's
resolution and enlarged (see :meth:`TileRenderer._read_size`), since warping
a full-size tile bilinearly would only interpolate.

Rendering is deterministic: the same tile gives the same bytes, so an ETag can
be a content hash. Colours and palettes are in :mod:`imagery.tilestyle`, the
tile matrix set and :class:`~imagery.tilegrid.TileInfo` in :mod:`imagery.tilegrid`.
"""

from __future__ import annotations

import json
import math
import queue
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import morecantile
import numpy as np
import rasterio
import shapely
from PIL import Image, ImageDraw
from pyproj import Transformer
from rasterio.warp import calculate_default_transform, transform_bounds
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from imagery.contract import LAYER_FILES, LAYERS
from imagery.tileencode import FORMATS, Pixels, empty_tile, encode
from imagery.tilegrid import MAX_ZOOM, TMS, TileInfo, TileOutOfRange, TileTooCostly, check_tile, check_tilesize
from imagery.tilestyle import (CHANGE_NAMES, CHANGES_PALETTE, GAMMA_LEVELS, HATCH_PERIOD, OUTLINE_INDEX, OUTLINE_WIDTH,
                               band_roles, change_luts, display_bands, gamma_lut, hatch, score_lut)

__all__ = [
    "LAYERS", "TileOutOfRange", "TileTooCostly", "TileInfo", "TileRenderer", "TMS", "MAX_ZOOM", "MAX_READ_PIXELS",
    "FORMATS", "empty_tile", "LAYER_DRAWINGS",
]


#: Zoom levels beyond the data's native resolution still advertised (overzoom).
OVERZOOM = 1

#: Overzoomed tiles of imagery and score are read at this many pixels per data pixel, then enlarged.
OVERZOOM_OVERSAMPLING = 2.0

#: The AOI spans at least this many pixels at ``minzoom``.
MIN_AOI_PIXELS = 8

#: Per-read budget: source pixels (at the overview GDAL reads) one layer of one tile may warp.
MAX_READ_PIXELS = 4_000_000

#: Outlines are drawn for objects up to this many pixels beyond the tile, so lines cross tile edges whole.
LINE_MARGIN_PX = 4


# ---------------------------------------------------------------------------------------------
# the renderer
# ---------------------------------------------------------------------------------------------

#: GDAL options while reading tiles (local files; no directory listing on open).
_GDAL_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}

_FILES = LAYER_FILES


class TileRenderer:
    """Renders PNG map tiles of one product folder; create once, share between threads.

    Parameters
    ----------
    product_dir : path-like
        A complete product folder (``before.tif``, ``after.tif``,
        ``change_score.tif``, ``change_mask.tif``, ``changes.geojson``).
    gamma : float
        Display gamma of ``before``/``after`` after the linear stretch
        (``out = in ** (1 / gamma)``; > 1 brightens the shadows).
    percentiles : tuple of float
        Low and high percentiles of the *before* scene's valid pixels (read
        from its coarsest useful overview, <= 1024 px; pixels 0 in every band
        are left out as fill) mapped to black and white, per band. The same
        values are used for *after*.
    score_range : tuple of float, optional
        The score layer is transparent at or below ``score_range[0]`` and
        reaches full colour and opacity at ``score_range[1]``. Default: from
        the AOI's own scores (read once from the overview), the 75th
        percentile (at least 0.5) to the 99.5th, so that the layer highlights
        the most changed quarter whatever the change method's score scale.
    max_read_pixels : int
        Budget of one layer read: source pixels warped, at the overview GDAL
        reads (:data:`MAX_READ_PIXELS`); a tile over it raises :class:`TileTooCostly`.

    Notes
    -----
    Opening costs a few milliseconds (four COG headers, one overview read for
    the stretch, parsing ``changes.geojson`` and indexing its polygons in an
    STRtree). Call :meth:`close` (or use it as a context manager) to release
    the file handles.
    """

    def __init__(self, product_dir, *, gamma: float = 1.2, percentiles: tuple[float, float] = (2.0, 98.0),
                 score_range: tuple[float, float] | None = None, max_read_pixels: int = MAX_READ_PIXELS):
        self.product_dir = Path(product_dir)
        self.max_read_pixels = max_read_pixels
        missing = [f for f in (*_FILES.values(), "changes.geojson") if not (self.product_dir / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.product_dir}: missing {', '.join(missing)}")
        self._pool: queue.SimpleQueue = queue.SimpleQueue()  # idle reader sets, one per concurrent render at most
        self._closed = False

        try:
            with rasterio.Env(**_GDAL_OPTIONS):
                self._setup(gamma, percentiles, score_range)
        except BaseException:
            self.close()
            raise

    def _setup(self, gamma, percentiles, score_range) -> None:
        readers = self._new_readers()
        self._pool.put(readers)
        before = readers["before"]
        ds = before.dataset
        self._crs = ds.crs
        self._pixel_size = float(abs(ds.transform.a))
        self._bounds_3857 = transform_bounds(ds.crs, "EPSG:3857", *ds.bounds, densify_pts=21)
        self._bounds_lonlat = tuple(float(v) for v in before.get_geographic_bounds("EPSG:4326"))
        merc, _, _ = calculate_default_transform(ds.crs, "EPSG:3857", ds.width, ds.height, *ds.bounds)
        self._merc_res = float(max(abs(merc.a), abs(merc.e)))
        self._overviews = {layer: (1, *r.dataset.overviews(1)) for layer, r in readers.items()}

        self._bands = {}
        for name in ("before", "after"):
            r = readers[name]
            self._bands[name] = display_bands(band_roles(r.dataset))
        idx, names = self._bands["before"]
        self._stretch_lo, self._stretch_hi = self._compute_stretch(before, idx, percentiles)
        self._stretch = {n: (float(lo), float(hi)) for n, lo, hi in zip(names, self._stretch_lo, self._stretch_hi)}
        self.gamma_lut = gamma_lut(gamma)
        self._score_range = tuple(score_range) if score_range else self._compute_score_range(readers["score"])
        self._score_index, self._score_palette = score_lut(*self._score_range)
        self._mask_lut_on, self._mask_lut_off = change_luts()
        self._load_objects()
        self._info = self._make_info()

    # -- set-up ------------------------------------------------------------------------------

    def _new_readers(self) -> dict:
        readers = {}
        try:
            for layer, fname in _FILES.items():
                readers[layer] = Reader(str(self.product_dir / fname), tms=TMS)
        except BaseException:
            self._close_set(readers)
            raise
        return readers

    @staticmethod
    def _close_set(readers: dict) -> None:
        with rasterio.Env(**_GDAL_OPTIONS):
            for r in readers.values():
                r.close()

    @contextmanager
    def _readers(self):
        """A set of open readers for this thread's exclusive use (GDAL handles are not thread-safe).

        Runs inside a rasterio ``Env``: datasets opened in it do not carry a thread-local GDAL
        environment of their own, so they can be closed from any thread.
        """
        if self._closed:
            raise RuntimeError("TileRenderer is closed")
        with rasterio.Env(**_GDAL_OPTIONS):
            try:
                readers = self._pool.get_nowait()
            except queue.Empty:
                readers = self._new_readers()
            try:
                yield readers
            finally:
                if self._closed:  # closed while this thread was reading: close its set now
                    self._close_set(readers)
                else:
                    self._pool.put(readers)
                    if self._closed:  # close() ran between the test and the put
                        self.close()

    @staticmethod
    def _compute_stretch(reader: Reader, indexes, percentiles) -> tuple[np.ndarray, np.ndarray]:
        img = reader.preview(indexes=indexes, max_size=1024)  # decimated read: uses the overviews
        data = img.array.data.astype(np.float64)
        valid = ~np.ma.getmaskarray(img.array).any(axis=0) & np.isfinite(data).all(axis=0)
        # Pixels that are 0 in every band are fill (e.g. a reprojected scene's corners) even when the mask
        # keeps them: they would pull the low percentile to 0.
        valid &= (data != 0).any(axis=0)
        lo = np.zeros(len(indexes))
        hi = np.ones(len(indexes))
        if valid.any():
            for i in range(len(indexes)):
                lo[i], hi[i] = np.percentile(data[i][valid], percentiles)
        span = np.maximum(hi - lo, np.maximum(np.abs(hi), 1.0) * 1e-6)
        return lo, lo + span

    @staticmethod
    def _compute_score_range(reader: Reader) -> tuple[float, float]:
        img = reader.preview(indexes=1, max_size=1024)
        s = img.array.data[0][~np.ma.getmaskarray(img.array)[0]]
        s = s[np.isfinite(s)]
        if not s.size:
            return 0.5, 1.0
        p75, p995 = np.percentile(s, [75, 99.5])
        low = float(min(max(p75, 0.5), 0.98))
        high = float(min(max(p995, low + 0.02), 1.0))
        return round(low, 4), round(max(high, low + 1e-3), 4)

    def _load_objects(self) -> None:
        """Parse changes.geojson once: Web Mercator outlines, their change types and an STRtree."""
        fc = json.loads((self.product_dir / "changes.geojson").read_text())
        geoms, colours = [], []
        for feat in fc.get("features", []):
            g = feat.get("geometry")
            if not g:
                continue
            geom = shapely.geometry.shape(g)
            if geom.is_empty:
                continue
            props = feat.get("properties") or {}
            change = CHANGE_NAMES.get(props.get("change"), 3)
            geoms.append(geom)
            colours.append(change)
        to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
        geoms = np.array(geoms, dtype=object)
        if len(geoms):
            geoms = shapely.transform(geoms, lambda c: np.column_stack(to_merc.transform(c[:, 0], c[:, 1])))
        self._outlines = shapely.boundary(geoms) if len(geoms) else geoms
        self._changes = colours  # change type (1-3) of each object
        self._tree = shapely.STRtree(geoms)
        self._tree.query(shapely.box(0, 0, 1, 1))  # build the tree now, not in a racing first query

    def _make_info(self) -> TileInfo:
        native = TMS.zoom_for_res(self._merc_res, max_z=MAX_ZOOM - OVERZOOM, zoom_level_strategy="upper")
        maxzoom = min(native + OVERZOOM, MAX_ZOOM)
        w, s, e, n = self._bounds_3857
        span = max(e - w, n - s, self._merc_res)
        minzoom = min(TMS.zoom_for_res(span / MIN_AOI_PIXELS, max_z=MAX_ZOOM, zoom_level_strategy="upper"), maxzoom)
        fit = min(max(TMS.zoom_for_res(span / 512, max_z=MAX_ZOOM, zoom_level_strategy="lower"), minzoom), maxzoom)
        west, south, east, north = self._bounds_lonlat
        return TileInfo(
            bounds=(round(west, 7), round(south, 7), round(east, 7), round(north, 7)),
            center=(round((west + east) / 2, 7), round((south + north) / 2, 7), int(fit)),
            minzoom=int(minzoom), maxzoom=int(maxzoom), native_zoom=int(native),
            pixel_size_m=self._pixel_size, mercator_pixel_m=self._merc_res, crs=str(self._crs),
            bands=self._bands["before"][1], stretch=self._stretch, score_range=self._score_range,
        )

    # -- public API ----------------------------------------------------------------------------

    def info(self) -> TileInfo:
        """Bounds (lon/lat), centre and zoom range of the product's tiles; see :class:`TileInfo`."""
        return self._info

    def tile_exists(self, z: int, x: int, y: int) -> bool:
        """Whether tile z/x/y overlaps the product grid (a tile on the outline counts).

        Raises
        ------
        TileOutOfRange
            z/x/y is not a WebMercatorQuad tile.
        """
        t = check_tile(z, x, y)
        left, bottom, right, top = TMS.xy_bounds(t)
        w, s, e, n = self._bounds_3857
        return left < e and right > w and bottom < n and top > s

    def render(self, layer: str, z: int, x: int, y: int, *, tilesize: int = 256, fmt: str = "png") -> bytes:
        """One WebMercatorQuad (EPSG:3857) tile as a PNG or WebP with transparency.

        Parameters
        ----------
        layer : {"before", "after", "score", "changes"}
        z, x, y : int
            XYZ tile index (``y`` counted from the north).
        tilesize : int
            Width and height of the image, pixels (256; 512 for "retina" tiles).
        fmt : {"png", "webp"}
            PNG (palette for the overlays when their colours allow, RGB when
            opaque) or WebP (lossy for imagery, lossless for the overlays).

        Returns
        -------
        bytes
            The image. A tile outside the product's bounds (or with nothing to
            show) is a fully transparent ``tilesize`` x ``tilesize`` image rather
            than an error, so that web maps simply show nothing there.

        Raises
        ------
        TileOutOfRange
            z/x/y is not a tile of the matrix (negative, ``x`` or ``y`` >= 2**z,
            or z > 30), z is below ``info().minzoom``, or the tile would exceed
            the read budget (:class:`TileTooCostly`); an HTTP layer should answer 404.
        ValueError
            Unknown layer, format or tile size.
        """
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
        if fmt not in FORMATS:
            raise ValueError(f"unknown tile format {fmt!r}; choose one of {', '.join(FORMATS)}")
        tile = check_tile(z, x, y)
        tilesize = check_tilesize(tilesize)
        if tile.z < self._info.minzoom:
            raise TileOutOfRange(f"zoom {tile.z} is below this product's minzoom {self._info.minzoom} (see its TileJSON)")
        drawing = LAYER_DRAWINGS[layer]
        pixels = None
        if not drawing.within_raster or self.tile_exists(tile.z, tile.x, tile.y):
            pixels = drawing.draw(self, layer, tile, tilesize)
        if pixels is None:
            return empty_tile(tilesize, fmt)
        return encode(pixels, fmt, lossless=drawing.lossless)

    def close(self) -> None:
        """Close the open files (a reader set in use by a render is closed when that render ends).

        Rendering after this raises ``RuntimeError``.
        """
        self._closed = True
        while True:
            try:
                readers = self._pool.get_nowait()
            except queue.Empty:
                break
            self._close_set(readers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- layers --------------------------------------------------------------------------------

    def _read(self, layer: str, tile: morecantile.Tile, size: int, *, buffer: int = 0, **kw) -> np.ma.MaskedArray | None:
        """The tile at ``size`` px plus ``buffer`` px on each side, (bands, n, n) masked; None off the raster.

        Only the part of the tile (with its buffer) the product covers is read, snapped to the tile's
        pixel grid and pasted into a masked canvas: rio-tiler warps a tile's whole extent at the data's
        resolution, which for a tile far larger than the product is billions of pixels. One
        ``Reader.part`` of exactly those bounds: no second warp set-up for the buffer, no second test
        that the tile meets the data. Raises :class:`TileTooCostly` when the read exceeds
        :attr:`max_read_pixels`.
        """
        left, bottom, right, top = TMS.xy_bounds(tile)
        px = (right - left) / size
        n = size + 2 * buffer
        x0, y0 = left - buffer * px, top + buffer * px  # the canvas's upper-left corner
        w, s, e, nb = self._bounds_3857
        c0, c1 = max(0, math.floor((w - x0) / px)), min(n, math.ceil((e - x0) / px))
        r0, r1 = max(0, math.floor((y0 - nb) / px)), min(n, math.ceil((y0 - s) / px))
        if c0 >= c1 or r0 >= r1:
            return None
        self._check_budget(layer, (c1 - c0) * (r1 - r0), px)
        bounds = (x0 + c0 * px, y0 - r1 * px, x0 + c1 * px, y0 - r0 * px)
        with self._readers() as readers:
            try:
                part = readers[layer].part(bounds, dst_crs=TMS.rasterio_crs, bounds_crs=TMS.rasterio_crs,
                                           width=c1 - c0, height=r1 - r0, **kw).array
            except TileOutsideBounds:
                return None
        if (c0, r0, c1, r1) == (0, 0, n, n):  # the product covers the canvas
            return part
        canvas = np.ma.MaskedArray(np.zeros((part.shape[0], n, n), part.dtype), mask=True)
        canvas[:, r0:r1, c0:c1] = part
        return canvas

    def _check_budget(self, layer: str, out_pixels: int, px: float) -> None:
        """Refuse a read whose warp would touch more than :attr:`max_read_pixels` source pixels.

        GDAL reads a decimated warp from the largest overview not coarser than the output, so the
        warp covers ``out_pixels * (decimation / overview factor) ** 2`` pixels.
        """
        ratio = px / self._merc_res  # data pixels per output pixel, per side
        factor = max(f for f in self._overviews[layer] if f <= max(ratio, 1))
        cost = out_pixels * max(1.0, ratio / factor) ** 2
        if cost > self.max_read_pixels:
            raise TileTooCostly(f"this tile would read {cost:,.0f} pixels of {layer} (budget {self.max_read_pixels:,}); "
                                "zoom in")

    def _read_size(self, z: int, tilesize: int) -> int:
        """Pixels across to read a tile with: ``tilesize``, or fewer when the tile is much finer than the data.

        Past the data's resolution (overzoom), warping a full-size tile bilinearly costs ~10 ms and adds
        nothing: the tile is read at :data:`OVERZOOM_OVERSAMPLING` x the data's resolution (plus a 1 px
        buffer) and enlarged with Pillow's bilinear filter, which looks the same and is several times faster.
        """
        matrix = TMS.matrix(z)
        tile_res = matrix.cellSize * matrix.tileWidth / tilesize
        n = math.ceil(tilesize * tile_res / self._merc_res * OVERZOOM_OVERSAMPLING)
        return tilesize if n > 0.8 * tilesize else max(n, 4)

    def _read_valid(self, layer: str, tile, tilesize: int, indexes, *, fill: float = 0.0):
        """Bilinear read of a continuous layer: ``(data (bands, n, n) float32, valid (n, n) bool, n)``.

        ``n`` is ``tilesize``, or the reduced size of :meth:`_read_size` with a 1 px buffer on each side
        (arrays ``n + 2`` across). Invalid pixels (mask, nodata, NaN) hold ``fill``. None off the raster.
        """
        n = self._read_size(tile.z, tilesize)
        # bilinear both when decimating (overview reads) and when warping
        arr = self._read(layer, tile, n, buffer=1 if n < tilesize else 0, indexes=indexes,
                         resampling_method="bilinear", reproject_method="bilinear")
        if arr is None:
            return None
        data = arr.data
        valid = ~np.ma.getmaskarray(arr).any(axis=0)
        finite = np.isfinite(data)
        if not finite.all():
            valid &= finite.all(axis=0)
        if not valid.all():
            data = np.where(valid, data, np.float32(fill))
        return data, valid, n

    @staticmethod
    def _enlarge(arr: np.ndarray, n: int, tilesize: int, resample) -> np.ndarray:
        """Resize an (n + 2)-px array with a 1 px buffer to ``tilesize``: the buffer feeds the filter at the
        edges, so enlarged tiles join without seams."""
        im = Image.fromarray(arr)
        return np.asarray(im.resize((tilesize, tilesize), resample, box=(1, 1, n + 1, n + 1)))

    def _render_image(self, layer: str, tile, tilesize: int) -> Pixels | None:
        indexes, _ = self._bands[layer]
        nb = len(indexes)
        got = self._read_valid(layer, tile, tilesize, indexes, fill=float(self._stretch_lo[0]))
        if got is None or not got[1].any():
            return None
        data, valid, n = got
        lo = self._stretch_lo[:nb].reshape(-1, 1, 1).astype(np.float32)
        scale = ((GAMMA_LEVELS - 1) / (self._stretch_hi[:nb] - self._stretch_lo[:nb])).reshape(-1, 1, 1).astype(np.float32)
        q = (data - lo) * scale
        np.clip(q, 0, GAMMA_LEVELS - 1, out=q)
        q = q.astype(np.uint16)
        rgb = np.empty((*q.shape[1:], 3), np.uint8)
        for c in range(3):
            rgb[..., c] = self.gamma_lut[q[c if nb == 3 else 0]]
        if n < tilesize:
            rgb = self._enlarge(rgb, n, tilesize, Image.BILINEAR)          # imagery: bilinear
            valid = self._enlarge(valid, n, tilesize, Image.NEAREST)       # mask: nearest
        rgba = np.empty((tilesize, tilesize, 4), np.uint8)
        rgba[..., :3] = rgb
        rgba[..., 3] = valid
        rgba[..., 3] *= 255
        if not valid.all():
            rgba[~valid] = 0
        return Pixels(rgba)

    def _render_score(self, layer: str, tile, tilesize: int) -> Pixels | None:
        got = self._read_valid("score", tile, tilesize, 1, fill=0.0)
        if got is None or not got[1].any():
            return None
        data, valid, n = got
        score = data[0]
        if n < tilesize:
            score = self._enlarge(score, n, tilesize, Image.BILINEAR)
            valid = self._enlarge(valid, n, tilesize, Image.NEAREST)
        q = np.clip(score * 255 + 0.5, 0, 255).astype(np.uint16)
        q[~valid] = 256
        index = self._score_index[q]
        if not self._score_palette[index, 3].any():
            return None
        return Pixels(index, self._score_palette)

    def _render_changes(self, layer: str, tile, tilesize: int) -> Pixels | None:
        """Palette pixels: the change mask, then the objects' outlines."""
        index = None
        if self.tile_exists(tile.z, tile.x, tile.y):
            # nodata=254 (never written) instead of the file's 255, so that "not analysed" (255) stays a value
            # and only pixels outside the raster are masked. Nearest: classes must not be blended.
            arr = self._read("changes", tile, tilesize, indexes=1, nodata=254,
                             resampling_method="nearest", reproject_method="nearest")
            if arr is not None:
                v = arr.data[0].astype(np.uint8)
                v[np.ma.getmaskarray(arr)[0]] = 0
                if v.any():
                    on_lines = hatch(tilesize, tile.x % HATCH_PERIOD, tile.y % HATCH_PERIOD)
                    index = np.where(on_lines, self._mask_lut_on[v], self._mask_lut_off[v])
        index = self._draw_outlines(index, tile, tilesize)
        if index is None or not CHANGES_PALETTE[index, 3].any():  # nothing here, or only outlines just outside
            return None
        return Pixels(index, CHANGES_PALETTE)

    def _draw_outlines(self, index: np.ndarray | None, tile, tilesize: int) -> np.ndarray | None:
        """The mask's palette indexes (or None) with the outlines of the objects near the tile drawn in;
        ``index`` unchanged when no object is near."""
        if not len(self._changes):
            return index
        matrix = TMS.matrix(tile.z)
        res = matrix.cellSize * matrix.tileWidth / tilesize  # Web Mercator metres per tile pixel
        left, bottom, right, top = TMS.xy_bounds(tile)
        m = LINE_MARGIN_PX * res
        hits = self._tree.query(shapely.box(left - m, bottom - m, right + m, top + m))
        if not len(hits):
            return index
        hits = np.sort(hits)  # fixed drawing order: deterministic overlaps
        # Global pixel coordinates (from the matrix origin), rounded, then shifted to the tile: the same
        # vertex lands on the same pixel in every tile, so outlines join across tile borders.
        x0, y0 = matrix.pointOfOrigin
        ox, oy = tile.x * tilesize, tile.y * tilesize
        # Outlines in palette indexes: Pillow draws lines without antialiasing, so every pixel is one entry.
        im = Image.fromarray(index, "L") if index is not None else Image.new("L", (tilesize, tilesize))
        draw = ImageDraw.Draw(im)
        clipped = shapely.clip_by_rect(self._outlines[hits], left - m, bottom - m, right + m, top + m)
        for i, lines in zip(hits, clipped):
            if lines is None or lines.is_empty:
                continue
            for part in shapely.get_parts(lines):
                c = shapely.get_coordinates(part)
                if len(c) < 2:
                    continue
                px = np.rint((c[:, 0] - x0) / res) - ox
                py = np.rint((y0 - c[:, 1]) / res) - oy
                draw.line(list(zip(px.tolist(), py.tolist())), fill=OUTLINE_INDEX[self._changes[i]],
                          width=OUTLINE_WIDTH, joint="curve")
        return np.asarray(im)


@dataclass(frozen=True)
class LayerDrawing:
    """How a map layer is drawn: ``draw(renderer, layer, tile, tilesize)`` gives its pixels or None."""

    draw: Callable[..., Pixels | None]
    lossless: bool  # overlays keep exact colours (palette PNG, lossless WebP); imagery may be lossy
    within_raster: bool  # drawn only where the layer's raster has data (the changes layer also outlines beyond)


#: Every map layer of :data:`imagery.contract.LAYERS` and how it is drawn. Adding a layer is its file and title
#: in the contract, one entry here and its function; the routes, TileJSON and WMTS read the contract.
LAYER_DRAWINGS: dict[str, LayerDrawing] = {
    "before": LayerDrawing(TileRenderer._render_image, lossless=False, within_raster=True),
    "after": LayerDrawing(TileRenderer._render_image, lossless=False, within_raster=True),
    "score": LayerDrawing(TileRenderer._render_score, lossless=True, within_raster=True),
    "changes": LayerDrawing(TileRenderer._render_changes, lossless=True, within_raster=False),
}
if tuple(LAYER_DRAWINGS) != LAYERS:
    raise RuntimeError("every layer of imagery.contract.LAYERS needs a drawing here, in the contract's order")
