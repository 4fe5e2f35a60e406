"""The tile matrix set of every map tile (OGC *WebMercatorQuad*, EPSG:3857, zooms 0-30), tile indices
checked against it, and what a map client needs to know about a product's tiles (:class:`TileInfo`).
No I/O: :mod:`imagery.tiles` measures a product and renders its tiles.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import morecantile
import numpy as np

from imagery.contract import LAYERS

#: Highest zoom level served (WebMercatorQuad, 0.15 mm per pixel at the equator).
MAX_ZOOM = 30


def _web_mercator_to(maxzoom: int) -> morecantile.TileMatrixSet:
    """WebMercatorQuad with explicit tile matrices up to ``maxzoom`` (morecantile lists 0-24)."""
    base = morecantile.tms.get("WebMercatorQuad")
    if base.maxzoom >= maxzoom:
        return base
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "creating values from TMS scale" for z > 24
        matrices = [base.matrix(z).model_dump(exclude_none=True) for z in range(maxzoom + 1)]
    spec = base.model_dump(exclude_none=True)
    spec["tileMatrices"] = matrices
    return morecantile.TileMatrixSet.model_validate(spec)


#: The tile matrix set of every tile here: WebMercatorQuad (EPSG:3857), zooms 0-30.
TMS = _web_mercator_to(MAX_ZOOM)


class TileOutOfRange(ValueError):
    """The z/x/y is not a tile of WebMercatorQuad (negative, x or y >= 2**z, or z > 30), or its zoom is
    below the product's ``minzoom``."""


class TileTooCostly(TileOutOfRange):
    """Rendering the tile would read more than the pixel budget (a product without overviews, seen from far)."""


@dataclass(frozen=True)
class TileInfo:
    """What a map client needs to know about a product's tiles.

    Attributes
    ----------
    bounds : tuple of float
        ``(west, south, east, north)`` of the product grid, degrees (EPSG:4326).
    center : tuple
        ``(lon, lat, zoom)``: the middle of ``bounds`` and a zoom at which the
        AOI fills about two tiles.
    minzoom, maxzoom : int
        Zoom range to request. ``maxzoom`` is the first zoom whose Web Mercator
        pixel is finer than the product's pixel, plus one level of overzoom;
        at ``minzoom`` the AOI spans at least :data:`imagery.tiles.MIN_AOI_PIXELS` pixels.
    native_zoom : int
        ``maxzoom`` without the overzoom.
    pixel_size_m : float
        Pixel size of the product grid, metres (in its UTM CRS).
    mercator_pixel_m : float
        The same pixel in Web Mercator metres (larger away from the equator).
    crs : str
        The product grid's CRS.
    layers : tuple of str
        :data:`LAYERS`.
    bands : tuple of str
        Band roles drawn for ``before``/``after`` (red, green, blue; or one band).
    stretch : dict
        ``{band: (low, high)}``: the 2-98 % display stretch, in the scene's units.
    score_range : tuple of float
        Scores drawn transparent (at or below the first) to full colour (the second).
    """

    bounds: tuple[float, float, float, float]
    center: tuple[float, float, int]
    minzoom: int
    maxzoom: int
    native_zoom: int
    pixel_size_m: float
    mercator_pixel_m: float
    crs: str
    layers: tuple[str, ...] = LAYERS
    bands: tuple[str, ...] = ()
    stretch: dict = field(default_factory=dict)
    score_range: tuple[float, float] = (0.5, 1.0)

    def as_dict(self) -> dict:
        """JSON-ready copy."""
        d = dict(self.__dict__)
        d["score_range"] = list(self.score_range)
        d["bounds"], d["center"], d["layers"], d["bands"] = list(self.bounds), list(self.center), list(self.layers), list(self.bands)
        d["stretch"] = {k: list(v) for k, v in self.stretch.items()}
        return d


def check_tile(z: int, x: int, y: int) -> morecantile.Tile:
    for v in (z, x, y):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TileOutOfRange(f"tile indices must be integers, got z={z!r} x={x!r} y={y!r}")
    if not 0 <= z <= MAX_ZOOM:
        raise TileOutOfRange(f"zoom {z} outside 0-{MAX_ZOOM}")
    n = 1 << int(z)
    if not (0 <= x < n and 0 <= y < n):
        raise TileOutOfRange(f"tile {z}/{x}/{y} outside the tile matrix (0 <= x, y < {n})")
    return morecantile.Tile(int(x), int(y), int(z))


def check_tilesize(tilesize: int) -> int:
    if not isinstance(tilesize, (int, np.integer)) or not 64 <= tilesize <= 1024:
        raise ValueError(f"tilesize must be an integer in 64-1024, got {tilesize!r}")
    return int(tilesize)
