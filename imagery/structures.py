"""Buildings that were built or demolished, at high resolution, from the roofs of each date.

The region stage (:mod:`imagery.regionchange`) finds changed *areas*; on a
real pair where a whole suburb replaced scrub it flags the roads and lawns as
strongly as the houses, and a building whose plot changed little is missed.
Measured on real 0.5 m pairs, the change magnitude even ranks the new houses
*below* their surroundings. This stage looks for what a building is instead
of how much a pixel changed:

1. :func:`roof_segments` -- each date is cut into segments of similar colour
   (Felzenszwalb graph segmentation, smallest segment ``min_segment_m2``). A
   segment is a *roof* when it is the size and shape of a building (area,
   width and elongation in metres, solidity), not in shadow,
   greyer than most of the scene (roofing is unpigmented next to soil,
   grass and trees; a rule relative to the scene, so colour balance sets the
   scale), and bordered by a cast shadow along part of its outline: a
   building stands above the ground, a lawn or a road does not.
2. :func:`outline_persistence` -- a roof at one date whose outline is also an
   edge at the other date (within ``tolerance_m``) is a building present at
   both dates (re-roofed, repainted, lit differently), not a change.
3. :func:`detect_structure_changes` -- roofs of the after date without an
   outline before are *appeared* structures; roofs of the before date
   without an outline after are *disappeared*. Touching roof segments
   (the facets of one roof) form one object.

Input images are bands-first arrays of one grid (any CRS; sizes are given in
metres through ``pixel_size_m``, 1 m or finer) holding at least red, green
and blue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import label, regionprops
from skimage.segmentation import felzenszwalb, find_boundaries

from imagery.scenestats import SceneStats, scene_stats

RGB = ("red", "green", "blue")


@dataclass(frozen=True)
class StructureParams:
    """Sizes (metres) and rules of the structure stage."""

    min_roof_m2: float = 50.0  # larger than the largest vehicle (45 m²): vehicles are the object stage's
    min_segment_m2: float = 15.0  # smallest segment (a roof's facet may be one)
    max_roof_m2: float = 5000.0  # one roof segment; larger halls are the region stage's
    min_width_m: float = 4.0  # narrower is a wall, fence or path
    min_width_px: float = 4.0  # a roof is resolved (outline, facets, its shadow beside it) when min_width_m spans this
    work_pixel_m: float = 1.0  # finer pixels are block-averaged to about this size first (min_width_m / min_width_px)
    max_elongation: float = 4.0  # longer than this times its width is a road or a row of things
    min_solidity: float = 0.7
    shadow_ring_m: float = 2.0  # how far outside its outline a roof's cast shadow is looked for
    min_shadow_share: float = 0.1  # share of the outline with a shadow within shadow_ring_m
    shadow_brightness: float = 0.5  # shadow: darker than this times the scene's median brightness
    roof_brightness: tuple[float, float] = (0.75, 1.7)  # times the scene's median brightness
    grey_quantile: float = 0.35  # roofs are no more saturated than this share of the scene (by area) ...
    grey_margin: float = 0.02  # ... plus this margin
    segment_scale: float = 200.0  # Felzenszwalb scale on an image scaled to 0..1
    tile_px: int = 512  # segmentation tiles (work pixels): bounded memory on large grids
    margin_m: float = 80.0  # context around each tile, more than a roof segment's side (max_roof_m2)
    smoothing_m: float = 0.5
    edge_strength: float = 2.0  # an outline edge: gradient this many times the scene's median gradient
    tolerance_m: float = 1.0  # misregistration and lean allowed between the two dates' outlines
    #: A roof is new when its outline is an edge at the other date no more often than midway between chance
    #: (the share of that date's pixels within ``tolerance_m`` of an edge) and always.
    persistence_blend: float = 0.5


@dataclass
class StructureChanges:
    """Result of :func:`detect_structure_changes`.

    Attributes
    ----------
    labels : ndarray (rows, cols) int32
        Structure id per pixel, 0 elsewhere.
    present_both : ndarray (rows, cols) bool
        Roofs whose outline is an edge at both dates: buildings present at both, whatever their roof's
        colour (:func:`with_surroundings` adds their outline and the foot of their cast shadow).
    kinds : dict
        Structure id -> ``appeared`` | ``disappeared``.
    details : dict
        Roof segments per date, how many kept their outline at the other date, structures per kind.
    """

    labels: np.ndarray
    kinds: dict
    present_both: np.ndarray
    details: dict = field(default_factory=dict)


def applies(bands: tuple[str, ...], pixel_size_m: float, p: StructureParams = StructureParams()) -> bool:
    """True when ``bands`` holds red, green and blue (what the roof rules need) and the pixels resolve roofs
    (``min_width_m`` spans ``min_width_px``: 1 m pixels for 4 m)."""
    return all(b in bands for b in RGB) and pixel_size_m * p.min_width_px <= p.min_width_m + 1e-9


def unit_rgb(image: np.ndarray, bands: tuple[str, ...], analysed: np.ndarray, stats: SceneStats, name: str) -> np.ndarray:
    """Red, green, blue (rows, cols, 3) float32 scaled to about 0..1 by the date's 99.5th percentile (a scene statistic)."""
    rgb = np.stack([image[bands.index(b)] for b in RGB], axis=-1).astype(np.float32)
    top = stats.take(f"rgb_top_{name}", lambda: float(np.percentile(rgb[analysed], 99.5)) if analysed.any() else 1.0)
    return np.clip(rgb / max(top, 1e-6), 0.0, 1.0)


def gradient(rgb: np.ndarray, pixel_size_m: float, p: StructureParams) -> np.ndarray:
    """Colour gradient magnitude (the three bands' gradients in quadrature) smoothed over ``smoothing_m``: an
    outline between two colours of like brightness (a green roof on brown ground) is an edge too."""
    sigma = max(0.5, p.smoothing_m / pixel_size_m)
    return np.sqrt(sum(ndimage.gaussian_gradient_magnitude(rgb[..., k], sigma) ** 2 for k in range(rgb.shape[-1])))


def roof_segments(rgb: np.ndarray, analysed: np.ndarray, pixel_size_m: float, p: StructureParams, stats: SceneStats,
                  name: str) -> tuple[np.ndarray, np.ndarray]:
    """Segments of one date and which of them are roofs.

    Returns ``(segments, is_roof)``: segment id per pixel (int, from 0) and a
    boolean per segment id. Brightness, saturation and shadow are judged
    relative to this date's own statistics (``stats``, named by ``name``).
    """
    px2 = pixel_size_m * pixel_size_m
    segments = segment_in_tiles(rgb, pixel_size_m, p)
    segments = label(segments, background=-1, connectivity=1) - 1  # its segments need not be connected
    not_analysed_id = int(segments.max()) + 1  # one segment for what is not analysed, never a roof
    segments[~analysed] = not_analysed_id
    ids = np.arange(not_analysed_id + 1)
    luminance = rgb.mean(axis=-1)
    saturation = (rgb.max(axis=-1) - rgb.min(axis=-1)) / np.maximum(rgb.max(axis=-1), 1e-3)
    median = stats.take(f"roof_median_{name}", lambda: float(np.median(luminance[analysed])) if analysed.any() else 1.0)
    shadow = (luminance < p.shadow_brightness * median) & analysed

    pixels = ndimage.sum(np.ones_like(luminance), segments, ids)
    area_m2 = pixels * px2
    mean_sat = label_mean(saturation, segments, ids, pixels)
    analysed_m2 = np.where(ids == not_analysed_id, 0.0, area_m2)
    grey = stats.take(f"roof_grey_{name}", lambda: weighted_quantile(mean_sat, analysed_m2, p.grey_quantile))
    mean_lum = label_mean(luminance, segments, ids, pixels) / max(median, 1e-6)
    near_shadow = grown(shadow, p.shadow_ring_m, pixel_size_m)
    outline = find_boundaries(segments, mode="inner")
    shadow_share = label_mean(near_shadow & ~shadow, np.where(outline, segments, -1), ids)

    candidate = ((area_m2 >= p.min_roof_m2) & (area_m2 <= p.max_roof_m2) & (mean_sat <= grey + p.grey_margin)
                 & (mean_lum >= p.roof_brightness[0]) & (mean_lum <= p.roof_brightness[1]) & (shadow_share >= p.min_shadow_share))
    candidate[not_analysed_id] = False
    major, minor = axis_lengths(segments, ids, pixels)
    candidate &= (minor * pixel_size_m >= p.min_width_m) & (major <= p.max_elongation * np.maximum(minor, 1.0))
    is_roof = np.zeros(ids.size, bool)
    for prop in regionprops(np.where(candidate[segments], segments + 1, 0)):  # the convex hull only for these
        is_roof[prop.label - 1] = prop.solidity >= p.min_solidity
    return segments, is_roof


def axis_lengths(labels: np.ndarray, ids: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per id, the major and minor axis lengths (pixels) of the ellipse with the same second moments as its
    ``pixels`` (counts per id) in ``labels`` (as :func:`skimage.measure.regionprops` defines them), for all
    ids at once."""
    rows, cols = np.indices(labels.shape, dtype=np.float64)
    count = np.maximum(pixels, 1)
    mean_r, mean_c = ndimage.sum(rows, labels, ids) / count, ndimage.sum(cols, labels, ids) / count
    var_r = ndimage.sum(rows * rows, labels, ids) / count - mean_r**2
    var_c = ndimage.sum(cols * cols, labels, ids) / count - mean_c**2
    cov = ndimage.sum(rows * cols, labels, ids) / count - mean_r * mean_c
    half_gap = np.sqrt(((var_r - var_c) / 2) ** 2 + cov**2)
    larger, smaller = (var_r + var_c) / 2 + half_gap, np.maximum((var_r + var_c) / 2 - half_gap, 0.0)
    return 4 * np.sqrt(larger), 4 * np.sqrt(smaller)


def with_surroundings(roofs: np.ndarray, pixel_size_m: float, p: StructureParams = StructureParams()) -> np.ndarray:
    """``roofs`` (bool, rows x cols) grown by ``shadow_ring_m``: their outline and the foot of their cast shadow."""
    return grown(roofs, p.shadow_ring_m, pixel_size_m)


def grown(mask: np.ndarray, metres: float, pixel_size_m: float) -> np.ndarray:
    """Pixels within ``metres`` (at least one pixel, along rows, columns and diagonals) of ``mask``."""
    radius = max(1, int(round(metres / pixel_size_m)))
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)) > 0


def lattice_px(pixel_size_m: float, params: StructureParams = StructureParams()) -> int:
    """The block-mean factor to about ``work_pixel_m``: blocks of a larger grid must start on multiples of it
    (pixels) to be block-averaged as on the whole grid."""
    return max(1, int(params.work_pixel_m / pixel_size_m + 1e-9))


def segment_in_tiles(rgb: np.ndarray, pixel_size_m: float, p: StructureParams) -> np.ndarray:
    """Felzenszwalb segments of ``rgb`` (rows, cols, 3): id per pixel (int64, not necessarily connected),
    computed in tiles of ``tile_px`` so that memory stays bounded whatever the grid's size.

    Each tile is segmented with a margin of ``margin_m`` (more than a roof's side). A segment that reaches
    past its tile's core belongs to the tile whose core holds the centre of its bounding box and is painted
    whole there, so a roof across a tile seam is not cut in two; every other pixel takes its core tile's
    segment.
    """
    rows, cols = rgb.shape[:2]
    min_size = max(4, int(p.min_segment_m2 / pixel_size_m**2))
    sigma = max(0.5, p.smoothing_m / pixel_size_m)
    if rows <= p.tile_px and cols <= p.tile_px:
        return felzenszwalb(rgb, scale=p.segment_scale, sigma=sigma, min_size=min_size).astype(np.int64)
    margin = int(np.ceil(p.margin_m / pixel_size_m))
    segments = np.zeros((rows, cols), np.int64)
    claimed = np.zeros((rows, cols), bool)
    next_id = 0
    for r0 in range(0, rows, p.tile_px):
        for c0 in range(0, cols, p.tile_px):
            r1, c1 = min(rows, r0 + p.tile_px), min(cols, c0 + p.tile_px)
            wr0, wc0 = max(0, r0 - margin), max(0, c0 - margin)
            wr1, wc1 = min(rows, r1 + margin), min(cols, c1 + margin)
            tile = felzenszwalb(rgb[wr0:wr1, wc0:wc1], scale=p.segment_scale, sigma=sigma, min_size=min_size)
            core = (slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
            free = ~claimed[r0:r1, c0:c1]
            segments[r0:r1, c0:c1][free] = tile[core][free] + next_id
            for index, box in enumerate(ndimage.find_objects(tile + 1)):
                if box is None or all(box[k].start >= core[k].start and box[k].stop <= core[k].stop for k in (0, 1)):
                    continue  # inside the core: painted above
                centre = [(box[k].start + box[k].stop) // 2 for k in (0, 1)]
                if not all(core[k].start <= centre[k] < core[k].stop for k in (0, 1)):
                    continue  # another tile's segment
                target = (slice(wr0 + box[0].start, wr0 + box[0].stop), slice(wc0 + box[1].start, wc0 + box[1].stop))
                whole = (tile[box] == index) & ~claimed[target]
                segments[target][whole] = index + next_id
                claimed[target] |= whole
            next_id += int(tile.max()) + 1
    return segments


def label_mean(values: np.ndarray, labels: np.ndarray, ids: np.ndarray, pixels: np.ndarray | None = None) -> np.ndarray:
    """Per id, the mean of ``values`` over its pixels in ``labels``; 0 for an id without pixels. ``pixels``:
    the count per id when already known."""
    if pixels is None:
        pixels = ndimage.sum(np.ones(labels.shape, np.float32), labels, ids)
    return ndimage.sum(values, labels, ids) / np.maximum(pixels, 1)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q`` quantile of ``values`` where each value counts ``weights`` times."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    if cumulative.size == 0 or cumulative[-1] <= 0:
        return 0.0
    return float(values[order][min(np.searchsorted(cumulative, q * cumulative[-1]), values.size - 1)])


def outline_persistence(segments: np.ndarray, is_roof: np.ndarray, own_edges: np.ndarray, other_edges: np.ndarray,
                        pixel_size_m: float, p: StructureParams) -> np.ndarray:
    """Per segment, the share of its strong outline that is also an edge at the other date (within ``tolerance_m``).

    ``own_edges``/``other_edges`` are boolean edge maps of the two dates. NaN where a segment has no strong
    outline (it cannot be judged, and is not kept).
    """
    other_near = near_edges(other_edges, pixel_size_m, p)
    strong_outline = find_boundaries(segments, mode="inner") & own_edges & is_roof[segments]
    ids = np.arange(is_roof.size)
    counted = np.where(strong_outline, segments, -1)
    pixels = ndimage.sum(strong_outline, counted, ids)
    persisted = ndimage.sum(other_near, counted, ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pixels >= 5, persisted / np.maximum(pixels, 1), np.nan)


def near_edges(edges: np.ndarray, pixel_size_m: float, p: StructureParams) -> np.ndarray:
    """Pixels within ``tolerance_m`` of an edge."""
    return grown(edges, p.tolerance_m, pixel_size_m)


def detect_structure_changes(before: np.ndarray, after: np.ndarray, analysed: np.ndarray, bands: tuple[str, ...],
                             pixel_size_m: float, params: StructureParams = StructureParams(), *,
                             stats: SceneStats | None = None) -> StructureChanges:
    """Buildings built (``appeared``) or demolished (``disappeared``) between ``before`` and ``after``.

    ``before``/``after``: (bands, rows, cols) float arrays of one grid, ``bands`` naming them (red, green
    and blue needed; without them nothing is reported); ``analysed``: bool (rows, cols); ``pixel_size_m``:
    metres. ``stats`` holds scene-wide statistics (frozen for a block of a larger scene).
    """
    factor = lattice_px(pixel_size_m, params)
    if factor > 1 and applies(bands, pixel_size_m, params):
        from imagery.clouds import block_mean, upsample_mask

        small = detect_structure_changes(block_mean(before, factor), block_mean(after, factor),
                                         block_mean(analysed.astype(np.float32), factor) >= 0.75, bands,
                                         pixel_size_m * factor, params, stats=stats)
        labels = upsample_mask(small.labels, factor, analysed.shape)
        labels[~analysed] = 0
        present = upsample_mask(small.present_both, factor, analysed.shape) & analysed
        return StructureChanges(labels=labels, kinds=small.kinds, present_both=present,
                                details={**small.details, "work_pixel_m": round(pixel_size_m * factor, 3)})
    stats = scene_stats(stats)
    labels = np.zeros(analysed.shape, np.int32)
    if not applies(bands, pixel_size_m, params) or not analysed.any():
        return StructureChanges(labels=labels, kinds={}, present_both=np.zeros(analysed.shape, bool),
                                details={"reason": "needs red, green and blue at 1 m or finer"})
    p = params
    rgb = {name: unit_rgb(image, bands, analysed, stats, name) for name, image in (("before", before), ("after", after))}
    edges = {}
    for name, image in rgb.items():
        grad = gradient(image, pixel_size_m, p)
        typical = stats.take(f"roof_gradient_{name}", lambda: float(np.median(grad[analysed])) if analysed.any() else 1.0)
        edges[name] = (grad > p.edge_strength * max(typical, 1e-6)) & analysed

    details: dict = {"candidate_pixels": 0, "removed_pixels": 0}
    found = np.zeros(analysed.shape, np.int8)  # 1 appeared, 2 disappeared
    present_both = np.zeros(analysed.shape, bool)
    for code, (name, other) in ((1, ("after", "before")), (2, ("before", "after"))):
        segments, is_roof = roof_segments(rgb[name], analysed, pixel_size_m, p, stats, name)
        persistence = outline_persistence(segments, is_roof, edges[name], edges[other], pixel_size_m, p)
        chance = stats.take(f"edge_chance_{other}", lambda: float(near_edges(edges[other], pixel_size_m, p)[analysed].mean()))
        new = is_roof & (np.nan_to_num(persistence, nan=1.0) <= chance + p.persistence_blend * (1.0 - chance))
        found[new[segments] & (found == 0)] = code
        present_both |= (is_roof & ~new)[segments]
        details[f"roofs_{name}"] = int(is_roof.sum())
        details[f"roofs_{name}_present_at_both"] = int((is_roof & ~new).sum())
        details["candidate_pixels"] += int(is_roof[segments].sum())
        details["removed_pixels"] += int((is_roof & ~new)[segments].sum())

    kinds = {}
    next_id = 1
    for code, kind in ((1, "appeared"), (2, "disappeared")):
        components, n = ndimage.label(found == code)
        labels[components > 0] = components[components > 0] + next_id - 1
        kinds.update({next_id + i: kind for i in range(n)})
        next_id += n
        details[kind] = n
    return StructureChanges(labels=labels, kinds=kinds, present_both=present_both & (found == 0) & analysed,
                            details=details)
