"""An independent synthetic scene-pair generator for basewatch accuracy benchmarks.

It exists so that benchmark scores can tell whether the detector is right in
general or only fits the quirks of :mod:`synth` (its other modules). It was written without
looking at that generator and is built the other way round:

* **A raster heightfield world.** The scene is a DEM of objects on flat ground
  (vehicles: 2-3.5 m boxes with a cab step, turret or tank; tents: gable or
  arched prisms ~3 m; buildings 4-12 m with parapets, gables, L shapes;
  trees: Gaussian-dome or conical crowns 5-15 m; a screened perimeter fence)
  plus a per-pixel reflectance map, rendered on a fine world grid (half the
  finer sensor pixel, 0.2-0.4 m, at most 1800 px a side; 0.8 m for alt_coarse).
* **Physically shaded.** Direct sun is a Lambertian term from the heightfield
  normals times a lit fraction found by marching every pixel's ray toward the
  sun over the heightfield (done as one horizon sweep along the sun azimuth,
  which is the same ray-march for all rays at once). Diffuse sky light is
  bluer than the sun (per-band diffuse fraction, larger at low sun and in
  haze) and is reduced near tall objects (a sky-view term). Shadows therefore
  move correctly with the sun, and tents and crowns are two-tone.
* **Its own spectral library** (blue, green, red, NIR reflectance) with
  per-object variation, camouflage patterns, field rows, tramlines, slab joints
  and oil stains.
* **A sensor model per date.** The world is sampled onto each date's grid
  (any CRS, any pixel size) through a Gaussian PSF; then haze path radiance,
  per-band gain/offset, optional MTF sharpening, signal-dependent (Poisson)
  photon noise with read noise and detector column striping, quantisation; the
  RGB display product adds a per-date stretch, gamma, 4:2:0 chroma subsampling
  and 8x8 DCT quantisation (JPEG-like blocks).
* **Clouds** are a thresholded sum of random anisotropic Gaussian blobs with a
  soft alpha, placed at a cloud-base height; their shadows are the same field
  displaced along the sun direction by height / tan(elevation).

Public API::

    SCENARIOS
    make_pair(name, seed=0) -> AltPair        # pure: arrays + truth, deterministic for (name, seed)
    write_pair(pair, outdir) -> dict[str, Path]

``write_pair`` writes the project's scene-pair folder format: ``before.tif``,
``after.tif``, ``truth.geojson``, ``truth_mask.tif``, ``aoi.geojson`` and
``truth.json`` (keys of the returned dict: ``before``, ``after``, ``truth``,
``truth_mask``, ``aoi``, ``info``).

Scenarios (full text in ``SCENARIO_CFG[name].doc`` and in ``truth.json["description"]``):

=================== ===========================================================================
alt_default         0.3-0.8 m, 4-band uint16, UTM; every change type; sun, gain/offset/haze,
                    season, Poisson noise, 1-4 px shift, different AFTER pixel size, AFTER
                    clouds + shadows, AFTER nodata edge; no lean
alt_nuisance_only   all of the above plus clouds and nodata in both dates, AFTER in EPSG:3857,
                    residual warp and off-nadir lean; no change at all
alt_rgb8            as alt_default but an 8-bit RGB display product (stretch, gamma, JPEG-like
                    blocks); AFTER in EPSG:3857
alt_coarse          3-5 m pixels over ~1 km; vehicle blocks arrive/leave; more structures
alt_clean           changes only, no nuisance (same sun, grid, radiometry; no noise)
alt_geographic      as alt_default with both dates in EPSG:4326 (48-62 deg N, sometimes 36-47 deg S)
=================== ===========================================================================

``python -m synth.alt OUT --scenarios alt_default --seeds 0,1 --png`` writes pair
folders and quick-look PNGs.

Conventions worth knowing:

* Truth polygons are object *footprints* (their base on the ground). Shadows of
  appeared or removed objects are real change in the imagery but are not in
  the truth; new structures also get a 1 m gravel construction apron that is
  not in the truth.
* ``truth_mask.tif`` is on the BEFORE grid; a pixel carries a change code when
  at least half of it (a third for alt_coarse) is covered by footprints of that change; 255 marks cloud,
  cloud shadow (opacity above 3 %), nodata or no coverage in either date,
  dilated by one pixel.
* ``info["misregistration"]["shift_m"]`` is how far AFTER's *content* is
  displaced (east, north) from its true position: a feature at true position w
  appears in AFTER at georeferenced position w + shift. The correction that
  aligns AFTER on BEFORE is ``-shift``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from scipy import fft as sfft
from scipy import ndimage

SCENARIOS = ("alt_default", "alt_nuisance_only", "alt_rgb8", "alt_coarse", "alt_clean", "alt_geographic")

GENERATOR = "basewatch.synth.alt"
VERSION = 1

BANDS4 = ("blue", "green", "red", "nir")
BANDS_RGB = ("red", "green", "blue")
WAVELENGTH_NM = np.array([490.0, 560.0, 665.0, 842.0])

NO_CHANGE, APPEARED, DISAPPEARED, CHANGED, NOT_ASSESSABLE = 0, 1, 2, 3, 255
#: share of a truth-mask pixel an object footprint must cover to give it the object's change code
MIN_COVER, MIN_COVER_COARSE = 0.5, 0.3
CHANGE_CODES = {"appeared": APPEARED, "disappeared": DISAPPEARED, "changed": CHANGED}

# ----------------------------------------------------------------------------------------------
# Spectral library: surface reflectance in blue, green, red, NIR (typical values, from memory of
# published spectra; per-object variation is added on top).
# ----------------------------------------------------------------------------------------------
SPECTRA = {
    # vegetation
    "grass_green": (0.035, 0.075, 0.045, 0.42),
    "grass_dry": (0.075, 0.105, 0.135, 0.27),
    "crop_green": (0.030, 0.070, 0.035, 0.48),
    "crop_ripe": (0.090, 0.130, 0.170, 0.31),
    "stubble": (0.140, 0.180, 0.225, 0.30),
    "tree_decid": (0.030, 0.060, 0.035, 0.38),
    "tree_conif": (0.022, 0.042, 0.028, 0.24),
    # soils and unpaved
    "soil_brown": (0.070, 0.100, 0.140, 0.21),
    "soil_light": (0.140, 0.190, 0.250, 0.31),
    "soil_red": (0.060, 0.085, 0.170, 0.25),
    "soil_dark": (0.045, 0.060, 0.075, 0.12),
    "gravel": (0.130, 0.150, 0.170, 0.21),
    "water": (0.050, 0.060, 0.040, 0.02),
    # paved
    "asphalt_new": (0.045, 0.050, 0.055, 0.065),
    "asphalt_old": (0.090, 0.100, 0.110, 0.13),
    "concrete": (0.210, 0.240, 0.260, 0.29),
    # roofs
    "roof_galv": (0.260, 0.280, 0.290, 0.31),
    "roof_red": (0.060, 0.060, 0.190, 0.30),
    "roof_blue": (0.170, 0.120, 0.080, 0.18),
    "roof_green": (0.050, 0.090, 0.060, 0.17),
    "roof_white": (0.580, 0.610, 0.620, 0.60),
    "roof_tar": (0.060, 0.065, 0.070, 0.08),
    "roof_tile": (0.070, 0.080, 0.150, 0.28),
    # textiles
    "tarp_olive": (0.050, 0.070, 0.065, 0.24),
    "canvas_tan": (0.130, 0.160, 0.200, 0.29),
    "tarp_white": (0.450, 0.480, 0.490, 0.50),
    "tarp_green": (0.045, 0.080, 0.055, 0.16),
    # vehicle paints
    "paint_olive": (0.040, 0.055, 0.050, 0.20),
    "paint_sand": (0.150, 0.180, 0.230, 0.30),
    "paint_grey": (0.100, 0.110, 0.120, 0.14),
    "paint_black": (0.030, 0.032, 0.034, 0.045),
    "civ_white": (0.520, 0.550, 0.560, 0.55),
    "civ_red": (0.050, 0.050, 0.240, 0.33),
    "civ_blue": (0.110, 0.080, 0.060, 0.12),
    "civ_silver": (0.280, 0.290, 0.300, 0.31),
    "container_red": (0.070, 0.060, 0.210, 0.33),
    "container_blue": (0.140, 0.100, 0.070, 0.16),
    "glass": (0.030, 0.030, 0.030, 0.03),
    "chassis": (0.030, 0.030, 0.030, 0.04),
    "fence": (0.080, 0.090, 0.100, 0.12),
    "cloud": (0.600, 0.600, 0.590, 0.57),
}
SPEC = {k: np.array(v, dtype=np.float32) for k, v in SPECTRA.items()}

VEHICLE_KINDS = ("truck", "light", "apc", "tanker", "van")
MILITARY_PAINT = (("paint_olive", 0.55), ("paint_sand", 0.2), ("paint_grey", 0.15), ("paint_black", 0.1))
CIVIL_PAINT = (("civ_white", 0.35), ("civ_silver", 0.25), ("civ_red", 0.15), ("civ_blue", 0.15), ("paint_black", 0.1))
ROOFS = ("roof_galv", "roof_red", "roof_blue", "roof_green", "roof_white", "roof_tar", "roof_tile", "concrete")


# ----------------------------------------------------------------------------------------------
# Public data classes
# ----------------------------------------------------------------------------------------------
@dataclass
class AltScene:
    """One date as written to disk: pixels plus georeferencing.

    ``data`` is (bands, rows, cols): uint16 reflectance x 10000 (nodata 0) for
    4-band products, uint8 for the RGB display product (nodata 0).
    """

    data: np.ndarray
    crs: str
    transform: Affine
    bands: tuple[str, ...]
    date: str
    nodata: int = 0
    product: str = "reflectance16"

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape[1], self.data.shape[2]

    @property
    def valid(self) -> np.ndarray:
        return np.any(self.data != self.nodata, axis=0)


@dataclass
class AltPair:
    """A generated pair: both scenes, the truth features (GeoJSON, lon/lat), the truth mask on BEFORE's grid,
    the AOI (GeoJSON Polygon, lon/lat) and ``info`` (everything that was applied; JSON-serialisable)."""

    name: str
    seed: int
    before: AltScene
    after: AltScene
    truth: list[dict]
    truth_mask: np.ndarray
    aoi: dict
    info: dict


# ----------------------------------------------------------------------------------------------
# Scenario configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cfg:
    coarse: bool = False
    changes: bool = True
    sun_change: bool = True
    radiometry: bool = True          # per-band gain/offset and haze differ between dates
    season: bool = True              # vegetation changes per field, soil moisture
    noise: bool = True               # photon + read noise, striping, MTF sharpening
    shift_px: tuple = (1.2, 4.0)     # AFTER misregistration magnitude, in AFTER pixels (0, 0 = none)
    residual_warp: bool = False      # smooth sub-pixel residual warp on top of the shift
    px_differs: bool = True          # AFTER at a different pixel size
    clouds_before: tuple = (0.0, 0.0)  # target range for the cloud and for the cloud-shadow share of the scene
    clouds_after: tuple = (0.02, 0.06)
    nodata_before: bool = False
    nodata_after: bool = True
    before_crs: str = "utm"          # utm | 3857 | 4326
    after_crs: str = "utm"
    lean: bool = False               # off-nadir view (relief displacement of tall things)
    product: str = "reflectance16"   # reflectance16 | rgb8
    high_lat: bool = False
    doc: str = ""


SCENARIO_CFG = {
    "alt_default": Cfg(doc="High-res 4-band pair, both UTM. Changes: vehicles arrive (into gaps in rows and as new "
                           "clusters) and leave, a tent group appears, 1-2 new structures, one roof changes. Nuisances: "
                           "sun azimuth/elevation, per-band gain/offset and haze, per-field season and soil moisture, "
                           "Poisson noise + striping + sharpening, shift of 1-4 AFTER px, AFTER pixel size differs, "
                           "clouds and their shadows in AFTER (together ~4-12 % of the scene), a nodata edge (3-8 %) in AFTER, AFTER's "
                           "footprint offset "
                           "by up to 6 m. No off-nadir lean."),
    "alt_nuisance_only": Cfg(changes=False, clouds_before=(0.02, 0.05), clouds_after=(0.04, 0.09), nodata_before=True,
                             after_crs="3857", lean=True, residual_warp=True,
                             doc="Every nuisance, zero changes: as alt_default plus clouds in both dates, nodata edges "
                                 "in both, AFTER in EPSG:3857, a smooth residual warp (<0.4 px) on top of the shift, "
                                 "and off-nadir lean (BEFORE 1-3 deg, AFTER 5-9 deg, different azimuths) that "
                                 "displaces roofs, crowns and clouds."),
    "alt_rgb8": Cfg(product="rgb8", after_crs="3857", clouds_after=(0.02, 0.06),
                    doc="8-bit RGB display product (red, green, blue; colorinterp RGB; nodata 0) with a per-date "
                        "percentile stretch, gamma and saturation, 4:2:0 chroma and JPEG-like 8x8 DCT blocks at a "
                        "per-date quality; AFTER in EPSG:3857; otherwise as alt_default."),
    "alt_coarse": Cfg(coarse=True, shift_px=(0.3, 1.8), clouds_after=(0.0, 0.0),
                      doc="3-5 m pixels over a ~1 km scene: vehicles stand in dense blocks that arrive or leave as a "
                          "whole (truth has one polygon per vehicle with a shared 'group'), tent groups, 2-4 new "
                          "structures, one roof change; sun, radiometry, season, noise, 0.3-1.8 px shift, different "
                          "pixel size, nodata edge; no clouds."),
    "alt_clean": Cfg(sun_change=False, radiometry=False, season=False, noise=False, shift_px=(0.0, 0.0),
                     px_differs=False, clouds_after=(0.0, 0.0), nodata_after=False,
                     doc="Changes only: same sun, same grid, same radiometry, no season, no noise, no clouds, no "
                         "nodata, no shift. Both dates still go through the same PSF and uint16 quantisation."),
    "alt_geographic": Cfg(before_crs="4326", after_crs="4326", high_lat=True,
                          doc="As alt_default with both dates in EPSG:4326 (non-square degree pixels at 48-62 deg N "
                              "or 36-47 deg S; the truth mask is on the BEFORE lon/lat grid)."),
}


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------
def _rng_for(name: str, seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


def _choice_w(rng, items):
    names = [n for n, _ in items]
    w = np.array([p for _, p in items], float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _vary(spec: np.ndarray, rng, amount=0.08, band=0.03) -> np.ndarray:
    return (spec * rng.normal(1.0, amount) * rng.normal(1.0, band, 4)).clip(0.005, 0.95).astype(np.float32)


def _r(x, nd=3):
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_r(v, nd) for v in x]
    return round(float(x), nd)


def _rect(cx, cy, L, W, theta):
    from shapely.geometry import Polygon

    c, s = math.cos(theta), math.sin(theta)
    pts = []
    for a, b in ((-L / 2, -W / 2), (L / 2, -W / 2), (L / 2, W / 2), (-L / 2, W / 2)):
        pts.append((cx + a * c - b * s, cy + a * s + b * c))
    return Polygon(pts)


def _smooth_noise(rng, shape, sigma_px) -> np.ndarray:
    """Standardised Gaussian random field with correlation length ``sigma_px`` (float32)."""
    h, w = shape
    if sigma_px > 6:
        dec = max(1, int(sigma_px / 3))
        small = rng.standard_normal((h // dec + 3, w // dec + 3)).astype(np.float32)
        small = ndimage.gaussian_filter(small, sigma_px / dec, mode="wrap")
        rr = (np.arange(h, dtype=np.float32) + 0.5) / dec
        cc = (np.arange(w, dtype=np.float32) + 0.5) / dec
        out = ndimage.map_coordinates(small, np.meshgrid(rr, cc, indexing="ij"), order=1, mode="nearest")
    else:
        out = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    out -= out.mean()
    out /= out.std() + 1e-9
    return out.astype(np.float32)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# ----------------------------------------------------------------------------------------------
# Sun and view geometry
# ----------------------------------------------------------------------------------------------
def sun_position(date: dt.date, solar_hour: float, lat_deg: float) -> tuple[float, float]:
    """Sun (azimuth clockwise from north, elevation) in degrees at local solar time (NOAA series)."""
    doy = date.timetuple().tm_yday
    g = 2 * math.pi / 365.0 * (doy - 1 + (solar_hour - 12) / 24)
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    lat = math.radians(lat_deg)
    ha = math.radians(15.0 * (solar_hour - 12.0))
    cz = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    zen = math.acos(max(-1.0, min(1.0, cz)))
    sz = max(math.sin(zen), 1e-9)
    sin_az = -math.sin(ha) * math.cos(decl) / sz
    cos_az = (math.sin(decl) - math.sin(lat) * cz) / (math.cos(lat) * sz)
    az = math.degrees(math.atan2(sin_az, cos_az)) % 360.0
    return az, 90.0 - math.degrees(zen)


def sun_lit_fraction(height: np.ndarray, res: float, azimuth: float, elevation: float,
                     soft_m: float = 0.12) -> np.ndarray:
    """Fraction of each heightfield cell lit by the sun (0 = in a cast shadow).

    Every cell's ray toward the sun is marched over the heightfield. Because all
    rays share one direction, the march is done as a single horizon sweep on a
    grid rotated so that light travels along its first axis: the top of the
    shadow volume at step i is ``max(top[i-1], h[i-1]) - res * tan(elevation)``
    and a cell is shadowed where that top is above it. The result is sampled back
    with bilinear weights, so shadow edges are anti-aliased; ``soft_m`` of
    height gives a penumbra.
    """
    rows, cols = height.shape
    a = math.radians(azimuth)
    dc, dr = -math.sin(a), math.cos(a)            # light travel direction in (col, row) pixel units
    pc, pr = -dr, dc                               # perpendicular
    n = int(math.ceil(math.hypot(rows, cols))) + 4
    rc, cc = (rows - 1) / 2.0, (cols - 1) / 2.0
    idx = np.arange(n, dtype=np.float32) - n / 2.0
    I, J = np.meshgrid(idx, idx, indexing="ij")     # I along light, J across
    src_c = cc + I * dc + J * pc
    src_r = rc + I * dr + J * pr
    hr = ndimage.map_coordinates(height, [src_r, src_c], order=1, mode="constant", cval=0.0, prefilter=False)
    del src_c, src_r, I, J
    dz = res * math.tan(math.radians(max(elevation, 1.0)))
    shadow = np.empty_like(hr)
    top = np.full(n, -1e9, dtype=np.float32)
    inv_soft = 1.0 / soft_m
    for i in range(n):
        row = hr[i]
        shadow[i] = np.clip((top - row) * inv_soft, 0.0, 1.0)
        np.maximum(top, row, out=top)
        top -= dz
    del hr
    R, C = np.meshgrid(np.arange(rows, dtype=np.float32) - rc, np.arange(cols, dtype=np.float32) - cc, indexing="ij")
    ii = R * dr + C * dc + n / 2.0
    jj = R * pr + C * pc + n / 2.0
    del R, C
    sh = ndimage.map_coordinates(shadow, [ii, jj], order=1, mode="constant", cval=0.0, prefilter=False)
    return (1.0 - sh).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The world: layout of ground units and objects
# ----------------------------------------------------------------------------------------------
@dataclass
class Obj:
    id: int
    cls: str                 # vehicle | tent | structure | tree
    kind: str
    cx: float
    cy: float
    L: float
    W: float
    theta: float             # long-axis direction, radians counter-clockwise from east
    h: float
    mats: dict
    before: bool = True
    after: bool = True
    mats_after: dict | None = None
    parts: list | None = None     # extra rectangles (cx, cy, L, W) for L-shaped buildings
    p: dict = field(default_factory=dict)
    group: str = ""

    def footprint(self):
        from shapely.ops import unary_union

        g = _rect(self.cx, self.cy, self.L, self.W, self.theta)
        if self.parts:
            g = unary_union([g] + [_rect(x, y, l, w, self.theta) for x, y, l, w in self.parts])
        return g

    @property
    def change(self) -> str | None:
        if self.before and not self.after:
            return "disappeared"
        if self.after and not self.before:
            return "appeared"
        if self.before and self.after and self.mats_after is not None:
            return "changed"
        return None


@dataclass
class Unit:
    """A ground unit: a mixture of vegetation over a substrate with a modulation pattern."""

    name: str
    veg: tuple                # (before spec, after spec)
    soil: tuple
    cover: tuple              # (before, after)
    mod: int = 0              # 0 none, 1 crop rows + tramlines, 2 slab joints, 3 mowing stripes
    period: float = 1.0
    angle: float = 0.0
    tex: tuple = (0.04, 0.05, 0.05)   # amplitudes of fine / mid / large noise
    cover_var: float = 0.0
    stains: bool = False


@dataclass
class World:
    S: float
    margin: float
    res: float
    n: int
    utm_epsg: int
    origin: tuple             # UTM easting, northing of the world centre
    lonlat: tuple
    units: list
    gid: dict                 # date -> int16 unit raster
    objects: list
    fence: np.ndarray         # bool raster
    base: object              # shapely polygon
    theta: float
    noise: dict
    stats: dict
    cache: dict = field(default_factory=dict)

    @property
    def half(self) -> float:
        return self.n * self.res / 2.0

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0, -self.half, 0, -self.res, self.half)


class Placer:
    """Keeps the occupied footprints and tests new ones against them."""

    def __init__(self, limit):
        import shapely

        shapely.prepare(limit)
        self.geoms = []
        self.arr = np.array([], dtype=object)
        self.limit = limit

    def free(self, geom, buffer=0.0, within=None):
        import shapely

        g = geom.buffer(buffer) if buffer else geom
        if within is not None and not within.contains(geom):
            return False
        if not self.limit.contains(geom):
            return False
        if len(self.geoms) != len(self.arr):
            self.arr = np.array(self.geoms, dtype=object)
        return not bool(shapely.intersects(self.arr, g).any()) if len(self.arr) else True

    def add(self, geom):
        self.geoms.append(geom)


def _units_table(rng, cfg: Cfg, wet: tuple):
    """Ground units with per-date states; returns (list, dict name -> index, helper to add a field)."""
    units, index = [], {}

    def add(name, veg, soil, cover, **kw):
        index[name] = len(units)
        units.append(Unit(name=name, veg=veg, soil=soil, cover=cover, **kw))
        return index[name]

    def sp(name, r=None, a=0.06):
        return _vary(SPEC[name], r or rng, a, 0.02)

    def wetted(spec, k):
        return (spec * wet[k]).astype(np.float32)

    # base grass shifts in greenness together (watering/drying); dry patches more
    g0 = rng.uniform(0.55, 0.95)
    g1 = float(np.clip(g0 + (rng.uniform(-0.25, 0.15) if cfg.season else 0.0), 0.2, 1.0))
    green, dry = sp("grass_green"), sp("grass_dry")
    mix = lambda g: (g * green + (1 - g) * dry).astype(np.float32)  # noqa: E731
    soil_b = sp("soil_brown")
    add("base_grass", (mix(g0), mix(g1)), (wetted(soil_b, 0), wetted(soil_b, 1)), (0.92, 0.92), mod=3,
        period=rng.uniform(2.0, 3.5), angle=rng.uniform(0, math.pi), tex=(0.05, 0.06, 0.06), cover_var=0.05)
    add("base_dry", (mix(g0 * 0.4), mix(g1 * 0.4)), (wetted(soil_b, 0), wetted(soil_b, 1)), (0.8, 0.8),
        tex=(0.06, 0.07, 0.06), cover_var=0.12)
    soil_l = sp(str(rng.choice(["soil_light", "soil_brown", "soil_red"])))
    add("base_bare", (dry, dry), (wetted(soil_l, 0), wetted(soil_l, 1)), (0.15, 0.15), tex=(0.06, 0.08, 0.08),
        cover_var=0.3)
    add("verge", (mix(min(g0 + 0.05, 1.0)), mix(min(g1 + 0.05, 1.0))), (wetted(soil_b, 0), wetted(soil_b, 1)), (0.93, 0.93),
        tex=(0.05, 0.07, 0.08), cover_var=0.08)
    grav = sp("gravel")
    add("gravel", (dry, dry), (wetted(grav, 0), wetted(grav, 1)), (0.0, 0.0), tex=(0.10, 0.06, 0.05))
    track_soil = sp("soil_brown")
    add("track", (dry, dry), (wetted(track_soil, 0), wetted(track_soil, 1)), (0.1, 0.1), tex=(0.08, 0.08, 0.05),
        cover_var=0.5)
    asp = sp(str(rng.choice(["asphalt_old", "asphalt_new"])))
    add("road", (dry, dry), (asp, asp), (0.0, 0.0), tex=(0.03, 0.04, 0.05), stains=True)
    add("concrete", (dry, dry), (sp("concrete"),) * 2, (0.0, 0.0), mod=2, period=rng.uniform(4.0, 6.0),
        tex=(0.04, 0.05, 0.04), stains=True)
    asp2 = sp("asphalt_old")
    add("apron_asphalt", (dry, dry), (asp2, asp2), (0.0, 0.0), tex=(0.03, 0.04, 0.05), stains=True)
    add("water", (dry, dry), (sp("water"),) * 2, (0.0, 0.0), tex=(0.01, 0.02, 0.03))
    return units, index, add


def _field_states(rng, cfg: Cfg, wet):
    """(veg, soil, cover, mod) for a field before and after: a seasonal trajectory per field."""
    crop = _vary(SPEC["crop_green"], rng, 0.08)
    ripe = _vary(SPEC["crop_ripe"], rng, 0.08)
    soil = _vary(SPEC[str(rng.choice(["soil_brown", "soil_light", "soil_red", "soil_dark"]))], rng, 0.08)
    stub = _vary(SPEC["stubble"], rng, 0.08)
    pasture = _vary(SPEC["grass_green"], rng, 0.08)
    traj = str(rng.choice(["grow", "senesce", "harvest", "plough", "mow", "static", "emerge"]))
    if not cfg.season:
        traj = "static"

    def mixv(g):
        return (g * crop + (1 - g) * ripe).astype(np.float32)

    sw = lambda s, k: (s * wet[k]).astype(np.float32)  # noqa: E731
    if traj == "grow":
        c0, c1, g0, g1 = rng.uniform(0.2, 0.45), rng.uniform(0.7, 0.95), 1.0, 1.0
        veg, sub = (mixv(g0), mixv(g1)), (sw(soil, 0), sw(soil, 1))
    elif traj == "emerge":
        c0, c1 = rng.uniform(0.0, 0.05), rng.uniform(0.25, 0.5)
        veg, sub = (mixv(1.0), mixv(1.0)), (sw(soil, 0), sw(soil, 1))
    elif traj == "senesce":
        c0 = c1 = rng.uniform(0.75, 0.95)
        veg, sub = (mixv(rng.uniform(0.7, 1.0)), mixv(rng.uniform(0.0, 0.4))), (sw(soil, 0), sw(soil, 1))
    elif traj == "harvest":
        c0, c1 = rng.uniform(0.8, 0.95), rng.uniform(0.0, 0.1)
        veg, sub = (mixv(rng.uniform(0.0, 0.3)), mixv(0.0)), (sw(stub, 0), sw(stub, 1))
    elif traj == "plough":
        c0 = c1 = 0.0
        dark = _vary(SPEC["soil_dark"], rng, 0.08)
        veg, sub = (mixv(0.5), mixv(0.5)), (sw(stub if rng.random() < 0.5 else soil, 0), sw(dark, 1))
    elif traj == "mow":
        c0, c1 = rng.uniform(0.9, 1.0), rng.uniform(0.75, 0.9)
        veg = (pasture, (0.6 * pasture + 0.4 * SPEC["grass_dry"]).astype(np.float32))
        sub = (sw(soil, 0), sw(soil, 1))
    else:  # static
        c0 = c1 = rng.uniform(0.0, 0.95)
        v = mixv(rng.uniform(0.2, 1.0)) if rng.random() < 0.7 else pasture
        veg, sub = (v, v), (sw(soil, 0), sw(soil, 1))
    return traj, veg, sub, (float(c0), float(c1))


def _build_world(rng, cfg: Cfg, S: float, res: float, margin: float, place: dict, wet: tuple) -> World:
    """Lay out the base, the fields and every object (both dates)."""
    from rasterio import features
    from shapely import affinity
    from shapely.geometry import LineString, Point, Polygon, box
    from shapely.ops import unary_union

    k = 2.6 if cfg.coarse else 1.0           # layout scale (coarse scenes are bigger with bigger features)
    half_scene = S / 2.0
    n = int(math.ceil((S + 2 * margin) / res))
    n += n % 2
    half = n * res / 2.0
    transform = Affine(res, 0, -half, 0, -res, half)
    shape = (n, n)
    scene = box(-half_scene, -half_scene, half_scene, half_scene)
    world_box = box(-half, -half, half, half)
    stats = {}

    units, uidx, add_unit = _units_table(rng, cfg, wet)

    # --- noise fields shared by both dates
    nrng = np.random.default_rng(rng.integers(2**63))
    noise = {
        "fine": _smooth_noise(nrng, shape, 0.8),
        "mid": _smooth_noise(nrng, shape, 1.5 / res),
        "large": _smooth_noise(nrng, shape, 8.0 / res),
        "xl": _smooth_noise(nrng, shape, 35.0 / res),
    }

    # --- base perimeter: irregular polygon with straight fence segments
    nv = int(rng.integers(7, 12))
    angs = np.sort((np.arange(nv) + rng.uniform(-0.3, 0.3, nv)) * 2 * math.pi / nv + rng.uniform(0, 6.3))
    radius = S * rng.uniform(0.30, 0.36) * (1 + rng.uniform(-0.16, 0.16, nv))
    ctr = rng.uniform(-0.04, 0.04, 2) * S
    base = Polygon([(ctr[0] + r * math.cos(a), ctr[1] + r * math.sin(a)) for r, a in zip(radius, angs)]).buffer(0)
    base = base.intersection(scene.buffer(-0.1 * S))
    theta = float(rng.uniform(0, math.pi / 2))          # base grid orientation

    def rot(g, about=(0, 0)):
        return affinity.rotate(g, theta, origin=about, use_radians=True)

    # --- fields around: strips along u, split along v, in a frame rotated by theta_f
    theta_f = float(theta + rng.uniform(-0.5, 0.5)) if rng.random() < 0.6 else float(rng.uniform(0, math.pi))
    gid = np.zeros(shape, np.int16)
    R = 2 * half
    u_edges = [-R]
    while u_edges[-1] < R:
        u_edges.append(u_edges[-1] + rng.uniform(60, 190) * k)
    field_polys, boundaries = [], []
    for u0, u1 in zip(u_edges[:-1], u_edges[1:]):
        v = -R
        while v < R:
            v1 = v + rng.uniform(70, 260) * k
            poly = affinity.rotate(box(u0, v, u1, v1), theta_f, origin=(0, 0), use_radians=True)
            if poly.intersects(world_box):
                field_polys.append(poly)
            v = v1
    traj_counts = {}
    field_shapes = []
    for poly in field_polys:
        traj, veg, sub, cover = _field_states(rng, cfg, wet)
        traj_counts[traj] = traj_counts.get(traj, 0) + 1
        along = theta_f + (0 if rng.random() < 0.5 else math.pi / 2)
        mod = 3 if traj == "mow" else 1
        uid = add_unit(f"field{len(field_shapes)}", veg, sub, cover, mod=mod,
                       period=rng.uniform(0.7, 1.6) if mod == 1 else rng.uniform(2.5, 5.0),
                       angle=along, tex=(0.05, 0.05, 0.06), cover_var=rng.uniform(0.05, 0.2))
        field_shapes.append((poly.intersection(world_box), uid))
        boundaries.append(poly.exterior)
    stats["fields"] = {"count": len(field_polys), "trajectories": traj_counts}
    features.rasterize(field_shapes, out=gid, transform=transform)

    # field margins: grass strips or farm tracks on some boundaries
    base_zone = base.buffer(18 * k)
    bl = unary_union(boundaries).difference(base_zone).intersection(world_box)
    lines = [g for g in getattr(bl, "geoms", [bl]) if g.length > 0]
    margins, tracks, hedges = [], [], []
    for ln in lines:
        r = rng.random()
        if r < 0.35:
            margins.append(ln.buffer(rng.uniform(1.0, 3.0) * k))
        elif r < 0.55:
            tracks.append(ln.buffer(rng.uniform(1.5, 2.5)))
        elif r < 0.8:
            hedges.append(ln)
    shapes = [(g, uidx["verge"]) for g in margins] + [(g, uidx["track"]) for g in tracks]

    # a pond sometimes
    if rng.random() < 0.4:
        for _ in range(20):
            p = Point(*rng.uniform(-half_scene, half_scene, 2))
            pond = p.buffer(rng.uniform(10, 22) * k, quad_segs=6)
            pond = affinity.scale(pond, rng.uniform(0.6, 1.4), 1.0)
            if not pond.intersects(base.buffer(25 * k)):
                shapes.append((pond, uidx["water"]))
                stats["pond"] = True
                break

    # verge (cleared, mown) ring outside the fence and the base ground
    shapes.append((base.buffer(rng.uniform(8, 18) * k), uidx["verge"]))
    if shapes:
        features.rasterize(shapes, out=gid, transform=transform)
    inside = features.rasterize([(base, 1)], out_shape=shape, transform=transform, dtype="uint8").astype(bool)
    xl, large = noise["xl"], noise["large"]
    base_units = np.where(xl + 0.3 * large > rng.uniform(0.6, 1.2), uidx["base_dry"], uidx["base_grass"])
    base_units = np.where((xl < -1.3) & (large > 0.5), uidx["base_bare"], base_units).astype(np.int16)
    gid[inside] = base_units[inside]

    # --- roads: a grid inside the base, an access road through a gate
    spacing = rng.uniform(60, 100) * k
    inner = base.buffer(-7 * k)
    road_lines = []
    off = rng.uniform(0, spacing, 2)
    for t in np.arange(-R, R, spacing):
        for ln in (LineString([(t + off[0], -R), (t + off[0], R)]), LineString([(-R, t + off[1]), (R, t + off[1])])):
            if rng.random() < 0.7:
                g = rot(ln).intersection(inner)
                if not g.is_empty:
                    road_lines.append(g)
    road_w = rng.uniform(5.0, 7.5) * (1.4 if cfg.coarse else 1.0)
    # access road: from the scene edge to the nearest fence point, then on to the base centre
    a_in = rng.uniform(0, 2 * math.pi)
    edge_pt = Point(math.cos(a_in) * (half + 5), math.sin(a_in) * (half + 5))
    gate = base.exterior.interpolate(base.exterior.project(edge_pt))
    c = base.centroid
    access = LineString([edge_pt, gate, (c.x, c.y)])
    roads = unary_union([ln.buffer(road_w / 2, cap_style=2) for ln in road_lines] + [access.buffer(3.5 * k ** 0.5, cap_style=2)])
    features.rasterize([(roads, uidx["road"])], out=gid, transform=transform)
    # patrol track inside the fence
    patrol = base.buffer(-1.0).difference(base.buffer(-1.0 - rng.uniform(3.0, 5.0)))
    features.rasterize([(patrol, uidx["gravel"] if rng.random() < 0.6 else uidx["track"])], out=gid, transform=transform)
    features.rasterize([(roads.intersection(base.buffer(-0.5)), uidx["road"])], out=gid, transform=transform)
    # fence (screened): a thin wall on the base outline with a gap at the gate
    fence_line = base.exterior.difference(gate.buffer(5.0))
    fence = features.rasterize([(fence_line, 1)], out_shape=shape, transform=transform, all_touched=True,
                               dtype="uint8").astype(bool)

    placer = Placer(base.buffer(-3.0))
    bminx, bminy, bmaxx, bmaxy = base.bounds

    def in_base():
        return float(rng.uniform(bminx, bmaxx)), float(rng.uniform(bminy, bmaxy))
    placer.add(roads.buffer(1.0))
    placer.add(patrol)

    objects: list[Obj] = []

    def new_id():
        return len(objects) + 1

    # --- aprons (parking areas) aligned with the grid, next to roads
    n_aprons = int(rng.integers(3, 6)) if not cfg.coarse else int(rng.integers(4, 7))
    aprons = []
    for _ in range(400):
        if len(aprons) >= n_aprons:
            break
        L = rng.uniform(40, 80) * k
        W = rng.uniform(24, 40) * (k if cfg.coarse else 1.0)
        cx, cy = in_base()
        poly = _rect(cx, cy, L, W, theta)
        if not base.buffer(-6).contains(poly):
            continue
        if any(poly.buffer(6).intersects(a["poly"]) for a in aprons):
            continue
        if poly.distance(roads) > 12 or poly.intersection(roads).area > 0.25 * poly.area:
            continue
        mat = _choice_w(rng, (("concrete", 0.5), ("apron_asphalt", 0.25), ("gravel", 0.25)))
        aprons.append({"poly": poly, "cx": cx, "cy": cy, "L": L, "W": W, "unit": uidx[mat]})
    for a in aprons:
        features.rasterize([(a["poly"], a["unit"])], out=gid, transform=transform)
        placer.add(a["poly"].buffer(2.0))
    stats["aprons"] = len(aprons)

    # --- buildings
    n_build = int(rng.integers(3, 7))
    buildings = []
    for _ in range(600):
        if len(buildings) >= n_build:
            break
        L, W = rng.uniform(15, 40) * k, rng.uniform(8, 18) * k
        W = min(W, 0.8 * L)
        cx, cy = in_base()
        th = theta + (math.pi / 2 if rng.random() < 0.4 else 0.0) + rng.normal(0, 0.01)
        parts = None
        poly = _rect(cx, cy, L, W, th)
        if rng.random() < 0.25:  # L-shaped
            lw = rng.uniform(0.35, 0.6) * L
            px = cx + (L / 2 - lw / 2) * math.cos(th) - (W * 0.9) * math.sin(th)
            py = cy + (L / 2 - lw / 2) * math.sin(th) + (W * 0.9) * math.cos(th)
            parts = [(px, py, lw, W * 1.0)]
            poly = unary_union([poly, _rect(px, py, lw, W * 1.0, th)])
        if not placer.free(poly, 4.0):
            continue
        roof_kind = _choice_w(rng, (("flat", 0.5), ("gable", 0.4), ("hangar", 0.1 if not parts else 0.0)))
        roof = str(rng.choice(ROOFS)) if roof_kind != "hangar" else str(rng.choice(["roof_galv", "tarp_white", "roof_green"]))
        h = rng.uniform(4, 12) if roof_kind != "hangar" else rng.uniform(7, 11)
        o = Obj(new_id(), "structure", f"building_{roof_kind}", cx, cy, L, W, th, h,
                {"roof": _vary(SPEC[roof], rng, 0.06)}, parts=parts,
                p={"ridge": rng.uniform(1.5, 3.5), "hvac": int(rng.integers(0, 4)) if roof_kind == "flat" else 0,
                   "roof_name": roof, "seed": int(rng.integers(1 << 30))})
        objects.append(o)
        buildings.append(o)
        placer.add(poly.buffer(2.0))
    # pads/paths around buildings: concrete aprons in front of some
    for o in buildings:
        if rng.random() < 0.5:
            pad = o.footprint().buffer(rng.uniform(2.0, 5.0), join_style=2)
            features.rasterize([(pad, uidx["concrete"] if rng.random() < 0.6 else uidx["gravel"])], out=gid,
                               transform=transform)
            features.rasterize([(o.footprint(), uidx["gravel"])], out=gid, transform=transform)

    # --- vehicles in rows on aprons
    def vehicle(kind, cx, cy, th, paint, civil=False, group=""):
        p = {}
        if kind == "truck":
            L, W, h = rng.uniform(7.0, 9.5), rng.uniform(2.4, 2.55), rng.uniform(3.0, 3.5)
            p.update(cab=rng.uniform(0.2, 0.28), h_cab=rng.uniform(2.6, 2.9),
                     cargo=str(rng.choice(["canvas_tan", "tarp_olive", "same", "same"])))
        elif kind == "tanker":
            L, W, h = rng.uniform(8.0, 10.0), 2.5, rng.uniform(3.0, 3.3)
            p.update(cab=rng.uniform(0.18, 0.24), h_cab=rng.uniform(2.6, 2.9))
        elif kind == "apc":
            L, W, h = rng.uniform(6.2, 7.6), rng.uniform(2.9, 3.4), rng.uniform(2.2, 2.5)
            p.update(turret=rng.uniform(0.5, 0.8), glacis=rng.uniform(0.12, 0.2), tur_off=rng.uniform(-0.1, 0.15))
        elif kind == "light":
            L, W, h = rng.uniform(4.6, 5.3), rng.uniform(2.1, 2.3), rng.uniform(2.0, 2.2)
            p.update(hood=rng.uniform(0.25, 0.33))
        else:  # van / SUV (civilian)
            L, W, h = rng.uniform(4.8, 6.0), rng.uniform(1.9, 2.1), rng.uniform(2.0, 2.4)
            p.update(hood=rng.uniform(0.15, 0.22))
        mats = {"body": _vary(SPEC[paint], rng, 0.07)}
        if rng.random() < 0.15 and not civil:
            mats["camo1"] = _vary(SPEC["paint_black"], rng, 0.05)
            mats["camo2"] = _vary(SPEC[str(rng.choice(["paint_sand", "tarp_olive"]))], rng, 0.05)
            p["camo_off"] = rng.uniform(0, 1000, 2).tolist()
        if p.get("cargo") not in (None, "same"):
            mats["cargo"] = _vary(SPEC[p["cargo"]], rng, 0.07)
        dirt = rng.uniform(0.0, 0.25)
        if dirt > 0.05:
            for kk in list(mats):
                mats[kk] = ((1 - dirt) * mats[kk] + dirt * SPEC["soil_brown"]).astype(np.float32)
        return Obj(0, "vehicle", kind, cx, cy, L, W, th, h, mats, p=p, group=group)

    rows = []   # each row: list of slot objects (present flags set later)
    veh_mil = [("truck", 0.4), ("light", 0.25), ("apc", 0.2), ("tanker", 0.15)]
    for ai, a in enumerate(aprons):
        kind = _choice_w(rng, veh_mil)
        paint = _choice_w(rng, MILITARY_PAINT)
        proto = vehicle(kind, 0, 0, 0, paint)
        Lv, Wv = proto.L, proto.W
        gap = rng.uniform(1.0, 3.0)
        pitch = Wv + gap
        # rows along the apron long axis, vehicles side by side, oriented across the apron
        depth = Lv + 1.0
        n_rows = max(1, min(int((a["W"] - 2) // (depth + rng.uniform(5, 9))) + 1, 2 if not cfg.coarse else 6))
        if cfg.coarse:
            n_rows = max(1, int((a["W"] - 4) // (depth + rng.uniform(2.0, 4.0))))
        n_slots = int((a["L"] - 3) // pitch)
        if n_slots < 2:
            continue
        ca, sa = math.cos(theta), math.sin(theta)
        block_rows = int(rng.integers(2, 4))
        for r in range(n_rows):
            if n_rows == 1:
                b = rng.uniform(-0.2, 0.2) * (a["W"] - depth)
            else:
                b = -a["W"] / 2 + 1.5 + depth / 2 + r * (a["W"] - 3 - depth) / (n_rows - 1)
            facing = math.pi / 2 if (r % 2 == 0) else -math.pi / 2
            row = []
            row_kind = kind if (not cfg.coarse or rng.random() < 0.7) else _choice_w(rng, veh_mil)
            for s in range(n_slots):
                av = -a["L"] / 2 + 1.5 + pitch / 2 + s * pitch + rng.normal(0, 0.15)
                bv = b + rng.normal(0, 0.2)
                cx = a["cx"] + av * ca - bv * sa
                cy = a["cy"] + av * sa + bv * ca
                th = theta + facing + rng.normal(0, 0.03)
                o = vehicle(row_kind, cx, cy, th, paint if rng.random() < 0.9 else _choice_w(rng, MILITARY_PAINT),
                            group=f"apron{ai}-block{r // block_rows}" if cfg.coarse else f"apron{ai}-row{r}")
                if cfg.coarse:   # identical vehicles in a block
                    o.L, o.W = Lv, Wv
                row.append(o)
            rows.append(row)

    # --- occupancy and changes for rows (high-res) or blocks of rows (coarse)
    if cfg.coarse:
        blocks = {}
        for row in rows:
            blocks.setdefault(row[0].group, []).extend(row)
        lots = list(blocks.values())
    else:
        lots = rows
    for lot in lots:
        occ = rng.uniform(0.55, 0.95) if not cfg.coarse else rng.uniform(0.85, 1.0)
        empty_lot = rng.random() < (0.15 if not cfg.coarse else 0.35)
        for o in lot:
            o.before = (rng.random() < occ) and not empty_lot
            o.after = o.before
    counts = {"rows": len(rows), "row_slots": sum(len(r) for r in rows)}
    if cfg.coarse:
        counts["blocks"] = len(lots)
    if cfg.changes and rows:
        if cfg.coarse:
            # whole blocks arrive or leave
            full = [lot for lot in lots if sum(o.before for o in lot) >= 3]
            empty = [lot for lot in lots if not any(o.before for o in lot)]
            rng.shuffle(full)
            rng.shuffle(empty)
            n_leave = int(rng.integers(1, 3))
            for lot in full[:n_leave]:
                for o in lot:
                    o.after = False
            for lot in empty[: int(rng.integers(1, 4))]:
                for o in lot:
                    o.after = rng.random() < 0.92
            # a partial block departure
            rest = [lot for lot in full[n_leave:] if len(lot) >= 8]
            if rest:
                lot = rest[0]
                for o in lot[: len(lot) // 2]:
                    o.after = False
        else:
            # arrivals into gaps in the middle of occupied rows
            gaps = [(ri, si) for ri, r in enumerate(rows) for si in range(1, len(r) - 1)
                    if not r[si].before and r[si - 1].before and r[si + 1].before]
            rng.shuffle(gaps)
            for ri, si in gaps[: int(rng.integers(2, 6))]:
                rows[ri][si].after = True
            # other arrivals at row ends / empty rows (a new line-up)
            empties = [r for r in rows if not any(o.before for o in r)]
            if empties and rng.random() < 0.7:
                r = empties[0]
                n_new = int(rng.integers(3, min(len(r), 8) + 1)) if len(r) >= 3 else len(r)
                start = int(rng.integers(0, len(r) - n_new + 1))
                for o in r[start:start + n_new]:
                    o.after = True
            # departures
            occupied = [o for r in rows for o in r if o.before]
            rng.shuffle(occupied)
            for o in occupied[: int(rng.integers(4, 10))]:
                o.after = False
    for r in rows:
        for o in r:
            if o.before or o.after:
                o.id = new_id()
                objects.append(o)
                placer.add(o.footprint().buffer(0.5))

    # --- tents in groups
    def tent_group(present_before, present_after, tag):
        nx, ny = int(rng.integers(2, 5)), int(rng.integers(1, 4))
        L, W = rng.uniform(5.5, 11.0), rng.uniform(4.5, 6.5)
        gap = rng.uniform(3.0, 6.0)
        mat = _choice_w(rng, (("tarp_olive", 0.45), ("canvas_tan", 0.3), ("tarp_green", 0.15), ("tarp_white", 0.1)))
        arch = rng.random() < 0.2
        for attempt in range(400):
            if attempt and attempt % 100 == 0:
                nx, ny = max(1, nx - 1), max(1, ny - 1)
            cx, cy = in_base()
            th = theta + (0 if rng.random() < 0.5 else math.pi / 2) + rng.normal(0, 0.02)
            tents = []
            for i in range(nx):
                for j in range(ny):
                    du, dv = (i - (nx - 1) / 2) * (W + gap), (j - (ny - 1) / 2) * (L + gap)
                    x = cx + du * math.cos(th) - dv * math.sin(th)
                    y = cy + du * math.sin(th) + dv * math.cos(th)
                    tents.append((x, y))
            polys = [_rect(x, y, L, W, th + math.pi / 2) for x, y in tents]
            block = unary_union(polys)
            if not placer.free(block, 3.0):
                continue
            out = []
            grp = f"{tag}-{new_id()}"
            for (x, y) in tents:
                eave = rng.uniform(1.5, 1.9)
                o = Obj(new_id(), "tent", "tent_arch" if arch else "tent_gable", x, y, L, W, th + math.pi / 2,
                        rng.uniform(2.7, 3.4), {"roof": _vary(SPEC[mat], rng, 0.05)}, before=present_before,
                        after=present_after, p={"eave": eave}, group=grp)
                objects.append(o)
                out.append(o)
            placer.add(block.buffer(2.0))
            return out
        return []

    for _ in range(int(rng.integers(1, 3))):
        tent_group(True, True, "tents")
    if cfg.changes:
        tent_group(False, True, "new-tents")
        if cfg.coarse:
            tent_group(False, True, "new-tents")

    # --- new structures (appear), and a roof that changes
    def new_structure():
        for attempt in range(400):
            kind = _choice_w(rng, (("building_flat", 0.45), ("hangar", 0.25), ("containers", 0.3)))
            if attempt > 200:       # crowded base: something small that fits
                kind = "containers"
            th = theta + (0 if rng.random() < 0.5 else math.pi / 2)
            cx, cy = in_base()
            if kind == "containers":
                nx, ny = int(rng.integers(2, 6)), int(rng.integers(1, 3))
                L, W, h = 6.06 * ny + 0.3 * (ny - 1), 2.44 * nx + 0.2 * (nx - 1), 2.6 * int(rng.integers(1, 3))
                mats = {"c%d" % i: _vary(SPEC[str(rng.choice(["container_red", "container_blue", "roof_galv", "roof_green", "civ_white"]))], rng, 0.05)
                        for i in range(nx * ny)}
                p = {"nx": nx, "ny": ny}
            elif kind == "hangar":
                L, W = rng.uniform(18, 30) * k, rng.uniform(10, 16) * k
                h = rng.uniform(6, 9)
                mats = {"roof": _vary(SPEC[str(rng.choice(["tarp_white", "roof_galv", "tarp_green"]))], rng, 0.05)}
                p = {}
            else:
                L, W = rng.uniform(12, 30) * k, rng.uniform(8, 14) * k
                h = rng.uniform(4, 8)
                mats = {"roof": _vary(SPEC[str(rng.choice(["roof_white", "roof_galv", "concrete", "roof_tar"]))], rng, 0.05)}
                p = {"hvac": int(rng.integers(0, 3)), "seed": int(rng.integers(1 << 30)), "ridge": 0.0}
            poly = _rect(cx, cy, L, W, th)
            if not placer.free(poly, 4.0):
                continue
            o = Obj(new_id(), "structure", kind if kind != "building_flat" else "building_flat", cx, cy, L, W, th, h,
                    mats, before=False, after=True, p=p, group="new-structure")
            objects.append(o)
            placer.add(poly.buffer(2.0))
            return o
        return None

    new_structs = []
    if cfg.changes:
        for _ in range(int(rng.integers(1, 3)) if not cfg.coarse else int(rng.integers(2, 5))):
            s = new_structure()
            if s is not None:
                new_structs.append(s)
    if cfg.changes:
        cand = [b for b in buildings if b.kind in ("building_flat", "building_gable")] or buildings
        if cand:
            b = cand[int(rng.integers(len(cand)))]
            choices = [r for r in ("roof_red", "roof_blue", "roof_white", "roof_galv", "roof_green", "roof_tar")
                       if r != b.p["roof_name"]]
            new_roof = str(rng.choice(choices))
            b.mats_after = {"roof": _vary(SPEC[new_roof], rng, 0.04)}
            b.p["roof_after"] = new_roof
    # --- loose clusters of vehicles on grass/gravel
    def cluster(n_veh, present_before, present_after, civil=False, spread=15.0, tag="cluster"):
        for _ in range(200):
            cx, cy = in_base()
            if not placer.free(Point(cx, cy).buffer(spread * 0.7), 0.0):
                continue
            placed = []
            base_th = rng.uniform(0, math.pi)
            for _ in range(n_veh * 25):
                if len(placed) >= n_veh:
                    break
                x, y = cx + rng.normal(0, spread / 2), cy + rng.normal(0, spread / 2)
                th = base_th + rng.normal(0, 0.5) if rng.random() < 0.7 else rng.uniform(0, 2 * math.pi)
                if civil:
                    kind, paint = "van", _choice_w(rng, CIVIL_PAINT)
                else:
                    kind, paint = _choice_w(rng, veh_mil), _choice_w(rng, MILITARY_PAINT)
                o = vehicle(kind, x, y, th, paint, civil=civil, group=f"{tag}{len(objects)}")
                fp = o.footprint()
                if not placer.free(fp, 1.2) or any(fp.buffer(1.2).intersects(q.footprint()) for q in placed):
                    continue
                placed.append(o)
            if len(placed) >= max(2, n_veh // 2):
                grp = f"{tag}-{new_id()}"
                for i, o in enumerate(placed):
                    o.group = grp
                    o.before = present_before(i)
                    o.after = present_after(i)
                    o.id = new_id()
                    objects.append(o)
                    placer.add(o.footprint().buffer(0.8))
                return placed
        return []

    n_clusters = int(rng.integers(2, 4)) if not cfg.coarse else int(rng.integers(2, 5))
    for ci in range(n_clusters):
        nv_ = int(rng.integers(3, 9)) if not cfg.coarse else int(rng.integers(8, 20))
        if cfg.changes and ci == 0:
            # a cluster that partly leaves
            cluster(nv_, lambda i: True, lambda i: i % 2 == 1, spread=15 * (1.5 if cfg.coarse else 1.0))
        else:
            cluster(nv_, lambda i: True, lambda i: True, spread=15 * (1.5 if cfg.coarse else 1.0))
    if cfg.changes:
        for _ in range(int(rng.integers(1, 3))):
            cluster(int(rng.integers(3, 8)) if not cfg.coarse else int(rng.integers(8, 18)),
                    lambda i: False, lambda i: True, spread=14 * (1.5 if cfg.coarse else 1.0), tag="arrival")
    # civilian cars near buildings (unchanged, and one arrives/leaves in the busy scenarios)
    for b in buildings[:3]:
        for j in range(int(rng.integers(0, 4))):
            fp0 = b.footprint().buffer(4.0)
            for _ in range(30):
                pt = fp0.exterior.interpolate(rng.uniform(0, fp0.exterior.length))
                o = vehicle("van", pt.x, pt.y, b.theta + (math.pi / 2 if rng.random() < 0.5 else 0), _choice_w(rng, CIVIL_PAINT),
                            civil=True, group="cars")
                if placer.free(o.footprint(), 1.0):
                    o.id = new_id()
                    if cfg.changes and j == 0 and rng.random() < 0.5:
                        o.after = False
                    objects.append(o)
                    placer.add(o.footprint().buffer(0.8))
                    break

    # construction aprons (1 m gravel) around new structures, AFTER only
    gid_after = gid.copy()
    if new_structs:
        features.rasterize([(s.footprint().buffer(1.0, join_style=2), uidx["gravel"]) for s in new_structs],
                           out=gid_after, transform=transform)

    # --- trees (placed last, in what is left): scattered in the base, hedgerows and woods outside
    trees = []

    def tree(x, y, hedge=False):
        conif = rng.random() < 0.25
        Rc = rng.uniform(1.5, 3.0) if hedge else rng.uniform(2.0, 6.0)
        Ht = rng.uniform(3.5, 7.0) if hedge else float(np.clip(Rc * rng.uniform(1.6, 2.6), 5.0, 15.0))
        spec = _vary(SPEC["tree_conif" if conif else "tree_decid"], rng, 0.1, 0.04)
        return Obj(0, "tree", "tree_conif" if conif else "tree", x, y, 2 * Rc, 2 * Rc, 0.0, Ht, {"crown": spec},
                   p={"lobes": rng.uniform(0, 2 * math.pi, 2).tolist(), "lobe_amp": rng.uniform(0.05, 0.2)})

    n_in = int(rng.integers(10, 35) * (k if cfg.coarse else 1))
    tries = 0
    while len(trees) < n_in and tries < n_in * 30:
        tries += 1
        x, y = in_base()
        t = tree(x, y)
        if placer.free(Point(x, y).buffer(t.L / 2), 2.0, within=base.buffer(-4)):
            trees.append(t)
            placer.add(Point(x, y).buffer(t.L / 2 + 0.5))
    outside_keep = base.buffer(12 * k)
    for ln in hedges:
        d = 0.0
        while d < ln.length:
            pt = ln.interpolate(d)
            if not outside_keep.contains(pt) and not roads.buffer(4).contains(pt):
                trees.append(tree(pt.x + rng.normal(0, 0.6), pt.y + rng.normal(0, 0.6), hedge=True))
            d += rng.uniform(1.8, 3.5)
    # a small wood and some field trees
    for _ in range(int(rng.integers(1, 3))):
        wc = rng.uniform(-half, half, 2)
        if Point(*wc).distance(base) < 40 * k:
            continue
        for _ in range(int(rng.integers(15, 50))):
            x, y = wc + rng.normal(0, 14 * k, 2)
            if not outside_keep.contains(Point(x, y)) and not roads.buffer(4).contains(Point(x, y)):
                trees.append(tree(x, y))
    for _ in range(int(rng.integers(5, 20) * k)):
        x, y = rng.uniform(-half, half, 2)
        if not outside_keep.contains(Point(x, y)) and not roads.buffer(5).contains(Point(x, y)):
            trees.append(tree(x, y))
    for t in trees:
        t.id = new_id()
        objects.append(t)
    stats["trees"] = len(trees)
    stats["buildings"] = len(buildings)

    return World(S=S, margin=margin, res=res, n=n, utm_epsg=place["utm_epsg"], origin=place["origin"],
                 lonlat=place["lonlat"], units=units, gid={"before": gid, "after": gid_after}, objects=objects,
                 fence=fence, base=base, theta=theta, noise=noise, stats=stats | counts)


# ----------------------------------------------------------------------------------------------
# Painting the world for one date: heightfield + reflectance
# ----------------------------------------------------------------------------------------------
def _paint_ground(world: World, date: str) -> np.ndarray:
    """Reflectance (4, n, n) of the ground units for ``date`` ("before"/"after")."""
    k = 0 if date == "before" else 1
    units = world.units
    veg = np.stack([u.veg[k] for u in units]).astype(np.float32)        # (U, 4)
    soil = np.stack([u.soil[k] for u in units]).astype(np.float32)
    cover = np.array([u.cover[k] for u in units], np.float32)
    mod = np.array([u.mod for u in units], np.int8)
    period = np.array([u.period for u in units], np.float32)
    ang = np.array([u.angle for u in units], np.float32)
    tex = np.array([u.tex for u in units], np.float32)                 # (U, 3)
    cvar = np.array([u.cover_var for u in units], np.float32)
    stains = np.array([u.stains for u in units], bool)

    gid = world.gid[date]
    nz = world.noise
    c = cover[gid]
    c *= 1.0 + cvar[gid] * nz["large"]
    m = mod[gid]
    rows_ = m == 1
    joints = m == 2
    stripes = m == 3
    n = world.n
    coords = (np.arange(n, dtype=np.float32) + 0.5) * world.res - world.half
    if rows_.any() or joints.any() or stripes.any():
        rr, cc = np.nonzero(rows_ | joints | stripes)
        x = coords[cc]
        y = -coords[rr]
        g = gid[rr, cc]
        a = ang[g]
        s = x * np.cos(a) + y * np.sin(a)
        t = -x * np.sin(a) + y * np.cos(a)
        kind = m[rr, cc]
        per = period[g]
        cv = c[rr, cc]
        out = cv.copy()
        # crop rows: cover modulated across rows, sparser canopy shows them more; tramlines every ~20 m
        sel = kind == 1
        amp = np.clip(1.2 * (1.0 - cv[sel]), 0.05, 0.9)
        out[sel] = np.clip(cv[sel] * (1.0 + amp * np.cos(2 * np.pi * t[sel] / per[sel])), 0.0, 1.0)
        tram = np.abs(((t[sel] + 3.0) % 21.0) - 10.5)
        out[sel] = np.where((np.abs(tram - 0.9) < 0.25) | (np.abs(tram + 0.9 - 0.0) < 0.25), out[sel] * 0.55, out[sel])
        # mowing stripes: handled as a brightness factor below (keep cover)
        c[rr, cc] = out
        fac = np.ones(len(rr), np.float32)
        selj = kind == 2
        jw = max(world.res, 0.15) / 2
        dj1 = np.abs(((s[selj] + per[selj] / 2) % per[selj]) - per[selj] / 2)
        dj2 = np.abs(((t[selj] + per[selj] / 2) % per[selj]) - per[selj] / 2)
        fac[selj] = np.where((dj1 < jw) | (dj2 < jw), 0.82, 1.0)
        sels = kind == 3
        fac[sels] = 1.0 + 0.06 * np.sign(np.cos(2 * np.pi * s[sels] / (2 * per[sels])))
        factor = np.ones((n, n), np.float32)
        factor[rr, cc] = fac
        del rr, cc, x, y, s, t
    else:
        factor = np.ones((n, n), np.float32)
    np.clip(c, 0.0, 1.0, out=c)
    t3 = 1.0 + tex[gid, 0] * nz["fine"] + tex[gid, 1] * nz["mid"] + tex[gid, 2] * nz["large"]
    t3 *= factor
    del factor
    st = stains[gid]
    if st.any():
        blot = np.clip((nz["mid"] + 0.5 * nz["large"] - 2.0) / 0.6, 0.0, 1.0)
        t3[st] *= 1.0 - 0.45 * blot[st]
    np.clip(t3, 0.3, 2.0, out=t3)
    rho = np.empty((4, n, n), np.float32)
    for b in range(4):
        vb, sb = veg[:, b][gid], soil[:, b][gid]
        rho[b] = (c * vb + (1.0 - c) * sb) * t3
    return rho


def _local_window(world: World, o: Obj, pad=1.0):
    """Pixel window and local (u, v) coordinates for an object's bounding circle."""
    rad = math.hypot(o.L, o.W) / 2 + pad
    if o.parts:
        rad += max(max(pl, pw) for _, _, pl, pw in o.parts) * 1.5
    half, res, n = world.half, world.res, world.n
    c0 = max(0, int((o.cx - rad + half) / res))
    c1 = min(n, int((o.cx + rad + half) / res) + 2)
    r0 = max(0, int((half - o.cy - rad) / res))
    r1 = min(n, int((half - o.cy + rad) / res) + 2)
    if c1 <= c0 or r1 <= r0:
        return None
    xs = (np.arange(c0, c1, dtype=np.float32) + 0.5) * res - half - o.cx
    ys = half - (np.arange(r0, r1, dtype=np.float32) + 0.5) * res - o.cy
    X, Y = np.meshgrid(xs, ys)
    ct, st = math.cos(o.theta), math.sin(o.theta)
    u = X * ct + Y * st
    v = -X * st + Y * ct
    return (slice(r0, r1), slice(c0, c1)), u, v, X, Y


def _paint_object(world: World, o: Obj, date: str, H: np.ndarray, rho: np.ndarray):
    win = _local_window(world, o)
    if win is None:
        return
    sl, u, v, X, Y = win
    mats = o.mats_after if (date == "after" and o.mats_after is not None) else o.mats
    L2, W2 = o.L / 2, o.W / 2
    h = np.zeros(u.shape, np.float32)
    mat = np.full(u.shape, -1, np.int16)
    specs = []

    def put(mask, height, spec):
        specs.append(spec)
        idx = len(specs) - 1
        hh = np.broadcast_to(np.asarray(height, np.float32), u.shape)
        sel = mask & (hh >= h)
        h[sel] = hh[sel]
        mat[sel] = idx

    inside = (np.abs(u) <= L2) & (np.abs(v) <= W2)
    fine = world.noise["fine"][sl]
    amp = 0.03
    if o.cls == "vehicle":
        body = mats["body"]
        if o.kind in ("truck", "tanker"):
            cab_len = o.p["cab"] * o.L
            front = u > L2 - cab_len
            put(inside & front, o.p["h_cab"], body)
            put(inside & front & (u > L2 - 0.45) & (np.abs(v) < W2 - 0.15), o.p["h_cab"] - 0.15, SPEC["glass"])
            gapm = inside & (u > L2 - cab_len - 0.35) & ~front
            put(gapm, 1.3, SPEC["chassis"])
            rear = inside & (u <= L2 - cab_len - 0.35)
            if o.kind == "tanker":
                prof = 1.4 + (o.h - 1.4) * np.sqrt(np.clip(1 - (v / W2) ** 2, 0, 1))
                put(rear, prof, body)
            else:
                put(rear, o.h, mats.get("cargo", body))
        elif o.kind == "apc":
            gl = inside & (u > L2 - o.p["glacis"] * o.L)
            put(inside & ~gl, o.h, body)
            put(gl, o.h - 0.45, body)
            tr = o.p["turret"] * W2
            tc = o.p["tur_off"] * o.L
            put(((u - tc) ** 2 + v ** 2) < tr ** 2, o.h + 0.6, body * 0.85)
        else:  # light / van: roof with a lower hood at the front and a windscreen
            hood = u > L2 - o.p["hood"] * o.L
            put(inside & ~hood, o.h, body)
            put(inside & hood, o.h - 0.65, body)
            put(inside & (u > L2 - o.p["hood"] * o.L - 0.6) & ~hood & (np.abs(v) < W2 - 0.12), o.h - 0.1,
                SPEC["glass"])
        if "camo1" in mats:
            # disruptive pattern recolours the painted surfaces (not glass, canvas or chassis)
            ox, oy = o.p["camo_off"]
            cn = np.sin((u + ox) * 1.3) + np.sin((v * 1.7 + u * 0.6 + oy) * 1.1) + 0.5 * fine
            painted = np.isin(mat, [i for i, sp_ in enumerate(specs) if sp_ is body or np.allclose(sp_, body * 0.85)])
            specs.append(mats["camo1"])
            mat[painted & (cn > 0.8)] = len(specs) - 1
            specs.append(mats["camo2"])
            mat[painted & (cn < -0.9)] = len(specs) - 1
    elif o.cls == "tent":
        amp = 0.05
        ridge, eave = o.h, o.p["eave"]
        if o.kind == "tent_arch":
            prof = np.maximum(eave * 0.7, ridge * np.sqrt(np.clip(1 - (v / W2) ** 2, 0, 1)))
        else:
            prof = eave + (ridge - eave) * (1 - np.abs(v) / W2)
        put(inside, prof, mats["roof"])
    elif o.cls == "structure":
        amp = 0.04
        if o.kind == "containers":
            nx, ny = o.p["nx"], o.p["ny"]
            cw = (o.W + 0.2) / nx
            cl = (o.L + 0.3) / ny
            i = np.clip(((v + W2) // cw).astype(int), 0, nx - 1)
            j = np.clip(((u + L2) // cl).astype(int), 0, ny - 1)
            gapm = (((v + W2) % cw) > cw - 0.2) | (((u + L2) % cl) > cl - 0.3)
            for kk in range(nx * ny):
                put(inside & ~gapm & (i * ny + j == kk), o.h, mats["c%d" % kk])
            put(inside & gapm, 0.05, SPEC["gravel"])
            # corrugation
            amp = 0.06
        elif o.kind in ("building_hangar", "hangar"):
            prof = np.maximum(0.4 * o.h, o.h * np.sqrt(np.clip(1 - (v / W2) ** 2, 0, 1)))
            put(inside, prof, mats["roof"])
        else:
            roof = mats["roof"]
            rects = [(0.0, 0.0, o.L, o.W)]
            if o.parts:
                ct, st = math.cos(o.theta), math.sin(o.theta)
                for px, py, pl, pw in o.parts:
                    dx, dy = px - o.cx, py - o.cy
                    rects.append((dx * ct + dy * st, -dx * st + dy * ct, pl, pw))
            for (uc, vc, rl, rw) in rects:
                m = (np.abs(u - uc) <= rl / 2) & (np.abs(v - vc) <= rw / 2)
                if o.kind == "building_gable":
                    # ridge along the longer side of each part
                    if rl >= rw:
                        prof = o.h + o.p["ridge"] * (1 - np.abs(v - vc) / (rw / 2))
                    else:
                        prof = o.h + o.p["ridge"] * (1 - np.abs(u - uc) / (rl / 2))
                    put(m, prof, roof)
                else:
                    put(m, o.h, roof)
                    edge = m & ((np.abs(u - uc) > rl / 2 - 0.45) | (np.abs(v - vc) > rw / 2 - 0.45))
                    put(edge, o.h + 0.5, (0.8 * roof + 0.2 * SPEC["concrete"]).astype(np.float32))
            if o.p.get("hvac"):
                r2 = np.random.default_rng(o.p["seed"])
                for _ in range(o.p["hvac"]):
                    hu, hv = r2.uniform(-0.35, 0.35) * o.L, r2.uniform(-0.3, 0.3) * o.W
                    hl, hw = r2.uniform(1.2, 3.0), r2.uniform(1.0, 2.0)
                    put((np.abs(u - hu) < hl / 2) & (np.abs(v - hv) < hw / 2), o.h + r2.uniform(0.8, 1.6),
                        SPEC["paint_grey"] * 1.4)
    elif o.cls == "tree":
        amp = 0.22
        Rc = o.L / 2
        r = np.hypot(X, Y)
        phi = np.arctan2(Y, X)
        l1, l2 = o.p["lobes"]
        Rphi = Rc * (1 + o.p["lobe_amp"] * np.sin(3 * phi + l1) + 0.6 * o.p["lobe_amp"] * np.sin(5 * phi + l2))
        m = r <= Rphi
        if o.kind == "tree_conif":
            prof = o.h * (1.0 - 0.75 * r / Rphi)
        else:
            sig = 0.6 * Rphi
            prof = o.h * np.exp(-0.5 * (r / sig) ** 2)
        prof = prof * (1.0 + 0.05 * fine)
        put(m, prof, mats["crown"])
    if not specs:
        return
    Hw = H[sl]
    top = (mat >= 0) & (h >= Hw)
    if not top.any():
        return
    Hw[top] = h[top]
    S_ = np.stack(specs).astype(np.float32)           # (k, 4)
    t = (1.0 + amp * fine[top]).astype(np.float32)
    if o.cls == "tree":
        t *= (1.0 + 0.1 * world.noise["mid"][sl][top])
        # self-occluded crown interior is darker (mutual shading of leaves)
        t *= np.clip(0.75 + 0.25 * h[top] / o.h, 0.6, 1.0)
    vals = S_[mat[top]]                                 # (npx, 4)
    rw = rho[:, sl[0], sl[1]]
    for b in range(4):
        rw[b][top] = vals[:, b] * t


def _paint_world(world: World, date: str, season: dict):
    rho = _paint_ground(world, date)
    H = np.zeros((world.n, world.n), np.float32)
    # fence: a 2.2 m screen, one fine pixel wide
    H[world.fence] = 2.2
    for b in range(4):
        rho[b][world.fence] = SPEC["fence"][b]
    nir_tree = season.get("tree_nir", 1.0)
    for o in world.objects:
        present = o.before if date == "before" else o.after
        if not present:
            continue
        if o.cls == "tree" and nir_tree != 1.0:
            o2 = dataclasses.replace(o, mats={"crown": (o.mats["crown"] * np.array([1, 1, 1, nir_tree], np.float32)).astype(np.float32)})
            _paint_object(world, o2, date, H, rho)
        else:
            _paint_object(world, o, date, H, rho)
    return H, rho


# ----------------------------------------------------------------------------------------------
# Clouds: thresholded sum of random Gaussian blobs with a soft alpha
# ----------------------------------------------------------------------------------------------
@dataclass
class CloudModel:
    blobs: np.ndarray            # (k, 6): x, y, sx, sy, angle, amplitude
    threshold: float
    width: float
    height_m: float
    shadow_offset: tuple         # cloud at c casts its shadow at c + offset (world metres)
    fraction: float
    lattices: dict = field(default_factory=dict)

    def field_at(self, key, x0, y0, x1, y1, step):
        """Blob sum on a lattice covering [x0, x1] x [y0, y1] (cached by key)."""
        if key in self.lattices:
            return self.lattices[key]
        xs = np.arange(x0, x1 + step, step, dtype=np.float32)
        ys = np.arange(y1, y0 - step, -step, dtype=np.float32)
        F = np.zeros((len(ys), len(xs)), np.float32)
        for bx, by, sx, sy, ang, amp in self.blobs:
            r = 3.5 * max(sx, sy)
            c0, c1 = np.searchsorted(xs, bx - r), np.searchsorted(xs, bx + r)
            r0, r1 = np.searchsorted(-ys, -(by + r)), np.searchsorted(-ys, -(by - r))
            if c1 <= c0 or r1 <= r0:
                continue
            X, Y = np.meshgrid(xs[c0:c1] - bx, ys[r0:r1] - by)
            ca, sa = math.cos(ang), math.sin(ang)
            a = (X * ca + Y * sa) / sx
            b = (-X * sa + Y * ca) / sy
            F[r0:r1, c0:c1] += amp * np.exp(-0.5 * (a * a + b * b))
        self.lattices[key] = (F, xs[0], ys[0], step)
        return self.lattices[key]


def _cloud_model(rng, world: World, frac: float, sun_az: float, sun_el: float) -> CloudModel | None:
    if frac <= 0:
        return None
    height = float(rng.uniform(350, 1500))
    dist = height / math.tan(math.radians(max(sun_el, 5.0)))
    az = math.radians(sun_az)
    off = (-math.sin(az) * dist, -math.cos(az) * dist)       # shadow falls away from the sun
    half = world.half
    scale = world.S / 400.0
    blobs = []
    area_pad = 120 * scale
    regions = [(-half - area_pad, -half - area_pad, half + area_pad, half + area_pad)]
    regions.append((regions[0][0] - off[0], regions[0][1] - off[1], regions[0][2] - off[0], regions[0][3] - off[1]))
    for ri, (x0, y0, x1, y1) in enumerate(regions):
        area = (x1 - x0) * (y1 - y0)
        for size_lo, size_hi, density in ((25, 80, 90), (8, 25, 500)):
            s_lo, s_hi = size_lo * scale, size_hi * scale
            nb = rng.poisson(density * area / 1e6 / scale ** 2)
            for _ in range(nb):
                x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
                if ri == 1:
                    a0 = regions[0]
                    if a0[0] <= x <= a0[2] and a0[1] <= y <= a0[3]:
                        continue
                sx = rng.uniform(s_lo, s_hi)
                blobs.append((x, y, sx, sx / rng.uniform(1.0, 2.5), rng.uniform(0, math.pi), rng.uniform(0.4, 1.0)))
    # a few large seeds so that clouds clump
    for _ in range(int(rng.integers(1, 4))):
        r = regions[int(rng.integers(0, 2))]
        x, y = rng.uniform(r[0], r[2]), rng.uniform(r[1], r[3])
        for _ in range(int(rng.integers(10, 30))):
            sx = rng.uniform(10, 40) * scale
            blobs.append((x + rng.normal(0, 40 * scale), y + rng.normal(0, 40 * scale), sx, sx / rng.uniform(1, 2),
                          rng.uniform(0, math.pi), rng.uniform(0.6, 1.2)))
    model = CloudModel(np.array(blobs, np.float64), 0.0, 1.0, height, off, frac)
    # threshold so that clouds and their shadows inside the scene together cover about 2 x frac
    s = world.S / 2
    step = max(2.0, world.S / 200.0)
    FA, _, _, _ = model.field_at("A", -s, -s, s, s, step)
    FB, _, _, _ = model.field_at("B", -s - off[0], -s - off[1], s - off[0], s - off[1], step)
    t = float(np.quantile(np.concatenate([FA.ravel(), FB.ravel()]), 1.0 - frac))
    model.threshold = max(t, 1e-3)
    model.width = 0.25 * model.threshold
    return model


def _cloud_alpha(model: CloudModel | None, x: np.ndarray, y: np.ndarray, shadow=False, view_shift=(0.0, 0.0)):
    """Cloud opacity at world points (x, y); with ``shadow`` the opacity of the cloud that shades (x, y)."""
    if model is None:
        return np.zeros(np.shape(x), np.float32), np.zeros(np.shape(x), np.float32)
    ox, oy = (model.shadow_offset if shadow else (0.0, 0.0))
    qx, qy = x - ox - view_shift[0], y - oy - view_shift[1]
    x0, x1, y0, y1 = float(qx.min()), float(qx.max()), float(qy.min()), float(qy.max())
    key = ("S" if shadow else "A", round(x0, -1), round(y0, -1), round(x1, -1), round(y1, -1))
    step = max(2.0, min(model.lattices["A"][3], 4.0))
    F, lx0, ly0, st = model.field_at(key, x0 - 2 * step, y0 - 2 * step, x1 + 2 * step, y1 + 2 * step, step)
    cols = (qx - lx0) / st
    rows = (ly0 - qy) / st
    f = ndimage.map_coordinates(F, [rows, cols], order=1, mode="nearest")
    alpha = _smoothstep((f - model.threshold) / model.width + 0.5).astype(np.float32)
    depth = np.clip((f - model.threshold) / model.threshold, 0, 1).astype(np.float32)
    return alpha, depth


# ----------------------------------------------------------------------------------------------
# Shading, lean, sensor
# ----------------------------------------------------------------------------------------------
def diffuse_fraction(elevation: float, haze: float) -> np.ndarray:
    """Per-band share of diffuse sky light on a flat open surface (bluer than the sun)."""
    base = np.array([0.25, 0.18, 0.13, 0.085], np.float32)
    f = base / max(math.sin(math.radians(elevation)), 0.2) ** 0.6 * (1.0 + 6.0 * haze)
    return np.clip(f, 0.04, 0.75).astype(np.float32)


def _shade(world: World, H: np.ndarray, rho: np.ndarray, sun: tuple, fdif: np.ndarray, cloud, lean_shift):
    """Turn reflectance into apparent reflectance under the sun, sky and clouds (in place on rho)."""
    az, el = sun
    res = world.res
    lit = sun_lit_fraction(H, res, az, el)
    gy, gx = np.gradient(H, res)
    dzdx, dzdy = gx, -gy                              # east, north slopes
    del gx, gy
    mag = np.hypot(dzdx, dzdy)
    lim = 2.0
    scale = np.where(mag > lim, lim / np.maximum(mag, 1e-6), 1.0).astype(np.float32)
    dzdx *= scale
    dzdy *= scale
    a, e = math.radians(az), math.radians(el)
    s = (math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), math.sin(e))
    norm = np.sqrt(1.0 + dzdx * dzdx + dzdy * dzdy)
    cosi = (-dzdx * s[0] - dzdy * s[1] + s[2]) / norm
    direct = np.clip(cosi / s[2], 0.0, 2.5) * lit
    slope_sky = 0.5 * (1.0 + 1.0 / norm)
    del dzdx, dzdy, cosi, scale, mag, norm
    # sky view: less sky next to tall things
    dec = 2
    Hs = H[::dec, ::dec]
    sm = ndimage.gaussian_filter(Hs, 3.0 / (res * dec))
    occ = np.clip((sm - Hs) / 3.0, 0.0, 1.0)
    occ = ndimage.zoom(occ, dec, order=1)[: H.shape[0], : H.shape[1]]
    svf = (1.0 - 0.45 * occ) * slope_sky
    del occ, sm, Hs, slope_sky
    n = world.n
    if cloud is not None:
        # cloud fields are smooth (lattice >= 2 m): evaluate every 4th fine pixel and interpolate
        st = 4
        coords = (np.arange(0, n, st, dtype=np.float32) + 0.5) * res - world.half
        X, Y = np.meshgrid(coords, -coords)
        full = np.arange(n, dtype=np.float32) / st
        RR, CC = np.meshgrid(full, full, indexing="ij")

        def up(a):
            return ndimage.map_coordinates(a, [RR, CC], order=1, mode="nearest")

        ca, depth = (up(a) for a in _cloud_alpha(cloud, X, Y, view_shift=lean_shift))
        cs = up(_cloud_alpha(cloud, X, Y, shadow=True)[0])
        del X, Y, RR, CC
    else:
        ca = depth = cs = np.zeros((n, n), np.float32)
    direct *= 1.0 - 0.9 * cs
    svf *= 1.0 - 0.35 * cs
    # light bounced from lit surroundings into shadows (small)
    bounce = ndimage.zoom(ndimage.gaussian_filter(rho[:, ::4, ::4].mean(axis=0) * lit[::4, ::4], 2.0 / (res * 4) + 1), 4,
                          order=1)[: n, : n]
    for b in range(4):
        e_b = (1.0 - fdif[b]) * direct + fdif[b] * svf + 0.08 * fdif[b] * bounce * (1.0 - lit)
        rho[b] *= e_b
    # clouds on top
    if cloud is not None:
        # puffy texture: the image alpha only thins the lattice alpha, so the truth mask stays conservative
        ca = ca * np.clip(0.85 + 0.3 * world.noise["large"], 0.35, 1.0)
        cb = (0.6 + 0.4 * depth) * (1.0 + 0.06 * world.noise["large"])
        for b in range(4):
            rho[b] = (1.0 - ca) * rho[b] + ca * SPEC["cloud"][b] * cb
    return lit


def _lean(world: World, H: np.ndarray, img: np.ndarray, off_nadir: float, view_az: float):
    """Relief displacement: what a sensor ``off_nadir`` degrees from nadir toward ``view_az`` sees on an
    image orthorectified to bare ground. Marches each ground pixel's view ray back toward the sensor and
    keeps the first surface hit."""
    t = math.tan(math.radians(off_nadir))
    if t <= 0:
        return img
    a = math.radians(view_az)
    # displacement direction (away from the sensor) in (col, row) units
    uc, ur = -math.sin(a), math.cos(a)
    res = world.res
    kmax = int(math.ceil(float(H.max()) * t / res)) + 1
    n = world.n
    best = np.zeros((n, n), np.int16)
    Ht = H * t
    for kk in range(1, kmax + 1):
        dr, dc = int(round(kk * ur)), int(round(kk * uc))
        # shifted[r, c] = H[r - dr, c - dc] (edges: no hit)
        shifted = np.zeros_like(Ht)
        rs, rd = (slice(0, n - dr), slice(dr, n)) if dr >= 0 else (slice(-dr, n), slice(0, n + dr))
        cs, cd = (slice(0, n - dc), slice(dc, n)) if dc >= 0 else (slice(-dc, n), slice(0, n + dc))
        shifted[rd, cd] = Ht[rs, cs]
        best[shifted >= kk * res] = kk
    R, C = np.mgrid[0:n, 0:n]
    rr = np.clip(R - np.round(best * ur).astype(np.int32), 0, n - 1)
    cc = np.clip(C - np.round(best * uc).astype(np.int32), 0, n - 1)
    return img[:, rr, cc]


@dataclass
class SensorGrid:
    crs: str
    transform: Affine
    shape: tuple

    def centres(self, step=1):
        rows, cols = self.shape
        r = np.arange(0, rows, step, dtype=np.float64) + 0.5
        c = np.arange(0, cols, step, dtype=np.float64) + 0.5
        C, R = np.meshgrid(c, r)
        t = self.transform
        return t.c + C * t.a, t.f + R * t.e


def _grid_world(grid: SensorGrid, world: World) -> tuple[np.ndarray, np.ndarray]:
    """World (local metres) coordinates of every pixel centre of ``grid``."""
    from pyproj import Transformer

    key = ("grid_world", grid.crs, tuple(grid.transform), tuple(grid.shape))
    if key in world.cache:
        return world.cache[key]
    world.cache[key] = out = _grid_world_uncached(grid, world)
    return out


def _grid_world_uncached(grid: SensorGrid, world: World) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    utm = f"EPSG:{world.utm_epsg}"
    E0, N0 = world.origin
    if grid.crs == utm:
        x, y = grid.centres()
        return (x - E0), (y - N0)
    step = 8
    rows, cols = grid.shape
    r = np.unique(np.append(np.arange(0, rows, step), rows - 1)).astype(np.float64)
    c = np.unique(np.append(np.arange(0, cols, step), cols - 1)).astype(np.float64)
    C, R = np.meshgrid(c + 0.5, r + 0.5)
    t = grid.transform
    tr = Transformer.from_crs(grid.crs, utm, always_xy=True)
    ex, ny = tr.transform(t.c + C * t.a, t.f + R * t.e)
    # interpolate the lattice to every pixel
    ri = np.interp(np.arange(rows), r, np.arange(len(r)))
    ci = np.interp(np.arange(cols), c, np.arange(len(c)))
    CI, RI = np.meshgrid(ci, ri)
    x = ndimage.map_coordinates(np.asarray(ex) - E0, [RI, CI], order=1, mode="nearest")
    y = ndimage.map_coordinates(np.asarray(ny) - N0, [RI, CI], order=1, mode="nearest")
    return x, y


def _world_to_grid_px(grid: SensorGrid, world: World, wx: np.ndarray, wy: np.ndarray):
    """(row, col) float pixel coordinates in ``grid`` of world points."""
    from pyproj import Transformer

    utm = f"EPSG:{world.utm_epsg}"
    E0, N0 = world.origin
    if grid.crs == utm:
        X, Y = wx + E0, wy + N0
    else:
        tr = Transformer.from_crs(utm, grid.crs, always_xy=True)
        # subsample: the mapping is smooth
        step = 8
        sub = (slice(None, None, step), slice(None, None, step))
        xs, ys = tr.transform(wx[sub] + E0, wy[sub] + N0)
        rr = np.arange(wx.shape[0]) / step
        cc = np.arange(wx.shape[1]) / step
        CC, RR = np.meshgrid(cc, rr)
        X = ndimage.map_coordinates(np.asarray(xs), [RR, CC], order=1, mode="nearest")
        Y = ndimage.map_coordinates(np.asarray(ys), [RR, CC], order=1, mode="nearest")
    inv = ~grid.transform
    col, row = inv * (X, Y)
    return row - 0.5, col - 0.5


def _make_grid(world: World, crs_kind: str, px: float, offset=(0.0, 0.0), inset=0.0) -> SensorGrid:
    """A sensor grid of ground pixel ``px`` metres covering the scene square (shifted by ``offset`` m)."""
    from pyproj import Geod, Transformer

    E0, N0 = world.origin
    s = world.S / 2 - inset
    if crs_kind == "utm":
        left = math.floor((E0 - s + offset[0]) / px) * px
        top = math.ceil((N0 + s + offset[1]) / px) * px
        nrow = ncol = int(round(2 * s / px))
        return SensorGrid(f"EPSG:{world.utm_epsg}", Affine(px, 0, left, 0, -px, top), (nrow, ncol))
    crs = "EPSG:3857" if crs_kind == "3857" else "EPSG:4326"
    tr = Transformer.from_crs(f"EPSG:{world.utm_epsg}", crs, always_xy=True)
    t = np.linspace(-s, s, 41)
    ex = np.concatenate([np.full(41, -s), np.full(41, s), t, t]) + E0 + offset[0]
    ny = np.concatenate([t, t, np.full(41, -s), np.full(41, s)]) + N0 + offset[1]
    X, Y = tr.transform(ex, ny)
    X, Y = np.asarray(X), np.asarray(Y)
    left, right = X[:41].max(), X[41:82].min()
    bottom, top = Y[82:123].max(), Y[123:].min()
    lon, lat = world.lonlat
    if crs_kind == "3857":
        k = 1.0 / math.cos(math.radians(lat))
        pxx = pxy = px * k
    else:
        g = Geod(ellps="WGS84")
        lon2, _, _ = g.fwd(lon, lat, 90.0, px)
        _, lat2, _ = g.fwd(lon, lat, 0.0, px)
        pxx, pxy = abs(lon2 - lon), abs(lat2 - lat)
    left = math.ceil(left / pxx) * pxx
    top = math.floor(top / pxy) * pxy
    ncol = int((right - left) // pxx)
    nrow = int((top - bottom) // pxy)
    return SensorGrid(crs, Affine(pxx, 0, left, 0, -pxy, top), (nrow, ncol))


def _ground_px(grid: SensorGrid, world: World) -> tuple[float, float]:
    """Ground pixel size (x, y) in metres at the centre of ``grid``."""
    rows, cols = grid.shape
    t = grid.transform
    sub = SensorGrid(grid.crs, Affine(t.a, 0, t.c + t.a * (cols // 2), 0, t.e, t.f + t.e * (rows // 2)), (2, 2))
    x, y = _grid_world(sub, world)
    return float(math.hypot(x[0, 1] - x[0, 0], y[0, 1] - y[0, 0])), float(math.hypot(x[1, 0] - x[0, 0], y[1, 0] - y[0, 0]))


def _sample(world: World, img: np.ndarray, grid: SensorGrid, shift_fn, psf: float) -> np.ndarray:
    """Integrate the fine world image onto a sensor grid through a Gaussian PSF (sigma ``psf`` x pixel)."""
    wx, wy = _grid_world(grid, world)
    dx, dy = shift_fn(wx, wy)
    # pixel at georeferenced position g shows world content at g - shift
    wx = wx - dx
    wy = wy - dy
    gx, gy = _ground_px(grid, world)
    cols = (wx + world.half) / world.res - 0.5
    rows = (world.half - wy) / world.res - 0.5
    del wx, wy
    sig = (psf * gy / world.res, psf * gx / world.res)
    out = np.empty((img.shape[0], *grid.shape), np.float32)
    for b in range(img.shape[0]):
        blurred = ndimage.gaussian_filter(img[b], sig, mode="nearest", truncate=3.0)
        out[b] = ndimage.map_coordinates(blurred, [rows, cols], order=1, mode="nearest")
    return out


def _nodata_edge(rng, shape) -> np.ndarray:
    """Boolean mask of a slanted strip edge cutting 3-8 % off one side."""
    rows, cols = shape
    side = int(rng.integers(4))
    frac = rng.uniform(0.03, 0.08)
    tilt = math.tan(math.radians(rng.uniform(-12, 12)))
    R, C = np.mgrid[0:rows, 0:cols].astype(np.float32)
    if side == 0:
        return C < cols * frac + (R - rows / 2) * tilt
    if side == 1:
        return C > cols * (1 - frac) + (R - rows / 2) * tilt
    if side == 2:
        return R < rows * frac + (C - cols / 2) * tilt
    return R > rows * (1 - frac) + (C - cols / 2) * tilt


def _jpeg_like(img8: np.ndarray, quality: int, valid: np.ndarray) -> np.ndarray:
    """4:2:0 chroma and 8x8 DCT quantisation with the standard JPEG tables at ``quality``."""
    qy = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                   14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                   49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], float).reshape(8, 8)
    qc = np.array([17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                   47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, float).reshape(8, 8)
    s = 5000.0 / quality if quality < 50 else 200.0 - 2 * quality
    qy = np.clip(np.floor((qy * s + 50) / 100), 1, 255)
    qc = np.clip(np.floor((qc * s + 50) / 100), 1, 255)
    r, g, b = (img8[i].astype(np.float32) for i in range(3))
    Y = 0.299 * r + 0.587 * g + 0.114 * b
    Cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    Cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    rows, cols = Y.shape

    def blocks(ch, q):
        pr, pc = (-rows) % 8, (-cols) % 8
        x = np.pad(ch, ((0, pr), (0, pc)), mode="edge") - 128.0
        R, C = x.shape
        bl = x.reshape(R // 8, 8, C // 8, 8).transpose(0, 2, 1, 3)
        d = sfft.dctn(bl, axes=(2, 3), norm="ortho")
        d = np.round(d / q) * q
        x = sfft.idctn(d, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(R, C) + 128.0
        return x[:rows, :cols]

    def sub2(ch):
        pr, pc = rows % 2, cols % 2
        x = np.pad(ch, ((0, pr), (0, pc)), mode="edge")
        small = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
        small = blocks_small(small)
        return np.repeat(np.repeat(small, 2, 0), 2, 1)[:rows, :cols]

    def blocks_small(ch):
        nonlocal rows, cols
        saved = rows, cols
        rows, cols = ch.shape
        out = blocks(ch, qc)
        rows, cols = saved
        return out

    Y = blocks(Y, qy)
    Cb = sub2(Cb)
    Cr = sub2(Cr)
    r = Y + 1.402 * (Cr - 128)
    g = Y - 0.344136 * (Cb - 128) - 0.714136 * (Cr - 128)
    b = Y + 1.772 * (Cb - 128)
    out = np.stack([r, g, b])
    out = np.clip(np.round(out), 1, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


# ----------------------------------------------------------------------------------------------
# Scenario parameters
# ----------------------------------------------------------------------------------------------
def _place(rng, cfg: Cfg):
    from pyproj import CRS

    if cfg.high_lat:
        lat = rng.uniform(48, 62) * (1 if rng.random() < 0.85 else -0.75)
    else:
        bands = [(-38, -22), (-20, -5), (5, 20), (24, 40), (40, 55), (50, 60)]
        lo, hi = bands[int(rng.integers(len(bands)))]
        lat = rng.uniform(lo, hi)
    lon = rng.uniform(-120, 150)
    zone = int((lon + 180) // 6) + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    E, N = tr.transform(lon, lat)
    E, N = float(round(E)), float(round(N))
    lon2, lat2 = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(E, N)
    CRS.from_epsg(epsg)
    return {"utm_epsg": epsg, "origin": (E, N), "lonlat": (float(lon2), float(lat2))}


def _dates_and_sun(rng, cfg: Cfg, lat: float):
    south = lat < 0
    year = int(rng.integers(2019, 2026))
    for _ in range(100):
        start = dt.date(year, 4, 1) if not south else dt.date(year, 10, 1)
        d0 = start + dt.timedelta(days=int(rng.integers(0, 120)))
        d1 = d0 + dt.timedelta(days=int(rng.integers(18, 90)))
        h0 = rng.uniform(9.8, 11.4)
        h1 = h0 + (rng.choice([-1, 1]) * rng.uniform(0.5, 1.3) if cfg.sun_change else 0.0)
        h1 = float(np.clip(h1, 9.0, 12.0))
        s0 = sun_position(d0, h0, lat)
        s1 = sun_position(d1, h1, lat) if cfg.sun_change else s0
        if min(s0[1], s1[1]) < 22 or max(s0[1], s1[1]) > 78:
            continue
        if cfg.sun_change and abs(((s1[0] - s0[0] + 180) % 360) - 180) < 8 and abs(s1[1] - s0[1]) < 5:
            continue
        return (d0, d1), (h0, h1), (s0, s1)
    return (d0, d1), (h0, h1), (s0, s1)


# ----------------------------------------------------------------------------------------------
# make_pair
# ----------------------------------------------------------------------------------------------
def make_pair(name: str, seed: int = 0, *, overrides: dict | None = None) -> AltPair:
    """Generate one pair of scenario ``name`` (see :data:`SCENARIOS`); deterministic for (name, seed).

    ``overrides`` (for tests and experiments) may set ``size_m`` (scene side), ``before_sun`` /
    ``after_sun`` ((azimuth, elevation) degrees), ``before_px`` / ``after_px`` (metres).
    """
    if name not in SCENARIO_CFG:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    ov = dict(overrides or {})
    unknown = set(ov) - {"size_m", "before_sun", "after_sun", "before_px", "after_px"}
    if unknown:
        raise ValueError(f"unknown overrides: {sorted(unknown)}")
    cfg = SCENARIO_CFG[name]
    ss = _rng_for(name, seed)
    r_place, r_layout, r_sensor, r_cloud, r_noise_b, r_noise_a, r_radio = (np.random.default_rng(s) for s in ss.spawn(7))

    # --- geometry of the scene and the sensors
    place = _place(r_place, cfg)
    lat = place["lonlat"][1]
    if cfg.coarse:
        S = float(r_place.uniform(900, 1200))
        p_b = float(r_sensor.uniform(3.0, 4.0))
        p_a = float(r_sensor.uniform(3.6, 5.0)) if cfg.px_differs else p_b
        if cfg.px_differs and abs(p_a - p_b) < 0.4:
            p_a = p_b + 0.5
    else:
        S = float(r_place.uniform(300, 480))
        p_b = float(r_sensor.uniform(0.3, 0.8))
        if cfg.px_differs:
            ratio = r_sensor.uniform(1.15, 1.45)
            p_a = p_b * ratio if p_b * ratio <= 0.8 else p_b / ratio
            if p_a < 0.3:
                p_a = min(0.8, p_b * ratio)
        else:
            p_a = p_b
    S = float(ov.get("size_m", S))
    p_b = float(ov.get("before_px", p_b))
    p_a = float(ov.get("after_px", p_a))
    (d0, d1), (h0, h1), (sun_b, sun_a) = _dates_and_sun(r_place, cfg, lat)
    sun_b = tuple(ov.get("before_sun", sun_b))
    sun_a = tuple(ov.get("after_sun", sun_a if cfg.sun_change else sun_b))

    pmin = min(p_a, p_b)
    if cfg.coarse:
        res = max(0.8, (S + 80) / 1800)
        margin = 40.0
    else:
        res = float(np.clip(pmin / 2.0, 0.2, 0.4))
        margin = 20.0
        res = max(res, (S + 2 * margin) / 1800.0)

    # --- between-date nuisances
    if cfg.shift_px[1] > 0:
        mag = r_sensor.uniform(*cfg.shift_px) * p_a
        ang = r_sensor.uniform(0, 2 * math.pi)
        shift = (mag * math.cos(ang), mag * math.sin(ang))
    else:
        shift = (0.0, 0.0)
    warp = None
    if cfg.residual_warp:
        wa = r_sensor.uniform(0.2, 0.4) * p_a
        wk = r_sensor.uniform(0.5, 1.5, 4) * 2 * math.pi / S
        wph = r_sensor.uniform(0, 2 * math.pi, 2)
        warp = {"amplitude_m": wa, "k": wk.tolist(), "phase": wph.tolist()}

    def shift_after(x, y):
        dx = np.full(np.shape(x), shift[0], np.float64)
        dy = np.full(np.shape(x), shift[1], np.float64)
        if warp is not None:
            k_ = warp["k"]
            dx = dx + warp["amplitude_m"] * np.sin(k_[0] * x + k_[1] * y + warp["phase"][0])
            dy = dy + warp["amplitude_m"] * np.sin(k_[2] * x - k_[3] * y + warp["phase"][1])
        return dx, dy

    def no_shift(x, y):
        return np.zeros(np.shape(x)), np.zeros(np.shape(x))

    wet = (1.0, 1.0)
    if cfg.season:
        wet = (float(r_radio.uniform(0.88, 1.0)), float(r_radio.uniform(0.85, 1.0)))
    season = {"before": {}, "after": {}}
    if cfg.season:
        season["after"]["tree_nir"] = float(r_radio.uniform(0.9, 1.08))

    world = _build_world(r_layout, cfg, S, res, margin, place, wet)

    def radiometry(r, is_after):
        if not cfg.radiometry:
            return {"gain": [1.0] * 4, "offset": [0.0] * 4, "haze": [0.0] * 4, "haze_var": 0.0, "alpha": 0.0}
        spread = 0.11 if is_after else 0.03
        gain = r.uniform(1 - spread, 1 + spread, 4)
        offset = r.uniform(-0.004, 0.010, 4) if is_after else r.uniform(-0.002, 0.003, 4)
        h0_ = r.uniform(0.004, 0.02) if not is_after else r.uniform(0.01, 0.045)
        alpha = r.uniform(1.5, 3.0)
        haze = h0_ * (WAVELENGTH_NM[0] / WAVELENGTH_NM) ** alpha
        return {"gain": gain.tolist(), "offset": offset.tolist(), "haze": haze.tolist(), "haze_var": float(r.uniform(0.2, 0.6)),
                "alpha": float(alpha)}

    radio = {"before": radiometry(r_radio, False), "after": radiometry(r_radio, True)}
    if not cfg.radiometry:
        radio["after"] = radio["before"]

    def sensor_model(r, px, is_after):
        if not cfg.noise:
            return {"psf": 0.45, "electrons_per_unit": None, "read_noise_e": 0.0, "striping": 0.0, "sharpen": 0.0,
                    "bits": 16}
        base_e = 9000.0 * (px / 0.5) ** 2 if not cfg.coarse else 60000.0
        return {"psf": float(r.uniform(0.4, 0.55)),
                "electrons_per_unit": (base_e * r.uniform(0.6, 1.4) * np.array([0.8, 1.0, 1.0, 0.7])).tolist(),
                "read_noise_e": float(r.uniform(4, 12)), "striping": float(r.uniform(0.001, 0.005)),
                "sharpen": float(r.uniform(0.2, 0.6) if is_after else r.uniform(0.0, 0.25)), "bits": 16}

    sens = {"before": sensor_model(r_sensor, p_b, False), "after": sensor_model(r_sensor, p_a, True)}
    if not cfg.noise:
        sens["after"] = sens["before"]

    lean = {"before": (0.0, 0.0), "after": (0.0, 0.0)}
    if cfg.lean:
        lean = {"before": (float(r_sensor.uniform(1, 3)), float(r_sensor.uniform(0, 360))),
                "after": (float(r_sensor.uniform(5, 9)), float(r_sensor.uniform(0, 360)))}

    cf_b = float(r_cloud.uniform(*cfg.clouds_before)) if cfg.clouds_before[1] > 0 else 0.0
    cf_a = float(r_cloud.uniform(*cfg.clouds_after)) if cfg.clouds_after[1] > 0 else 0.0
    clouds = {"before": _cloud_model(r_cloud, world, cf_b, *sun_b), "after": _cloud_model(r_cloud, world, cf_a, *sun_a)}

    # --- grids
    grid_b = _make_grid(world, cfg.before_crs, p_b)
    if cfg.px_differs or cfg.after_crs != cfg.before_crs:
        aoff = tuple(r_sensor.uniform(-6, 6, 2)) if not cfg.coarse else tuple(r_sensor.uniform(-15, 15, 2))
    else:
        aoff = (0.0, 0.0)
    grid_a = _make_grid(world, cfg.after_crs, p_a, offset=aoff)

    # --- render both dates
    scenes, masks, measured = {}, {}, {}
    ctx = {"before": (grid_b, no_shift, sun_b, r_noise_b, d0), "after": (grid_a, shift_after, sun_a, r_noise_a, d1)}
    for date in ("before", "after"):
        grid, sfn, sun, rn, day = ctx[date]
        rad_ = radio[date]
        haze_mean = float(np.mean(rad_["haze"])) if cfg.radiometry else 0.0
        fdif = diffuse_fraction(sun[1], haze_mean)
        H, rho = _paint_world(world, date, season[date])
        ln = lean[date]
        view_shift = (0.0, 0.0)
        if ln[0] > 0 and clouds[date] is not None:
            d = clouds[date].height_m * math.tan(math.radians(ln[0]))
            a = math.radians(ln[1])
            view_shift = (-math.sin(a) * d, -math.cos(a) * d)
        _shade(world, H, rho, sun, fdif, clouds[date], view_shift)
        if ln[0] > 0:
            rho = _lean(world, H, rho, *ln)
        del H
        img = _sample(world, rho, grid, sfn, sens[date]["psf"])
        del rho
        # nodata
        nod = np.zeros(grid.shape, bool)
        if (date == "before" and cfg.nodata_before) or (date == "after" and cfg.nodata_after):
            nod = _nodata_edge(rn, grid.shape)
        wx, wy = _grid_world(grid, world)
        dx, dy = sfn(wx, wy)
        outside = (np.abs(wx - dx) > world.half - 2) | (np.abs(wy - dy) > world.half - 2)
        nod |= outside
        cm = clouds[date]
        if cm is not None:
            ca_, _ = _cloud_alpha(cm, wx - dx, wy - dy)
            cs_, _ = _cloud_alpha(cm, wx - dx, wy - dy, shadow=True)
            measured[date] = {"cloud": _r(float((ca_ > 0.5).mean()), 4), "shadow": _r(float((cs_ > 0.5).mean()), 4)}
            del ca_, cs_
        # atmosphere and sensor
        hv = 1.0 + rad_["haze_var"] * _smooth_noise(rn, grid.shape, max(grid.shape) / 6.0) * 0.5
        for b in range(4):
            trans = 1.0 - 1.5 * rad_["haze"][b]
            img[b] = (img[b] * trans + rad_["haze"][b] * hv) * rad_["gain"][b] + rad_["offset"][b]
        sm = sens[date]
        if sm["sharpen"] > 0:
            for b in range(4):
                img[b] = img[b] + sm["sharpen"] * (img[b] - ndimage.gaussian_filter(img[b], 1.0))
        if sm["electrons_per_unit"] is not None:
            cols_gain = 1.0 + sm["striping"] * rn.standard_normal(grid.shape[1])
            for b in range(4):
                K = sm["electrons_per_unit"][b]
                e = np.clip(img[b], 0, None) * K
                e = rn.poisson(e).astype(np.float32) + rn.normal(0, sm["read_noise_e"], grid.shape).astype(np.float32)
                img[b] = e / K * cols_gain[None, :]
        if cfg.product == "rgb8":
            data, stretch = _to_rgb8(img, ~nod, rn, cfg.noise or cfg.radiometry)
        else:
            data = np.clip(np.round(img * 10000.0), 1, 65535).astype(np.uint16)
            data[:, nod] = 0
            stretch = None
        scenes[date] = AltScene(data=data, crs=grid.crs, transform=grid.transform,
                                bands=BANDS_RGB if cfg.product == "rgb8" else BANDS4, date=day.isoformat(), nodata=0,
                                product=cfg.product)
        masks[date] = nod
        radio[date]["stretch"] = stretch

    # --- truth
    truth_objs = [o for o in world.objects if o.cls != "tree" and o.change is not None]
    features_, counts = _truth_features(world, truth_objs)
    truth_mask = _truth_mask(world, truth_objs, grid_b, grid_a, masks, clouds, shift_after, lean,
                             min_cover=MIN_COVER_COARSE if cfg.coarse else MIN_COVER)
    aoi = _aoi(world)

    info = {
        "generator": GENERATOR, "version": VERSION, "scenario": name, "seed": int(seed), "description": cfg.doc,
        "location": {"lon": _r(place["lonlat"][0], 6), "lat": _r(place["lonlat"][1], 6), "utm_epsg": place["utm_epsg"],
                     "world_origin_utm": list(place["origin"])},
        "scene_size_m": _r(S, 2), "render_res_m": _r(res, 4),
        "dates": {"before": d0.isoformat(), "after": d1.isoformat()},
        "solar_time_h": {"before": _r(h0, 3), "after": _r(h1, 3)},
        "sun": {"before": {"azimuth": _r(sun_b[0], 2), "elevation": _r(sun_b[1], 2)},
                "after": {"azimuth": _r(sun_a[0], 2), "elevation": _r(sun_a[1], 2)}},
        "view": {d: {"off_nadir_deg": _r(lean[d][0], 2), "azimuth_deg": _r(lean[d][1], 2)} for d in lean},
        "grids": {d: {"crs": g.crs, "transform": _r(list(g.transform)[:6], 12), "shape": list(g.shape),
                      "ground_pixel_m": _r(_ground_px(g, world), 4)} for d, g in (("before", grid_b), ("after", grid_a))},
        "misregistration": {"shift_m": _r(shift, 4), "shift_after_px": _r((shift[0] / p_a, shift[1] / p_a), 4),
                            "convention": "AFTER content at georeferenced w + shift shows the true position w",
                            "residual_warp": None if warp is None else {"amplitude_m": _r(warp["amplitude_m"], 4)}},
        "radiometry": {d: {"gain": _r(v["gain"], 4), "offset": _r(v["offset"], 5), "haze_path": _r(v["haze"], 5),
                           "haze_spatial_var": _r(v["haze_var"], 3),
                           "diffuse_fraction": _r(diffuse_fraction(sun_b[1] if d == "before" else sun_a[1],
                                                                   float(np.mean(v["haze"]))), 3),
                           "stretch": v.get("stretch")} for d, v in radio.items()},
        "sensor": {d: {k: (_r(v, 4) if v is not None and k != "bits" else v) for k, v in s.items()} for d, s in sens.items()},
        "season": {"soil_wetness": _r(wet, 3), "tree_nir_after": _r(season["after"].get("tree_nir", 1.0), 3),
                   "fields": world.stats.get("fields")},
        "clouds": {d: (None if c is None else {"target_fraction": _r(c.fraction, 4), "height_m": _r(c.height_m, 1),
                                               "shadow_offset_m": _r(c.shadow_offset, 1), "blobs": int(len(c.blobs)),
                                               "measured_on_own_grid": measured.get(d)})
                   for d, c in clouds.items()},
        "nodata_fraction": {d: _r(float(m.mean()), 4) for d, m in masks.items()},
        "product": cfg.product,
        "layout": {k: v for k, v in world.stats.items() if k != "fields"},
        "counts": counts,
        "objects_total": {"before": _count_present(world, "before"), "after": _count_present(world, "after")},
        "truth_mask_codes": {"0": "no change", "1": "appeared", "2": "disappeared", "3": "changed",
                             "255": "not assessable (cloud, cloud shadow or nodata in either date)"},
        "not_assessable_fraction": _r(float((truth_mask == NOT_ASSESSABLE).mean()), 4),
    }
    return AltPair(name=name, seed=int(seed), before=scenes["before"], after=scenes["after"], truth=features_,
                   truth_mask=truth_mask, aoi=aoi, info=info)


def _count_present(world, date):
    out = {}
    for o in world.objects:
        if (o.before if date == "before" else o.after) and o.cls != "tree":
            out[o.cls] = out.get(o.cls, 0) + 1
    return out


def _to_rgb8(img, valid, rn, vary: bool):
    """Display product: per-date percentile stretch, gamma, saturation; then JPEG-like compression."""
    rgb = img[[2, 1, 0]]
    v = rgb[:, valid]
    lo_p, hi_p = (rn.uniform(0.2, 2.0), rn.uniform(98.0, 99.8)) if vary else (1.0, 99.0)
    lo = np.percentile(v, lo_p, axis=1)
    hi = np.percentile(v, hi_p, axis=1)
    if vary:
        joint = rn.random() < 0.5                    # joint stretch keeps colour balance, per-band doesn't
        if joint:
            lo[:] = lo.min()
            hi[:] = hi.max()
    gamma = float(rn.uniform(1.6, 2.4)) if vary else 2.0
    sat = float(rn.uniform(1.0, 1.25)) if vary else 1.0
    x = np.clip((rgb - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1) ** (1.0 / gamma)
    if sat != 1.0:
        grey = x.mean(axis=0, keepdims=True)
        x = np.clip(grey + sat * (x - grey), 0, 1)
    img8 = np.clip(np.round(x * 254 + 1), 1, 255).astype(np.uint8)
    quality = int(rn.integers(55, 85)) if vary else 95
    out = _jpeg_like(img8, quality, valid)
    return out, {"low_pct": _r(lo_p, 2), "high_pct": _r(hi_p, 2), "low": _r(lo, 5), "high": _r(hi, 5),
                 "gamma": _r(gamma, 3), "saturation": _r(sat, 3), "jpeg_quality": quality}


# ----------------------------------------------------------------------------------------------
# Truth
# ----------------------------------------------------------------------------------------------
def _xform(geom, fn):
    """Apply ``fn(x, y) -> (x', y')`` (arrays) to every coordinate of a shapely geometry."""
    import shapely

    return shapely.transform(geom, lambda c: np.column_stack([np.asarray(v, np.float64) for v in fn(c[:, 0], c[:, 1])]))


def _to_lonlat(world: World):
    from pyproj import Transformer

    tr = Transformer.from_crs(f"EPSG:{world.utm_epsg}", "EPSG:4326", always_xy=True)
    E0, N0 = world.origin

    def f(x, y, z=None):
        lon, lat = tr.transform(np.asarray(x) + E0, np.asarray(y) + N0)
        return np.round(lon, 9), np.round(lat, 9)

    return f


def _truth_features(world: World, objs):
    from shapely.geometry import mapping

    f = _to_lonlat(world)
    feats, counts = [], {}
    for i, o in enumerate(objs, start=1):
        fp = o.footprint()
        mrr = fp.minimum_rotated_rectangle
        xs, ys = mrr.exterior.coords.xy
        e1 = math.hypot(xs[1] - xs[0], ys[1] - ys[0])
        e2 = math.hypot(xs[2] - xs[1], ys[2] - ys[1])
        geom = _xform(fp, f)
        props = {"id": i, "change": o.change, "class": o.cls, "area_m2": _r(fp.area, 2),
                 "length_m": _r(max(e1, e2), 2), "width_m": _r(min(e1, e2), 2), "height_m": _r(o.h, 2),
                 "kind": o.kind, "group": o.group}
        if o.change == "changed":
            props["roof_before"] = o.p.get("roof_name")
            props["roof_after"] = o.p.get("roof_after")
        feats.append({"type": "Feature", "geometry": mapping(geom), "properties": props})
        counts.setdefault(o.change, {}).setdefault(o.cls, 0)
        counts[o.change][o.cls] += 1
    # GeoJSON-friendly (lists, not tuples)
    feats = json.loads(json.dumps(feats))
    return feats, counts


def _truth_mask(world: World, objs, grid_b: SensorGrid, grid_a: SensorGrid, nodata: dict, clouds: dict, shift_fn,
                lean: dict, min_cover: float = 0.5) -> np.ndarray:
    from pyproj import Transformer
    from rasterio import features

    rows, cols = grid_b.shape
    mask = np.zeros((rows, cols), np.uint8)
    if objs:
        ss = 4 if max(rows, cols) <= 600 else 3
        t = grid_b.transform
        fine_t = Affine(t.a / ss, 0, t.c, 0, t.e / ss, t.f)
        E0, N0 = world.origin
        tr = Transformer.from_crs(f"EPSG:{world.utm_epsg}", grid_b.crs, always_xy=True)

        def to_grid(x, y, z=None):
            return tr.transform(np.asarray(x) + E0, np.asarray(y) + N0)

        frac = {}
        for code in (APPEARED, DISAPPEARED, CHANGED):
            shapes = [(_xform(o.footprint().segmentize(2.0), to_grid), 1) for o in objs if CHANGE_CODES[o.change] == code]
            if not shapes:
                continue
            m = features.rasterize(shapes, out_shape=(rows * ss, cols * ss), transform=fine_t, dtype="uint8")
            frac[code] = m.reshape(rows, ss, cols, ss).mean(axis=(1, 3))
        if frac:
            codes = list(frac)
            stack = np.stack([frac[c] for c in codes])
            best = stack.argmax(axis=0)
            top = stack.max(axis=0)
            mask = np.where(top >= min_cover, np.array(codes, np.uint8)[best], 0).astype(np.uint8)
    # not assessable: cloud, cloud shadow or nodata in either date, at BEFORE's pixels
    wx, wy = _grid_world(grid_b, world)
    bad = nodata["before"].copy()
    thr = 0.03
    for date in ("before", "after"):
        cm = clouds[date]
        if cm is None:
            continue
        view_shift = (0.0, 0.0)
        ln = lean[date]
        if ln[0] > 0:
            d = cm.height_m * math.tan(math.radians(ln[0]))
            a = math.radians(ln[1])
            view_shift = (-math.sin(a) * d, -math.cos(a) * d)
        a_, _ = _cloud_alpha(cm, wx, wy, view_shift=view_shift)
        s_, _ = _cloud_alpha(cm, wx, wy, shadow=True)
        bad |= (a_ > thr) | (s_ > thr)
    dx, dy = shift_fn(wx, wy)
    ar, ac = _world_to_grid_px(grid_a, world, wx + dx, wy + dy)
    ri, ci = np.round(ar).astype(np.int64), np.round(ac).astype(np.int64)
    inside = (ri >= 0) & (ri < grid_a.shape[0]) & (ci >= 0) & (ci < grid_a.shape[1])
    na = np.ones((rows, cols), bool)
    na[inside] = nodata["after"][ri[inside], ci[inside]]
    bad |= na
    bad = ndimage.binary_dilation(bad, iterations=1)
    mask[bad] = NOT_ASSESSABLE
    return mask


def _aoi(world: World) -> dict:
    from shapely.geometry import Polygon, mapping

    s = world.S / 2 * 0.88
    c = 0.25 * s
    poly = Polygon([(-s + c, -s), (s - c, -s), (s, -s + c), (s, s - c), (s - c, s), (-s + c, s), (-s, s - c), (-s, -s + c)])
    geom = _xform(poly.segmentize(20.0), _to_lonlat(world))
    return json.loads(json.dumps(mapping(geom)))


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _write_scene(path: Path, sc: AltScene, extra_tags: dict):
    import rasterio
    from rasterio.enums import ColorInterp

    count, rows, cols = sc.data.shape
    profile = dict(driver="GTiff", width=cols, height=rows, count=count, dtype=str(sc.data.dtype), crs=sc.crs,
                   transform=sc.transform, nodata=sc.nodata, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", predictor=2)
    if sc.product == "rgb8":
        profile["photometric"] = "RGB"
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(sc.data)
        ds.update_tags(ACQUISITION_DATE=sc.date, BAND_NAMES=",".join(sc.bands), **extra_tags)
        for i, d in enumerate(sc.bands, start=1):
            ds.set_band_description(i, d)
        if sc.product == "rgb8":
            ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        else:
            for i, d in enumerate(sc.bands, start=1):
                ds.update_tags(i, BAND_NAME=d)


def write_pair(pair: AltPair, outdir) -> dict[str, Path]:
    """Write the pair folder atomically (temp folder renamed into place); returns the file paths."""
    import rasterio

    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = outdir.parent / f".{outdir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tags = {"GENERATOR": GENERATOR, "SCENARIO": pair.name, "SEED": str(pair.seed)}
        _write_scene(tmp / "before.tif", pair.before, tags)
        _write_scene(tmp / "after.tif", pair.after, tags)
        rows, cols = pair.truth_mask.shape
        with rasterio.open(tmp / "truth_mask.tif", "w", driver="GTiff", width=cols, height=rows, count=1,
                           dtype="uint8", crs=pair.before.crs, transform=pair.before.transform, tiled=True,
                           blockxsize=256, blockysize=256, compress="deflate") as ds:
            ds.write(pair.truth_mask, 1)
            ds.update_tags(CODES="0 no change, 1 appeared, 2 disappeared, 3 changed, 255 not assessable", **tags)
            ds.set_band_description(1, "truth")
        fc = {"type": "FeatureCollection", "features": pair.truth}
        (tmp / "truth.geojson").write_text(json.dumps(fc))
        aoi = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": pair.aoi, "properties": {"name": f"{pair.name} seed {pair.seed}"}}]}
        (tmp / "aoi.geojson").write_text(json.dumps(aoi))
        (tmp / "truth.json").write_text(json.dumps(pair.info, indent=1, sort_keys=True))
        old = None
        if outdir.exists():
            old = outdir.parent / f".{outdir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(outdir, old)
        os.replace(tmp, outdir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    names = {"before": "before.tif", "after": "after.tif", "truth": "truth.geojson", "truth_mask": "truth_mask.tif",
             "aoi": "aoi.geojson", "info": "truth.json"}
    return {k: outdir / v for k, v in names.items()}


def main(argv=None):
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Write synth.alt scene pairs (and quick-look PNGs).")
    ap.add_argument("out", type=Path)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--png", action="store_true", help="also write before/after quick-look PNGs")
    args = ap.parse_args(argv)
    for name in args.scenarios.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            pair = make_pair(name, seed)
            t1 = time.perf_counter()
            paths = write_pair(pair, args.out / f"{name}_{seed}")
            if args.png:
                quicklook(pair, args.out / f"{name}_{seed}.png")
            print(f"{name} seed {seed}: make {t1 - t0:.1f}s write {time.perf_counter() - t1:.1f}s "
                  f"before {pair.before.shape} after {pair.after.shape} truth {len(pair.truth)} -> {paths['before'].parent}")


def quicklook(pair: AltPair, path, max_side=1400):
    """BEFORE | AFTER (on BEFORE's grid) | AFTER with truth outlines (cyan appeared, magenta disappeared,
    yellow changed, red not assessable): a true-colour PNG for eyeballing."""
    from PIL import Image

    def rgb(sc: AltScene):
        if sc.product == "rgb8":
            return np.moveaxis(sc.data, 0, -1)
        x = sc.data[[2, 1, 0]].astype(np.float32) / 10000.0
        v = sc.valid
        out = np.zeros(x.shape[1:] + (3,), np.uint8)
        for b in range(3):
            lo, hi = np.percentile(x[b][v], [1, 99.5]) if v.any() else (0, 1)
            out[..., b] = (np.clip((x[b] - lo) / (hi - lo + 1e-9), 0, 1) ** (1 / 1.6) * 255).astype(np.uint8)
        return out

    a, b = rgb(pair.before), rgb(pair.after)
    # AFTER warped onto BEFORE's grid (nearest) so the panels compare directly
    import rasterio.warp

    bw = np.zeros((3,) + a.shape[:2], np.uint8)
    for i in range(3):
        rasterio.warp.reproject(np.ascontiguousarray(b[..., i]), bw[i], src_transform=pair.after.transform,
                                src_crs=pair.after.crs, dst_transform=pair.before.transform, dst_crs=pair.before.crs,
                                resampling=rasterio.warp.Resampling.bilinear)
    b = np.moveaxis(bw, 0, -1)
    m = pair.truth_mask
    edge = (m != ndimage.grey_erosion(m, 3)) & (m > 0)
    col = {1: (0, 255, 255), 2: (255, 0, 255), 3: (255, 255, 0), 255: (255, 0, 0)}
    a2 = b.copy()
    for code, c in col.items():
        a2[edge & (m == code)] = c
    h, w = a.shape[:2]
    canvas = np.zeros((h, 3 * w + 20, 3), np.uint8)
    canvas[:, :w] = a
    canvas[:, w + 10: 2 * w + 10] = b
    canvas[:, 2 * w + 20:] = a2
    im = Image.fromarray(canvas)
    if max(im.size) > max_side * 3:
        f = max_side * 3 / max(im.size)
        im = im.resize((int(im.size[0] * f), int(im.size[1] * f)), Image.LANCZOS)
    im.save(path)


if __name__ == "__main__":
    main()
