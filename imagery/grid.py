"""The analysis grid: an immutable value (CRS, affine transform, shape).

Every raster in the pipeline lives on a :class:`Grid`. Operations return new
grids; nothing here reads pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from imagery.errors import GridTooLargeError, NoOverlapError

LONLAT = CRS.from_epsg(4326)


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid.

    Attributes
    ----------
    crs : rasterio.crs.CRS
        Coordinate reference system of the grid.
    transform : affine.Affine
        Pixel (col, row) to CRS (x, y) transform of the upper-left corner.
    shape : tuple of int
        ``(rows, cols)``.
    """

    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units, both positive."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        left, top = self.transform.c, self.transform.f
        right = left + self.transform.a * self.cols
        bottom = top + self.transform.e * self.rows
        return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))

    @property
    def is_projected(self) -> bool:
        return bool(self.crs.is_projected)

    def pixel_size_m(self) -> tuple[float, float]:
        """Ground size ``(x, y)`` of a pixel in metres at the grid centre."""
        return ground_pixel_size_m(self)

    def footprint(self) -> BaseGeometry:
        """Grid outline as a polygon in the grid CRS."""
        return box(*self.bounds)

    def footprint_lonlat(self, densify: int = 21) -> BaseGeometry:
        """Grid outline in EPSG:4326 (lon, lat), edges densified for curved projections."""
        geom = densified_box(self.bounds, densify)
        return shape(transform_geom(self.crs, LONLAT, mapping(geom)))

    def translated(self, dx: float, dy: float) -> Grid:
        """The same grid moved by ``(dx, dy)`` CRS units."""
        t = self.transform
        return Grid(self.crs, Affine(t.a, t.b, t.c + dx, t.d, t.e, t.f + dy), self.shape)

    def scaled(self, factor: float) -> Grid:
        """A grid over the same bounds with pixels ``factor`` times larger."""
        rows = max(1, math.ceil(self.rows / factor))
        cols = max(1, math.ceil(self.cols / factor))
        t = self.transform
        return Grid(self.crs, Affine(t.a * factor, t.b, t.c, t.d, t.e * factor, t.f), (rows, cols))

    @classmethod
    def from_bounds(cls, bounds: tuple[float, float, float, float], crs: CRS, res: float,
                    origin: tuple[float, float] = (0.0, 0.0)) -> Grid:
        """A grid of square ``res`` pixels covering ``bounds``, its edges snapped outwards onto the lattice
        ``origin + k * res`` (so a grid can share the pixel lattice of a scene and read it without resampling).
        Edges within a thousandth of a pixel of the lattice (round-trip reprojection error) snap to it."""
        ox, oy = origin
        left, bottom, right, top = bounds
        eps = 1e-3
        left = ox + math.floor((left - ox) / res + eps) * res
        top = oy + math.ceil((top - oy) / res - eps) * res
        right = ox + math.ceil((right - ox) / res - eps) * res
        bottom = oy + math.floor((bottom - oy) / res + eps) * res
        cols = max(1, round((right - left) / res))
        rows = max(1, round((top - bottom) / res))
        return cls(CRS.from_user_input(crs), Affine(res, 0.0, left, 0.0, -res, top), (rows, cols))

    def to_dict(self) -> dict:
        """JSON-friendly description (CRS as WKT-free string when an EPSG code exists)."""
        epsg = self.crs.to_epsg()
        return {
            "crs": f"EPSG:{epsg}" if epsg else self.crs.to_wkt(),
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
            "pixel_size_m": list(self.pixel_size_m()),
            "bounds": list(self.bounds),
        }


def densified_box(bounds: tuple[float, float, float, float], points_per_edge: int = 21) -> BaseGeometry:
    """A rectangle with extra vertices along each edge, so it bends correctly when reprojected."""
    from shapely.geometry import Polygon

    left, bottom, right, top = bounds
    n = max(2, points_per_edge)
    xs = [left + (right - left) * i / (n - 1) for i in range(n)]
    ys = [bottom + (top - bottom) * i / (n - 1) for i in range(n)]
    ring = (
        [(x, bottom) for x in xs]
        + [(right, y) for y in ys[1:]]
        + [(x, top) for x in reversed(xs[:-1])]
        + [(left, y) for y in reversed(ys[1:-1])]
    )
    return Polygon(ring)


def ground_pixel_size_m(grid: Grid) -> tuple[float, float]:
    """Ground size ``(x, y)`` of one pixel in metres, measured at the grid centre.

    The geodesic length of one pixel step east and north at the grid centre,
    so map scale factors count: 0.6 m Web Mercator units at 48 N are 0.4 m on
    the ground, and 0.0001 deg at 48 N is about (7.4, 11.1) m.
    """
    from pyproj import Geod

    xres, yres = grid.res
    left, bottom, right, top = grid.bounds
    cx, cy = (left + right) / 2, (bottom + top) / 2
    if grid.crs.is_geographic:
        to_lonlat = lambda x, y: (x, y)  # noqa: E731
    else:
        transformer = Transformer.from_crs(ProjCRS.from_user_input(grid.crs.to_wkt()), "EPSG:4326", always_xy=True)
        to_lonlat = transformer.transform
    lon0, lat0 = to_lonlat(cx, cy)
    lon1, lat1 = to_lonlat(cx + xres, cy)
    lon2, lat2 = to_lonlat(cx, cy + yres)
    geod = Geod(ellps="WGS84")
    _, _, dx = geod.inv(lon0, lat0, lon1, lat1)
    _, _, dy = geod.inv(lon0, lat0, lon2, lat2)
    return abs(dx), abs(dy)


def nominal_pixel_size_m(grid: Grid) -> float:
    """One number for a grid's ground resolution: the side of a square pixel of equal area, in metres."""
    dx, dy = ground_pixel_size_m(grid)
    return math.sqrt(dx * dy)


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS containing ``(lon, lat)`` (EPSG:326xx north, 327xx south).

    The Norway and Svalbard exceptions are ignored: any UTM zone next to the
    point is a valid, slightly less conformal, analysis CRS.
    """
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"longitude/latitude out of range: {lon}, {lat}")
    zone = min(60, int((lon + 180.0) // 6.0) + 1)
    epsg = (32600 if lat >= 0 else 32700) + zone
    return CRS.from_epsg(epsg)


def transform_bounds_densified(
    bounds: tuple[float, float, float, float], src: CRS, dst: CRS, densify: int = 21
) -> tuple[float, float, float, float]:
    """Bounds of a rectangle after reprojection, edges densified."""
    transformer = Transformer.from_crs(ProjCRS.from_user_input(src.to_wkt()), ProjCRS.from_user_input(dst.to_wkt()), always_xy=True)
    return transformer.transform_bounds(*bounds, densify_pts=densify)


def analysis_grid(
    aoi_lonlat: BaseGeometry,
    *,
    pixel_size_m: float,
    margin_m: float,
    max_pixels: int,
    crs: CRS | None = None,
    align_to: Grid | None = None,
) -> Grid:
    """Plan the analysis grid for an AOI.

    Parameters
    ----------
    aoi_lonlat : shapely geometry
        Area of interest in EPSG:4326 (lon, lat).
    pixel_size_m : float
        Square pixel size in metres (the coarser of the two scenes).
    margin_m : float
        Margin added around the AOI bounds, in metres.
    max_pixels : int
        Refuse grids with more pixels than this.
    crs : CRS, optional
        Projected CRS in metres; default the UTM zone of the AOI centroid.
    align_to : Grid, optional
        A scene grid to share the pixel lattice with, used when it is in the
        same CRS with square pixels of ``pixel_size_m`` (that scene is then
        read without resampling).

    Returns
    -------
    Grid
        North-up grid in ``crs`` whose pixel edges are multiples of
        ``pixel_size_m``.
    """
    if aoi_lonlat.is_empty:
        raise NoOverlapError("the area to analyse is empty")
    if crs is None:
        centre = aoi_lonlat.centroid
        crs = utm_crs_for(centre.x, centre.y)
    # the geometry's own outline in the grid CRS: the bounds of its lon/lat bounding box would add the corners
    # a lon/lat box has beyond a UTM-aligned scene (a border of pixels no scene covers)
    bounds = shape(transform_geom(LONLAT, crs, mapping(aoi_lonlat))).bounds
    padded = (bounds[0] - margin_m, bounds[1] - margin_m, bounds[2] + margin_m, bounds[3] + margin_m)
    origin = (0.0, 0.0)
    if (align_to is not None and CRS.from_user_input(align_to.crs) == CRS.from_user_input(crs)
            and math.isclose(align_to.res[0], pixel_size_m, rel_tol=1e-9) and math.isclose(align_to.res[1], pixel_size_m, rel_tol=1e-9)):
        origin = (align_to.transform.c, align_to.transform.f)
    grid = Grid.from_bounds(padded, crs, pixel_size_m, origin)
    if grid.rows * grid.cols > max_pixels:
        raise GridTooLargeError(
            f"the analysis grid would be {grid.cols} x {grid.rows} px at {pixel_size_m:.2f} m "
            f"({grid.rows * grid.cols / 1e6:.0f} Mpx > limit {max_pixels / 1e6:.0f} Mpx); use a smaller AOI"
        )
    return grid
