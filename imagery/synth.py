"""Synthetic before/after image pairs of a military base, with exact ground truth.

No real imagery can be downloaded where basewatch is developed, so this module
makes the pairs that the demo, the tests and the accuracy benchmarks use. A
pair carries the nuisances a real pair has, so that a change detector that
passes on it is not fooled by sun, season or sensor:

* the world is a set of vector objects in metres in the UTM zone of the scene
  centre: fields with fractal texture, tree lines and single trees, roads, a
  fenced compound with a motor pool, a tent area, buildings and hangars, and
  (for large scenes) an airfield;
* each date is rendered by rasterising that world on a supersampled canvas,
  lighting it with the date's sun (cast shadows of every tall object, sloped
  roof facets, darker and bluer shade from skylight), seeing it from the date's
  view angle (tall objects lean), averaging it down to the pixel grid and
  blurring it with a Gaussian sensor PSF;
* between dates: per-band gain and haze offset, seasonal vegetation change that
  varies across the scene, sensor noise and striping, a sub-pixel
  misregistration, thick clouds with their cast shadows and an uncovered
  (nodata) corner;
* the changes (vehicles that arrived or left, new tents, new structures, roofs
  that changed) are recorded as :class:`TruthObject` footprints and as a truth
  mask on the before grid.

Pure functions make arrays (:func:`make_pair`, :func:`preset`); one function
writes files (:func:`write_pair`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Geod, Proj, Transformer
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box, mapping
from shapely.geometry.polygon import orient

from imagery.grid import LONLAT, Grid, densified_box, transform_bounds_densified, utm_crs_for

__all__ = [
    "SynthParams",
    "SynthScene",
    "TruthObject",
    "SynthPair",
    "PRESETS",
    "preset",
    "make_pair",
    "write_pair",
    "sun_position",
]

#: Names accepted by :func:`preset`.
PRESETS = ("default", "clean", "nuisance_only", "webmercator", "lonlat", "rgb8", "coarse3m", "sentinel10m", "south")

MS16_BANDS = ("blue", "green", "red", "nir")
RGB8_BANDS = ("red", "green", "blue")

#: Truth-mask codes.
NO_CHANGE, APPEARED, DISAPPEARED, CHANGED, NOT_ASSESSABLE = 0, 1, 2, 3, 255
_CHANGE_CODE = {"appeared": APPEARED, "disappeared": DISAPPEARED, "changed": CHANGED}

# ---------------------------------------------------------------------------------------------
# Public values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthParams:
    """Everything that defines a synthetic pair; the same params give the same pair.

    Attributes
    ----------
    seed : int
        Seed of every random choice (layout, spectra, noise, clouds).
    extent_m : float
        Side of the square before scene, metres.
    pixel_size_m : float
        Ground pixel of the before scene, metres (square, in the UTM zone of the centre).
    after_pixel_size_m : float or None
        Ground pixel of the after scene, metres; None means the same as before. For
        ``after_crs="webmercator"`` the EPSG:3857 pixel is this size on the ground (so
        ``size / cos(lat)`` in 3857 units); for ``"lonlat"`` it is the north-south ground size
        of a square-in-degrees pixel (the east-west ground size is ``cos(lat)`` times that).
    lon, lat : float
        Scene centre, degrees (either hemisphere).
    after_crs : {"utm", "webmercator", "lonlat"}
        CRS of the after scene: the before scene's UTM zone, EPSG:3857 or EPSG:4326.
    product : {"ms16", "rgb8"}
        ``ms16``: 4-band uint16 blue, green, red, nir, reflectance * 10000, nodata 0.
        ``rgb8``: 3-band uint8 display product R, G, B (per-date stretch and gamma).
    vehicles_arrived, vehicles_left, tents_new, structures_new, roofs_changed, clearings_new : int
        Number of changes of each kind. ``clearings_new`` are large areas cleared or paved
        between the dates (class ``structure``, change ``appeared``).
    arrival_group : tuple of int
        Smallest and largest size of a group of vehicles that arrives (or leaves) together.
    gain_offset : float
        Strength of per-band gain and additive haze differences (0 disables).
    season : float
        Strength of the spatially varying seasonal vegetation change (0 disables).
    sun_before, sun_after : tuple of float
        Sun ``(azimuth, elevation)`` in degrees, azimuth clockwise from north.
    view_before, view_after : tuple of float
        Sensor ``(azimuth, off-nadir angle)`` in degrees seen from the scene; tall objects
        lean away from the sensor by ``height * tan(off_nadir)``.
    shift_px : tuple of float
        Misregistration of the after scene in before pixels ``(rows, cols)``: content at a
        true position appears ``rows`` pixels further south and ``cols`` further east.
    noise : float
        Strength of sensor noise and striping (0 disables).
    cloud_fraction : float
        Fraction of the after scene under thick cloud (plus their cast shadows).
    nodata_corner : bool
        The after scene does not cover one corner.
    psf_sigma_px : float
        Gaussian sensor PSF sigma in output pixels (both dates).
    dates : tuple of str or None
        ISO acquisition dates ``(before, after)``; None draws them from the seed.
    supersample : int
        Canvas supersampling factor (0 chooses 2-4 from the scene size).
    """

    seed: int = 0
    extent_m: float = 512.0
    pixel_size_m: float = 0.5
    after_pixel_size_m: float | None = None
    lon: float = 24.03
    lat: float = 48.47
    after_crs: str = "utm"
    product: str = "ms16"
    vehicles_arrived: int = 12
    vehicles_left: int = 6
    tents_new: int = 4
    structures_new: int = 1
    roofs_changed: int = 0
    clearings_new: int = 0
    arrival_group: tuple[int, int] = (3, 8)
    gain_offset: float = 1.0
    season: float = 1.0
    sun_before: tuple[float, float] = (135.0, 55.0)
    sun_after: tuple[float, float] = (220.0, 35.0)
    view_before: tuple[float, float] = (100.0, 6.0)
    view_after: tuple[float, float] = (255.0, 14.0)
    shift_px: tuple[float, float] = (2.7, -1.6)
    noise: float = 1.0
    cloud_fraction: float = 0.08
    nodata_corner: bool = True
    psf_sigma_px: float = 0.5
    dates: tuple[str, str] | None = None
    supersample: int = 0

    def __post_init__(self):
        if self.after_crs not in ("utm", "webmercator", "lonlat"):
            raise ValueError(f"after_crs must be utm, webmercator or lonlat, not {self.after_crs!r}")
        if self.product not in ("ms16", "rgb8"):
            raise ValueError(f"product must be ms16 or rgb8, not {self.product!r}")
        if not (self.extent_m > 0 and self.pixel_size_m > 0):
            raise ValueError("extent_m and pixel_size_m must be positive")
        if self.after_pixel_size_m is not None and self.after_pixel_size_m <= 0:
            raise ValueError("after_pixel_size_m must be positive")
        if self.extent_m / self.pixel_size_m < 16:
            raise ValueError("the scene must be at least 16 pixels across")
        counts = (self.vehicles_arrived, self.vehicles_left, self.tents_new, self.structures_new,
                  self.roofs_changed, self.clearings_new)
        if min(counts) < 0:
            raise ValueError("change counts must be >= 0")
        for name in ("sun_before", "sun_after"):
            el = getattr(self, name)[1]
            if not 5.0 <= el <= 90.0:
                raise ValueError(f"{name} elevation must be within 5..90 degrees")
        for name in ("view_before", "view_after"):
            if not 0.0 <= getattr(self, name)[1] <= 45.0:
                raise ValueError(f"{name} off-nadir angle must be within 0..45 degrees")
        if not 0.0 <= self.cloud_fraction <= 0.6:
            raise ValueError("cloud_fraction must be within 0..0.6")
        if self.arrival_group[0] < 1 or self.arrival_group[1] < self.arrival_group[0]:
            raise ValueError("arrival_group must be (min >= 1, max >= min)")
        if self.supersample not in (0, 1, 2, 3, 4, 5, 6):
            raise ValueError("supersample must be 0 (auto) or 1..6")


@dataclass(frozen=True, eq=False)
class SynthScene:
    """One date of a pair.

    Attributes
    ----------
    data : ndarray, shape (bands, rows, cols)
        uint16 reflectance * 10000 (``ms16``, 0 = nodata) or uint8 display values (``rgb8``).
    grid : Grid
        The scene's own grid (CRS, transform, shape).
    bands : tuple of str
        ``("blue", "green", "red", "nir")`` or ``("red", "green", "blue")``.
    acquired : datetime.date
        Acquisition date.
    nodata : int or None
        0 for ``ms16``; None for ``rgb8`` (coverage is in ``valid`` and in the file's mask).
    valid : ndarray of bool, shape (rows, cols)
        True where the scene has data.
    """

    data: np.ndarray
    grid: Grid
    bands: tuple[str, ...]
    acquired: dt.date
    nodata: int | None
    valid: np.ndarray | None = None


@dataclass(frozen=True)
class TruthObject:
    """One true change.

    Attributes
    ----------
    id : int
        Unique within the pair (1-based).
    change : {"appeared", "disappeared", "changed"}
    cls : {"vehicle", "tent", "structure"}
    footprint_lonlat : shapely.Polygon
        Ground footprint in EPSG:4326 (lon, lat).
    area_m2, length_m, width_m : float
        Footprint area and the sides of its minimum rotated rectangle, metres.
    """

    id: int
    change: str
    cls: str
    footprint_lonlat: Polygon
    area_m2: float
    length_m: float
    width_m: float


@dataclass(frozen=True, eq=False)
class SynthPair:
    """A before/after pair with its ground truth.

    Attributes
    ----------
    before, after : SynthScene
    truth : list of TruthObject
        Every change, including those hidden by cloud or nodata in the after scene.
    truth_mask : ndarray of uint8, shape before.grid.shape
        0 no change, 1 appeared, 2 disappeared, 3 changed, 255 not assessable (cloud, cloud
        shadow or nodata in either date), on the before grid (pixel centre inside footprint).
    aoi_lonlat : shapely.Polygon
        Area to analyse (EPSG:4326): an irregular polygon covering most of the scene.
    info : dict
        JSON-serialisable record of everything applied (params, sun, shift, gains, clouds...).
    """

    before: SynthScene
    after: SynthScene
    truth: list[TruthObject]
    truth_mask: np.ndarray
    aoi_lonlat: Polygon
    info: dict


# ---------------------------------------------------------------------------------------------
# Materials: reflectance in blue, green, red, nir (surface reflectance, 0..1)
# ---------------------------------------------------------------------------------------------

_MAT = {
    "grass": (0.035, 0.075, 0.045, 0.38),
    "dry_veg": (0.085, 0.12, 0.15, 0.27),
    "soil_brown": (0.075, 0.105, 0.145, 0.21),
    "soil_light": (0.13, 0.17, 0.215, 0.28),
    "soil_red": (0.065, 0.095, 0.175, 0.25),
    "soil_dark": (0.05, 0.065, 0.085, 0.14),
    "asphalt": (0.07, 0.075, 0.08, 0.09),
    "asphalt_old": (0.11, 0.12, 0.13, 0.15),
    "concrete": (0.22, 0.245, 0.265, 0.29),
    "gravel": (0.155, 0.175, 0.195, 0.225),
    "dirt": (0.12, 0.15, 0.19, 0.24),
    "metal_galv": (0.27, 0.29, 0.30, 0.32),
    "metal_white": (0.50, 0.53, 0.54, 0.56),
    "metal_rust": (0.07, 0.09, 0.14, 0.22),
    "metal_green": (0.05, 0.09, 0.065, 0.13),
    "metal_blue": (0.14, 0.12, 0.09, 0.12),
    "tile_red": (0.07, 0.08, 0.17, 0.28),
    "roof_dark": (0.065, 0.07, 0.075, 0.085),
    "roof_gravel": (0.17, 0.18, 0.19, 0.21),
    "paint_olive": (0.04, 0.06, 0.05, 0.30),  # IR-reflective camouflage paint (CARC-like)
    "paint_tan": (0.14, 0.185, 0.235, 0.40),
    "paint_dark": (0.035, 0.04, 0.04, 0.08),
    "paint_white": (0.42, 0.44, 0.45, 0.47),
    "paint_grey": (0.16, 0.17, 0.175, 0.19),
    "canvas_olive": (0.05, 0.075, 0.065, 0.26),
    "canvas_tan": (0.16, 0.20, 0.24, 0.34),
    "canvas_white": (0.40, 0.42, 0.42, 0.45),
    "tree_decid": (0.025, 0.05, 0.03, 0.33),
    "tree_conifer": (0.02, 0.035, 0.025, 0.21),
    "tree_autumn": (0.045, 0.065, 0.085, 0.22),
    "wall": (0.24, 0.25, 0.26, 0.28),
    "marking": (0.55, 0.57, 0.58, 0.60),
    "glass": (0.03, 0.035, 0.04, 0.05),
}

#: Sky (diffuse) fraction of irradiance on flat ground at 55 deg sun elevation, per band.
_DIFFUSE_55 = np.array([0.35, 0.27, 0.21, 0.15], np.float32)


def _spec(name: str, rng: np.random.Generator, vary: float = 0.1) -> np.ndarray:
    """A material's reflectance with a random brightness and small per-band tint, float32 (4,)."""
    base = np.asarray(_MAT[name], np.float32)
    bright = rng.uniform(1.0 - vary, 1.0 + vary)
    tint = rng.normal(1.0, vary * 0.35, 4)
    return np.clip(base * bright * tint, 0.005, 0.95).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Sun and dates
# ---------------------------------------------------------------------------------------------


def sun_position(lon: float, lat: float, when_utc: dt.datetime) -> tuple[float, float]:
    """Solar azimuth and elevation (degrees) at a place and UTC time.

    Parameters
    ----------
    lon, lat : float
        Degrees (EPSG:4326).
    when_utc : datetime.datetime
        UTC time (naive values are taken as UTC).

    Returns
    -------
    (azimuth, elevation) : tuple of float
        Azimuth clockwise from north, elevation above the horizon, degrees; accurate to
        about 0.1 degree (low-precision solar ephemeris, no refraction).
    """
    j2000 = dt.datetime(2000, 1, 1, 12)
    if when_utc.tzinfo is not None:
        when_utc = when_utc.astimezone(dt.timezone.utc).replace(tzinfo=None)
    n = (when_utc - j2000).total_seconds() / 86400.0
    mean_lon = math.radians((280.460 + 0.9856474 * n) % 360.0)
    g = math.radians((357.528 + 0.9856003 * n) % 360.0)
    ecl = mean_lon + math.radians(1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    eps = math.radians(23.439 - 0.0000004 * n)
    ra = math.atan2(math.cos(eps) * math.sin(ecl), math.cos(ecl))
    dec = math.asin(math.sin(eps) * math.sin(ecl))
    gmst_h = (18.697374558 + 24.06570982441908 * n) % 24.0
    ha = math.radians(gmst_h * 15.0 + lon) - ra
    phi = math.radians(lat)
    el = math.asin(math.sin(phi) * math.sin(dec) + math.cos(phi) * math.cos(dec) * math.cos(ha))
    az = math.atan2(-math.sin(ha), math.tan(dec) * math.cos(phi) - math.sin(phi) * math.cos(ha))
    return math.degrees(az) % 360.0, math.degrees(el)


def _greenness(date: dt.date, lat: float) -> float:
    """Seasonal vegetation greenness 0..1 (peak early summer of the hemisphere)."""
    peak = 165 if lat >= 0 else 345
    doy = date.timetuple().tm_yday
    return 0.5 + 0.5 * math.cos(2 * math.pi * (doy - peak) / 365.25)


def _draw_dates(rng: np.random.Generator, lat: float) -> tuple[dt.date, dt.date]:
    """A before date in the growing season and an after date 20-160 days later."""
    start = dt.date(2023 + int(rng.integers(0, 3)), 3 if lat >= 0 else 9, 15)
    before = start + dt.timedelta(days=int(rng.integers(0, 120)))
    return before, before + dt.timedelta(days=int(rng.integers(20, 160)))


def _draw_sun(rng: np.random.Generator, lon: float, lat: float, date: dt.date) -> tuple[float, float]:
    """Sun at a plausible satellite overpass (local solar time 9:30-14:30), elevation >= 18 deg."""
    for _ in range(20):
        hours = rng.uniform(9.5, 14.5) - lon / 15.0
        when = dt.datetime(date.year, date.month, date.day) + dt.timedelta(hours=hours)
        az, el = sun_position(lon, lat, when)
        if el >= 18.0:
            return round(az, 2), round(el, 2)
    return round(az, 2), 18.0


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


def preset(name: str, seed: int = 0) -> SynthParams:
    """Parameters of a named scenario.

    Seed 0 gives the nominal scenario (the documented pixel sizes, extents, counts and
    nuisance strengths); other seeds draw pixel sizes, extents, counts, nuisance strengths,
    dates, sun and view angles from plausible ranges around it. Every scenario has truth.

    Parameters
    ----------
    name : str
        One of :data:`PRESETS`: ``default`` (0.5 m before, 0.6 m after, UTM, every nuisance),
        ``clean`` (no nuisance), ``nuisance_only`` (every nuisance, no change),
        ``webmercator`` (after in EPSG:3857), ``lonlat`` (after in EPSG:4326),
        ``rgb8`` (8-bit RGB display products), ``coarse3m`` (3 m, 1500 m, vehicle blocks),
        ``sentinel10m`` (10 m, 4000 m, structures and cleared areas, strong season),
        ``south`` (default in the southern hemisphere).
    seed : int
        Seed of the scenario and of the pair.

    Returns
    -------
    SynthParams
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    rng = np.random.default_rng([int(seed), PRESETS.index(name), 7919])
    nominal = seed == 0

    def pick(lo, hi, nom, integer=False):
        if nominal:
            return nom
        return int(rng.integers(lo, hi + 1)) if integer else round(float(rng.uniform(lo, hi)), 3)

    lon, lat = (28.2, -25.7) if name == "south" else (24.03, 48.47)
    if not nominal:
        lon = round(lon + rng.uniform(-1.5, 1.5), 4)
        lat = round(lat + rng.uniform(-1.5, 1.5), 4)
    p: dict = dict(seed=int(seed), lon=lon, lat=lat)
    # scene geometry
    if name == "coarse3m":
        p.update(extent_m=pick(1300, 1800, 1500.0), pixel_size_m=pick(2.5, 3.5, 3.0))
        p["after_pixel_size_m"] = pick(2.5, 4.0, 3.0)
    elif name == "sentinel10m":
        p.update(extent_m=pick(3500, 4500, 4000.0), pixel_size_m=10.0, after_pixel_size_m=10.0)
    else:
        p.update(extent_m=pick(440, 600, 512.0), pixel_size_m=pick(0.45, 0.55, 0.5))
        p["after_pixel_size_m"] = pick(0.45, 0.7, 0.6)
    # changes
    if name == "coarse3m":
        p.update(vehicles_arrived=pick(40, 100, 60, True), vehicles_left=pick(10, 40, 20, True),
                 tents_new=pick(8, 30, 16, True), structures_new=pick(2, 5, 3, True),
                 roofs_changed=pick(0, 2, 1, True), arrival_group=(20, 40))
    elif name == "sentinel10m":
        p.update(vehicles_arrived=0, vehicles_left=0, tents_new=0, structures_new=pick(3, 8, 5, True),
                 roofs_changed=pick(0, 3, 1, True), clearings_new=pick(1, 4, 3, True))
    else:
        p.update(vehicles_arrived=pick(6, 20, 12, True), vehicles_left=pick(3, 10, 6, True),
                 tents_new=pick(2, 8, 4, True), structures_new=pick(1, 2, 1, True),
                 roofs_changed=pick(0, 1, 0, True))
    if name == "nuisance_only":
        p.update(vehicles_arrived=0, vehicles_left=0, tents_new=0, structures_new=0, roofs_changed=0,
                 clearings_new=0)
    # nuisances
    px_scale = 1.0 if p["pixel_size_m"] < 2 else 0.25
    shift_mag = pick(0.5, 4.0, None) if px_scale == 1.0 else pick(0.2, 1.0, None)
    if nominal:
        shift = (2.7, -1.6) if px_scale == 1.0 else (0.7, -0.45)
    else:
        ang = rng.uniform(0, 2 * math.pi)
        shift = (round(shift_mag * math.sin(ang), 3), round(shift_mag * math.cos(ang), 3))
    p.update(
        gain_offset=pick(0.6, 1.4, 1.0),
        season=pick(0.5, 1.5, 1.0) * (2.0 if name == "sentinel10m" else 1.0),
        noise=pick(0.7, 1.5, 1.0),
        cloud_fraction=pick(0.03, 0.15, 0.08),
        shift_px=shift,
        psf_sigma_px=pick(0.4, 0.6, 0.5) if px_scale == 1.0 else pick(0.5, 0.7, 0.6),
        view_before=(pick(0, 360, 100.0), pick(0, 12, 6.0)) if px_scale == 1.0 else (0.0, 0.0),
        view_after=(pick(0, 360, 255.0), pick(5, 25, 14.0)) if px_scale == 1.0 else (0.0, 0.0),
    )
    # dates and sun
    date_b, date_a = _draw_dates(rng, lat)
    if nominal and lat >= 0:
        date_b, date_a = dt.date(2024, 5, 14), dt.date(2024, 9, 2)
        sun_b, sun_a = (135.0, 55.0), (220.0, 35.0)
    else:
        if nominal:
            date_b, date_a = dt.date(2024, 10, 20), dt.date(2025, 2, 24)
        sun_b, sun_a = _draw_sun(rng, lon, lat, date_b), _draw_sun(rng, lon, lat, date_a)
    p.update(dates=(date_b.isoformat(), date_a.isoformat()), sun_before=sun_b, sun_after=sun_a)
    if name == "webmercator":
        p["after_crs"] = "webmercator"
    elif name == "lonlat":
        p["after_crs"] = "lonlat"
    elif name == "rgb8":
        p["product"] = "rgb8"
        p["after_pixel_size_m"] = pick(0.45, 0.65, 0.5)
    if name == "clean":
        p.update(gain_offset=0.0, season=0.0, noise=0.0, cloud_fraction=0.0, nodata_corner=False,
                 shift_px=(0.0, 0.0), sun_after=sun_b, view_before=(0.0, 0.0), view_after=(0.0, 0.0),
                 after_pixel_size_m=None)
    return SynthParams(**p)


# ---------------------------------------------------------------------------------------------
# World model (internal)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Surf:
    """A visible top surface of an object: nadir footprint (UTM m), reflectance and geometry."""

    geom: Polygon
    spec: np.ndarray
    z: float  # height of the surface above ground, m (lean, shadow test)
    slope: float = 0.0  # degrees
    aspect: float = 0.0  # compass azimuth of the downslope direction, degrees
    tex: float = 0.03  # relative texture amplitude
    spec_after: np.ndarray | None = None
    crown: float = 0.0  # >0: tree crown of this radius (m), lit/shaded halves per date
    zshadow: float | None = None  # height used to test shadows of other casters (default: object top)


@dataclass
class _Wall:
    """Vertical walls of a prism, drawn (where they face the sensor) when seen off-nadir."""

    geom: Polygon
    z0: float
    z1: float
    spec: np.ndarray


@dataclass
class _Caster:
    """A shadow-casting prism between heights ``base`` and ``top`` (m)."""

    geom: Polygon
    base: float
    top: float
    opacity: float = 1.0
    recv: float = 0.0  # height of the surface the shadow falls on
    clip: Polygon | None = None


@dataclass
class _Obj:
    kind: str
    surfs: list
    casters: list = field(default_factory=list)
    walls: list = field(default_factory=list)
    when: str = "both"  # both | before | after
    truth: tuple[str, str] | None = None  # (change, cls)
    footprint: Polygon | None = None

    @functools.cached_property
    def top(self) -> float:
        return max([s.z for s in self.surfs] + [0.0])

    @functools.cached_property
    def shadow_top(self) -> float:
        """Highest point of the object; its own casters never shade it below this."""
        return max([self.top] + [c.top for c in self.casters])


@dataclass
class _Field:
    """A land parcel: vegetation cover and greenness per date, soil and texture."""

    geom: Polygon
    kind: str
    cover: tuple[float, float]  # before, after
    green: tuple[float, float]
    soil: float  # soil brightness factor
    a_coarse: float
    a_fine: float
    a_season: tuple[float, float]
    rows_amp: float = 0.0
    rows_soil: float = 0.0
    rows_k: tuple[float, float] = (0.0, 0.0)  # wave vector (rad/m) in canvas (x, y)


@dataclass
class _World:
    fields: list
    objs: list
    greens: dict  # endmember spectra: grass, dry, soil
    info: dict


# --- geometry helpers ------------------------------------------------------------------------


def _rect(cx: float, cy: float, length: float, width: float, angle: float) -> Polygon:
    """Rectangle centred on (cx, cy), ``length`` along ``angle`` (radians CCW from east)."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2.0, width / 2.0
    return Polygon([(cx + c * dx - s * dy, cy + s * dx + c * dy) for dx, dy in ((-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw))])


def _azimuth_of(angle: float) -> float:
    """Compass azimuth (deg) of a direction given as radians CCW from east."""
    return (90.0 - math.degrees(angle)) % 360.0


def _dir(azimuth_deg: float) -> tuple[float, float]:
    """Unit (east, north) vector of a compass azimuth."""
    a = math.radians(azimuth_deg)
    return math.sin(a), math.cos(a)


def _blob(cx: float, cy: float, r: float, rng: np.random.Generator, n: int = 18, rough: float = 0.12) -> Polygon:
    """An irregular round polygon (tree crown, tank) of mean radius ``r``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = r * (1 + rough * (rng.normal(0, 0.5, n) + 0.6 * np.sin(2 * t + rng.uniform(0, 6))))
    rad = np.clip(rad, 0.6 * r, 1.4 * r)
    return Polygon(np.column_stack([cx + rad * np.cos(t), cy + rad * np.sin(t)]))


def _facet_factor(slope: float, aspect: float, sun: tuple[float, float]) -> float:
    """Direct irradiance on a facet relative to flat ground (cos incidence / sin elevation)."""
    s, a = math.radians(slope), math.radians(aspect)
    az, el = math.radians(sun[0]), math.radians(sun[1])
    n = (math.sin(s) * math.sin(a), math.sin(s) * math.cos(a), math.cos(s))
    v = (math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el))
    return max(0.0, n[0] * v[0] + n[1] * v[1] + n[2] * v[2]) / math.sin(el)


def _lean(view: tuple[float, float]) -> tuple[float, float]:
    """Image displacement (east, north) per metre of height for a view (azimuth, off-nadir)."""
    k = math.tan(math.radians(view[1]))
    ex, ny = _dir(view[0])
    return -k * ex, -k * ny


# --- objects -------------------------------------------------------------------------------


def _vehicle(rng, cx, cy, angle, length, width, paint: np.ndarray, kind: str) -> _Obj:
    """A military vehicle seen from above: truck (cab + tarp), AFV (hull, turret, gun) or van."""
    fwd = (math.cos(angle), math.sin(angle))
    body = _rect(cx, cy, length, width, angle)
    surfs, casters, walls = [], [], []
    dark = paint * 0.8
    if kind == "truck":
        h_cab, h_cargo = rng.uniform(2.6, 3.0), rng.uniform(2.9, 3.4)
        cab_l = min(2.4, length * 0.32)
        tarp = _spec("canvas_olive" if paint[3] > 0.2 else "canvas_tan", rng, 0.1) if rng.random() < 0.7 else paint * 0.95
        cargo_l = length - cab_l - 0.3
        ccx, ccy = cx - fwd[0] * (length - cargo_l) / 2, cy - fwd[1] * (length - cargo_l) / 2
        kcx, kcy = cx + fwd[0] * (length - cab_l) / 2, cy + fwd[1] * (length - cab_l) / 2
        cargo = _rect(ccx, ccy, cargo_l, width, angle)
        cab = _rect(kcx, kcy, cab_l, width * 0.92, angle)
        walls += [_Wall(cargo, 0.0, h_cargo, dark), _Wall(cab, 0.0, h_cab, dark)]
        surfs += [_Surf(cab, paint, h_cab, tex=0.05), _Surf(cargo, tarp, h_cargo, tex=0.06)]
        glass = _rect(kcx + fwd[0] * cab_l * 0.3, kcy + fwd[1] * cab_l * 0.3, cab_l * 0.3, width * 0.8, angle)
        surfs.append(_Surf(glass, _spec("glass", rng), h_cab, tex=0.02))
        casters += [_Caster(cargo, 0.0, h_cargo), _Caster(cab, 0.0, h_cab)]
    elif kind == "afv":
        h_hull = rng.uniform(1.9, 2.4)
        h_tur = h_hull + rng.uniform(0.6, 0.9)
        surfs.append(_Surf(body, paint, h_hull, tex=0.05))
        walls.append(_Wall(body, 0.0, h_hull, dark))
        tcx, tcy = cx - fwd[0] * length * 0.05, cy - fwd[1] * length * 0.05
        tur = _rect(tcx, tcy, length * 0.42, width * 0.72, angle + rng.normal(0, 0.05))
        gun_l = length * rng.uniform(0.5, 0.75)
        gun = _rect(tcx + fwd[0] * gun_l / 2, tcy + fwd[1] * gun_l / 2, gun_l, 0.25, angle)
        surfs += [_Surf(tur, paint * 0.93, h_tur, tex=0.05), _Surf(gun, dark, h_tur - 0.2, tex=0.0)]
        walls.append(_Wall(tur, h_hull, h_tur, dark))
        casters += [_Caster(body, 0.0, h_hull), _Caster(tur, h_hull, h_tur), _Caster(gun, h_tur - 0.3, h_tur - 0.1)]
    else:  # van / box truck
        h = rng.uniform(2.3, 3.2)
        surfs.append(_Surf(body, paint, h, tex=0.04))
        walls.append(_Wall(body, 0.0, h, dark))
        casters.append(_Caster(body, 0.0, h))
    return _Obj("vehicle", surfs, casters, walls, footprint=body)


def _vehicle_paint(rng, civil: float = 0.08) -> tuple[np.ndarray, str]:
    r = rng.random()
    kind = "truck" if r < 0.5 else ("afv" if r < 0.85 else "van")
    if rng.random() < civil:
        return _spec(str(rng.choice(["paint_white", "paint_grey"])), rng, 0.08), "van"
    return _spec(str(rng.choice(["paint_olive", "paint_olive", "paint_tan", "paint_dark"])), rng, 0.12), kind


def _tent(rng, cx, cy, angle, length, width, canvas: np.ndarray) -> _Obj:
    """A gable-roofed military tent (two sloped canvas facets along the long axis)."""
    eave, ridge = rng.uniform(1.5, 1.9), rng.uniform(2.6, 3.8)
    slope = math.degrees(math.atan2(ridge - eave, width / 2))
    n = (-math.sin(angle), math.cos(angle))
    surfs = []
    for side in (1, -1):
        hc = _rect(cx + side * n[0] * width / 4, cy + side * n[1] * width / 4, length, width / 2, angle)
        aspect = _azimuth_of(math.atan2(side * n[1], side * n[0]))
        surfs.append(_Surf(hc, canvas, (eave + ridge) / 2, slope=slope, aspect=aspect, tex=0.04))
    fp = _rect(cx, cy, length, width, angle)
    walls = [_Wall(fp, 0.0, eave, canvas * 0.85)]
    return _Obj("tent", surfs, [_Caster(fp, 0.0, ridge * 0.85)], walls, footprint=fp)


def _building(rng, cx, cy, length, width, angle, kind: str, roof: np.ndarray, height: float) -> _Obj:
    """A building: ``gable`` (two facets), ``flat`` (with rooftop units), ``hangar`` (arched)."""
    fp = _rect(cx, cy, length, width, angle)
    n = (-math.sin(angle), math.cos(angle))
    wall = _spec("wall", rng, 0.15)
    surfs, casters = [], []
    if kind in ("gable", "hangar"):
        nstrip = 2 if kind == "gable" else 8
        rise = width / 2 * math.tan(math.radians(rng.uniform(12, 30))) if kind == "gable" else width * rng.uniform(0.22, 0.32)
        edges = np.linspace(-width / 2, width / 2, nstrip + 1)
        # roof profile: gable (straight) or arch (half-ellipse)
        prof = (1 - np.abs(edges) / (width / 2)) if kind == "gable" else np.sqrt(np.clip(1 - (edges / (width / 2)) ** 2, 0, 1))
        zs = height + rise * prof
        for i in range(nstrip):
            w0, w1 = edges[i], edges[i + 1]
            mid = (w0 + w1) / 2
            strip = _rect(cx + n[0] * mid, cy + n[1] * mid, length, w1 - w0, angle)
            dz = zs[i + 1] - zs[i]
            slope = math.degrees(math.atan2(abs(dz), w1 - w0))
            down = -1 if dz > 0 else 1  # downslope towards -n when the roof rises along +n
            aspect = _azimuth_of(math.atan2(down * n[1], down * n[0]))
            surfs.append(_Surf(strip, roof, float((zs[i] + zs[i + 1]) / 2), slope=slope, aspect=aspect, tex=0.03))
        casters.append(_Caster(fp, 0.0, height + rise * 0.8))
        top_z = height
    else:
        surfs.append(_Surf(fp, roof, height, tex=0.035, zshadow=height))
        casters.append(_Caster(fp, 0.0, height))
        top_z = height
        # parapet-free flat roof with a few rooftop units (HVAC boxes)
        for _ in range(int(rng.integers(0, 4)) if min(length, width) > 9 else 0):
            ux = rng.uniform(-0.35, 0.35) * length
            uy = rng.uniform(-0.3, 0.3) * width
            hx, hy = cx + math.cos(angle) * ux + n[0] * uy, cy + math.sin(angle) * ux + n[1] * uy
            unit = _rect(hx, hy, rng.uniform(1.5, 3.5), rng.uniform(1.2, 2.5), angle)
            h_u = height + rng.uniform(0.9, 1.6)
            surfs.append(_Surf(unit, _spec("metal_galv", rng, 0.2), h_u, tex=0.02))
            casters.append(_Caster(unit, height, h_u, recv=height, clip=fp))
    walls = [_Wall(fp, 0.0, top_z, wall)]
    return _Obj("building", surfs, casters, walls, footprint=fp)


def _l_building(rng, cx, cy, length, width, angle, roof, height) -> _Obj:
    """An L-shaped flat-roofed building made of two wings."""
    wing = width * rng.uniform(0.35, 0.5)
    c, s = math.cos(angle), math.sin(angle)
    n = (-s, c)
    a = _rect(cx, cy - 0, length, wing, angle)
    a = affinity.translate(a, n[0] * (width - wing) / 2, n[1] * (width - wing) / 2)
    bx = cx - c * (length - wing) / 2
    by = cy - s * (length - wing) / 2
    b = _rect(bx, by, wing, width, angle)
    wall = _spec("wall", rng, 0.15)
    surfs = [_Surf(a, roof, height, tex=0.035), _Surf(b, roof, height, tex=0.035)]
    casters = [_Caster(a, 0, height), _Caster(b, 0, height)]
    walls = [_Wall(a, 0, height, wall), _Wall(b, 0, height, wall)]
    return _Obj("building", surfs, casters, walls, footprint=shapely.union(a, b))


def _crowns(rng, x: np.ndarray, y: np.ndarray, r: np.ndarray, n: int = 14, rough: float = 0.12) -> np.ndarray:
    """Irregular round polygons (tree crowns) of mean radii ``r`` centred on (x, y), vectorised."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[None, :]
    k = len(x)
    wob = rng.normal(0, 0.5, (k, n)) + 0.6 * np.sin(2 * t + rng.uniform(0, 6, (k, 1)))
    rad = np.clip(r[:, None] * (1 + rough * wob), 0.6 * r[:, None], 1.4 * r[:, None])
    xy = np.stack([x[:, None] + rad * np.cos(t), y[:, None] + rad * np.sin(t)], axis=-1)
    xy = np.concatenate([xy, xy[:, :1]], axis=1)
    return shapely.polygons(xy)


def _tree(rng, crown: Polygon, trunk: Polygon, r: float, h: float, kind: str) -> _Obj:
    """A tree: crown polygon of radius ``r`` with top height ``h`` (m), and its trunk's shadow."""
    spec = _spec("tree_conifer" if kind == "conifer" else "tree_decid", rng, 0.15)
    base = max(1.5, h - 2.2 * r) if kind != "conifer" else max(0.5, h * 0.15)
    surf = _Surf(crown, spec, h - 0.25 * (h - base), tex=0.25, crown=r)
    casters = [_Caster(crown, base, h, opacity=0.85), _Caster(trunk, 0.0, base, opacity=1.0)]
    return _Obj("tree", [surf], casters, [], footprint=crown)


def _ground(geom, spec, tex=0.05) -> _Obj:
    """A flat surface on the ground (road, hard standing, track, marking)."""
    return _Obj("ground", [_Surf(geom, spec, 0.0, tex=tex)])


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


class _Frame:
    """A rotated local frame (u, v) in metres placed at (x0, y0) in UTM."""

    def __init__(self, x0: float, y0: float, theta: float):
        self.x0, self.y0, self.theta = x0, y0, theta
        self.c, self.s = math.cos(theta), math.sin(theta)

    def pt(self, u: float, v: float) -> tuple[float, float]:
        return self.x0 + self.c * u - self.s * v, self.y0 + self.s * u + self.c * v

    def geom(self, g):
        return affinity.affine_transform(g, [self.c, -self.s, self.s, self.c, self.x0, self.y0])


def _lattice_groups(rng, free: np.ndarray, taken: np.ndarray, n: int, group: tuple[int, int],
                    adjacent: bool = True) -> list[tuple[int, int]]:
    """Choose ``n`` cells of a slot lattice in compact groups.

    Groups grow from a seed cell (next to ``taken`` cells when ``adjacent``), preferring
    neighbours in the same row (side by side) and then the rows next to it.

    Parameters
    ----------
    free : ndarray of bool (rows, cols)
        Cells that may be chosen; updated in place.
    taken : ndarray of bool (rows, cols)
        Cells already occupied (seeds of adjacency); updated in place with the choice.
    """
    chosen: list[tuple[int, int]] = []
    rows, cols = free.shape
    while len(chosen) < n and free.any():
        size = min(n - len(chosen), int(rng.integers(group[0], group[1] + 1)))
        cand = np.argwhere(free)
        if adjacent and taken.any():
            near = np.zeros_like(free)
            near[:, 1:] |= taken[:, :-1]
            near[:, :-1] |= taken[:, 1:]
            near[1:, :] |= taken[:-1, :]
            near[:-1, :] |= taken[1:, :]
            near &= free
            if near.any():
                cand = np.argwhere(near)
        r, c = map(int, cand[rng.integers(len(cand))])
        grp = [(r, c)]
        free[r, c] = False
        taken[r, c] = True
        while len(grp) < size:
            opts = []
            for gr, gc in grp:
                for dr, dc, w in ((0, 1, 6.0), (0, -1, 6.0), (1, 0, 1.0), (-1, 0, 1.0)):
                    rr, cc = gr + dr, gc + dc
                    if 0 <= rr < rows and 0 <= cc < cols and free[rr, cc]:
                        opts.append((rr, cc, w))
            if not opts:
                break
            w = np.array([o[2] for o in opts])
            k = int(rng.choice(len(opts), p=w / w.sum()))
            rr, cc = opts[k][0], opts[k][1]
            free[rr, cc] = False
            taken[rr, cc] = True
            grp.append((rr, cc))
        chosen += grp
    return chosen[:n]


def _pack(items: list[dict], width: float, road: float, rng) -> tuple[float, list[float]]:
    """Shelf-pack lots (dicts with ``w``, ``d``) left to right into a compound ``width`` wide.

    Each shelf is preceded by a road strip ``road`` wide; sets ``u``, ``v`` (lower-left corner)
    on every item and returns the compound depth and the v of each shelf road.
    """
    items.sort(key=lambda it: -it["d"])
    u, v, shelf_d, roads = road, road, 0.0, [0.0]
    for it in items:
        gap = rng.uniform(4, 12)
        if u + it["w"] > width and u > road:
            v += shelf_d + road
            roads.append(v - road)
            u, shelf_d = road, 0.0
        it["u"], it["v"] = u, v
        u += it["w"] + gap
        shelf_d = max(shelf_d, it["d"])
    return v + shelf_d + 4.0, roads


def _pool_lots(rng, n_static: int, n_left: int, n_new: int) -> list[dict]:
    """Motor-pool lots sized for the vehicles they will hold (before and after)."""
    total = n_static + n_left + n_new
    npools = max(1, math.ceil(total / 90))
    lots = []
    for k in range(npools):
        share = (total // npools) + (1 if k < total % npools else 0)
        fill = rng.uniform(0.62, 0.8)
        slots = max(4, math.ceil(share / fill))
        pitch = 3.5 + rng.uniform(1.0, 2.5)  # vehicle width + 1-3 m gap side by side
        row_sp = rng.uniform(10.0, 15.0)  # rows 10-15 m apart
        cols = max(2, math.ceil(math.sqrt(slots * row_sp / pitch) * rng.uniform(1.0, 1.6)))
        rows = max(1, math.ceil(slots / cols))
        margin = rng.uniform(4.0, 9.0)
        lots.append(dict(kind="pool", rows=rows, cols=cols, pitch=pitch, row_sp=row_sp, margin=margin,
                         w=cols * pitch + 2 * margin, d=rows * row_sp + 2 * margin))
    return lots


def _distribute(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _build_world(p: SynthParams, rng: np.random.Generator, canvas_bounds, scene_bounds,
                 season_ctx: tuple[float, float]) -> _World:
    """Lay out the world (fields, trees, roads, compound and its contents) in UTM metres.

    ``canvas_bounds`` is the area to fill with fields and trees (the world bounds, which
    contain the rendering canvas); the compound and every change lie inside ``scene_bounds``.
    """
    E = p.extent_m
    left, bottom, right, top = scene_bounds
    cx0, cy0 = (left + right) / 2, (bottom + top) / 2
    objs: list[_Obj] = []
    info: dict = {}
    big = E >= 1200

    # --- compound contents (lots in the compound's local frame) ---
    small_scale = (E / 512.0)
    lots: list[dict] = []
    n_left = p.vehicles_left
    n_static_pool = int(rng.integers(10, 22) * min(small_scale, 3.0) ** 0.8)  # parked in both dates
    lots += _pool_lots(rng, n_static_pool, n_left, p.vehicles_arrived)
    n_tents_b = int(rng.integers(5, 14) * (small_scale ** 0.7))
    tent_L, tent_W = rng.choice([(5.0, 5.0), (6.0, 6.0), (10.0, 6.0), (12.0, 6.0), (8.0, 5.0)], 2)
    tL, tW = max(tent_L[0], tent_W[0]), max(tent_L[1], tent_W[1])
    tgap = rng.uniform(2.5, 6.0)
    t_slots = math.ceil((n_tents_b + p.tents_new) / rng.uniform(0.55, 0.75)) + 2
    t_cols = max(2, math.ceil(math.sqrt(t_slots * 1.3)))
    t_rows = math.ceil(t_slots / t_cols)
    lots.append(dict(kind="tents", rows=t_rows, cols=t_cols, pitch=tW + tgap, row_sp=tL + tgap + 2,
                     margin=4.0, w=t_cols * (tW + tgap) + 8, d=t_rows * (tL + tgap + 2) + 8,
                     sizes=(tuple(tent_L), tuple(tent_W))))
    n_bld = int(np.clip(rng.integers(7, 14) * small_scale ** 1.25, 4, 160))
    for _ in range(n_bld):
        r = rng.random()
        if r < 0.4:
            kind, L, W, H = "gable", rng.uniform(20, 45), rng.uniform(9, 15), rng.uniform(3.5, 7)
        elif r < 0.7:
            kind, L, W, H = "flat", rng.uniform(12, 40), rng.uniform(10, 25), rng.uniform(4, 12)
        elif r < 0.85:
            kind, L, W, H = "L", rng.uniform(20, 40), rng.uniform(15, 30), rng.uniform(4, 9)
        else:
            kind, L, W, H = "hangar", rng.uniform(30, 55), rng.uniform(20, 35), rng.uniform(6, 9)
        sb = rng.uniform(4, 10)
        lots.append(dict(kind="bld", bkind=kind, L=L, W=W, H=H, sb=sb, w=L + 2 * sb, d=W + 2 * sb))
    n_new = p.structures_new
    for _ in range(n_new):
        if p.pixel_size_m >= 5:
            L, W = rng.uniform(50, 140), rng.uniform(30, 70)
        else:
            L, W = rng.uniform(12, 40), rng.uniform(8, 20)
        pad = rng.uniform(4, 10)
        lots.append(dict(kind="pad", L=L, W=W, H=rng.uniform(4, 12), pad=pad, w=L + 2 * pad + 4, d=W + 2 * pad + 4))
    n_yard = int(rng.integers(0, 3) * small_scale ** 0.5)
    for _ in range(n_yard):
        lots.append(dict(kind="containers", rows=int(rng.integers(2, 5)), cols=int(rng.integers(3, 9)),
                         w=0.0, d=0.0))
        lots[-1]["w"] = lots[-1]["cols"] * 2.9 + 8
        lots[-1]["d"] = lots[-1]["rows"] * 7.0 + 8

    road_w = rng.uniform(6.0, 9.0) if not big else rng.uniform(8.0, 12.0)
    area = sum(it["w"] * it["d"] for it in lots) * 1.6
    width = max(math.sqrt(area * rng.uniform(1.2, 1.7)), max(it["w"] for it in lots) + 2 * road_w)
    limit = 0.86 * E
    width = min(width, limit)
    while True:  # widen the compound, then drop optional buildings until everything fits
        for _ in range(40):
            depth, shelf_roads = _pack(lots, width, road_w, rng)
            if depth <= limit or width >= limit:
                break
            width = min(limit, width * 1.08)
        fits = depth <= limit and max(it["w"] for it in lots) + road_w <= width
        if fits:
            break
        optional = [i for i, it in enumerate(lots) if it["kind"] in ("bld", "containers")]
        if not optional:
            raise ValueError(f"the requested objects do not fit in a {E:.0f} m scene; use a larger extent_m")
        lots.pop(optional[int(rng.integers(len(optional)))])
    diag_ok = False
    for _ in range(60):
        theta = rng.uniform(0, 2 * math.pi)
        c, s = abs(math.cos(theta)), abs(math.sin(theta))
        bw, bh = width * c + depth * s, width * s + depth * c
        if bw < 0.92 * E and bh < 0.92 * E:
            diag_ok = True
            break
    if not diag_ok:
        theta = rng.choice([0.0, math.pi / 2, math.pi, 1.5 * math.pi])
        c, s = abs(math.cos(theta)), abs(math.sin(theta))
        bw, bh = width * c + depth * s, width * s + depth * c
    ccx = cx0 + rng.uniform(-1, 1) * max(0.0, (0.94 * E - bw) / 2)
    ccy = cy0 + rng.uniform(-1, 1) * max(0.0, (0.94 * E - bh) / 2)
    fr = _Frame(0, 0, theta)
    ox, oy = fr.pt(width / 2, depth / 2)
    fr = _Frame(ccx - ox, ccy - oy, theta)
    compound_local = box(0, 0, width, depth)
    compound = fr.geom(compound_local)
    info.update(compound_m=[round(width, 1), round(depth, 1)], compound_angle_deg=round(math.degrees(theta) % 360, 2))

    # --- fields (outside) and compound ground ---
    fields = _make_fields(rng, p, canvas_bounds, theta + rng.normal(0, 0.15), season_ctx)
    fields.append(_compound_field(rng, p, compound.buffer(14.0, join_style="mitre"), season_ctx[0]))
    # --- roads ---
    asphalt = _spec("asphalt" if rng.random() < 0.6 else "asphalt_old", rng, 0.08)
    internal = _spec(str(rng.choice(["asphalt_old", "gravel", "concrete"])), rng, 0.08)
    dirt = _spec("dirt", rng, 0.1)
    objs.append(_ground(compound.buffer(12.0, join_style="mitre").difference(compound.buffer(5.0, join_style="mitre")),
                        _spec("dry_veg", rng, 0.1), tex=0.15))
    objs.append(_ground(compound.buffer(9.0, join_style="mitre").difference(compound.buffer(5.5, join_style="mitre")), dirt, tex=0.12))
    main_off = rng.uniform(35, 110)
    span = 3 * E
    main_local = LineString([(-main_off, -span), (-main_off, span)])
    main_w = rng.uniform(7.0, 10.0)
    main = fr.geom(main_local.buffer(main_w / 2, cap_style=2))
    objs.append(_ground(main, asphalt, tex=0.05))
    for k in range(int(span * 2 / 9)):
        dash = box(-main_off - 0.08, -span + k * 9.0, -main_off + 0.08, -span + k * 9.0 + 3.0)
        objs.append(_ground(fr.geom(dash), _spec("marking", rng, 0.1), tex=0.02))
    gate_v = shelf_roads[len(shelf_roads) // 2] + road_w / 2
    access = fr.geom(LineString([(-main_off, gate_v), (road_w / 2, gate_v)]).buffer(road_w / 2, cap_style=2))
    objs.append(_ground(access, asphalt, tex=0.05))
    roads_local = [box(0, 0, road_w, depth)] + [box(0, v, width, v + road_w) for v in shelf_roads]
    road_union = shapely.union_all([fr.geom(g) for g in roads_local])
    objs.append(_ground(road_union, internal, tex=0.06))
    tracks = _tracks(rng, fr, width, depth, lots, road_w, dirt)
    objs[:0] = tracks  # under everything else: pads and roads are drawn over their ends
    keepout = [compound.buffer(16.0), main.buffer(4.0), access.buffer(4.0)]

    # --- airfield (large scenes) ---
    if big:
        keepout += _airfield(rng, p, fr, width, depth, main_off, objs, E, scene_bounds)

    # --- contents of lots ---
    counts = dict(pool_static=0, pool_left=0, pool_new=0, tents_static=0, tents_new=0)
    pools = [it for it in lots if it["kind"] == "pool"]
    statics = _distribute(n_static_pool, len(pools))
    lefts = _distribute(n_left, len(pools))
    arrivals = _distribute(p.vehicles_arrived, len(pools))
    for it, ns, nl, na in zip(pools, statics, lefts, arrivals):
        _fill_pool(rng, p, fr, it, ns, nl, na, objs, counts)
    for it in lots:
        if it["kind"] == "tents":
            _fill_tents(rng, p, fr, it, n_tents_b, p.tents_new, objs, counts)
    blds = []
    for it in lots:
        if it["kind"] == "bld":
            blds.append(_place_building(rng, fr, it, objs))
        elif it["kind"] == "pad":
            _place_pad(rng, fr, it, objs)
        elif it["kind"] == "containers":
            _place_containers(rng, fr, it, objs)
    _change_roofs(rng, p, blds)
    _roadside_vehicles(rng, fr, width, depth, shelf_roads, road_w, objs, int(rng.integers(3, 9) * small_scale ** 0.5))
    _clearings(rng, p, objs, scene_bounds, keepout)
    _trees(rng, p, fields, objs, keepout, canvas_bounds, fr, width, depth)
    info["counts_layout"] = counts
    info["buildings"] = len(blds)
    return _World(fields, objs, {}, info)


def _tracks(rng, fr: _Frame, width: float, depth: float, lots: list, road_w: float, dirt: np.ndarray) -> list:
    """Worn vehicle tracks across the compound ground, from motor pools and the tent area (static)."""
    out = []
    for it in lots:
        if it["kind"] not in ("pool", "tents"):
            continue
        for _ in range(int(rng.integers(1, 4))):
            u0 = it["u"] + rng.uniform(0, it["w"])
            v0 = it["v"] + rng.choice([0.0, it["d"]])
            u1 = np.clip(u0 + rng.uniform(-60, 60), road_w, width)
            v1 = np.clip(v0 + rng.uniform(-40, 40), road_w, depth)
            um, vm = (u0 + u1) / 2 + rng.uniform(-20, 20), (v0 + v1) / 2 + rng.uniform(-20, 20)
            t = np.linspace(0, 1, 24)[:, None]
            pts = (1 - t) ** 2 * np.array([u0, v0]) + 2 * t * (1 - t) * np.array([um, vm]) + t ** 2 * np.array([u1, v1])
            line = LineString(pts)
            g = line.buffer(rng.uniform(1.2, 1.8), cap_style="flat")
            spec = dirt * np.float32(rng.uniform(0.85, 1.1))
            out.append(_ground(fr.geom(g), spec, tex=0.2))
    return out


def _fill_pool(rng, p, fr: _Frame, it: dict, n_static: int, n_left: int, n_new: int, objs, counts):
    """Hard standing with vehicles parked side by side in rows; departures and arrivals in groups."""
    u0, v0 = it["u"], it["v"]
    pad = box(u0, v0, u0 + it["w"], v0 + it["d"])
    objs.append(_ground(fr.geom(pad), _spec(str(rng.choice(["concrete", "gravel", "gravel"])), rng, 0.08), tex=0.08))
    rows, cols = it["rows"], it["cols"]
    free = np.ones((rows, cols), bool)
    taken = np.zeros((rows, cols), bool)
    before = _lattice_groups(rng, free, taken, n_static + n_left, (4, 12), adjacent=True)
    occ = np.zeros((rows, cols), bool)
    for rc in before:
        occ[rc] = True
    left_free, left_taken = occ.copy(), np.zeros_like(occ)
    left = set(_lattice_groups(rng, left_free, left_taken, n_left, p.arrival_group, adjacent=False))
    arrive = _lattice_groups(rng, free, taken, n_new, p.arrival_group, adjacent=True)
    if len(arrive) < n_new:
        raise ValueError("motor pool too small for the arrivals")
    facing = rng.random() < 0.5
    group_paint: dict = {}
    unit_paint = _vehicle_paint(rng, civil=0.0)  # most of a pool is one unit's vehicles
    for rc in before + arrive:
        r, c = rc
        when = "after" if rc in arrive else ("before" if rc in left else "both")
        key = (r, c // 4, when)
        if key not in group_paint:
            group_paint[key] = unit_paint if rng.random() < 0.6 else _vehicle_paint(rng)
        paint, kind = group_paint[key]
        if rng.random() < 0.25:
            kind = str(rng.choice(["truck", "afv", "van"]))
        paint = paint * rng.normal(1.0, 0.03, 4).astype(np.float32)
        L, W = rng.uniform(6.0, 8.0), rng.uniform(2.5, 3.5)
        if kind == "van":
            L = rng.uniform(6.0, 6.8)
        u = u0 + it["margin"] + (c + 0.5) * it["pitch"] + rng.normal(0, 0.2)
        v = v0 + it["margin"] + (r + 0.5) * it["row_sp"] + rng.normal(0, 0.3)
        head = math.pi / 2 if (facing or r % 2 == 0) else -math.pi / 2
        x, y = fr.pt(u, v)
        o = _vehicle(rng, x, y, fr.theta + head + rng.normal(0, 0.03), L, W, paint, kind)
        o.when = when
        if when != "both":
            o.truth = ("appeared" if when == "after" else "disappeared", "vehicle")
        objs.append(o)
        counts["pool_new" if when == "after" else ("pool_left" if when == "before" else "pool_static")] += 1


def _fill_tents(rng, p, fr, it, n_before, n_new, objs, counts):
    """Tents on a lattice; new tents fill empty slots next to the existing ones."""
    rows, cols = it["rows"], it["cols"]
    free = np.ones((rows, cols), bool)
    taken = np.zeros((rows, cols), bool)
    before = _lattice_groups(rng, free, taken, n_before, (3, 8), adjacent=True)
    new = _lattice_groups(rng, free, taken, n_new, (1, 4), adjacent=True)
    canvas = _spec(str(rng.choice(["canvas_olive", "canvas_olive", "canvas_tan", "canvas_white"], p=[0.4, 0.3, 0.25, 0.05])), rng, 0.08)
    sizes = it["sizes"]
    for rc in before + new:
        r, c = rc
        L, W = sizes[int(rng.integers(0, 2))]
        L, W = max(L, W), min(L, W)
        u = it["u"] + 4 + (c + 0.5) * it["pitch"] + rng.normal(0, 0.3)
        v = it["v"] + 4 + (r + 0.5) * it["row_sp"] + rng.normal(0, 0.3)
        x, y = fr.pt(u, v)
        o = _tent(rng, x, y, fr.theta + math.pi / 2 + rng.normal(0, 0.03), L * rng.uniform(0.97, 1.03), W,
                  canvas * rng.normal(1.0, 0.04, 4).astype(np.float32))
        if rc in new:
            o.when, o.truth = "after", ("appeared", "tent")
            counts["tents_new"] += 1
        else:
            counts["tents_static"] += 1
        objs.append(o)


_ROOFS = ["metal_galv", "concrete", "roof_dark", "roof_gravel", "metal_white", "metal_rust", "metal_green", "tile_red",
          "metal_blue"]
_ROOF_P = np.array([0.3, 0.12, 0.15, 0.1, 0.08, 0.08, 0.08, 0.05, 0.04])


def _roof_name(rng) -> str:
    """A roof material, common ones (grey metal, concrete, bitumen) most often."""
    return str(rng.choice(_ROOFS, p=_ROOF_P / _ROOF_P.sum()))


def _place_building(rng, fr, it, objs) -> _Obj:
    u = it["u"] + it["w"] / 2 + rng.uniform(-1, 1) * 0.3 * it["sb"]
    v = it["v"] + it["d"] / 2 + rng.uniform(-1, 1) * 0.3 * it["sb"]
    x, y = fr.pt(u, v)
    roof_name = _roof_name(rng)
    if it["bkind"] == "hangar":
        roof_name = str(rng.choice(["metal_galv", "metal_green", "metal_white", "concrete"]))
    roof = _spec(roof_name, rng, 0.1)
    if rng.random() < 0.5:  # concrete apron in front
        ap = box(it["u"] + 1, it["v"], it["u"] + it["w"] - 1, it["v"] + it["sb"] + 1)
        objs.append(_ground(fr.geom(ap), _spec("concrete", rng, 0.1), tex=0.06))
    if it["bkind"] == "L":
        o = _l_building(rng, x, y, it["L"], it["W"], fr.theta, roof, it["H"])
    else:
        o = _building(rng, x, y, it["L"], it["W"], fr.theta, it["bkind"], roof, it["H"])
    objs.append(o)
    return o


def _place_pad(rng, fr, it, objs):
    """A construction pad (bare soil / gravel); the new structure stands on it in the after scene."""
    u = it["u"] + it["w"] / 2
    v = it["v"] + it["d"] / 2
    pad = box(u - it["L"] / 2 - it["pad"], v - it["W"] / 2 - it["pad"], u + it["L"] / 2 + it["pad"], v + it["W"] / 2 + it["pad"])
    objs.append(_ground(fr.geom(pad), _spec(str(rng.choice(["gravel", "soil_light", "dirt"])), rng, 0.1), tex=0.12))
    x, y = fr.pt(u, v)
    kind = str(rng.choice(["flat", "gable", "flat"]))
    o = _building(rng, x, y, it["L"], it["W"], fr.theta, kind, _spec(_roof_name(rng), rng, 0.1), it["H"])
    o.when, o.truth = "after", ("appeared", "structure")
    objs.append(o)


def _place_containers(rng, fr, it, objs):
    """A container yard: ISO containers in rows (static)."""
    colours = ["metal_rust", "metal_green", "metal_blue", "metal_white", "paint_olive", "metal_galv"]
    for r in range(it["rows"]):
        for c in range(it["cols"]):
            if rng.random() < 0.2:
                continue
            u = it["u"] + 4 + (c + 0.5) * 2.9
            v = it["v"] + 4 + (r + 0.5) * 7.0
            x, y = fr.pt(u, v)
            fp = _rect(x, y, 2.44, 6.06, fr.theta)
            spec = _spec(str(rng.choice(colours)), rng, 0.1)
            objs.append(_Obj("container", [_Surf(fp, spec, 2.6, tex=0.03)], [_Caster(fp, 0, 2.6)],
                             [_Wall(fp, 0, 2.6, spec * 0.85)], footprint=fp))


def _change_roofs(rng, p, blds: list):
    """Give ``roofs_changed`` buildings a different roof material after (change "changed")."""
    cands = [o for o in blds if o.truth is None]
    for o in [cands[i] for i in rng.permutation(len(cands))[: p.roofs_changed]]:
        new_name = str(rng.choice(["metal_white", "metal_green", "metal_rust", "roof_dark", "tile_red", "metal_blue"]))
        new = _spec(new_name, rng, 0.08)
        if np.abs(new - o.surfs[0].spec).sum() < 0.15:
            new = _spec("metal_white" if o.surfs[0].spec.mean() < 0.25 else "roof_dark", rng, 0.05)
        roof_surfs = [s for s in o.surfs if abs(s.z - o.surfs[0].z) < 6 and s.geom.area > 20]
        for s in roof_surfs:
            s.spec_after = new
        o.truth = ("changed", "structure")
        o.footprint = shapely.union_all([s.geom for s in roof_surfs])


def _roadside_vehicles(rng, fr, width, depth, shelf_roads, road_w, objs, n):
    """Vehicles parked on road shoulders with random orientation (static), clear of other objects."""
    tree = shapely.STRtree([o.footprint.buffer(1.0) for o in objs if o.footprint is not None and o.top > 0])
    placed = 0
    for _ in range(n * 20):
        if placed >= n:
            break
        v_road = shelf_roads[int(rng.integers(len(shelf_roads)))]
        u = rng.uniform(road_w + 10, max(road_w + 11, width - 10))
        side = rng.choice([-1.0, 1.0])
        v = v_road + road_w / 2 + side * (road_w / 2 - rng.uniform(1.0, 2.0))
        x, y = fr.pt(u, v)
        paint, kind = _vehicle_paint(rng, civil=0.25)
        ang = fr.theta + rng.choice([0, math.pi]) + rng.normal(0, 0.25)
        o = _vehicle(rng, x, y, ang, rng.uniform(6, 8), rng.uniform(2.5, 3.3), paint, kind)
        if len(tree.query(o.footprint, predicate="intersects")):
            continue
        objs.append(o)
        placed += 1


def _clearings(rng, p, objs, scene_bounds, keepout):
    """Large areas cleared or paved between the dates (class structure, change appeared)."""
    left, bottom, right, top = scene_bounds
    E = right - left
    blocked = shapely.union_all(keepout)
    placed = 0
    for _ in range(200):
        if placed >= p.clearings_new:
            break
        size = rng.uniform(0.04, 0.1) * E
        cx, cy = rng.uniform(left + size, right - size), rng.uniform(bottom + size, top - size)
        g = _blob(cx, cy, size / 2, rng, n=9, rough=0.25).envelope if rng.random() < 0.6 else _blob(cx, cy, size / 2, rng, n=8, rough=0.2)
        g = affinity.rotate(g, rng.uniform(0, 90), origin="centroid")
        if g.intersects(blocked):
            continue
        o = _ground(g, _spec(str(rng.choice(["soil_light", "gravel", "dirt", "concrete"])), rng, 0.1), tex=0.12)
        o.when, o.truth, o.footprint = "after", ("appeared", "structure"), g
        objs.append(o)
        blocked = blocked.union(g.buffer(20))
        keepout.append(g.buffer(10))
        placed += 1
    if placed < p.clearings_new:
        raise ValueError("no room for the requested clearings; use a larger extent_m")


def _airfield(rng, p, fr: _Frame, width, depth, main_off, objs, E, scene_bounds) -> list:
    """Runway, parallel taxiway, apron with aircraft and hardened shelters beside the compound."""
    rw_w = rng.uniform(40, 60)
    off = depth + rng.uniform(170, 280)
    length = min(3000.0, 2.2 * E)
    u_c = width / 2
    rw = box(u_c - length / 2, off, u_c + length / 2, off + rw_w)
    conc = _spec("concrete", rng, 0.08)
    objs.append(_ground(fr.geom(rw), conc, tex=0.05))
    mk = _spec("marking", rng, 0.05)
    for k in range(int(length / 60)):
        u = u_c - length / 2 + 60 * k + 20
        objs.append(_ground(fr.geom(box(u, off + rw_w / 2 - 0.45, u + 30, off + rw_w / 2 + 0.45)), mk, tex=0.02))
    for end in (-1, 1):
        ue = u_c + end * (length / 2 - 10)
        for j in range(8):
            vv = off + 3 + j * (rw_w - 6) / 8
            objs.append(_ground(fr.geom(box(ue - 15, vv, ue + 15, vv + 1.8)), mk, tex=0.02))
    tw_v = off - rng.uniform(60, 100)
    tw_w = rng.uniform(18, 25)
    asph = _spec("asphalt_old", rng, 0.08)
    objs.append(_ground(fr.geom(box(u_c - length / 2 + 60, tw_v, u_c + length / 2 - 60, tw_v + tw_w)), asph, tex=0.05))
    for k in range(4):
        u = u_c - length / 2 + 80 + k * (length - 160) / 3
        objs.append(_ground(fr.geom(box(u - tw_w / 2, tw_v, u + tw_w / 2, off + 1)), asph, tex=0.05))
    apron = box(u_c - 250, depth + 20, u_c + 250, tw_v)
    objs.append(_ground(fr.geom(apron), conc * 0.95, tex=0.05))
    grey = _spec("paint_grey", rng, 0.1)
    for k in range(int(rng.integers(4, 10))):
        u, v = u_c - 220 + k * 45, depth + 20 + (tw_v - depth - 20) * 0.5
        objs.append(_aircraft(rng, fr, u, v, grey))
    for k in range(int(rng.integers(3, 8))):  # hardened aircraft shelters, arched concrete
        u = u_c + 280 + k * 55
        x, y = fr.pt(u, depth + 45)
        objs.append(_building(rng, x, y, rng.uniform(30, 36), rng.uniform(22, 26), fr.theta + math.pi / 2, "hangar",
                              _spec("concrete", rng, 0.1), rng.uniform(1.0, 2.0)))
    return [fr.geom(box(u_c - length / 2 - 20, tw_v - 20, u_c + length / 2 + 20, off + rw_w + 60)),
            fr.geom(box(u_c - 270, depth, u_c + 650, tw_v)).buffer(10)]


def _aircraft(rng, fr, u, v, paint) -> _Obj:
    """A parked aircraft: fuselage, swept wings and tailplane (static)."""
    L = rng.uniform(15, 22)
    span = L * rng.uniform(0.6, 0.8)
    fus = box(-L / 2, -0.9, L / 2, 0.9)
    wing = Polygon([(1.0, 0.9), (-3.5, span / 2), (-5.5, span / 2), (-3.0, 0.9), (-3.0, -0.9), (-5.5, -span / 2), (-3.5, -span / 2), (1.0, -0.9)])
    tail = Polygon([(-L / 2 + 3.5, 0.5), (-L / 2 + 0.8, span / 4), (-L / 2, span / 4), (-L / 2 + 0.5, -span / 4), (-L / 2 + 0.8, -span / 4), (-L / 2 + 3.5, -0.5)])
    shape = shapely.union_all([fus, wing, tail]).buffer(0)
    shape = affinity.rotate(shape, 90, origin=(0, 0))
    shape = affinity.translate(shape, u, v)
    g = fr.geom(shape)
    if isinstance(g, MultiPolygon):
        g = max(g.geoms, key=lambda q: q.area)
    return _Obj("aircraft", [_Surf(g, paint, 3.0, tex=0.02)], [_Caster(g.convex_hull, 1.5, 3.5, opacity=0.9)], [], footprint=g)


def _trees(rng, p, fields, objs, keepout, canvas_bounds, fr, width, depth):
    """Tree lines along some field edges, woods (large scenes), single trees and compound trees."""
    blocked = shapely.union_all(keepout)
    shapely.prepare(blocked)
    canvas_edge = box(*canvas_bounds).exterior
    pts: list[tuple[float, float, float, float, str]] = []
    conifer_share = rng.uniform(0, 0.4)
    for f in fields[:-1]:
        if rng.random() > 0.3:
            continue
        ring = np.asarray(f.geom.exterior.coords)
        k = int(rng.integers(len(ring) - 1))
        a, b = ring[k], ring[k + 1]
        seg = float(np.hypot(*(b - a)))
        if seg < 20 or canvas_edge.distance(Point((a + b) / 2)) < 5.0:
            continue
        spacing = rng.uniform(3.5, 7.0)
        t = np.arange(rng.uniform(0, spacing), seg, spacing) / seg
        gaps = rng.random(len(t)) > rng.uniform(0.0, 0.3)
        for tt in t[gaps]:
            q = a + (b - a) * tt + rng.normal(0, 0.6, 2)
            pts.append((q[0], q[1], rng.uniform(2.0, 4.0), rng.uniform(7, 15), "conifer" if rng.random() < conifer_share else "decid"))
    left, bottom, right, top = canvas_bounds
    E = right - left
    n_single = int(rng.integers(10, 30) * (E / 512) ** 2)
    for _ in range(n_single):
        pts.append((rng.uniform(left, right), rng.uniform(bottom, top), rng.uniform(1.5, 4.0), rng.uniform(5, 14), "decid"))
    if E >= 1000:
        for _ in range(int(rng.integers(1, 4) * (E / 1500) ** 2)):
            wc = (rng.uniform(left, right), rng.uniform(bottom, top))
            wood = _blob(wc[0], wc[1], rng.uniform(80, 220), rng, n=14, rough=0.3)
            wb = wood.bounds
            # at coarse pixels a wood is drawn as fewer, larger crown clusters
            grow = max(1.0, p.pixel_size_m / 2.5)
            sp = rng.uniform(4.5, 6.5) * grow
            xs, ys = np.meshgrid(np.arange(wb[0], wb[2], sp), np.arange(wb[1], wb[3], sp))
            cand = np.column_stack([xs.ravel(), ys.ravel()]) + rng.normal(0, sp * 0.25, (xs.size, 2))
            inside = shapely.contains_xy(wood, cand[:, 0], cand[:, 1])
            for q in cand[inside]:
                pts.append((q[0], q[1], rng.uniform(2.0, 4.0) * grow, rng.uniform(10, 18), "conifer" if rng.random() < conifer_share + 0.2 else "decid"))
    # a few trees inside the compound along its edge
    for _ in range(int(rng.integers(3, 10))):
        u, v = rng.uniform(0, width), rng.choice([-2.5, depth + 2.5])
        x, y = fr.pt(u, v)
        pts.append((x, y, rng.uniform(2.0, 3.5), rng.uniform(6, 12), "decid_in"))
    if not pts:
        return
    arr = np.array([(q[0], q[1], q[2], q[3]) for q in pts])
    kinds = [q[4] for q in pts]
    inside_canvas = (arr[:, 0] > left) & (arr[:, 0] < right) & (arr[:, 1] > bottom) & (arr[:, 1] < top)
    circles = shapely.buffer(shapely.points(arr[:, :2]), arr[:, 2] + 1.0, quad_segs=2)
    hit = shapely.intersects(blocked, circles)
    keep = inside_canvas & (~hit | np.array([k == "decid_in" for k in kinds]))
    sel = np.flatnonzero(keep)
    crowns = _crowns(rng, arr[sel, 0], arr[sel, 1], arr[sel, 2])
    trunks = shapely.box(arr[sel, 0] - 0.25, arr[sel, 1] - 0.25, arr[sel, 0] + 0.25, arr[sel, 1] + 0.25)
    for j, i in enumerate(sel):
        objs.append(_tree(rng, crowns[j], trunks[j], arr[i, 2], arr[i, 3], "conifer" if kinds[i] == "conifer" else "decid"))


def _make_fields(rng, p, canvas_bounds, angle, season_ctx) -> list[_Field]:
    """Partition the canvas into agricultural parcels (recursive oblique splits) with land cover."""
    left, bottom, right, top = canvas_bounds
    cx, cy = (left + right) / 2, (bottom + top) / 2
    R = math.hypot(right - left, top - bottom)
    fr = _Frame(cx, cy, angle)
    root = box(-R / 2, -R / 2, R / 2, R / 2)
    big = 1.0 if p.extent_m < 1500 else 1.6
    out: list[Polygon] = []

    def split(poly: Polygon, depth: int):
        x0, y0, x1, y1 = poly.bounds
        w, h = x1 - x0, y1 - y0
        if max(w, h) < rng.uniform(140, 380) * big or depth > 14:
            out.append(poly)
            return
        f = rng.uniform(0.3, 0.7)
        tilt = rng.normal(0, 0.05)
        if w >= h:
            xc = x0 + f * w
            line = [(xc - tilt * h, y0 - 1), (xc + tilt * h, y1 + 1)]
            side_a = Polygon([(x0 - 1, y0 - 1), line[0], line[1], (x0 - 1, y1 + 1)])
        else:
            yc = y0 + f * h
            line = [(x0 - 1, yc - tilt * w), (x1 + 1, yc + tilt * w)]
            side_a = Polygon([(x0 - 1, y0 - 1), (x1 + 1, y0 - 1), line[1], line[0]])
        a = poly.intersection(side_a)
        b = poly.difference(side_a)
        for part in (a, b):
            if part.is_empty:
                continue
            if isinstance(part, MultiPolygon):
                for g in part.geoms:
                    split(g, depth + 1)
            else:
                split(part, depth + 1)

    split(root, 0)
    canvas_box = box(*canvas_bounds)
    fields = []
    for poly in out:
        g = fr.geom(poly).intersection(canvas_box)
        if g.is_empty or g.area < 1.0:
            continue
        if isinstance(g, MultiPolygon):
            g = max(g.geoms, key=lambda q: q.area)
        fields.append(_field_cover(rng, p, g, season_ctx, angle))
    return fields


def _field_cover(rng, p, geom, season_ctx, angle) -> _Field:
    """Land cover of a parcel before and after, including seasonal change (by ``p.season``).

    ``season_ctx`` is (mean greenness change between the dates, greenness of the before date).
    """
    season_shift, g_b = season_ctx
    w = np.array([0.38, 0.34, 0.1 + 0.1 * (1 - g_b), 0.06 + 0.3 * (1 - g_b)])
    kind = str(rng.choice(["crop", "grass", "bare", "dry"], p=w / w.sum()))
    s = p.season
    row_ang = angle + rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.02)
    lam = rng.uniform(2.5, 8.0)
    k = (2 * math.pi / lam * math.cos(row_ang + math.pi / 2), 2 * math.pi / lam * math.sin(row_ang + math.pi / 2))
    if kind == "crop":
        cov, gr, ra, rs = rng.uniform(0.5, 0.95), rng.uniform(0.6, 0.95), rng.uniform(0.03, 0.12), 0.0
    elif kind == "grass":
        cov, gr, ra, rs = rng.uniform(0.75, 1.0), rng.uniform(0.55, 0.9), 0.0, 0.0
    elif kind == "bare":
        cov, gr, ra, rs = rng.uniform(0.0, 0.12), rng.uniform(0.2, 0.8), 0.0, rng.uniform(0.03, 0.12)
    else:
        cov, gr, ra, rs = rng.uniform(0.5, 0.9), rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.1), 0.0
    d_gr = s * (season_shift + rng.normal(0, 0.15))
    d_cov = s * rng.normal(0, 0.08)
    cov_a, gr_a = cov + d_cov, gr + d_gr
    ev, e1, e2, e3 = rng.random(4)  # always drawn, so that the layout does not depend on p.season
    if kind == "crop" and ev < 0.3 * min(s, 1.0):  # harvested: stubble
        cov_a, gr_a = 0.3 + 0.3 * e1, 0.02 + 0.13 * e2
    elif kind in ("dry", "grass") and ev < 0.1 * min(s, 1.0):  # ploughed
        cov_a, gr_a, rs = 0.08 * e1, gr, max(rs, 0.1)
    elif kind == "bare" and ev < 0.4 * min(s, 1.0):  # sown and emerging
        cov_a, gr_a, ra = 0.15 + 0.35 * e1, 0.7 + 0.25 * e2, 0.1 + 0.15 * e3
    clip = lambda x: float(np.clip(x, 0.0, 1.0))
    return _Field(
        geom=geom, kind=kind, cover=(clip(cov), clip(cov_a)), green=(clip(gr), clip(gr_a)),
        soil=rng.uniform(0.75, 1.25), a_coarse=rng.uniform(0.04, 0.14), a_fine=rng.uniform(0.06, 0.15),
        a_season=(0.03, 0.03 + 0.15 * s), rows_amp=ra, rows_soil=rs, rows_k=k,
    )


def _compound_field(rng, p, geom, season_shift) -> _Field:
    """Ground inside the compound: mown, worn grass with bare patches."""
    cov, gr = rng.uniform(0.35, 0.75), rng.uniform(0.45, 0.8)
    s = p.season
    return _Field(geom=geom, kind="base", cover=(cov, float(np.clip(cov + s * rng.normal(0, 0.05), 0, 1))),
                  green=(gr, float(np.clip(gr + s * (season_shift + rng.normal(0, 0.1)), 0, 1))),
                  soil=rng.uniform(0.9, 1.3), a_coarse=rng.uniform(0.12, 0.22), a_fine=rng.uniform(0.08, 0.16),
                  a_season=(0.03, 0.03 + 0.12 * s))


# ---------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------


def _fractal(rng: np.random.Generator, shape: tuple[int, int], beta: float, fmin: float = 0.0) -> np.ndarray:
    """Zero-mean, unit-std fractal noise with power spectrum ~ f^-beta, float32.

    ``fmin`` (cycles per pixel) suppresses scales larger than ``1 / fmin`` pixels.
    """
    h, w = shape
    white = rng.standard_normal((h, w), dtype=np.float32)
    spec = np.fft.rfft2(white)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2)
    if fmin > 0:
        amp *= np.minimum(1.0, (f / fmin) ** 2)
    spec *= amp.astype(np.float32)
    spec[0, 0] = 0
    out = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    out -= out.mean()
    out /= out.std() + 1e-12
    return out


def _upsample(a: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor, cell-centred, cropped to ``shape``, float32.

    Fine pixel ``i`` samples the coarse array at ``(i + 0.5) / factor - 0.5`` (edges clamped).
    ``a`` must have at least ``ceil(shape / factor)`` rows and columns. Columns are
    interpolated on the small array first, then rows are written as contiguous blocks.
    """
    k = int(factor)
    if k == 1:
        return np.ascontiguousarray(a[: shape[0], : shape[1]], dtype=np.float32)
    a = np.pad(np.asarray(a, np.float32), 1, mode="edge")
    nm, nn = -(-shape[0] // k), -(-shape[1] // k)
    if a.shape[0] < nm + 2 or a.shape[1] < nn + 2:
        raise ValueError("coarse array too small for the requested shape")
    weights = [((0, (r + 0.5) / k + 0.5) if (r + 0.5) / k < 0.5 else (1, (r + 0.5) / k - 0.5)) for r in range(k)]
    cols = np.empty((a.shape[0], nn, k), np.float32)
    for r, (lo, w) in enumerate(weights):
        np.multiply(a[:, lo: lo + nn], np.float32(1.0 - w), out=cols[:, :, r])
        cols[:, :, r] += np.float32(w) * a[:, lo + 1: lo + 1 + nn]
    cols = np.ascontiguousarray(cols.reshape(a.shape[0], nn * k)[:, : shape[1]])
    out = np.empty((nm, k, shape[1]), np.float32)
    for r, (lo, w) in enumerate(weights):
        np.multiply(cols[lo: lo + nm], np.float32(1.0 - w), out=out[:, r, :])
        out[:, r, :] += np.float32(w) * cols[lo + 1: lo + 1 + nm]
    return out.reshape(nm * k, shape[1])[: shape[0]]


def _sample_coarse(a: np.ndarray, k: int, cv_rows: np.ndarray, cv_cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of a ``k``-times-coarser canvas array at canvas pixel coordinates.

    ``cv_rows`` and ``cv_cols`` (1-D) are fractional canvas pixel indices (centre = i + 0.5);
    returns the (len(rows), len(cols)) grid of samples, consistent with :func:`_upsample`.
    """
    def axis(pos, n):
        c = np.clip(pos / k - 0.5, 0, n - 1)
        i0 = np.floor(c).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        return i0, i1, (c - i0).astype(np.float32)

    r0, r1, wr = axis(cv_rows, a.shape[0])
    c0, c1, wc = axis(cv_cols, a.shape[1])
    rows = a[r0] * (1 - wr)[:, None] + a[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc)[None, :] + rows[:, c1] * wc[None, :]


def _noise_field(rng, shape, factor, beta) -> np.ndarray:
    """Fractal noise made on a grid ``factor`` times coarser than ``shape`` and upsampled to it."""
    small = (shape[0] // factor + 2, shape[1] // factor + 2)
    return _upsample(_fractal(rng, small, beta), factor, shape)


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------


@dataclass
class _Canvas:
    transform: Affine
    shape: tuple[int, int]
    res: float
    ss: int
    off: tuple[int, int]  # (row, col) of the before grid's origin on the canvas

    @property
    def bounds(self):
        t = self.transform
        return (t.c, t.f - self.res * self.shape[0], t.c + self.res * self.shape[1], t.f)


def _world_bounds(p: SynthParams, before: Grid, cv: _Canvas) -> tuple[float, float, float, float]:
    """Where the world is laid out: the before scene plus a margin that does not depend on the
    after grid or the nuisances (so the same seed gives the same world), grown only if the
    canvas needs more."""
    b, c = before.bounds, cv.bounds
    m = max(0.1 * p.extent_m, 60.0, b[0] - c[0], b[1] - c[1], c[2] - b[2], c[3] - b[3])
    return (b[0] - m, b[1] - m, b[2] + m, b[3] + m)


def _before_grid(p: SynthParams) -> Grid:
    crs = utm_crs_for(p.lon, p.lat)
    tr = Transformer.from_crs(LONLAT, crs, always_xy=True)
    x, y = tr.transform(p.lon, p.lat)
    n = max(16, int(round(p.extent_m / p.pixel_size_m)))
    side = n * p.pixel_size_m
    x0 = math.floor((x - side / 2) / p.pixel_size_m) * p.pixel_size_m
    y1 = math.ceil((y + side / 2) / p.pixel_size_m) * p.pixel_size_m
    return Grid(crs, Affine(p.pixel_size_m, 0, x0, 0, -p.pixel_size_m, y1), (n, n))


def _after_grid(p: SynthParams, before: Grid, shift_m: tuple[float, float]) -> Grid:
    """The after grid: its own CRS and pixel size, covering the before scene plus the shift."""
    px = p.after_pixel_size_m or p.pixel_size_m
    pad_m = math.hypot(*shift_m) + 3 * max(px, p.pixel_size_m)
    b = before.bounds
    padded = (b[0] - pad_m, b[1] - pad_m, b[2] + pad_m, b[3] + pad_m)
    if p.after_crs == "utm":
        return Grid.from_bounds(padded, before.crs, px)
    if p.after_crs == "webmercator":
        crs = CRS.from_epsg(3857)
        k = Proj("EPSG:3857").get_factors(p.lon, p.lat).meridional_scale
        res = px * k
    else:
        crs = LONLAT
        geod = Geod(ellps="WGS84")
        _, _, d = geod.inv(p.lon, p.lat - 0.005, p.lon, p.lat + 0.005)
        res = px / (d / 0.01)
    bounds = transform_bounds_densified(padded, before.crs, crs)
    left, bottom, right, top = bounds
    cols = max(1, math.ceil((right - left) / res))
    rows = max(1, math.ceil((top - bottom) / res))
    return Grid(crs, Affine(res, 0, left, 0, -res, top), (rows, cols))


def _canvas(p: SynthParams, before: Grid, after: Grid, shift_m) -> _Canvas:
    """Supersampled UTM canvas aligned with the before grid, covering both scenes' content."""
    n = max(before.shape)
    ss = p.supersample or int(np.clip(3500 // n, 2, 4))
    res = p.pixel_size_m / ss
    ab = transform_bounds_densified(after.bounds, after.crs, before.crs)
    ab = (ab[0] - shift_m[0], ab[1] - shift_m[1], ab[2] - shift_m[0], ab[3] - shift_m[1])
    bb = before.bounds
    margin = 4 * max(p.pixel_size_m, p.after_pixel_size_m or 0) + 2.0
    left = min(bb[0], ab[0]) - margin
    top = max(bb[3], ab[3]) + margin
    right = max(bb[2], ab[2]) + margin
    bottom = min(bb[1], ab[1]) - margin
    off_c = math.ceil((bb[0] - left) / res)
    off_r = math.ceil((top - bb[3]) / res)
    x0 = bb[0] - off_c * res
    y0 = bb[3] + off_r * res
    cols = math.ceil((right - x0) / res)
    rows = math.ceil((y0 - bottom) / res)
    return _Canvas(Affine(res, 0, x0, 0, -res, y0), (rows, cols), res, ss, (off_r, off_c))


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@dataclass
class _Shared:
    """Date-independent canvas arrays (world-anchored textures)."""

    fid: np.ndarray  # field id per canvas pixel (uint16, 1-based)
    fine: np.ndarray  # fine texture noise (float16 to save memory, unit std)
    season_coarse: np.ndarray  # smooth noise for the spatially varying seasonal change, coarse
    season_k: int  # canvas pixels per coarse season pixel
    cover: np.ndarray  # cover offset (texture + crop rows), add the field's cover per date
    soil: np.ndarray  # soil brightness factor (with texture and furrows)


def _shared_arrays(rng, world: _World, cv: _Canvas) -> _Shared:
    H, W = cv.shape
    fid = _burn([f.geom for f in world.fields], range(1, len(world.fields) + 1), cv, "uint16")
    fid[fid == 0] = 1  # (none expected: the fields tile the canvas)
    k_fine = cv.ss
    k_coarse = max(1, int(round(max(2.0, cv.res * 12) / cv.res)))
    k_season = max(1, int(round(max(6.0, cv.res * 24) / cv.res)))
    fine = _noise_field(rng, (H, W), k_fine, 1.3)
    coarse = _noise_field(rng, (H, W), k_coarse, 2.6)
    season = _fractal(rng, (H // k_season + 2, W // k_season + 2), 3.0)
    n = len(world.fields) + 1
    lut = lambda attr: np.array([0.0] + [attr(f) for f in world.fields], np.float32)[:n]
    cover = lut(lambda f: f.a_coarse)[fid]
    cover *= coarse
    del coarse
    tmp = lut(lambda f: f.a_fine)[fid]
    tmp *= fine
    cover += tmp
    soil = lut(lambda f: f.soil)[fid]
    tmp = fine * np.float32(0.12)
    tmp += 1.0
    soil *= tmp
    del tmp
    ra, rs = lut(lambda f: f.rows_amp), lut(lambda f: f.rows_soil)
    rows_ids = np.flatnonzero((ra > 0) | (rs > 0))
    if rows_ids.size:
        _add_rows(world, cv, fid, rows_ids, ra, rs, cover, soil)
    return _Shared(fid=fid, fine=fine.astype(np.float16), season_coarse=season, season_k=k_season, cover=cover, soil=soil)


def _add_rows(world, cv, fid, ids, ra, rs, cover, soil):
    """Crop rows / furrows: a cosine pattern per field, added within each field's bounding window."""
    t = cv.transform
    for i in ids:
        f = world.fields[i - 1]
        x0, y0, x1, y1 = f.geom.bounds
        c0 = max(0, int((x0 - t.c) / cv.res))
        c1 = min(cv.shape[1], int(math.ceil((x1 - t.c) / cv.res)))
        r0 = max(0, int((t.f - y1) / cv.res))
        r1 = min(cv.shape[0], int(math.ceil((t.f - y0) / cv.res)))
        if c1 <= c0 or r1 <= r0:
            continue
        xs = ((np.arange(c0, c1) + 0.5) * cv.res).astype(np.float32)
        ys = (-(np.arange(r0, r1) + 0.5) * cv.res).astype(np.float32)
        kx, ky = f.rows_k
        pat = np.cos(kx * xs[None, :] + ky * ys[:, None])
        pat = np.sign(pat) * np.abs(pat) ** 0.5  # sharper rows
        m = fid[r0:r1, c0:c1] == i
        if ra[i] > 0:
            cover[r0:r1, c0:c1] += np.where(m, ra[i] * pat, 0)
        if rs[i] > 0:
            soil[r0:r1, c0:c1] *= np.where(m, 1 + rs[i] * pat, 1)


@dataclass
class _DateCtx:
    name: str  # before | after
    sun: tuple[float, float]
    view: tuple[float, float]
    diffuse: np.ndarray  # per band
    cloud: tuple | None = None  # (opacity, shadow strength, factor): coarse arrays, canvas pixels per cell
    cloud_spec: np.ndarray | None = None


def _diffuse(sun_el: float) -> np.ndarray:
    """Sky fraction of irradiance per band; grows as the sun gets lower."""
    return np.clip(_DIFFUSE_55 * math.sqrt(math.sin(math.radians(55)) / math.sin(math.radians(sun_el))), 0, 0.7).astype(np.float32)


def _visible_objs(world: _World, date: str) -> list[_Obj]:
    objs = [o for o in world.objs if o.when in ("both", date)]
    ground = [o for o in objs if o.top <= 0.0]
    tall = sorted((o for o in objs if o.top > 0.0), key=lambda o: o.top)
    return ground + tall


def _translate_many(geoms: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Translate each geometry of an array by its own (dx, dy), vectorised."""
    if len(geoms) == 0:
        return geoms
    n = shapely.get_num_coordinates(geoms)
    off = np.column_stack([np.repeat(dx, n), np.repeat(dy, n)])
    return shapely.transform(geoms, lambda c: c + off)


def _surface_table(world: _World, ctx: _DateCtx):
    """Per-date surfaces in painter's order: geometry (leaned), reflectance, height, lighting.

    Returns
    -------
    geoms : ndarray of shapely geometries (UTM m)
    specs : (n, 4) reflectance; zs : (n,) height for the shadow test (m);
    facets : (n,) direct-light factor; svfs : (n,) sky-view factor; texs : (n,) texture amplitude.
    """
    dx, dy = _lean(ctx.view)
    leaning = ctx.view[1] > 0
    sun_dir = _dir(ctx.sun[0])
    lens_shift = 0.9 * math.cos(math.radians(ctx.sun[1]))
    recs = []  # (geom, spec, z_shadow, facet, svf, tex, lean_z, crown_radius)
    for o in _visible_objs(world, ctx.name):
        top = o.shadow_top
        if leaning:
            for w in o.walls:
                for quad, aspect in _wall_quads(w, dx, dy, ctx.view[0]):
                    recs.append((quad, w.spec, top, _facet_factor(90.0, aspect, ctx.sun), 0.5, 0.03, 0.0, 0.0))
        for sf in o.surfs:
            spec = sf.spec_after if (ctx.name == "after" and sf.spec_after is not None) else sf.spec
            zt = top if sf.zshadow is None else sf.zshadow
            if sf.crown > 0:
                recs.append((sf.geom, spec, zt, 0.3, 0.8, sf.tex, sf.z, 0.0))
                recs.append((sf.geom, spec, zt, 1.2, 1.0, sf.tex, sf.z, sf.crown))
            else:
                recs.append((sf.geom, spec, zt, _facet_factor(sf.slope, sf.aspect, ctx.sun),
                             (1 + math.cos(math.radians(sf.slope))) / 2, sf.tex, sf.z, 0.0))
    if not recs:
        e = np.zeros(0, np.float32)
        return np.array([], object), np.zeros((0, 4), np.float32), e, e, e, e
    geoms = np.empty(len(recs), object)
    geoms[:] = [r[0] for r in recs]
    lean_z = np.array([r[6] for r in recs])
    if leaning:
        geoms = _translate_many(geoms, dx * lean_z, dy * lean_z)
    crown_r = np.array([r[7] for r in recs])
    ic = np.flatnonzero(crown_r > 0)
    keep = np.ones(len(recs), bool)
    if ic.size:
        shift = crown_r[ic] * lens_shift
        moved = _translate_many(geoms[ic], sun_dir[0] * shift, sun_dir[1] * shift)
        lens = shapely.intersection(geoms[ic], moved)
        geoms[ic] = lens
        keep[ic] = ~shapely.is_empty(lens) & (shapely.area(lens) > 0)
    specs = np.array([r[1] for r in recs], np.float32).reshape(-1, 4)
    cols = [np.array([r[i] for r in recs], np.float32) for i in (2, 3, 4, 5)]
    return (geoms[keep], specs[keep], *(c[keep] for c in cols))


def _polygonal(g):
    """The polygonal part of a geometry (Polygon or MultiPolygon), or None when empty."""
    if g.is_empty:
        return None
    if isinstance(g, (Polygon, MultiPolygon)):
        return g
    parts = [q for q in shapely.get_parts(g) if isinstance(q, Polygon) and not q.is_empty]
    return MultiPolygon(parts) if parts else None


def _wall_quads(w: _Wall, dx: float, dy: float, view_az: float):
    """Wall faces of a prism that face the sensor, as image-plane quads with their aspect."""
    coords = np.asarray(orient(w.geom, 1.0).exterior.coords)
    vx, vy = _dir(view_az)
    out = []
    for a, b in zip(coords[:-1], coords[1:]):
        ex, ey = b - a
        nx, ny = ey, -ex  # outward normal of a counter-clockwise ring
        if nx * vx + ny * vy <= 1e-9:
            continue
        quad = Polygon([(a[0] + dx * w.z0, a[1] + dy * w.z0), (b[0] + dx * w.z0, b[1] + dy * w.z0),
                        (b[0] + dx * w.z1, b[1] + dy * w.z1), (a[0] + dx * w.z1, a[1] + dy * w.z1)])
        if quad.area > 1e-4:
            out.append((quad, _azimuth_of(math.atan2(ny, nx))))
    return out


def _shadow_table(world: _World, ctx: _DateCtx):
    """Shadows of every caster for the date's sun, sorted by caster height (vectorised).

    The shadow of a prism between heights ``base`` and ``top`` on a plane at height ``recv``
    is the convex hull of its footprint moved ``(base - recv) / tan(el)`` and
    ``(top - recv) / tan(el)`` away from the sun.

    Returns
    -------
    geoms : ndarray of shapely polygons; tops : (n,) caster height (m); opacity : (n,)
    """
    az, el = ctx.sun
    ax, ay = _dir((az + 180.0) % 360.0)
    k = 1.0 / math.tan(math.radians(el))
    cs = [c for o in _visible_objs(world, ctx.name) for c in o.casters]
    if not cs:
        return np.array([], object), np.zeros(0, np.float32), np.zeros(0, np.float32)
    geoms = np.empty(len(cs), object)
    geoms[:] = [c.geom for c in cs]
    base = np.array([c.base - c.recv for c in cs]) * k
    top = np.array([c.top - c.recv for c in cs]) * k
    xy, idx = shapely.get_coordinates(geoms, return_index=True)
    pts = np.concatenate([xy + np.column_stack([ax * base[idx], ay * base[idx]]),
                          xy + np.column_stack([ax * top[idx], ay * top[idx]])])
    both = np.concatenate([idx, idx])
    order_pts = np.argsort(both, kind="stable")
    hulls = shapely.convex_hull(shapely.linestrings(pts[order_pts], indices=both[order_pts]))
    clip_i = [i for i, c in enumerate(cs) if c.clip is not None]
    if clip_i:
        clips = np.empty(len(clip_i), object)
        clips[:] = [cs[i].clip for i in clip_i]
        hulls[clip_i] = shapely.intersection(hulls[clip_i], clips)
    ok = shapely.area(hulls) > 0
    tops = np.array([c.top for c in cs], np.float32)
    opac = np.array([c.opacity for c in cs], np.float32)
    order = np.argsort(tops, kind="stable")
    order = order[ok[order]]
    return hulls[order], tops[order], opac[order]


def _geojson_many(geoms) -> list:
    """GeoJSON-like dicts for rasterio, built from coordinate arrays (fast for simple polygons)."""
    geoms = np.asarray(geoms, object)
    out = [None] * len(geoms)
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    si = np.flatnonzero(simple)
    if si.size:
        xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(geoms[si]), return_index=True)
        cuts = np.flatnonzero(np.diff(idx)) + 1
        for i, ring in zip(si, np.split(xy, cuts)):
            out[i] = {"type": "Polygon", "coordinates": [ring]}
    for i in np.flatnonzero(~simple):
        g = _polygonal(geoms[i])
        out[i] = mapping(g) if g is not None else None
    return out


def _burn(geoms, values, cv: _Canvas, dtype: str) -> np.ndarray:
    """Rasterise geometries (painter's order, later wins) with their values on the canvas."""
    shapes = [(g, v) for g, v in zip(_geojson_many(geoms), values) if g is not None]
    if not shapes:
        return np.zeros(cv.shape, dtype)
    return rasterize(shapes, out_shape=cv.shape, transform=cv.transform, dtype=dtype, fill=0)


def _render(world: _World, cv: _Canvas, sh: _Shared, ctx: _DateCtx):
    """Yield the at-sensor reflectance of each band (blue, green, red, nir) on the canvas.

    The world is lit by the date's sun (direct light times facet factor and shadows, plus
    skylight), seen from the date's view (tall objects lean) and, for the after date,
    covered by clouds and their shadows. One buffer is reused: consume each band first.
    """
    H, W = cv.shape
    nf = len(world.fields) + 1
    di = 0 if ctx.name == "before" else 1
    cov_lut = np.array([0.0] + [f.cover[di] for f in world.fields], np.float32)[:nf]
    gr_lut = np.array([0.0] + [f.green[di] for f in world.fields], np.float32)[:nf]
    as_lut = np.array([0.0] + [f.a_season[di] for f in world.fields], np.float32)[:nf]
    cover = cov_lut[sh.fid]
    cover += sh.cover
    np.clip(cover, 0.0, 1.0, out=cover)
    season = _upsample(sh.season_coarse, sh.season_k, (H, W))
    green = as_lut[sh.fid]
    green *= season
    green += gr_lut[sh.fid]
    np.clip(green, 0.0, 1.0, out=green)
    cloud = cloud_tex = None
    if ctx.cloud is not None:
        cloud = _upsample(ctx.cloud[0], ctx.cloud[2], (H, W))
        cloud_tex = np.clip(season, -2.0, 2.0, out=season)
        cloud_tex *= 0.12
        cloud_tex += 0.86
        cloud_tex *= cloud
    del season

    geoms, specs, zs, facets, svfs, texs = _surface_table(world, ctx)
    n = len(geoms)
    oid = _burn(geoms, range(1, n + 1), cv, "uint16" if n < 65535 else "int32")
    io = np.flatnonzero(oid)
    ido = oid.ravel()[io].astype(np.int64) - 1
    del oid

    sgeoms, ctop, cop = _shadow_table(world, ctx)
    M = np.ones((H, W), np.float32)  # direct-light factor
    sky = np.ones((H, W), np.float32)  # sky-light factor
    M.ravel()[io] = facets[ido]
    sky.ravel()[io] = svfs[ido]
    if len(sgeoms):
        cid = _burn(sgeoms, range(1, len(sgeoms) + 1), cv, "uint16" if len(sgeoms) < 65535 else "int32")
        isd = np.flatnonzero(cid)
        ci = cid.ravel()[isd].astype(np.int64) - 1
        del cid
        zfull = np.zeros(H * W, np.float32)
        zfull[io] = zs[ido]
        zr = zfull[isd]
        del zfull
        amount = np.where(ctop[ci] > zr + 0.25, cop[ci], 0.0).astype(np.float32)
        M.ravel()[isd] *= 1.0 - amount
        sky.ravel()[isd] *= 1.0 - 0.25 * amount
    if ctx.cloud is not None:
        cshadow = _upsample(ctx.cloud[1], ctx.cloud[2], (H, W))
        cshadow *= -0.75
        cshadow += 1.0
        M *= cshadow
        cshadow -= 1.0
        cshadow *= 0.4
        cshadow += 1.0
        sky *= cshadow  # 1 - 0.3 * shadow
        del cshadow
    fine_o = sh.fine.ravel()[io].astype(np.float32)
    tex_o = 1.0 + texs[ido] * fine_o
    del fine_o
    G, D, S = world.greens["grass"], world.greens["dry"], world.greens["soil"]
    rho = np.empty((H, W), np.float32)
    tmp = np.empty((H, W), np.float32)
    for b in range(4):
        # terrain: green veg, dry veg and soil fractions of each pixel
        # rho = soil*S + cover * (D + green*(G - D) - soil*S)
        np.multiply(green, np.float32(G[b] - D[b]), out=rho)
        rho += np.float32(D[b])
        np.multiply(sh.soil, np.float32(S[b]), out=tmp)
        rho -= tmp
        rho *= cover
        rho += tmp
        rho.ravel()[io] = specs[ido, b] * tex_o
        # light = (1 - d) * direct + d * sky
        d = float(ctx.diffuse[b])
        np.multiply(sky, np.float32(d / (1.0 - d)), out=tmp)
        tmp += M
        tmp *= np.float32(1.0 - d)
        rho *= tmp
        if cloud_tex is not None:
            np.subtract(np.float32(1.0), cloud, out=tmp)
            rho *= tmp
            np.multiply(cloud_tex, np.float32(ctx.cloud_spec[b]), out=tmp)
            rho += tmp
        yield rho  # the same buffer every band: consume it before asking for the next


def _reduce_before(band: np.ndarray, cv: _Canvas, grid: Grid) -> np.ndarray:
    """Average a canvas band over each before pixel (the canvas is aligned, ``ss`` times finer)."""
    r0, c0 = cv.off
    k = cv.ss
    R, C = grid.shape
    a = band[r0: r0 + R * k, c0: c0 + C * k]
    out = np.zeros((R, C), np.float32)
    for i in range(k):
        for j in range(k):
            out += a[i::k, j::k]
    out /= k * k
    return out


def _reduce_after(band: np.ndarray, cv: _Canvas, grid: Grid, src_crs: CRS, shift_m) -> np.ndarray:
    """Average a canvas band onto the after grid, the world displaced by ``shift_m`` (x, y metres)."""
    src_t = cv.transform * Affine.identity()
    src_t = Affine(src_t.a, 0, src_t.c + shift_m[0], 0, src_t.e, src_t.f + shift_m[1])
    out = np.zeros(grid.shape, np.float32)
    reproject(band, out, src_transform=src_t, src_crs=src_crs, dst_transform=grid.transform, dst_crs=grid.crs,
              resampling=Resampling.average, num_threads=2, src_nodata=None, dst_nodata=None)
    return out


# ---------------------------------------------------------------------------------------------
# Clouds
# ---------------------------------------------------------------------------------------------


def _clouds(rng, p: SynthParams, cv: _Canvas, scene_bounds, sun, targets: np.ndarray,
            max_hidden: float = 0.35, attempts: int = 8) -> tuple[tuple, dict]:
    """Thick cumulus opacity and its cast-shadow strength (world coordinates).

    Clouds float ``height`` metres up; the shadow at a ground point comes from the cloud at
    that point + ``height / tan(elevation)`` towards the sun. Blobs are placed so that some
    clouds are in the scene and some shadows fall in it; the threshold is tuned so that the
    cloud cover of the scene equals ``p.cloud_fraction``. Up to ``attempts`` placements are
    drawn and the first that hides at most ``max_hidden`` of the ``targets`` (change
    centroids, (n, 2) UTM m) is kept (else the one hiding fewest), so that a pair keeps
    most of its changes assessable while some remain under cloud.

    Returns
    -------
    ((opacity, shadow, k), info)
        Two arrays on a grid ``k`` times coarser than, and aligned with, the canvas (use
        :func:`_upsample`), and a record of the cloud geometry.
    """
    H, W = cv.shape
    left, bottom, right, top = scene_bounds
    E = right - left
    rng_noise = np.random.default_rng(rng.integers(2**63))
    height = rng.uniform(600, 1800)
    L = height / math.tan(math.radians(sun[1]))
    ux, uy = _dir(sun[0])
    Dx, Dy = ux * L, uy * L
    k = max(1, int(round(max(E / 400.0, cv.res) / cv.res)))
    cres = cv.res * k
    ch, cw = H // k + 2, W // k + 2
    cb = cv.bounds
    xs = cb[0] + (np.arange(cw) + 0.5) * cres
    ys = cb[3] - (np.arange(ch) + 0.5) * cres
    n_vis = int(np.clip(round(rng.uniform(1, 3) * E / 600), 1, 10))
    r_mean = E * math.sqrt(p.cloud_fraction / (n_vis * math.pi)) * 1.05
    # ragged edges: noise (on a grid covering canvas and canvas + D) without scales larger
    # than a cloud, so that it does not bias any region
    ext = (min(cb[0], cb[0] + Dx) - 50, min(cb[1], cb[1] + Dy) - 50, max(cb[2], cb[2] + Dx) + 50, max(cb[3], cb[3] + Dy) + 50)
    nres = max(cres, (ext[2] - ext[0]) / 1024, (ext[3] - ext[1]) / 1024)
    nh, nw = int((ext[3] - ext[1]) / nres) + 2, int((ext[2] - ext[0]) / nres) + 2
    noise = _fractal(rng_noise, (nh, nw), 3.0, fmin=nres / max(r_mean, nres))

    def draw_blobs():
        out = []
        for dx, dy in ((0.0, 0.0), (Dx, Dy)):  # clouds in the scene, clouds shading the scene
            for _ in range(n_vis):
                out.append((rng.uniform(left + 0.1 * E, right - 0.1 * E) + dx, rng.uniform(bottom + 0.1 * E, top - 0.1 * E) + dy,
                            r_mean * rng.uniform(0.7, 1.3), rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)))
        return out

    def field_at(blobs, X, Y):
        env = np.full(X.shape, -4.0, np.float32)
        for bx, by, r, ecc, ang in blobs:
            c, s = math.cos(ang), math.sin(ang)
            u = ((X - bx) * c + (Y - by) * s) / r
            v = (-(X - bx) * s + (Y - by) * c) / (r * ecc)
            env = np.maximum(env, 1.0 - (u * u + v * v))
        ci = (ext[3] - Y) / nres - 0.5
        cj = (X - ext[0]) / nres - 0.5
        nz = ndimage.map_coordinates(noise, [np.ravel(ci), np.ravel(cj)], order=1, mode="nearest").reshape(X.shape)
        return env + 0.3 * nz

    edge = 0.14

    def alpha(Fv, thr):
        a = np.clip((Fv - thr) / edge + 0.5, 0.0, 1.0)
        return (a * a * (3 - 2 * a)).astype(np.float32)

    Xg, Yg = np.meshgrid(xs, ys)
    inscene = (Xg > left) & (Xg < right) & (Yg > bottom) & (Yg < top)
    best = None
    for attempt in range(attempts):
        blobs = draw_blobs()
        F = field_at(blobs, Xg, Yg)
        vals = F[inscene]
        thr = float(np.quantile(vals, 1.0 - p.cloud_fraction)) if vals.size else 1.0
        hidden = 0.0
        if len(targets):
            tx, ty = targets[:, 0], targets[:, 1]
            under = (alpha(field_at(blobs, tx, ty), thr) > 0.05) | (alpha(field_at(blobs, tx + Dx, ty + Dy), thr) > 0.05)
            hidden = float(under.mean())
        if best is None or hidden < best[0]:
            best = (hidden, blobs, F, thr, attempt)
        if hidden <= max_hidden:
            break
    hidden, blobs, F, thr, attempt = best
    A = alpha(F, thr)
    S = alpha(field_at(blobs, Xg + Dx, Yg + Dy), thr)
    info = dict(height_m=round(height, 1), shadow_offset_m=[round(Dx, 1), round(Dy, 1)], blobs=len(blobs),
                placement_attempt=attempt, changes_under_cloud_fraction=round(hidden, 3))
    return (A, S, k), info


# ---------------------------------------------------------------------------------------------
# Radiometry and products
# ---------------------------------------------------------------------------------------------


def _radiometry(rng, p: SynthParams, strength_scale: float) -> dict:
    """Per-band gain and haze offset of one date (blue, green, red, nir)."""
    k = p.gain_offset * strength_scale
    common = rng.normal(0.0, 0.1 * k)
    gains = np.clip(np.exp(common + rng.normal(0.0, 0.06 * k, 4)), 0.75, 1.3)
    haze = rng.uniform(0.0, 0.03) * k
    offsets = haze * np.array([1.0, 0.7, 0.45, 0.2]) + rng.normal(0, 0.002 * k, 4)
    return dict(gain=[round(float(g), 4) for g in gains], offset=[round(float(o), 5) for o in offsets],
                haze_gradient=round(float(rng.uniform(0, 0.4) * min(k, 1.5)), 3),
                haze_angle_deg=round(float(rng.uniform(0, 360)), 1))


def _sensor(rng, rho: np.ndarray, rad: dict, p: SynthParams, psf: float) -> np.ndarray:
    """Apply PSF, gain/offset with a haze gradient, noise and column striping (in place)."""
    b, h, w = rho.shape
    if psf > 0:
        for i in range(b):
            rho[i] = ndimage.gaussian_filter(rho[i], psf, mode="nearest", truncate=3.0)
    ang = math.radians(rad["haze_angle_deg"])
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ramp = 1.0 + rad["haze_gradient"] * (xx * math.cos(ang) + yy * math.sin(ang)) * 2
    for i in range(b):
        rho[i] *= rad["gain"][i]
        rho[i] += rad["offset"][i] * ramp
        if p.noise > 0:
            sigma = p.noise * (0.0015 + 0.005 * np.sqrt(np.clip(rho[i], 0, None)))
            rho[i] += sigma * rng.standard_normal((h, w), dtype=np.float32)
            rho[i] += rng.normal(0, 0.0006 * p.noise, w).astype(np.float32)[None, :]
    return rho


def _to_ms16(rho: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.clip(np.rint(rho * 10000.0), 1, 65535).astype(np.uint16)
    out[:, ~valid] = 0
    return out


def _to_rgb8(rng, rho: np.ndarray, valid: np.ndarray, nominal: bool) -> tuple[np.ndarray, dict]:
    """Display product: R, G, B with a per-date percentile stretch and gamma."""
    rgb = rho[[2, 1, 0]]
    sample = rgb[:, valid][:, :: max(1, valid.sum() // 200000)]
    lo_p, hi_p = (1.0, 99.0) if nominal else (rng.uniform(0.2, 2.5), rng.uniform(97.5, 99.8))
    gamma = rng.uniform(1.6, 2.4)
    per_band = rng.random() < 0.5
    if per_band:
        lo = np.percentile(sample, lo_p, axis=1)
        hi = np.percentile(sample, hi_p, axis=1)
    else:
        lo = np.full(3, np.percentile(sample, lo_p))
        hi = np.full(3, np.percentile(sample, hi_p))
    out = np.empty(rgb.shape, np.uint8)
    for i in range(3):
        x = np.clip((rgb[i] - lo[i]) / max(hi[i] - lo[i], 1e-6), 0, 1) ** (1.0 / gamma)
        out[i] = np.rint(x * 255)
    out[:, ~valid] = 0
    return out, dict(low_pct=round(float(lo_p), 3), high_pct=round(float(hi_p), 3), gamma=round(float(gamma), 3),
                     per_band=bool(per_band), low=[round(float(v), 5) for v in lo], high=[round(float(v), 5) for v in hi])


def _nodata_corner(rng, grid: Grid) -> Polygon:
    """A triangle cutting one corner of a grid (scene edge), in the grid's CRS."""
    left, bottom, right, top = grid.bounds
    w, h = right - left, top - bottom
    corner = int(rng.integers(4))
    a, b = rng.uniform(0.12, 0.35) * w, rng.uniform(0.12, 0.35) * h
    cx, cy = (left, right, right, left)[corner], (top, top, bottom, bottom)[corner]
    sx, sy = (1, -1, -1, 1)[corner], (-1, -1, 1, 1)[corner]
    pad_x, pad_y = 0.01 * w * -sx, 0.01 * h * -sy
    return Polygon([(cx + pad_x, cy + pad_y), (cx + sx * a, cy + pad_y), (cx + pad_x, cy + sy * b)])


# ---------------------------------------------------------------------------------------------
# Truth
# ---------------------------------------------------------------------------------------------


def _truth_objects(world: _World, utm: CRS, before: Grid) -> list[tuple[_Obj, TruthObject]]:
    tr = Transformer.from_crs(utm, LONLAT, always_xy=True)
    scene = before.footprint()
    out = []
    for o in world.objs:
        if o.truth is None or o.footprint is None:
            continue
        fp = o.footprint
        if not scene.contains(fp.centroid):
            continue
        mrr = fp.minimum_rotated_rectangle
        xy = np.asarray(mrr.exterior.coords)
        sides = np.hypot(*np.diff(xy[:3], axis=0).T)
        lonlat = shapely.transform(fp, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
        lonlat = orient(lonlat, 1.0) if isinstance(lonlat, Polygon) else lonlat
        t = TruthObject(id=len(out) + 1, change=o.truth[0], cls=o.truth[1], footprint_lonlat=lonlat,
                        area_m2=round(float(fp.area), 3), length_m=round(float(sides.max()), 3),
                        width_m=round(float(sides.min()), 3))
        out.append((o, t))
    return out


def _truth_mask(truth, before: Grid, invalid: np.ndarray) -> np.ndarray:
    shapes = [(o.footprint, _CHANGE_CODE[t.change]) for o, t in truth]
    mask = rasterize(shapes, out_shape=before.shape, transform=before.transform, dtype="uint8", fill=0) \
        if shapes else np.zeros(before.shape, np.uint8)
    mask[invalid] = NOT_ASSESSABLE
    return mask


def _aoi(rng, before: Grid) -> Polygon:
    """An irregular polygon covering most of the scene, EPSG:4326."""
    left, bottom, right, top = before.bounds
    cx, cy, hw = (left + right) / 2, (bottom + top) / 2, (right - left) / 2
    n = int(rng.integers(8, 14))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 0.3) + rng.normal(0, 0.12, n)
    ang = np.sort(ang)
    q = 6.0  # superellipse exponent: close to a square
    unit = 1.0 / (np.abs(np.cos(ang)) ** q + np.abs(np.sin(ang)) ** q) ** (1 / q)
    rad = hw * unit * rng.uniform(0.78, 0.96, n)
    poly = Polygon(np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)])).buffer(0)
    if isinstance(poly, MultiPolygon):
        poly = max(poly.geoms, key=lambda g: g.area)
    tr = Transformer.from_crs(before.crs, LONLAT, always_xy=True)
    return orient(shapely.transform(poly, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1]))), 1.0)


# ---------------------------------------------------------------------------------------------
# make_pair
# ---------------------------------------------------------------------------------------------


def _endmembers(rng, p: SynthParams) -> dict:
    soil_name = "soil_red" if p.lat < -10 or rng.random() < 0.15 else str(rng.choice(["soil_brown", "soil_light", "soil_brown"]))
    return dict(grass=_spec("grass", rng, 0.08), dry=_spec("dry_veg", rng, 0.08), soil=_spec(soil_name, rng, 0.1), soil_name=soil_name)


def _tree_season(rng, world: _World, p: SynthParams, dg: float):
    """Deciduous crowns change colour with the season (towards autumn when greenness drops)."""
    autumn = np.asarray(_MAT["tree_autumn"], np.float32)
    for o in world.objs:
        if o.kind != "tree":
            continue
        s = o.surfs[0]
        if s.spec[3] < 0.26:  # conifer: stable
            continue
        f = float(np.clip(p.season * (-dg * 1.2 + rng.normal(0, 0.12)), -0.3, 1.0))
        if f >= 0:
            s.spec_after = (s.spec * (1 - f) + autumn * f).astype(np.float32)
        else:
            s.spec_after = (s.spec * np.array([1 + 0.2 * f, 1 + 0.1 * f, 1 + 0.3 * f, 1 - 0.2 * f], np.float32)).astype(np.float32)


def make_pair(params: SynthParams) -> SynthPair:
    """Render a synthetic before/after pair of a military base with its exact ground truth.

    Parameters
    ----------
    params : SynthParams

    Returns
    -------
    SynthPair
        ``before`` on a square UTM grid (``params.pixel_size_m``), ``after`` on its own grid
        (``params.after_crs`` and ``params.after_pixel_size_m``), truth footprints in EPSG:4326,
        the truth mask on the before grid, an AOI and an ``info`` record.
    """
    p = params
    seeds = np.random.SeedSequence(p.seed).spawn(8)
    r_layout, r_noise, r_rad, r_cloud, r_misc, r_sensor, r_dates, r_display = (np.random.default_rng(s) for s in seeds)
    if p.dates:
        date_b, date_a = (dt.date.fromisoformat(d) for d in p.dates)
    else:
        date_b, date_a = _draw_dates(r_dates, p.lat)
    dg = _greenness(date_a, p.lat) - _greenness(date_b, p.lat)
    season_shift = 0.5 * dg

    before = _before_grid(p)
    utm = before.crs
    shift_m = (p.shift_px[1] * p.pixel_size_m, -p.shift_px[0] * p.pixel_size_m)
    after = _after_grid(p, before, shift_m)
    cv = _canvas(p, before, after, shift_m)

    world = _build_world(p, r_layout, _world_bounds(p, before, cv), before.bounds, (season_shift, _greenness(date_b, p.lat)))
    world.greens = _endmembers(r_misc, p)
    _tree_season(r_misc, world, p, dg)
    shared = _shared_arrays(r_noise, world, cv)

    # --- before ---
    ctx_b = _DateCtx("before", tuple(p.sun_before), tuple(p.view_before), _diffuse(p.sun_before[1]))
    rho_b = np.stack([_reduce_before(band, cv, before) for band in _render(world, cv, shared, ctx_b)])

    # --- after ---
    cloud_info: dict = {}
    ctx_a = _DateCtx("after", tuple(p.sun_after), tuple(p.view_after), _diffuse(p.sun_after[1]))
    if p.cloud_fraction > 0:
        targets = np.array([o.footprint.centroid.coords[0] for o in world.objs if o.truth is not None]).reshape(-1, 2)
        ctx_a.cloud, cloud_info = _clouds(r_cloud, p, cv, before.bounds, p.sun_after, targets)
        ctx_a.cloud_spec = np.array([0.6, 0.61, 0.62, 0.6], np.float32) * r_cloud.uniform(0.9, 1.15)
    rho_a = np.stack([_reduce_after(band, cv, after, utm, shift_m) for band in _render(world, cv, shared, ctx_a)])
    del shared

    # --- validity ---
    valid_a = np.ones(after.shape, bool)
    invalid_world = []
    if p.nodata_corner:
        corner = _nodata_corner(r_misc, after)
        valid_a &= ~rasterize([(corner, 1)], out_shape=after.shape, transform=after.transform, dtype="uint8",
                              all_touched=True).astype(bool)
        tr = Transformer.from_crs(after.crs, utm, always_xy=True)
        cw = shapely.transform(shapely.segmentize(corner, max(corner.length / 200, 1e-9)),
                               lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
        invalid_world.append(affinity.translate(cw, -shift_m[0], -shift_m[1]))
    # the after footprint (in world coordinates) must cover the before scene
    tr = Transformer.from_crs(after.crs, utm, always_xy=True)
    af = shapely.transform(densified_box(after.bounds, 41), lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
    af = affinity.translate(af, -shift_m[0], -shift_m[1])
    outside = before.footprint().buffer(p.pixel_size_m).difference(af)
    if not outside.is_empty:
        invalid_world.append(outside)
    invalid = np.zeros(before.shape, bool)
    if invalid_world:
        invalid |= rasterize([(g, 1) for g in invalid_world], out_shape=before.shape, transform=before.transform,
                             dtype="uint8", all_touched=True).astype(bool)
    cloud_frac = shadow_frac = 0.0
    if ctx_a.cloud is not None:
        A, S, k = ctx_a.cloud
        rr = cv.off[0] + (np.arange(before.rows) + 0.5) * cv.ss  # before pixel centres on the canvas
        cc = cv.off[1] + (np.arange(before.cols) + 0.5) * cv.ss
        cb, sb = _sample_coarse(A, k, rr, cc), _sample_coarse(S, k, rr, cc)
        invalid |= (cb > 0.05) | (sb > 0.05)
        cloud_frac, shadow_frac = float((cb > 0.5).mean()), float((sb > 0.5).mean())
    ctx_a.cloud = None

    # --- sensor ---
    rad_b = _radiometry(r_rad, p, 0.35)
    rad_a = _radiometry(r_rad, p, 1.0)
    rho_b = _sensor(r_sensor, rho_b, rad_b, p, p.psf_sigma_px)
    rho_a = _sensor(r_sensor, rho_a, rad_a, p, p.psf_sigma_px)
    display: dict = {}
    valid_b = np.ones(before.shape, bool)
    if p.product == "ms16":
        data_b, data_a, bands, nodata = _to_ms16(rho_b, valid_b), _to_ms16(rho_a, valid_a), MS16_BANDS, 0
    else:
        data_b, display["before"] = _to_rgb8(r_display, rho_b, valid_b, p.seed == 0)
        data_a, display["after"] = _to_rgb8(r_display, rho_a, valid_a, p.seed == 0)
        bands, nodata = RGB8_BANDS, None
    del rho_a, rho_b

    # --- truth ---
    truth_pairs = _truth_objects(world, utm, before)
    mask = _truth_mask(truth_pairs, before, invalid)
    truth = [t for _, t in truth_pairs]
    aoi = _aoi(r_misc, before)
    hidden = []
    if truth_pairs:
        ids = rasterize([(o.footprint, t.id) for o, t in truth_pairs], out_shape=before.shape,
                        transform=before.transform, dtype="uint16" if len(truth) < 65535 else "int32")
        n_all = np.bincount(ids.ravel(), minlength=len(truth) + 1)
        n_bad = np.bincount(ids[invalid], minlength=len(truth) + 1)
        hidden = [t.id for t in truth if n_all[t.id] and n_bad[t.id] > 0.5 * n_all[t.id]]

    counts: dict = {}
    for t in truth:
        counts.setdefault(t.cls, {}).setdefault(t.change, 0)
        counts[t.cls][t.change] += 1
    px_a = after.pixel_size_m()
    info = dict(
        generator="basewatch.imagery.synth",
        seed=p.seed,
        params=_jsonable(dataclasses.asdict(p)),
        dates=[date_b.isoformat(), date_a.isoformat()],
        sun={"before": {"azimuth": p.sun_before[0], "elevation": p.sun_before[1]},
             "after": {"azimuth": p.sun_after[0], "elevation": p.sun_after[1]}},
        view={"before": {"azimuth": p.view_before[0], "off_nadir": p.view_before[1]},
              "after": {"azimuth": p.view_after[0], "off_nadir": p.view_after[1]}},
        shift={"rows_px": p.shift_px[0], "cols_px": p.shift_px[1], "dx_m": round(shift_m[0], 4),
               "dy_m": round(shift_m[1], 4),
               "meaning": "after content appears rows_px before-pixels south and cols_px east of its true place"},
        radiometry={"before": rad_b, "after": rad_a, "bands": list(MS16_BANDS), "diffuse_before": ctx_b.diffuse.round(4).tolist(),
                    "diffuse_after": ctx_a.diffuse.round(4).tolist()},
        display=display,
        season={"strength": p.season, "greenness_change": round(dg, 4), "soil": world.greens["soil_name"]},
        clouds={"requested_fraction": p.cloud_fraction, "cloud_fraction": round(cloud_frac, 4),
                "cloud_shadow_fraction": round(shadow_frac, 4), **cloud_info},
        not_assessable_fraction=round(float(invalid.mean()), 4),
        grids={"before": before.to_dict(), "after": after.to_dict(), "canvas_res_m": cv.res, "supersample": cv.ss},
        after_ground_pixel_m=[round(float(px_a[0]), 4), round(float(px_a[1]), 4)],
        counts=counts,
        truth_hidden_ids=hidden,
        layout=world.info,
        product=p.product,
        bands=list(bands),
    )
    sc_b = SynthScene(data_b, before, tuple(bands), date_b, nodata, valid_b)
    sc_a = SynthScene(data_a, after, tuple(bands), date_a, nodata, valid_a)
    return SynthPair(sc_b, sc_a, truth, mask, aoi, info)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _write_scene(scene: SynthScene, path: Path) -> None:
    bands, rows, cols = scene.data.shape
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype=scene.data.dtype.name,
                   crs=scene.grid.crs, transform=scene.grid.transform, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", predictor=2, interleave="pixel" if bands == 3 else "band")
    if scene.nodata is not None:
        profile["nodata"] = scene.nodata
    if scene.data.dtype == np.uint8 and bands == 3:
        profile["photometric"] = "RGB"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(scene.data)
            ds.update_tags(ACQUISITION_DATE=scene.acquired.isoformat())
            for i, role in enumerate(scene.bands, start=1):
                ds.set_band_description(i, role)
            if scene.nodata is None:
                ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue][:bands]
                valid = scene.valid if scene.valid is not None else np.ones((rows, cols), bool)
                ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))


def _write_mask(mask: np.ndarray, grid: Grid, path: Path) -> None:
    rows, cols = mask.shape
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="uint8", crs=grid.crs,
                       transform=grid.transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate") as ds:
        ds.write(mask, 1)
        ds.set_band_description(1, "truth: 0 none, 1 appeared, 2 disappeared, 3 changed, 255 not assessable")


def _round_coords(geom, nd: int = 8) -> dict:
    """GeoJSON geometry with coordinates rounded to ``nd`` decimals (8 decimals of a degree ~ 1 mm)."""
    return _rounded(mapping(geom), nd)


def _rounded(obj, nd):
    if isinstance(obj, dict):
        return {k: _rounded(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, nd) for v in obj]
    if isinstance(obj, float):
        return round(obj, nd)
    return obj


def write_pair(pair: SynthPair, outdir: Path) -> dict[str, Path]:
    """Write a pair as files into ``outdir`` (replaced as a whole).

    Files: ``before.tif``, ``after.tif`` (tiled DEFLATE GeoTIFFs, tag ``ACQUISITION_DATE``,
    band descriptions = band roles; nodata 0 for ms16, an internal mask for rgb8),
    ``truth.geojson`` (RFC 7946, EPSG:4326), ``truth_mask.tif`` (uint8, before grid),
    ``aoi.geojson`` and ``truth.json`` (the ``info`` record). Everything is written to a
    temporary folder beside ``outdir`` and renamed into place.

    Parameters
    ----------
    pair : SynthPair
    outdir : path-like

    Returns
    -------
    dict of str to Path
        Keys ``before``, ``after``, ``truth``, ``truth_mask``, ``aoi``, ``info``.
    """
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    names = dict(before="before.tif", after="after.tif", truth="truth.geojson", truth_mask="truth_mask.tif",
                 aoi="aoi.geojson", info="truth.json")
    try:
        _write_scene(pair.before, tmp / names["before"])
        _write_scene(pair.after, tmp / names["after"])
        _write_mask(pair.truth_mask, pair.before.grid, tmp / names["truth_mask"])
        feats = [dict(type="Feature", geometry=_round_coords(t.footprint_lonlat),
                      properties={"id": t.id, "change": t.change, "class": t.cls, "area_m2": t.area_m2,
                                  "length_m": t.length_m, "width_m": t.width_m}) for t in pair.truth]
        (tmp / names["truth"]).write_text(json.dumps(dict(type="FeatureCollection", features=feats)))
        aoi = dict(type="FeatureCollection", features=[dict(type="Feature", properties={"name": "aoi"},
                                                            geometry=_round_coords(orient(pair.aoi_lonlat, 1.0)))])
        (tmp / names["aoi"]).write_text(json.dumps(aoi))
        (tmp / names["info"]).write_text(json.dumps(_jsonable(pair.info), indent=1))
        old = None
        if outdir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old.", dir=outdir.parent))
            os.rename(outdir, old / "x")
        os.rename(tmp, outdir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {k: outdir / v for k, v in names.items()}
