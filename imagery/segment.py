"""From changed pixels to change objects: clean-up, components, change type.

Sizes are in metres and converted to pixels with the grid's pixel size.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage import morphology

from imagery.background import disk
from imagery.change import ChangeResult
from imagery.grid import Grid
from imagery.objects import MASK_VALUES, ChangeObject, SizeRules, objects_from_labels


def clean_mask(changed: np.ndarray, *, pixel_size_m: float, min_area_m2: float) -> np.ndarray:
    """Opening by a disk of ~0.5 m (at least 1 px when pixels are < 1 m), fill small holes, drop small components."""
    radius = int(round(0.5 / pixel_size_m)) if pixel_size_m < 1.0 else 0
    out = ndimage.binary_opening(changed, structure=disk(radius)) if radius > 0 else changed.copy()
    min_px = max(2, int(math.ceil(min_area_m2 / pixel_size_m**2)))
    out = morphology.remove_small_holes(out, max_size=min_px)
    out = morphology.remove_small_objects(out, max_size=min_px - 1)
    return out


def contrast_with_surroundings(image: np.ndarray, labels: np.ndarray, ring_px: int, noise: np.ndarray) -> np.ndarray:
    """Per label: distance between the mean spectrum inside and the mean of a ring around it, in noise units.

    Parameters
    ----------
    image : ndarray (bands, rows, cols)
    labels : ndarray (rows, cols) int, 0 background
    ring_px : int
        Ring width in pixels.
    noise : ndarray (bands,)
        Per-band noise scale.

    Returns
    -------
    ndarray (n_labels + 1,)
        Index 0 unused.
    """
    n = int(labels.max())
    if n == 0:
        return np.zeros(1)
    grown = ndimage.grey_dilation(labels, footprint=disk(ring_px))
    ring = np.where(labels == 0, grown, 0)
    idx = np.arange(1, n + 1)
    inside_count = np.maximum(ndimage.sum_labels(np.ones_like(labels), labels, idx), 1)
    ring_count = np.maximum(ndimage.sum_labels(np.ones_like(ring), ring, idx), 1)
    total = np.zeros(n)
    for k in range(image.shape[0]):
        m_in = ndimage.sum_labels(image[k], labels, idx) / inside_count
        m_ring = ndimage.sum_labels(image[k], ring, idx) / ring_count
        total += ((m_in - m_ring) / noise[k]) ** 2
    return np.concatenate([[0.0], np.sqrt(total)])


def extract_objects(
    result: ChangeResult,
    before: np.ndarray,
    after: np.ndarray,
    analysed: np.ndarray,
    *,
    grid: Grid,
    pixel_size_m: float,
    rules: SizeRules = SizeRules(),
    stats=None,
) -> tuple[list[ChangeObject], np.ndarray]:
    """Change objects and the uint8 change mask (0/1/2/3, not-analysed left to the caller):
    :func:`label_objects` then :func:`finish_objects`."""
    labels, types = label_objects(result, before, after, analysed, pixel_size_m=pixel_size_m, rules=rules, stats=stats)
    return finish_objects(labels, types, result, before, after, grid=grid, pixel_size_m=pixel_size_m, rules=rules)


def label_objects(
    result: ChangeResult,
    before: np.ndarray,
    after: np.ndarray,
    analysed: np.ndarray,
    *,
    pixel_size_m: float,
    rules: SizeRules = SizeRules(),
    stats=None,
) -> tuple[np.ndarray, dict]:
    """Change objects as labels (int, rows x cols, 0 elsewhere) and their change types (label -> type).

    When the change method found the objects itself (``result.objects``),
    they are taken as they are. Otherwise the changed
    pixels are cleaned and labelled, and the change type of each component
    compares its contrast with its surroundings in each date: an object that
    stands out only after it appeared, only before it disappeared, in both
    (or neither) it changed; the noise scale of that contrast is a scene
    statistic (``stats``, a :class:`imagery.scenestats.SceneStats`).
    """
    if result.objects is not None:
        return result.objects
    from imagery.scenestats import scene_stats

    min_area = max(rules.vehicle_area_m2[0] * 0.5, 2 * pixel_size_m**2)
    cleaned = clean_mask(result.changed & analysed, pixel_size_m=pixel_size_m, min_area_m2=min_area)
    labels, n = ndimage.label(cleaned, structure=np.ones((3, 3), bool))
    ring_px = max(1, int(round(2.0 / pixel_size_m)))
    noise = scene_stats(stats).take("segment_noise", lambda: np.array([
        max(1e-6, float(np.median(np.abs(np.diff(before[k][analysed][:200000]))))) for k in range(before.shape[0])]))
    c_before = contrast_with_surroundings(before, labels, ring_px, noise)
    c_after = contrast_with_surroundings(after, labels, ring_px, noise)
    types = {}
    for label in range(1, n + 1):
        cb, ca = c_before[label], c_after[label]
        if ca > 1.5 * cb:
            types[label] = "appeared"
        elif cb > 1.5 * ca:
            types[label] = "disappeared"
        else:
            types[label] = "changed"
    return labels, types


def finish_objects(labels: np.ndarray, types: dict, result: ChangeResult, before: np.ndarray, after: np.ndarray, *,
                   grid: Grid, pixel_size_m: float, rules: SizeRules = SizeRules()) -> tuple[list[ChangeObject], np.ndarray]:
    """Measure and classify labelled objects; the uint8 change mask they make.

    Components narrower than the narrowest object of interest plus one
    outline pixel (``rules.min_width_m``) are slivers along edges that moved,
    not objects, when the pixels resolve objects (<= 1.5 m); they are left
    out of both.
    """
    outline_px = max(pixel_size_m, float(result.details.get("work_pixel_m", pixel_size_m)))
    min_width = rules.min_width_m + outline_px if pixel_size_m <= rules.vehicle_resolvable_px_m else 0.0
    objects = objects_from_labels(labels, types, grid=grid, score=result.score, brightness_before=before.mean(axis=0),
                                  brightness_after=after.mean(axis=0), pixel_size_m=pixel_size_m, rules=rules,
                                  outline_px_m=outline_px, min_width_m=min_width, area_labels=result.area_labels,
                                  building_labels=result.building_labels)
    lut = np.zeros(int(labels.max()) + 1, dtype=np.uint8)
    for obj in objects:
        lut[obj.label] = MASK_VALUES[obj.change]
    return objects, lut[labels]
