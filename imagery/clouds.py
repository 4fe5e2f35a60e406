"""What cannot be analysed: clouds, cloud shadows and other scene-scale atmospheric changes.

A thick cloud or its shadow hides the ground; reporting it as "appeared" or
"no change" would both be wrong, so it is marked *not analysed*. With no
cloud mask in the input and no thermal or SWIR band, clouds are recognised
by what they do to a pair: a large, irregular region that became much
brighter and whiter (cloud) or much darker (cloud shadow) than the other
date. Sizes are in m² so the rules hold at any pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio import features
from scipy import ndimage
from shapely.geometry import shape
from shapely.ops import unary_union
from skimage import morphology
from skimage.filters import apply_hysteresis_threshold

from imagery.background import robust_sigma
from imagery.scenestats import SceneStats, scene_stats

#: Smallest cloud or cloud-shadow core, m²; smaller bright patches are left to the change detector.
CLOUD_CORE_M2 = 2_500.0
#: Above this a bright/dark core is a cloud (shadow) whatever its outline.
CLOUD_LARGE_M2 = 10_000.0
#: A cloud core is at least this thick (twice its largest inscribed radius): a new road or a row of white roofs
#: is long and bright but thin.
CLOUD_MIN_WIDTH_M = 40.0
#: A region must span this many pixels before its outline can be told from a building's.
MIN_OUTLINE_PX = 400
#: Outline perimeter / convex-hull perimeter above which a core counts as irregular (cloud-like).
IRREGULARITY = 1.1
#: Robust z-score of the brightness change that seeds (core) and grows (fringe) a cloud region.
Z_CORE, Z_FRINGE = 6.0, 2.5
#: Margin added around clouds and cloud shadows for soft edges, metres.
MARGIN_M = 2.0
#: Large coherent all-band change (haze, thin cloud, water colour), m², grown 3 -> 1.5 sigma.
COHERENT_M2 = 100_000.0
COHERENT_MARGIN_M = 30.0


@dataclass(frozen=True)
class NotAnalysed:
    """Pixels left out of the analysis and why (bool masks, rows x cols)."""

    cloud: np.ndarray
    cloud_shadow: np.ndarray
    coherent: np.ndarray

    @property
    def any(self) -> np.ndarray:
        return self.cloud | self.cloud_shadow | self.coherent

    def fractions(self, valid: np.ndarray) -> dict:
        n = max(1, int(valid.sum()))
        return {name: round(float((getattr(self, name) & valid).sum()) / n, 4) for name in ("cloud", "cloud_shadow", "coherent")}


def visible(bands: tuple[str, ...]) -> list[int]:
    idx = [i for i, b in enumerate(bands) if b in ("blue", "green", "red", "pan")]
    return idx or list(range(len(bands)))


def irregularity(mask: np.ndarray) -> float:
    """Perimeter of the simplified outline over the perimeter of its convex hull (1 = convex)."""
    polys = [shape(g) for g, v in features.shapes(mask.astype(np.uint8), mask=mask, connectivity=8) if v == 1]
    if not polys:
        return 1.0
    outline = unary_union(polys).simplify(1.0)
    hull = outline.convex_hull.length
    return float(outline.length / hull) if hull > 0 else 1.0


def robust_z(values: np.ndarray, valid: np.ndarray, *, sample: int = 1_000_000, stats: SceneStats | None = None,
             name: str = "z") -> np.ndarray:
    """(values - median) / robust sigma, the statistics taken on up to ``sample`` valid pixels (evenly strided),
    or given as the scene statistic ``name`` of ``stats``."""
    def measure() -> tuple[float, float]:
        pool = values[valid]
        if pool.size > sample:
            pool = pool[:: pool.size // sample]
        return float(np.median(pool)), max(robust_sigma(pool), 1e-6)

    med, sigma = scene_stats(stats).take(name, measure)
    return ((values - med) / sigma).astype(np.float32)


def cores_to_regions(candidates: np.ndarray, fringe: np.ndarray, valid: np.ndarray, pixel_size_m: float,
                     *, near_m: float = 15.0, fringe_m: float = 8.0) -> np.ndarray:
    """Keep candidate components that are cloud-like (large, or large and irregular, and at least
    :data:`CLOUD_MIN_WIDTH_M` thick), add small candidates
    within ``near_m`` of them (puffs), grow into the connected fringe up to ``fringe_m`` beyond them
    (soft edges) and add :data:`MARGIN_M`."""
    px_area = pixel_size_m**2
    core_px = max(MIN_OUTLINE_PX, CLOUD_CORE_M2 / px_area)
    large_px = max(4 * MIN_OUTLINE_PX, CLOUD_LARGE_M2 / px_area)
    labels, n = ndimage.label(candidates, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(valid.shape, bool)
    keep = np.zeros(n + 1, bool)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        m = labels[sl] == i
        area = m.sum()
        if area < core_px:
            continue
        thickness_m = 2 * float(ndimage.distance_transform_edt(np.pad(m, 1)).max()) * pixel_size_m
        if thickness_m >= CLOUD_MIN_WIDTH_M and (area >= large_px or irregularity(m) > IRREGULARITY):
            keep[i] = True
    cores = keep[labels]
    if not cores.any():
        return np.zeros(valid.shape, bool)
    distance = ndimage.distance_transform_edt(~cores) * pixel_size_m
    ids = np.unique(labels[(distance <= near_m) & candidates])
    keep[ids[ids > 0]] = True
    cores = keep[labels]
    reach = cores | (fringe & (distance <= fringe_m))
    grown_labels, _ = ndimage.label(reach, structure=np.ones((3, 3), bool))
    ids = np.unique(grown_labels[cores])
    grown = np.isin(grown_labels, ids[ids > 0])
    radius = max(1, int(round(MARGIN_M / pixel_size_m)))
    return ndimage.binary_dilation(grown, structure=morphology.disk(radius)) & valid


def cloud_mask(date: np.ndarray, other: np.ndarray, bands: tuple[str, ...], valid: np.ndarray,
               pixel_size_m: float, stats: SceneStats | None = None) -> np.ndarray:
    """Clouds in ``date``: large irregular regions far brighter than ``other`` and spectrally flat.

    Parameters
    ----------
    date, other : ndarray (bands, rows, cols)
        The date to search and the other date, same radiometry (after normalisation).
    bands : tuple of str
    valid : ndarray (rows, cols) bool
    pixel_size_m : float
    stats : SceneStats, optional
        Scene statistics of this date (robust z of the brightening, the other date's 99th percentile, the
        median flatness); default measured on the arrays.

    Returns
    -------
    ndarray (rows, cols) bool
        Candidates: brightening of the visible mean by more than ``Z_CORE``
        robust sigma, brighter than the other date's 99th percentile, and
        flatter across the visible bands than the scene's median; cores are
        candidate regions of at least :data:`CLOUD_CORE_M2` with an
        irregular outline (or at least :data:`CLOUD_LARGE_M2`), grown into
        the brightening fringe (``Z_FRINGE``) and dilated by :data:`MARGIN_M`.
    """
    vis = visible(bands)
    b_date = date[vis].mean(axis=0)
    b_other = other[vis].mean(axis=0)
    flat = date[vis].std(axis=0) / np.maximum(np.abs(b_date), 1e-6)
    stats = scene_stats(stats)
    z = robust_z(b_date - b_other, valid, stats=stats)
    bright = stats.take("bright", lambda: float(np.percentile(b_other[valid], 99)))
    typical_flat = stats.take("flat", lambda: np.median(flat[valid]))
    cand = valid & (z > Z_CORE) & (b_date > bright) & (flat < typical_flat)
    radius = max(1, int(round(1.0 / pixel_size_m)))
    cand = ndimage.binary_closing(cand, structure=morphology.disk(radius)) & valid
    return cores_to_regions(cand, valid & (z > Z_FRINGE), valid, pixel_size_m)


def cloud_shadow_mask(date: np.ndarray, other: np.ndarray, bands: tuple[str, ...], valid: np.ndarray,
                      pixel_size_m: float, colour: tuple[np.ndarray, np.ndarray] | None = None,
                      stats: SceneStats | None = None) -> np.ndarray:
    """Cloud shadows in ``date``: large irregular regions far darker (log visible brightness) than ``other``
    and darkened in the colour of shade (:func:`skylit`).

    Only called for a date with clouds. The same size and outline rules as
    :func:`cloud_mask`; cast shadows of buildings and trees are smaller and
    regular, and are handled by the change detector. ``colour`` is the pair
    (date, other) as recorded (before radiometric normalisation, whose
    offsets would bend band ratios) for the skylight test; default the pair
    itself. ``stats``: this date's scene statistics (dark floor, robust z, skylight medians).
    """
    stats = scene_stats(stats)
    vis = visible(bands)
    floor = stats.take("floor", lambda: max(float(np.percentile(
        np.concatenate([date[vis][:, valid], other[vis][:, valid]], axis=1), 0.5)), 1e-6))
    dl = np.log(np.maximum(date[vis].mean(axis=0), floor)) - np.log(np.maximum(other[vis].mean(axis=0), floor))
    z = robust_z(dl, valid, stats=stats)
    sky = skylit(*(colour or (date, other)), bands, valid, stats=stats.scope("sky"))
    cand = valid & sky & (z < -Z_CORE) & (dl < np.log(0.7))
    radius = max(1, int(round(1.0 / pixel_size_m)))
    cand = ndimage.binary_closing(cand, structure=morphology.disk(radius)) & valid
    return cores_to_regions(cand, valid & sky & (z < -3.0), valid, pixel_size_m, near_m=0.0)


#: Slack (natural log of the band ratio) of the skylight test, blue against red and NIR against red: noise,
#: and in NIR the light that canopies scatter into their own shade.
SKYLIGHT_TOLERANCE = {"blue": 0.1, "nir": 0.3}


def skylit(date: np.ndarray, other: np.ndarray, bands: tuple[str, ...], valid: np.ndarray,
           stats: SceneStats | None = None) -> np.ndarray:
    """Pixels whose darkening has the colour of shade: lit by skylight only, which is bluer than sunlight.

    The shade/sun ratio falls with wavelength (Rayleigh scattering), so in a
    cloud shadow blue darkens least and near-infrared at least as much as
    red. On ``log(date / other)`` per band, less its median over ``valid``
    (the scene-wide gain of each band): blue >= red and NIR <= red, up to
    :data:`SKYLIGHT_TOLERANCE`. A motor pool filling with dark vehicles
    darkens in another colour (paint and canopy reflect NIR) and is left to
    the change detector. Bands that are missing make no test. ``stats``: the floors and median ratios
    per band (scene statistics).
    """
    out = np.ones(date.shape[1:], bool)
    if "red" not in bands or not valid.any():
        return out
    stats = scene_stats(stats)

    def ratio(band: str) -> np.ndarray:
        k = bands.index(band)
        floor = stats.take(f"{band}.floor", lambda: max(float(np.percentile(
            np.concatenate([date[k][valid], other[k][valid]]), 0.5)), 1e-6))
        r = np.log(np.maximum(date[k], floor)) - np.log(np.maximum(other[k], floor))
        return r - stats.take(f"{band}.median", lambda: float(np.median(r[valid])))

    red = ratio("red")
    if "blue" in bands:
        out &= ratio("blue") >= red - SKYLIGHT_TOLERANCE["blue"]
    if "nir" in bands:
        out &= ratio("nir") <= red + SKYLIGHT_TOLERANCE["nir"]
    return out


def coherent_change_mask(before: np.ndarray, after: np.ndarray, valid: np.ndarray, pixel_size_m: float,
                         stats: SceneStats | None = None) -> np.ndarray:
    """Very large regions where every band brightens (or every band darkens) together: haze, thin cloud,
    cloud shadow, water colour. Robust z of each band's difference (scene statistics), hysteresis 3 / 1.5
    sigma, connected area of at least :data:`COHERENT_M2`, dilated by :data:`COHERENT_MARGIN_M`."""
    z = np.stack([robust_z(after[k] - before[k], valid, stats=stats, name=f"z{k}") for k in range(before.shape[0])])
    out = np.zeros(valid.shape, bool)
    min_px = COHERENT_M2 / pixel_size_m**2
    for s in (z.min(axis=0), -z.max(axis=0)):
        m = apply_hysteresis_threshold(np.where(valid, s, 0.0), 1.5, 3.0)
        labels, n = ndimage.label(m)
        if n == 0:
            continue
        area = np.bincount(labels.ravel())[1:]
        out |= np.concatenate([[False], area >= min_px])[labels]
    if out.any():
        r = max(1, int(round(COHERENT_MARGIN_M / pixel_size_m)))
        out = ndimage.binary_dilation(out, structure=np.ones((2 * r + 1, 2 * r + 1), bool))
    return out & valid


#: Clouds are searched on a grid of at most this pixel size (block means): they are hectares, not pixels.
WORK_PIXEL_M = 2.0


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of (..., rows, cols); edges padded by replication."""
    rows, cols = image.shape[-2:]
    pr, pc = -rows % factor, -cols % factor
    if pr or pc:
        pad = [(0, 0)] * (image.ndim - 2) + [(0, pr), (0, pc)]
        image = np.pad(image, pad, mode="edge")
    r, c = image.shape[-2] // factor, image.shape[-1] // factor
    return image.reshape(*image.shape[:-2], r, factor, c, factor).mean(axis=(-3, -1), dtype=np.float32)


def upsample_mask(mask: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[: shape[0], : shape[1]]


def not_analysed(before: np.ndarray, after: np.ndarray, bands: tuple[str, ...], valid: np.ndarray,
                 pixel_size_m: float, raw_after: np.ndarray | None = None, stats: SceneStats | None = None) -> NotAnalysed:
    """Clouds and cloud shadows in either date, plus scene-scale coherent changes.

    Runs on block means of at most :data:`WORK_PIXEL_M` pixels (clouds are
    hectares), the masks are then brought back to the analysis grid.

    Parameters
    ----------
    before, after : ndarray (bands, rows, cols)
        Co-registered, AFTER normalised to BEFORE.
    bands : tuple of str
    valid : ndarray (rows, cols) bool
        Valid in both dates and inside the AOI.
    pixel_size_m : float
        Analysis pixel size.
    raw_after : ndarray (bands, rows, cols), optional
        AFTER as recorded (co-registered, not normalised), for the colour of shadows.
    stats : SceneStats, optional
        Scene statistics (robust scales, percentiles, whether a date has clouds); default measured here.

    Notes
    -----
    Block means start at row and column 0: a block of a larger grid gives the
    same result when its origin is a multiple of :func:`lattice_px`.
    """
    factor = max(1, int(WORK_PIXEL_M // pixel_size_m))
    if factor == 1:
        return detect_not_analysed(before, after, bands, valid, pixel_size_m, raw_after, stats)
    small = detect_not_analysed(block_mean(before, factor), block_mean(after, factor), bands,
                                block_mean(valid.astype(np.float32), factor) > 0.5, pixel_size_m * factor,
                                None if raw_after is None else block_mean(raw_after, factor), stats)
    up = lambda m: upsample_mask(m, factor, valid.shape) & valid  # noqa: E731
    return NotAnalysed(cloud=up(small.cloud), cloud_shadow=up(small.cloud_shadow), coherent=up(small.coherent))


def detect_not_analysed(before: np.ndarray, after: np.ndarray, bands: tuple[str, ...], valid: np.ndarray,
                        pixel_size_m: float, raw_after: np.ndarray | None = None,
                        stats: SceneStats | None = None) -> NotAnalysed:
    """:func:`not_analysed` at the given pixel size.

    Cloud shadows are searched in a date with clouds: clouds anywhere in the
    scene (a scene statistic), or in these arrays.
    """
    stats = scene_stats(stats)
    cloud_after = cloud_mask(after, before, bands, valid, pixel_size_m, stats.scope("after"))
    cloud_before = cloud_mask(before, after, bands, valid, pixel_size_m, stats.scope("before"))
    cloud = cloud_after | cloud_before
    clear = valid & ~cloud
    shadow = np.zeros(valid.shape, bool)
    raw = after if raw_after is None else raw_after
    for name, date, other, colour, clouds_in_date in (("after", after, before, (raw, before), cloud_after),
                                                      ("before", before, after, (before, raw), cloud_before)):
        here = bool(clouds_in_date.any())
        if stats.take(f"{name}.has_clouds", lambda: here) or here:
            shadow |= cloud_shadow_mask(date, other, bands, clear, pixel_size_m, colour, stats.scope(f"{name}.shadow"))
    coherent = coherent_change_mask(before, after, valid & ~cloud & ~shadow, pixel_size_m, stats.scope("coherent"))
    return NotAnalysed(cloud=cloud, cloud_shadow=shadow, coherent=coherent)


def lattice_px(pixel_size_m: float) -> int:
    """Block-mean factor of :func:`not_analysed` at this pixel size: blocks of a larger grid must start on
    multiples of it."""
    return max(1, int(WORK_PIXEL_M // pixel_size_m))
