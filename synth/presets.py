"""Parameters of a synthetic pair, materials, sun and dates, and the named presets."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon

from imagery.contract import MASK_VALUES
from imagery.grid import Grid

#: Names accepted by :func:`preset`.
PRESETS = ("default", "clean", "nuisance_only", "webmercator", "lonlat", "rgb8", "coarse3m", "sentinel10m", "south")

MS16_BANDS = ("blue", "green", "red", "nir")
RGB8_BANDS = ("red", "green", "blue")

#: Truth-mask codes: the product's change-mask codes, so that a truth mask and a change mask compare value for value.
NO_CHANGE, APPEARED, DISAPPEARED, CHANGED, NOT_ASSESSABLE = (
    MASK_VALUES[k] for k in ("none", "appeared", "disappeared", "changed", "not_analysed"))
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
