"""Object-level change at high resolution: what appeared, disappeared or changed, not what the sun moved.

At pixels of about a metre or finer, vehicles, tents and structures are
resolved objects, and most pixel differences between two dates come from
things that did not change: cast shadows that move with the sun, roof
facets that swap light and shade, tall objects that lean differently when
the satellite looks from another angle, fields that green up. This module
keeps a changed region only when none of those explains it and when an
object is present in one date and absent in the other.

Steps (each a function below; sizes in metres, thresholds from false-alarm
rates or robust scales of the scene itself):

1. :func:`candidate_regions` -- pixels whose change exceeds the noise after
   removing the local (30 m) background change, with a 3 x 3 misregistration
   tolerance; chi-square hysteresis.
2. :class:`imagery.explain.Explainer` -- a candidate pixel is explained when one date is
   predicted from the other (as it is, or through a local spectral map that
   absorbs season and haze) up to an illumination change along a plausible
   shadow line (:func:`imagery.explain.shade_directions`: shade is darker by any depth and
   no redder than sunlight -- from grey to skylight-blue).
3. :func:`imagery.explain.lean_explained` -- the pixels left in a region may be explained by
   one displacement shared by the whole region, along the scene's lean
   direction (tall objects lean by height x tan(off-nadir), up to 4 m).
4. :func:`object_cores` -- majority filter and opening at half the width of
   the narrowest object of interest; touching vehicles split at their necks.
5. :func:`presence` -- a core is an object in a date when its median
   spectrum stands out from the ring around it (Mahalanobis distance >= 8
   robust sigmas) and absent when it does not (chi-square, p = 0.01):
   appeared, disappeared, or changed (present in both, structure-sized).
6. :func:`drop_residues` -- objects covering under 15 % of their changed
   region are what an explanation left of a moved shadow or a roof, not things.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy import stats as scipy_stats
from skimage import morphology

from imagery.background import disk, edge_padded, local_median, median_block_px, robust_sigma, shifted
from imagery.explain import Explainer, around, lean_explained, local_spectral_map, shade_directions, spectral_block_px
from imagery.scenestats import SceneStats, scene_stats

@dataclass(frozen=True)
class ObjectParams:
    """Sizes (metres) and false-alarm rates of the object stage."""

    background_window_m: float = 30.0  # > twice the largest vehicle or tent
    background_exclusion_max_m2: float = 5000.0  # strong changes smaller than this are objects, not background
    noise_floor: float = 0.02  # radiometric normalisation residual, fraction of the band's median level
    p_seed: float = 1e-6  # candidate hysteresis: chi-square false-alarm rates
    p_grow: float = 1e-3
    spectral_map_window_m: float = 25.0  # local spectral map (season, haze)
    p_material: float = 1e-3  # material change per pixel (chi-square, bands - 1 dof)
    lean_m: float = 4.0  # largest lean of trees and buildings between two views
    lean_needs_hole: bool = False  # accept a lean only where the object's old place changed too
    core_radius_m: float = 0.75  # half the width of the narrowest object of interest (1.5 m)
    min_object_m2: float = 6.0
    ring_gap_m: float = 0.5
    ring_width_m: float = 3.0
    z_present: float = 8.0  # robust sigmas of contrast with the surroundings
    p_absent: float = 0.01
    z_contrast_ratio: float = 0.0  # also "absent": contrast at most this fraction of the other date's (0 = off)
    min_changed_m2: float = 100.0  # only structures are reported as "changed"
    min_region_share: float = 0.15  # objects must cover this share of their changed region (else residues)
    vehicle_m2: float = 24.5  # 7 x 3.5 m, for splitting touching vehicles
    work_pixel_m: float = 1.0  # finer pixels are block-averaged to about this size


@dataclass
class ObjectChanges:
    """Result of :func:`detect_object_changes`.

    Attributes
    ----------
    labels : ndarray (rows, cols) int32
        Object id per pixel, 0 elsewhere.
    kinds : dict
        Object id -> ``appeared`` | ``disappeared`` | ``changed``.
    statistic : ndarray (rows, cols) float32
        Candidate chi-square statistic (bands dof), for the change score.
    details : dict
        Candidate and unexplained pixel counts, lean direction, objects, residues dropped, work pixel size.
    """

    labels: np.ndarray
    kinds: dict
    statistic: np.ndarray
    details: dict = field(default_factory=dict)


# --- 1. candidates --------------------------------------------------------------------------------


def candidate_regions(after: np.ndarray, before: np.ndarray, analysed: np.ndarray, pixel_size_m: float,
                      noise: np.ndarray, p: ObjectParams,
                      stats: SceneStats | None = None) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Labelled candidate regions and the chi-square change statistic.

    The local median of AFTER - BEFORE over ``background_window_m`` is added
    to BEFORE (season, haze and sensor differences that vary slowly in space),
    leaving out compact strong changes (below ``background_exclusion_max_m2``)
    so that a whole parking block that filled up is not taken for background;
    the statistic is the larger of the two 3 x 3 minimum residuals (AFTER
    against shifted BEFORE and back), over the per-band noise, calibrated so
    its median is the chi-square median; seeds at ``p_seed``, grown to
    ``p_grow``; opened by a 0.5 m disk; regions of at least ``min_object_m2``.
    Calibrations, the background's fill values and the residual sigma are
    scene statistics (``stats``). Beyond the edges the edge pixels are repeated.
    """
    stats = scene_stats(stats)
    nb = before.shape[0]
    diff = after - before
    raw = ((diff / noise[:, None, None]) ** 2).sum(0)
    raw /= max(stats.take("raw_median", lambda: float(np.median(raw[analysed]))) / scipy_stats.chi2.median(nb), 1.0)
    strong = (raw > scipy_stats.chi2.isf(p.p_grow, nb)) & analysed
    del raw
    # compact strong changes (objects) are left out of the background; extensive ones (fields, haze) are the background
    strong_labels, _ = ndimage.label(strong, structure=np.ones((3, 3), bool))
    sizes = np.bincount(strong_labels.ravel())
    sizes[0] = 0
    objects = (sizes > 0) & (sizes * pixel_size_m**2 < p.background_exclusion_max_m2)
    diff -= local_median(diff, analysed & ~objects[strong_labels], p.background_window_m / pixel_size_m,
                         stats=stats.scope("background"))
    residual_sigma = stats.take("residual_sigma", lambda: np.array([
        robust_sigma(diff[k][analysed][::max(1, int(analysed.sum()) // 500_000)]) for k in range(nb)]))
    corrected = after - diff
    del diff, strong_labels
    weight = (1.0 / noise**2).astype(np.float32)[:, None, None]
    e_after = np.full(analysed.shape, np.inf, np.float32)
    e_before = e_after.copy()
    p_corrected, p_after = edge_padded(corrected, 1), edge_padded(after, 1)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            np.minimum(e_after, (((after - shifted(p_corrected, 1, (dr, dc))) ** 2) * weight).sum(0), out=e_after)
            np.minimum(e_before, (((shifted(p_after, 1, (dr, dc)) - corrected) ** 2) * weight).sum(0), out=e_before)
    stat = np.maximum(e_after, e_before)
    del e_after, e_before, corrected, p_corrected, p_after
    stat /= max(stats.take("stat_median", lambda: float(np.median(stat[analysed]))) / scipy_stats.chi2.median(nb), 1.0)
    stat[~analysed] = 0.0
    seeds = stat > scipy_stats.chi2.isf(p.p_seed, nb)
    grown = (stat > scipy_stats.chi2.isf(p.p_grow, nb)) & analysed
    labels, n = ndimage.label(grown, structure=np.ones((3, 3), bool))
    keep = np.zeros(n + 1, bool)
    keep[np.unique(labels[seeds & grown])] = True
    keep[0] = False
    mask = ndimage.binary_opening(keep[labels], structure=disk(max(1, int(round(0.5 / pixel_size_m)))))
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(p.min_object_m2 / pixel_size_m**2)) - 1)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    return labels, n, stat, residual_sigma


# --- 4. cores -------------------------------------------------------------------------------------------


def object_cores(material: np.ndarray, analysed: np.ndarray, pixel_size_m: float, p: ObjectParams) -> np.ndarray:
    """Majority filter and opening by a square no wider than the narrowest object of interest
    (``2 * core_radius_m``, whole pixels, rounded down so a 1.5 m object survives at any pixel size);
    touching vehicles split."""
    side = max(1, int(np.floor(2 * p.core_radius_m / pixel_size_m + 1e-6)))
    if side == 1:
        core = material & analysed
    else:
        square = np.ones((side, side), bool)
        core = ndimage.uniform_filter(material.astype(np.float32), size=side, mode="constant") >= 0.5
        core = ndimage.binary_opening(core, structure=square) & analysed
    return split_touching(core, pixel_size_m, p)


def split_touching(core: np.ndarray, pixel_size_m: float, p: ObjectParams) -> np.ndarray:
    """Cut cores larger than 1.6 vehicle footprints at their necks.

    A watershed of the distance transform from markers at least 1 m inside
    the core and 1.5 m apart proposes cuts; a cut is kept only where it is a
    neck, i.e. the core there is at most 70 % as thick as at the centres of
    the two pieces it separates (so a uniform strip such as a road is never
    chopped into vehicle-sized pieces), and both pieces are object-sized.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    labels, n = ndimage.label(core, structure=np.ones((3, 3), bool))
    out = core.copy()
    big = 1.6 * p.vehicle_m2 / pixel_size_m**2
    min_px = p.min_object_m2 / pixel_size_m**2
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        m = labels[sl] == i
        if m.sum() < big:
            continue
        dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1] * pixel_size_m
        peaks = peak_local_max(dist, min_distance=max(1, int(round(1.5 / pixel_size_m))), threshold_abs=1.0,
                               labels=m.astype(int), exclude_border=False)
        if len(peaks) < 2:
            continue
        markers = np.zeros(m.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        pieces = watershed(-dist, markers, mask=m)
        thickness = ndimage.maximum(dist, pieces, index=np.arange(1, len(peaks) + 1))
        sizes = np.bincount(pieces.ravel(), minlength=len(peaks) + 1)[1:]
        up = np.where(m, ndimage.grey_dilation(pieces, size=3), 0)
        down = np.where(m, ndimage.grey_erosion(np.where(m, pieces, len(peaks) + 1), size=3), 0)
        cut = m & (up != down)
        keep_cut = np.zeros(m.shape, bool)
        for a, b in {(int(x), int(y)) for x, y in zip(down[cut], up[cut]) if 0 < x < y <= len(peaks)}:
            boundary = cut & (((pieces == a) & (up == b)) | ((pieces == b) & (down == a)))
            if not boundary.any() or min(sizes[a - 1], sizes[b - 1]) < min_px:
                continue
            if dist[boundary].max() <= 0.7 * min(thickness[a - 1], thickness[b - 1]):
                keep_cut |= boundary
        out[sl][keep_cut] = False
    return out


# --- 5. presence ------------------------------------------------------------------------------------------


def presence(image: np.ndarray, region: np.ndarray, ring: np.ndarray, noise: np.ndarray) -> float:
    """Squared Mahalanobis distance of the region's median spectrum from the ring's pixels.

    Robust scales (MAD) with the ring's sample correlation, plus the noise of
    a median over the region's pixels.
    """
    centre = np.median(image[:, region], axis=1)
    around = image[:, ring]
    mu = np.median(around, axis=1)
    dev = around - mu[:, None]
    scale = 1.4826 * np.median(np.abs(dev), axis=1)
    if around.shape[1] > around.shape[0] + 2:
        cov = np.atleast_2d(np.cov(dev))  # one band: np.cov gives a 0-d array
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-12))
        corr = cov / np.outer(sd, sd)
    else:
        corr = np.eye(len(centre))
    cov = np.outer(scale, scale) * corr + np.diag(noise**2 / max(int(region.sum()), 1) + 1e-12)
    d = centre - mu
    try:
        return float(d @ np.linalg.solve(cov, d))
    except np.linalg.LinAlgError:
        return float(((d / np.sqrt(np.diag(cov))) ** 2).sum())


#: Window of the local background static objects stand out from, metres.
STATIC_WINDOW_M = 20.0


def static_objects(after: np.ndarray, before: np.ndarray, unchanged: np.ndarray, pixel_size_m: float,
                   *, window_m: float = STATIC_WINDOW_M, contrast: float = 0.25, stats: SceneStats | None = None) -> np.ndarray:
    """Unchanged pixels that stand out from the ground in both dates (parked vehicles, buildings, trees).

    Their log brightness differs from the local median (``window_m``) by more
    than ``contrast`` in both dates. They are left out of the ring a region is
    compared with, so a vehicle parked next to others is compared with the
    ground, not with its neighbours. ``stats``: the backgrounds' fill values (scene statistics).
    """
    stats = scene_stats(stats)
    out = unchanged.copy()
    for name, image in (("after", after), ("before", before)):
        lum = np.log(image.mean(axis=0))
        out &= np.abs(lum - local_median(lum, unchanged, window_m / pixel_size_m, stats=stats.scope(name))) > contrast
    return out


def compact(region: np.ndarray, pixel_size_m: float) -> bool:
    """Structure-like: fills most of its convex hull and is at most four times as long as wide."""
    ys, xs = np.nonzero(region)
    pts = np.column_stack([xs, ys]).astype(float)
    if len(pts) < 6:
        return False
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(pts)
    except QhullError:
        return False
    solidity = len(pts) / max(hull.volume, 1.0)
    centred = pts - pts.mean(0)
    evals = np.linalg.eigvalsh(np.cov(centred.T))
    aspect = float(np.sqrt(max(evals[1], 1e-9) / max(evals[0], 1e-9)))
    return solidity >= 0.7 and aspect <= 4.0


def drop_residues(objects: np.ndarray, kinds: dict, candidates: np.ndarray, min_share: float) -> tuple[np.ndarray, dict, int]:
    """Drop objects that are small residues of a changed region that was otherwise explained.

    Something that arrives or leaves changes its own footprint, its shadow
    and a misregistration halo: a few times its area. When all the objects
    found in a candidate region cover less than ``min_share`` of it, the
    region is a moved shadow, a roof whose facets swapped light and shade or
    a leaning building, and what is left of it is the explanation's error.
    Objects are renumbered 1..n.
    """
    if not kinds:
        return objects, kinds, 0
    region_area = np.bincount(candidates.ravel())
    covered = np.bincount(candidates[objects > 0], minlength=region_area.size)
    share = covered / np.maximum(region_area, 1)
    parent = ndimage.labeled_comprehension(candidates, objects, np.arange(1, max(kinds) + 1),
                                           lambda v: np.bincount(v[v > 0]).argmax() if (v > 0).any() else 0, np.int64, 0)
    share[0] = 1.0  # an object outside every candidate region is not a residue of one
    new_kinds: dict[int, str] = {}
    renumber = np.zeros(max(kinds) + 1, np.int32)
    for i in sorted(kinds):
        if share[parent[i - 1]] >= min_share:
            renumber[i] = len(new_kinds) + 1
            new_kinds[len(new_kinds) + 1] = kinds[i]
    return renumber[objects], new_kinds, len(kinds) - len(new_kinds)


def ring_around(region: np.ndarray, excluded: np.ndarray, valid: np.ndarray, gap: int, width: int) -> np.ndarray:
    near = ndimage.binary_dilation(region, iterations=gap)
    far = ndimage.binary_dilation(region, iterations=gap + width)
    ring = far & ~near & valid & ~excluded
    if ring.sum() < 12:
        ring = far & ~near & valid
    return ring


# --- all together -------------------------------------------------------------------------------------------


def detect_object_changes(before: np.ndarray, after: np.ndarray, analysed: np.ndarray, bands: tuple[str, ...],
                          pixel_size_m: float, params: ObjectParams = ObjectParams(),
                          stats: SceneStats | None = None) -> ObjectChanges:
    """Objects that appeared, disappeared or changed between two co-registered, normalised dates.

    Pixels finer than ``params.work_pixel_m`` are block-averaged to about
    that size first (objects of interest are at least 1.5 m wide, so nothing
    is lost and the work drops with the square of the factor); labels and
    statistic are brought back to the input grid.

    Parameters
    ----------
    before, after : ndarray (bands, rows, cols)
        AFTER normalised to BEFORE's radiometry, same grid.
    analysed : ndarray (rows, cols) bool
        Pixels to analyse (valid, inside the AOI, not cloud).
    bands : tuple of str
        Band roles.
    pixel_size_m : float
        Square pixel size in metres (about 1 m or finer).
    params : ObjectParams
    stats : SceneStats, optional
        Scene statistics (levels, noise, calibrations, background fill values, the lean direction); default
        measured on these arrays.

    Returns
    -------
    ObjectChanges

    Notes
    -----
    A block of a larger grid whose origin is a multiple of :func:`lattice_px`, given the scene's statistics
    and a margin of context, finds the objects the whole grid would.
    """
    factor = max(1, int(params.work_pixel_m / pixel_size_m + 1e-9))
    if factor == 1:
        return detect_at_work_resolution(before, after, analysed, bands, pixel_size_m, params, stats)
    from imagery.clouds import block_mean, upsample_mask

    small = detect_at_work_resolution(block_mean(before, factor), block_mean(after, factor),
                                      block_mean(analysed.astype(np.float32), factor) >= 0.75, bands,
                                      pixel_size_m * factor, params, stats)
    shape = analysed.shape
    labels = upsample_mask(small.labels, factor, shape)
    labels[~analysed] = 0
    statistic = upsample_mask(small.statistic, factor, shape)
    return ObjectChanges(labels, small.kinds, statistic, {**small.details, "work_pixel_m": round(pixel_size_m * factor, 3)})


def lattice_px(pixel_size_m: float, params: ObjectParams = ObjectParams()) -> int:
    """Blocks of a larger grid must start on multiples of this (pixels) to be block-averaged, and their local
    backgrounds and spectral maps taken, as on the whole grid."""
    factor = max(1, int(params.work_pixel_m / pixel_size_m + 1e-9))
    work = pixel_size_m * factor
    blocks = (median_block_px(params.background_window_m / work), median_block_px(STATIC_WINDOW_M / work),
              spectral_block_px(params.spectral_map_window_m / work))
    return factor * int(np.lcm.reduce(blocks))


def detect_at_work_resolution(before: np.ndarray, after: np.ndarray, analysed: np.ndarray, bands: tuple[str, ...],
                              pixel_size_m: float, params: ObjectParams = ObjectParams(),
                              stats: SceneStats | None = None) -> ObjectChanges:
    """:func:`detect_object_changes` on a grid of ``pixel_size_m``."""
    stats = scene_stats(stats)
    p = params
    px = float(pixel_size_m)
    nb = before.shape[0]
    if int(analysed.sum()) < 64:  # nothing (or only slivers) to analyse at this pixel size
        return ObjectChanges(np.zeros(analysed.shape, np.int32), {}, np.zeros(analysed.shape, np.float32), {"candidates": 0})
    level = stats.take("level", lambda: np.median(np.concatenate([after[:, analysed], before[:, analysed]], axis=1), axis=1))
    floor = np.maximum(0.01 * level, 1e-6).astype(np.float32)[:, None, None]  # keeps ratios finite, not a clip
    A = np.maximum(after, floor)
    B = np.maximum(before, floor)
    noise_c = stats.take("noise", lambda: np.array([max(robust_sigma((A[k] - B[k])[analysed][::7]), p.noise_floor * level[k])
                                                    for k in range(nb)]))
    labels, n, stat, residual_sigma = candidate_regions(A, B, analysed, px, noise_c, p, stats)
    empty = ObjectChanges(np.zeros(analysed.shape, np.int32), {}, stat, {"candidates": 0})
    if n == 0:
        return empty

    # per-date noise: the residual of the background-corrected difference is two dates' noise
    noise = np.maximum(residual_sigma, p.noise_floor * level * np.sqrt(2)) / np.sqrt(2)
    fit_on = analysed & (labels == 0)
    ridge = (2 * noise) ** 2
    explainer = Explainer(
        after=A, before=B,
        map_to_after=local_spectral_map(B, A, fit_on, px, p.spectral_map_window_m, ridge),
        map_to_before=local_spectral_map(A, B, fit_on, px, p.spectral_map_window_m, ridge),
        noise=noise, directions=shade_directions(bands), threshold=scipy_stats.chi2.isf(p.p_material, max(nb - 1, 1)))

    rows, cols = np.nonzero(labels)
    region_of = labels[rows, cols]
    unexplained = explainer.unexplained(rows, cols, around((0, 0)))
    unexplained, lean = lean_explained(explainer, rows, cols, region_of, n, unexplained, int(round(p.lean_m / px)),
                                       labels > 0 if p.lean_needs_hole else None, stats)
    material = np.zeros(analysed.shape, bool)
    material[rows[unexplained], cols[unexplained]] = True
    del explainer

    cores = object_cores(material, analysed, px, p)
    static = static_objects(A, B, analysed & (labels == 0), px, stats=stats.scope("static"))
    out_labels, kinds = classify_cores(cores, A, B, labels > 0, static, analysed, noise, px, p)
    out_labels, kinds, residues = drop_residues(out_labels, kinds, labels, p.min_region_share)
    details = {"candidates": int(n), "candidate_pixels": int(rows.size), "unexplained_pixels": int(unexplained.sum()),
               "residues_dropped": residues,
               "objects": len(kinds), **lean}
    return ObjectChanges(out_labels, kinds, stat, details)


def classify_cores(cores: np.ndarray, A: np.ndarray, B: np.ndarray, candidates: np.ndarray, static: np.ndarray,
                   analysed: np.ndarray, noise: np.ndarray, px: float, p: ObjectParams) -> tuple[np.ndarray, dict]:
    """Each core (8-connected) of at least ``min_object_m2`` judged by :func:`presence` in AFTER (``A``) and
    BEFORE (``B``) against a ring around it that leaves out candidate regions and ``static`` objects:
    appeared, disappeared, changed (present in both, at least ``min_changed_m2`` and compact), or dropped.
    Returns the kept cores numbered 1..n (int32, rows x cols) and ``{label: kind}``."""
    nb = A.shape[0]
    core_labels, _ = ndimage.label(cores, structure=np.ones((3, 3), bool))
    gap = max(1, int(round(p.ring_gap_m / px)))
    width = max(2, int(round(p.ring_width_m / px)))
    z_present = p.z_present**2
    z_absent = scipy_stats.chi2.isf(p.p_absent, nb)
    out_labels = np.zeros(analysed.shape, np.int32)
    kinds: dict[int, str] = {}
    for i, sl in enumerate(ndimage.find_objects(core_labels), start=1):
        if sl is None:
            continue
        pad = gap + width + 1
        r0, r1 = max(sl[0].start - pad, 0), sl[0].stop + pad
        c0, c1 = max(sl[1].start - pad, 0), sl[1].stop + pad
        region = core_labels[r0:r1, c0:c1] == i
        area = float(region.sum()) * px * px
        if area < p.min_object_m2:
            continue
        ring = ring_around(region, candidates[r0:r1, c0:c1] | static[r0:r1, c0:c1], analysed[r0:r1, c0:c1], gap, width)
        if ring.sum() < 8:
            continue
        z_after = presence(A[:, r0:r1, c0:c1], region, ring, noise)
        z_before = presence(B[:, r0:r1, c0:c1], region, ring, noise)
        ratio = p.z_contrast_ratio**2
        if z_after > z_present and (z_before < z_absent or z_before < ratio * z_after):
            kind = "appeared"
        elif z_before > z_present and (z_after < z_absent or z_after < ratio * z_before):
            kind = "disappeared"
        elif z_after > z_present and z_before > z_present and area >= p.min_changed_m2 and compact(region, px):
            kind = "changed"
        else:
            continue
        new_id = len(kinds) + 1
        out_labels[r0:r1, c0:c1][region] = new_id
        kinds[new_id] = kind
    return out_labels, kinds
