"""A series of dates of one small base with known vehicles, for the watch tests (issue 11): vehicles arrive, stay
and leave, one date is under a thick cloud. Each date is a 4-band uint16 GeoTIFF at 0.5 m on the same ground,
with its own gain, offset and sub-pixel shift (as two passes of a satellite would differ)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer
from scipy import ndimage

from tests.conftest import textured, write_tif
from tests.pairs import SPECTRA_GROUND, SPECTRA_VEHICLE

CRS = "EPSG:32635"
ORIGIN = (400000.0, 5370000.0)  # west, north of every scene, UTM metres
PIXEL_M = 0.5
SIZE = 280  # pixels a side: 140 m x 140 m
AOI_SHRINK_M = 10.0  # the AOI is the scenes' footprint shrunk by this: x 400010-400130, y 5369870-5369990
TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

#: Named parts of the base, UTM boxes (west, south, east, north), within the AOI and apart.
ZONES_UTM = {"north": (400015.0, 5369955.0, 400125.0, 5369985.0),
             "south": (400015.0, 5369900.0, 400125.0, 5369950.0)}
#: Vehicle id -> (row, col) of its centre; 14 x 7 px (7 m x 3.5 m), at least 15 m apart.
VEHICLES = {"A": (45, 60), "B": (45, 110), "C": (75, 85), "D": (120, 60), "E": (150, 170)}
SPECTRA_CLOUD = np.array([0.62, 0.64, 0.66, 0.68])


@dataclass(frozen=True)
class Date:
    date: str
    vehicles: frozenset[str]
    cloudy: bool = False


#: Arrive (3 north, 1 south), stay, leave (2 north, 1 south; another arrives south), then a cloudy date.
PLAN = (
    Date("2024-01-01", frozenset()),
    Date("2024-02-01", frozenset("ABCD")),
    Date("2024-03-01", frozenset("ABCD")),
    Date("2024-04-01", frozenset("CE")),
    Date("2024-05-01", frozenset("CE"), cloudy=True),
)


def zone_of(vehicle: str) -> str | None:
    row, col = VEHICLES[vehicle]
    x, y = ORIGIN[0] + (col + 0.5) * PIXEL_M, ORIGIN[1] - (row + 0.5) * PIXEL_M
    return next((name for name, (w, s, e, n) in ZONES_UTM.items() if w <= x <= e and s <= y <= n), None)


def truth(before: Date, after: Date, zone: str | None = None) -> dict[str, int]:
    """Vehicles that appeared and disappeared from ``before`` to ``after`` (in ``zone``, or the whole AOI)."""
    keep = (lambda v: zone_of(v) == zone) if zone else (lambda v: True)
    return {"appeared": sum(map(keep, after.vehicles - before.vehicles)),
            "disappeared": sum(map(keep, before.vehicles - after.vehicles))}


def lonlat_box(west: float, south: float, east: float, north: float) -> dict:
    """A GeoJSON polygon of a UTM box, in lon/lat."""
    ring = [TO_LONLAT.transform(x, y) for x, y in ((west, south), (east, south), (east, north), (west, north), (west, south))]
    return {"type": "Polygon", "coordinates": [ring]}


def aoi_geojson() -> dict:
    w, n = ORIGIN
    e, s = w + SIZE * PIXEL_M, n - SIZE * PIXEL_M
    return lonlat_box(w + AOI_SHRINK_M, s + AOI_SHRINK_M, e - AOI_SHRINK_M, n - AOI_SHRINK_M)


def zones_geojson() -> dict[str, dict]:
    return {name: lonlat_box(*b) for name, b in ZONES_UTM.items()}


def cloud(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Opacity 0-1 of a thick cumulus over the south-east of the scene: a lobe some 55 m across and smaller ones with ragged
    edges (about 30 % of the AOI, over vehicle E)."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    rng = np.random.default_rng(seed)
    rag = ndimage.gaussian_filter(rng.normal(size=shape), 3)
    rag *= 6 / rag.std()
    lobes = ((178, 190, 56), (215, 235, 30), (140, 240, 28), (225, 145, 26))  # row, col, radius (px)
    inside = np.max([r - np.hypot(rows - y, cols - x) for y, x, r in lobes], axis=0) + rag
    return np.clip(inside / 6, 0, 1)


def write_series(folder: Path, plan: tuple[Date, ...] = PLAN) -> dict[str, Path]:
    """Write one GeoTIFF per date of ``plan`` into ``folder``; date -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    ground = (0.7 + 0.6 * textured((SIZE, SIZE), seed=11))[None] * SPECTRA_GROUND[:, None, None]
    transform = Affine(PIXEL_M, 0, ORIGIN[0], 0, -PIXEL_M, ORIGIN[1])
    rng = np.random.default_rng(5)
    paths = {}
    for k, d in enumerate(plan):
        img = ground.copy()
        for v in sorted(d.vehicles):
            r, c = VEHICLES[v]
            img[:, r - 3:r + 4, c - 7:c + 7] = SPECTRA_VEHICLE[:, None, None]
        if d.cloudy:
            alpha = cloud((SIZE, SIZE), seed=k)[None]
            img = img * (1 - alpha) + SPECTRA_CLOUD[:, None, None] * alpha
        if k:  # the first date is the reference grid; the others are shifted and calibrated differently
            shift = rng.uniform(-1.5, 1.5, size=2)
            img = np.stack([ndimage.shift(b, shift, order=1, mode="nearest") for b in img])
            img = img * rng.uniform(0.9, 1.2, size=4)[:, None, None] + rng.uniform(0.0, 0.01)
        paths[d.date] = write_tif(folder / f"{d.date}.tif", (img * 10000).astype(np.uint16), crs=CRS, transform=transform,
                                  nodata=0, tags={"ACQUISITION_DATE": d.date}, descriptions=("blue", "green", "red", "nir"))
    return paths


def by_date(date: str) -> Date:
    return next(d for d in PLAN if d.date == date)


def as_date(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])
