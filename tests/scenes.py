"""8-bit RGB pairs like the display products analysts receive, modelled on real pairs the detector once missed:
a suburb built on scrub (a large share of the scene changed), fields that turned from green to brown between
dates (colour balance) with new buildings among them, and a single 256 x 256 tile.

Each scene is drawn in metres (sizes do not depend on the pixel size) with texture at several scales, soft
edges, cast shadows and sensor noise; the truth is the footprint of each new building.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine
from scipy import ndimage

from tests.conftest import write_tif

SCRUB = np.array([128.0, 116.0, 92.0])  # dry grass and soil, RGB
BUSH = np.array([70.0, 80.0, 55.0])
ROOF = np.array([150.0, 150.0, 155.0])  # grey shingles
ROOF_TILE = np.array([175.0, 95.0, 70.0])  # red tiles
LAWN = np.array([90.0, 135.0, 70.0])
ROAD = np.array([185.0, 182.0, 175.0])
FIELD_GREEN = np.array([70.0, 125.0, 60.0])
FIELD_BROWN = np.array([150.0, 120.0, 85.0])
ROOF_GREEN = np.array([70.0, 110.0, 95.0])  # painted metal (teal-green), as on real halls before re-roofing


@dataclass
class ScenePair:
    """Both dates (3, rows, cols) uint8 RGB, the truth (rows, cols) bool (new buildings) and a zone where
    reported change would be a false alarm (rows, cols) bool."""

    before: np.ndarray
    after: np.ndarray
    truth: np.ndarray
    nuisance: np.ndarray
    pixel_size_m: float
    buildings: list = field(default_factory=list)  # (row slice, col slice) of each new building
    others: dict = field(default_factory=dict)  # name -> [(row slice, col slice), ...] of other things drawn

    def write(self, folder: Path, origin=(500000.0, 4400000.0), crs="EPSG:32614") -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        transform = Affine(self.pixel_size_m, 0, origin[0], 0, -self.pixel_size_m, origin[1])
        paths = []
        for name, data in (("before", self.before), ("after", self.after)):
            paths.append(write_tif(folder / f"{name}.tif", data, crs=crs, transform=transform,
                                   descriptions=("red", "green", "blue")))
        return paths[0], paths[1]


def texture(shape, rng, px: float, scales_m=(1.0, 4.0, 15.0)) -> np.ndarray:
    """Zero-mean texture with unit-ish spread, summed over Gaussian scales given in metres."""
    out = np.zeros(shape, np.float32)
    for s in scales_m:
        out += ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), max(s / px, 0.5)) * (s / px) ** 0.5
    return out / (out.std() + 1e-6)


def scrub(shape, rng, px: float) -> np.ndarray:
    """Brown ground with bushes 2-5 m across: (3, rows, cols) float."""
    img = SCRUB[:, None, None] * (1 + 0.08 * texture(shape, rng, px))[None]
    bushes = ndimage.gaussian_filter((rng.random(shape) < 0.004 * px * px).astype(np.float32), 1.5 / px) > 0.02 / px
    img = np.where(bushes[None], BUSH[:, None, None] * (1 + 0.1 * texture(shape, rng, px, (0.7,)))[None], img)
    return img


def paint(img: np.ndarray, rows: slice, cols: slice, colour: np.ndarray, rng, px: float, *, contrast=0.04):
    h, w = rows.stop - rows.start, cols.stop - cols.start
    img[:, rows, cols] = colour[:, None, None] * (1 + contrast * texture((h, w), rng, px, (0.5, 2.0)))[None]


def building(img: np.ndarray, r: int, c: int, h: int, w: int, colour: np.ndarray, rng, px: float,
             shadow_px: int) -> tuple[slice, slice]:
    """A gabled roof (two facets, sunlit and shaded) with its cast shadow south-east."""
    rows, cols = slice(r, r + h), slice(c, c + w)
    img[:, r + shadow_px:r + h + shadow_px, c + shadow_px:c + w + shadow_px] *= 0.35
    paint(img, rows, cols, colour, rng, px)
    img[:, r:r + h // 2, c:c + w] *= 1.08
    img[:, r + h // 2:r + h, c:c + w] *= 0.85
    return rows, cols


def finish(img: np.ndarray, rng, *, gain=(1.0, 1.0, 1.0), offset=(0, 0, 0), blur_px=0.6) -> np.ndarray:
    """Sensor: blur, per-band gain and offset (colour balance), noise, 8 bits."""
    img = np.stack([ndimage.gaussian_filter(b, blur_px) for b in img])
    img = img * np.array(gain)[:, None, None] + np.array(offset)[:, None, None]
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def suburb_on_scrub(seed: int = 0, *, size: int = 400, px: float = 0.5, share: float = 0.4) -> ScenePair:
    """Scrub; AFTER has a suburb (houses 10-14 x 14-18 m, lawns, a road) over ``share`` of the width."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    ground = scrub(shape, rng, px)
    before = ground.copy()
    after = ground * 1.0
    cut = int(size * (1 - share))
    truth = np.zeros(shape, bool)
    paint(after, slice(0, size), slice(cut, size), LAWN, rng, px, contrast=0.12)  # the development: lawns
    road_w = int(8 / px)
    paint(after, slice(0, size), slice(cut + int(2 / px), cut + int(2 / px) + road_w), ROAD, rng, px)
    houses = []
    step_r, step_c = int(24 / px), int(22 / px)
    shadow = max(1, int(2.5 / px))
    for r in range(int(4 / px), size - int(20 / px), step_r):
        for c in range(cut + road_w + int(6 / px), size - int(16 / px), step_c):
            h = int(rng.uniform(10, 14) / px)
            w = int(rng.uniform(14, 18) / px)
            colour = ROOF if rng.random() < 0.6 else ROOF_TILE
            rows, cols = building(after, r, c, h, w, colour, rng, px, shadow)
            truth[rows, cols] = True
            houses.append((rows, cols))
    nuisance = np.zeros(shape, bool)
    nuisance[:, : cut - int(15 / px)] = True  # unchanged scrub
    return ScenePair(finish(before, rng), finish(after, rng, gain=(0.92, 1.0, 1.1), offset=(4, 0, -3)), truth,
                     nuisance, px, houses)


def fields_change_colour(seed: int = 0, *, size: int = 480, px: float = 1.0) -> ScenePair:
    """Fields 60-120 m across, green BEFORE and brown AFTER (harvest, another colour balance); AFTER adds
    three buildings of 20 x 30 m, one on a field and two on the scrub between fields."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    ground = scrub(shape, rng, px)
    before, after = ground.copy(), ground.copy()
    fields = np.zeros(shape, bool)
    edges = np.cumsum(rng.uniform(60, 120, 8) / px).astype(int)
    edges = edges[edges < size - int(20 / px)]
    gap = int(6 / px)
    for i, r0 in enumerate(np.r_[0, edges]):
        for j, c0 in enumerate(np.r_[0, edges]):
            if (i + j) % 2:
                continue
            r1 = min(size, (edges[i] if i < len(edges) else size) - gap)
            c1 = min(size, (edges[j] if j < len(edges) else size) - gap)
            rows, cols = slice(r0, r1), slice(c0, c1)
            rows_tex = 1 + 0.06 * texture((r1 - r0, c1 - c0), rng, px, (1.0, 8.0))
            before[:, rows, cols] = FIELD_GREEN[:, None, None] * rows_tex[None]
            after[:, rows, cols] = FIELD_BROWN[:, None, None] * rows_tex[None]
            fields[rows, cols] = True
    truth = np.zeros(shape, bool)
    houses = []
    spots = [(0.25, 0.7), (0.7, 0.3), (0.75, 0.8)]
    for fr, fc in spots:
        r, c = int(fr * size), int(fc * size)
        rows, cols = building(after, r, c, int(20 / px), int(30 / px), ROOF, rng, px, max(1, int(4 / px)))
        truth[rows, cols] = True
        houses.append((rows, cols))
    near = ndimage.binary_dilation(truth, iterations=int(12 / px))
    return ScenePair(finish(before, rng, gain=(0.9, 1.05, 1.0)), finish(after, rng, gain=(1.1, 0.95, 0.85), offset=(6, 2, -4)),
                     truth, fields & ~near, px, houses)


def small_tile(seed: int = 0) -> ScenePair:
    """A 256 x 256 tile at 0.5 m (128 m): scrub, AFTER has six houses in its eastern half."""
    return suburb_on_scrub(seed, size=256, px=0.5, share=0.5)


def buildings_that_stay_come_and_go(seed: int = 0, *, size: int = 320, px: float = 0.5) -> ScenePair:
    """Scrub with buildings, 16 x 20 m, in four kinds: three stand at both dates with the same roof, two stand
    at both dates but were re-roofed (teal-green BEFORE, grey AFTER), three are new AFTER (the truth), one was
    demolished (BEFORE only). AFTER also has a grey concrete slab the size of a house that casts no shadow
    (a pad or a yard, not a building). ``others`` holds each kind's footprint."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    ground = scrub(shape, rng, px)
    before, after = ground.copy(), ground.copy()
    h, w, shadow = int(16 / px), int(20 / px), max(1, int(2.5 / px))
    spots = [(r, c) for r in (int(8 / px), int(56 / px), int(104 / px)) for c in (int(8 / px), int(58 / px), int(108 / px))]
    order = rng.permutation(len(spots))
    kinds = ["same"] * 3 + ["reroofed"] * 2 + ["new"] * 3 + ["demolished"]
    truth = np.zeros(shape, bool)
    others: dict = {"same": [], "reroofed": [], "new": [], "demolished": [], "slab": []}
    for kind, k in zip(kinds, order):
        r, c = spots[k]
        r, c = r + int(rng.integers(0, int(4 / px))), c + int(rng.integers(0, int(4 / px)))
        if kind in ("same", "reroofed", "demolished"):
            building(before, r, c, h, w, ROOF_GREEN if kind == "reroofed" else ROOF, rng, px, shadow)
        if kind in ("same", "reroofed", "new"):
            footprint = building(after, r, c, h, w, ROOF, rng, px, shadow)
        else:
            footprint = (slice(r, r + h), slice(c, c + w))
        others[kind].append(footprint)
        if kind == "new":
            truth[footprint] = True
    slab = (slice(int(140 / px), int(140 / px) + h), slice(int(20 / px), int(20 / px) + w))
    paint(after, *slab, ROOF, rng, px)
    others["slab"].append(slab)
    nuisance = np.zeros(shape, bool)
    for kind in ("same", "reroofed", "slab"):
        for rows, cols in others[kind]:
            nuisance[rows, cols] = True
    return ScenePair(finish(before, rng), finish(after, rng, gain=(0.95, 1.0, 1.06), offset=(3, 0, -2)), truth,
                     nuisance, px, others["new"], others)
