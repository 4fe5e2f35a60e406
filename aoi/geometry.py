"""Parse and validate an area of interest given as GeoJSON (RFC 7946, lon/lat)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from shapely.validation import explain_validity

from imagery.grid import utm_crs_for

GEOD = Geod(ellps="WGS84")


class InvalidAOIError(ValueError):
    """The AOI GeoJSON is malformed, invalid, or outside the limits."""


@dataclass(frozen=True)
class AOILimits:
    """Bounds on what an AOI may be."""

    max_vertices: int = 10_000
    max_area_km2: float = 2_500.0
    min_area_m2: float = 100.0
    max_file_bytes: int = 5_000_000


@dataclass(frozen=True)
class AOI:
    """A validated area of interest.

    Attributes
    ----------
    geometry : Polygon or MultiPolygon
        In EPSG:4326, coordinates (lon, lat) in degrees.
    area_m2 : float
        Geodesic area on the WGS 84 ellipsoid, square metres.
    """

    geometry: BaseGeometry
    area_m2: float
    name: str | None = None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.geometry.bounds

    @property
    def utm_crs(self):
        """The UTM zone CRS of the AOI's centroid (the CRS it is analysed in)."""
        c = self.geometry.centroid
        return utm_crs_for(c.x, c.y)

    def to_geojson(self) -> dict:
        return mapping(self.geometry)


def geodesic_area_m2(geometry: BaseGeometry) -> float:
    """Area of a lon/lat geometry on the WGS 84 ellipsoid, m²."""
    area, _ = GEOD.geometry_area_perimeter(geometry)
    return abs(area)


def extract_geometry(obj: dict) -> BaseGeometry:
    """The (multi)polygon of a GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection."""
    if not isinstance(obj, dict) or "type" not in obj:
        raise InvalidAOIError("AOI must be a GeoJSON object with a 'type'")
    kind = obj["type"]
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list) or not features:
            raise InvalidAOIError("AOI FeatureCollection has no features")
        parts = [extract_geometry(f) for f in features]
        return unary_union(parts) if len(parts) > 1 else parts[0]
    if kind == "Feature":
        geom = obj.get("geometry")
        if geom is None:
            raise InvalidAOIError("AOI Feature has no geometry")
        return extract_geometry(geom)
    if kind not in ("Polygon", "MultiPolygon"):
        raise InvalidAOIError(f"AOI geometry must be a Polygon or MultiPolygon, not {kind}")
    try:
        geom = shape(obj)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise InvalidAOIError(f"AOI coordinates are malformed: {exc}") from None
    return geom


def count_vertices(geometry: BaseGeometry) -> int:
    polys = geometry.geoms if isinstance(geometry, MultiPolygon) else [geometry]
    return sum(len(p.exterior.coords) + sum(len(r.coords) for r in p.interiors) for p in polys)


def parse_aoi(obj: dict | str, *, limits: AOILimits = AOILimits(), name: str | None = None) -> AOI:
    """Validate an AOI.

    Parameters
    ----------
    obj : dict or str
        GeoJSON (Polygon, MultiPolygon, Feature, FeatureCollection) as a
        mapping or JSON text, coordinates lon/lat in degrees (RFC 7946).
    limits : AOILimits
        Vertex count and area bounds.

    Returns
    -------
    AOI

    Raises
    ------
    InvalidAOIError
        With a one-line reason: malformed JSON, wrong type, empty, self-
        intersecting, coordinates out of range, crossing the antimeridian,
        too many vertices, too small or too large.
    """
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidAOIError(f"AOI is not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    geometry = extract_geometry(obj)
    if geometry.is_empty:
        raise InvalidAOIError("AOI geometry is empty")
    if not isinstance(geometry, (Polygon, MultiPolygon)):
        raise InvalidAOIError(f"AOI must be polygonal, got {geometry.geom_type}")
    if geometry.has_z:
        geometry = shape({"type": geometry.geom_type, "coordinates": strip_z(mapping(geometry)["coordinates"])})
    nverts = count_vertices(geometry)
    if nverts > limits.max_vertices:
        raise InvalidAOIError(f"AOI has {nverts} vertices; the limit is {limits.max_vertices}")
    minx, miny, maxx, maxy = geometry.bounds
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidAOIError("AOI coordinates must be longitude in [-180, 180] and latitude in [-90, 90] (RFC 7946 order: lon, lat)")
    if maxx - minx > 180:
        raise InvalidAOIError("AOI crosses the antimeridian (180 deg longitude); split it into one AOI on each side")
    if not geometry.is_valid:
        raise InvalidAOIError(f"AOI geometry is invalid: {explain_validity(geometry)}")
    area = geodesic_area_m2(geometry)
    if area < limits.min_area_m2:
        raise InvalidAOIError(f"AOI area is {area:.0f} m²; the minimum is {limits.min_area_m2:.0f} m²")
    if area > limits.max_area_km2 * 1e6:
        raise InvalidAOIError(f"AOI area is {area / 1e6:.0f} km²; the limit is {limits.max_area_km2:.0f} km²")
    return AOI(geometry=geometry, area_m2=area, name=name)


def strip_z(coords):
    if isinstance(coords[0], (int, float)):
        return coords[:2]
    return [strip_z(c) for c in coords]


def read_aoi_file(path: str | os.PathLike, *, limits: AOILimits = AOILimits()) -> AOI:
    """Read and validate an AOI GeoJSON file."""
    p = Path(path)
    if not p.is_file():
        raise InvalidAOIError(f"{p.name}: no such AOI file")
    if p.stat().st_size > limits.max_file_bytes:
        raise InvalidAOIError(f"{p.name}: AOI file is larger than {limits.max_file_bytes // 1_000_000} MB")
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise InvalidAOIError(f"{p.name}: cannot read the AOI file ({exc})") from None
    return parse_aoi(text, limits=limits, name=p.stem)


__all__ = ["AOI", "AOILimits", "InvalidAOIError", "parse_aoi", "read_aoi_file", "geodesic_area_m2"]
