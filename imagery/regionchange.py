"""Region-level change at high and medium resolution: what was built, cleared or dug, judged on real pairs.

The object stage (:mod:`imagery.objectchange`) reasons about single vehicles
and explains most pixel differences away by sun, season or lean. On real
8-bit RGB pairs (display products from two sensors, seasons and sun angles)
almost any brightness change fits one of those explanations, so that stage
alone reports nothing where a suburb was built. This stage finds changed
*areas* (new or demolished buildings with their plots, earthworks, cleared
or planted ground) from evidence that holds when a large share of the scene
changed, and removes only what a specific, measured explanation accounts for.

Steps (each a function below; sizes in metres, rules from the pair itself):

1. :func:`quiet_noise` -- per-band noise from the quietest quarter of the
   pixels' differences: an estimate that stays close when most of the scene
   changed (a whole suburb), where a median would not.
2. :func:`tolerant_chi2` -- the change of each pixel in noise units, the
   smaller over displacements within ``tolerance_m`` (residual
   misregistration, lean of trees and roofs between the two views).
3. :func:`vegetated_both` -- pixels that are vegetation at both dates (green
   leaf in RGB, NDVI with a NIR band): a change there is phenology, and its
   evidence is cut to the scene's typical level. Measured: the share of the
   strong change it removes; when it would remove nearly all of it the
   explanation is not specific to this pair and is not applied.
4. :func:`change_regions` -- the evidence averaged over ``window_m`` (the
   size of a building with its plot) and thresholded ``z_threshold`` robust
   sigmas above the scene's typical (median) log evidence: a rule relative
   to the pair, so colour balance, sensor and season set the scale, not a
   constant. The outline keeps the region's pixels whose evidence over
   ``outline_window_m`` is above the typical (``outline_z``).
5. :func:`smooth_surface_regions` -- large regions that are smooth at both
   dates (texture under half the scene's typical) are fields or water that
   changed colour: structures, vehicles and earthworks all bring texture
   (edges) in the date they are present.
6. :func:`region_kinds` -- each region is *appeared* when it stands out from
   its surroundings more after than before, *disappeared* the other way
   round, *changed* when it stands out alike in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from imagery.background import edge_padded, shifted
from imagery.scenestats import SceneStats, scene_stats

#: Share of the strong change an explanation may remove before it is judged unspecific on this pair ...
MAX_EXPLAINED_SHARE = 0.9
#: ... when that change covers more than this share of the analysed area.
LARGE_CHANGE_SHARE = 0.05


@dataclass(frozen=True)
class RegionParams:
    """Sizes (metres) and rules of the region stage."""

    tolerance_m: float = 1.0  # residual misregistration and lean between views
    window_m: float = 20.0  # evidence is averaged over a building with its plot
    z_threshold: float = 1.5  # robust sigmas of log evidence above the scene's median
    min_region_m2: float = 50.0  # smaller changes are the object stage's (vehicles)
    outline_window_m: float = 5.0  # a region's outline: its pixels whose evidence over 5 m is ...
    outline_z: float = 0.5  # ... this many robust sigmas above the scene's median
    smooth_region_m2: float = 0.0  # a region at least this large and smooth at both dates is a field or water
    smooth_texture: float = 0.5  # "smooth": texture under this share of the scene's median at both dates
    texture_scale_m: float = 2.0
    shade_ratio: float = 0.7  # a moved shadow darkens every band to at most this ratio of the lit date
    z_shadow: float = 3.0  # and stands out darker than its surroundings by this many sigmas in the shaded date
    max_shadow_m: float = 30.0  # and is no thicker than the shadow of a 17 m caster under a 60 degree sun
    kind_ratio: float = 1.5  # stands out this much more in one date: appeared / disappeared
    ring_gap_m: float = 1.0
    ring_width_m: float = 6.0
    work_pixel_m: float = 1.0  # finer pixels are block-averaged to about this size


@dataclass
class RegionChanges:
    """Result of :func:`detect_region_changes`.

    Attributes
    ----------
    labels : ndarray (rows, cols) int32
        Region id per pixel, 0 elsewhere.
    kinds : dict
        Region id -> ``appeared`` | ``disappeared`` | ``changed``.
    z : ndarray (rows, cols) float32
        Robust z-score of the averaged log evidence (0 = the scene's median).
    details : dict
        What each step found and removed (pixel counts and shares), for summary.json.
    """

    labels: np.ndarray
    kinds: dict
    z: np.ndarray
    details: dict = field(default_factory=dict)


def quiet_noise(diff: np.ndarray, analysed: np.ndarray, *, quantile: float = 0.25) -> np.ndarray:
    """Per-band noise sigma (bands,) from the ``quantile`` of |difference| over analysed pixels.

    For Gaussian no-change differences P(|d| < 0.3186 sigma) = 0.25, so the
    first quartile of |d| divided by 0.3186 is sigma when most pixels did not
    change, and it degrades gracefully when most did: with 60 % of the scene
    changed it overestimates sigma about 2.5 times, the median absolute
    difference over six times.
    A floor of 0.1 % of the band's level keeps flat synthetic scenes finite.
    """
    from scipy.stats import norm

    k = float(norm.ppf(0.5 + quantile / 2))
    sample = diff[:, analysed]
    stride = max(1, sample.shape[1] // 1_000_000)
    sample = sample[:, ::stride]
    sigma = np.quantile(np.abs(sample), quantile, axis=1) / k
    return np.maximum(sigma, 1e-3 * np.maximum(np.abs(sample).mean(axis=1), 1.0)).astype(np.float32)


def tolerant_chi2(before: np.ndarray, after: np.ndarray, noise: np.ndarray, radius_px: int) -> np.ndarray:
    """Squared change in noise units, summed over bands, the smaller over displacements within ``radius_px``.

    Both directions are tried (AFTER against displaced BEFORE and BEFORE
    against displaced AFTER) and the larger of the two minima is kept, so a
    thin object that moved by less than the radius is tolerated but one that
    appeared is not. Beyond the edges the edge pixels are repeated. Returns (rows, cols) float32.
    """
    scale = (1.0 / noise.astype(np.float32))[:, None, None]
    b = before * scale
    a = after * scale
    pb, pa = edge_padded(b, radius_px), edge_padded(a, radius_px)
    e_after = np.full(b.shape[1:], np.inf, np.float32)
    e_before = e_after.copy()
    for dr in range(-radius_px, radius_px + 1):
        for dc in range(-radius_px, radius_px + 1):
            if dr * dr + dc * dc > radius_px * radius_px + radius_px:
                continue
            np.minimum(e_after, ((a - shifted(pb, radius_px, (dr, dc))) ** 2).sum(0), out=e_after)
            np.minimum(e_before, ((shifted(pa, radius_px, (dr, dc)) - b) ** 2).sum(0), out=e_before)
    return np.maximum(e_after, e_before)


def greenness(image: np.ndarray, bands: tuple[str, ...]) -> np.ndarray | None:
    """A vegetation index per pixel: NDVI with NIR and red, excess green (2G - R - B) / (R + G + B) in RGB."""
    if "nir" in bands and "red" in bands:
        nir, red = image[bands.index("nir")], image[bands.index("red")]
        return (nir - red) / np.maximum(nir + red, 1e-6)
    if all(b in bands for b in ("red", "green", "blue")):
        r, g, b = (image[bands.index(x)] for x in ("red", "green", "blue"))
        return (2 * g - r - b) / np.maximum(r + g + b, 1e-6)
    return None


def vegetated_both(before: np.ndarray, after: np.ndarray, bands: tuple[str, ...], analysed: np.ndarray,
                   pixel_size_m: float, stats: SceneStats | None = None) -> np.ndarray:
    """Pixels vegetated at both dates: the index (smoothed over 1 m) above that date's Otsu threshold (a scene
    statistic) and above 0."""
    stats = scene_stats(stats)
    out = np.ones(analysed.shape, bool)
    for name, image in (("before", before), ("after", after)):
        index = greenness(image, bands)
        if index is None or not analysed.any():
            return np.zeros(analysed.shape, bool)
        index = cv2.GaussianBlur(index.astype(np.float32), (0, 0), max(0.5, 1.0 / pixel_size_m))
        out &= index > stats.take(f"greenness_{name}", lambda: max(threshold_otsu(index[analysed]), 0.0))
    return out & analysed


def robust_z(values: np.ndarray, analysed: np.ndarray, *, stats: SceneStats | None = None, name: str = "z") -> np.ndarray:
    """(log values - median) / (1.4826 MAD) over analysed pixels (the scene statistic ``name``), float32."""
    logs = np.log(np.maximum(values, 1e-6))

    def measure() -> tuple[float, float]:
        sample = logs[analysed][:: max(1, int(analysed.sum()) // 1_000_000)]
        med = float(np.median(sample))
        return med, max(1.4826 * float(np.median(np.abs(sample - med))), 1e-6)

    med, mad = scene_stats(stats).take(name, measure)
    return ((logs - med) / mad).astype(np.float32)


def box_mean(image: np.ndarray, valid: np.ndarray, window_px: int) -> np.ndarray:
    """Mean of ``image`` over the valid pixels of a square window of ``window_px`` (0 where none are valid).

    Evidence outside the analysed area (a cloud, nodata) never leaks into its surroundings.
    """
    weight = cv2.blur(valid.astype(np.float32), (window_px, window_px), borderType=cv2.BORDER_REFLECT)
    total = cv2.blur(np.where(valid, image, 0).astype(np.float32), (window_px, window_px), borderType=cv2.BORDER_REFLECT)
    return np.where(weight > 1e-6, total / np.maximum(weight, 1e-6), 0.0).astype(np.float32)


def change_regions(z: np.ndarray, analysed: np.ndarray, pixel_size_m: float, p: RegionParams) -> tuple[np.ndarray, int]:
    """Connected regions (8-connected) of ``z > p.z_threshold`` of at least ``p.min_region_m2``."""
    changed = (z > p.z_threshold) & analysed
    labels, n = ndimage.label(changed, structure=np.ones((3, 3), bool))
    if n == 0:
        return labels, 0
    sizes = np.bincount(labels.ravel())
    keep = sizes * pixel_size_m**2 >= p.min_region_m2
    keep[0] = False
    return relabel(labels, keep)


def relabel(labels: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 1..n keeping those where ``keep[label]``."""
    lut = np.zeros(keep.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[labels], int(keep.sum())


def local_texture(image: np.ndarray, pixel_size_m: float, scale_m: float) -> np.ndarray:
    """Local standard deviation of the band mean over a Gaussian of ``scale_m``, (rows, cols) float32."""
    lum = image.mean(axis=0).astype(np.float32)
    s = max(0.7, scale_m / pixel_size_m)
    mean = cv2.GaussianBlur(lum, (0, 0), s)
    return np.sqrt(np.maximum(cv2.GaussianBlur(lum * lum, (0, 0), s) - mean * mean, 0.0))


def smooth_surface_regions(labels: np.ndarray, n: int, before: np.ndarray, after: np.ndarray, analysed: np.ndarray,
                           pixel_size_m: float, p: RegionParams, stats: SceneStats | None = None) -> np.ndarray:
    """Bool (n + 1,): regions of at least ``p.smooth_region_m2`` whose median texture is under
    ``p.smooth_texture`` of the scene's median (a scene statistic) at both dates (a field or water that
    changed colour)."""
    stats = scene_stats(stats)
    out = np.zeros(n + 1, bool)
    if n == 0:
        return out
    index = np.arange(1, n + 1)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:] * pixel_size_m**2
    smooth = np.ones(n, bool)
    for name, image in (("before", before), ("after", after)):
        texture = local_texture(image, pixel_size_m, p.texture_scale_m)
        typical = stats.take(f"texture_{name}", lambda: float(np.median(texture[analysed])))
        smooth &= np.asarray(ndimage.median(texture, labels, index)) < p.smooth_texture * typical
    out[1:] = smooth & (area >= p.smooth_region_m2)
    return out


def moved_shadow_regions(labels: np.ndarray, n: int, before: np.ndarray, after: np.ndarray, bands: tuple[str, ...],
                         analysed: np.ndarray, contrast: "RegionContrast", pixel_size_m: float,
                         p: RegionParams, stats: SceneStats | None = None) -> np.ndarray:
    """Bool (n + 1,): regions that are a cast shadow which moved with the sun.

    Specific on four counts, so that a roof built or a wood cleared is not
    taken for one: every band darkens to at most ``p.shade_ratio`` of the lit
    date (shade is deep, not a change of shade of grey); the darkening has the
    colour of skylight (it grows with wavelength: blue least, then green, red,
    NIR); in the shaded date the region stands out darker than its
    surroundings (``p.z_shadow`` sigmas: a field where a roof was later built
    does not); it is no thicker than ``p.max_shadow_m`` (a wood cleared to
    bright soil matches the colour rules but is hectares wide); and it touches a static
    object that stands out from the ground at both dates (the caster). ``stats``: scene statistics (the dark
    floor, the static objects' backgrounds).
    """
    from imagery.objectchange import static_objects

    stats = scene_stats(stats)
    out = np.zeros(n + 1, bool)
    if n == 0:
        return out
    index = np.arange(1, n + 1)
    floor = stats.take("floor", lambda: max(float(np.percentile(before[:, analysed], 0.5)), 1e-6))
    log_ratio = np.stack([np.asarray(ndimage.median(np.log(np.maximum(after[k], floor) / np.maximum(before[k], floor)),
                                                    labels, index)) for k in range(before.shape[0])])  # (bands, n)
    deep = np.log(p.shade_ratio)
    visible = [k for k, b in enumerate(bands) if b in ("blue", "green", "red", "pan")] or list(range(len(bands)))
    darker_after = (log_ratio[visible] <= deep).all(axis=0)
    darker_before = (log_ratio[visible] >= -deep).all(axis=0)
    # skylight is bluer than sunlight: into shade, the ratio falls with wavelength (blue darkens least, then
    # green, red, NIR), 0.1 in log tolerance; vegetation cleared to soil breaks it (green darkened less than blue)
    into_shade = np.where(darker_after, log_ratio, -log_ratio)
    order = [bands.index(b) for b in ("blue", "green", "red", "nir") if b in bands]
    shade_colour = np.ones(n, bool)
    for shorter, longer in zip(order, order[1:]):
        shade_colour &= into_shade[longer] <= into_shade[shorter] + 0.1
    thickness = 2 * np.asarray(ndimage.maximum(ndimage.distance_transform_edt(labels > 0), labels, index)) * pixel_size_m
    static = static_objects(np.maximum(after, floor), np.maximum(before, floor), analysed & (labels == 0), pixel_size_m,
                            stats=stats.scope("static"))
    reach = max(1, int(round(p.ring_gap_m / pixel_size_m))) + 1
    near = ndimage.grey_dilation(labels, size=(2 * reach + 1, 2 * reach + 1))
    touches = np.bincount(near[static & (near > 0)], minlength=n + 1)[1:] > 0
    shaded_after = darker_after & contrast.dark_after[1:] & (contrast.z_after[1:] >= p.z_shadow)
    shaded_before = darker_before & contrast.dark_before[1:] & (contrast.z_before[1:] >= p.z_shadow)
    out[1:] = (shaded_after | shaded_before) & shade_colour & touches & (thickness <= p.max_shadow_m)
    return out


@dataclass(frozen=True)
class RegionContrast:
    """How much each region stands out from the ring around it in each date (arrays indexed by label, 0 unused).

    ``z_*`` are robust Mahalanobis distances (sigmas) of the region's median
    spectrum from its ring's; ``dark_*`` say the region is darker than its
    ring in that date.
    """

    z_before: np.ndarray
    z_after: np.ndarray
    dark_before: np.ndarray
    dark_after: np.ndarray


def region_contrast(labels: np.ndarray, n: int, before: np.ndarray, after: np.ndarray, analysed: np.ndarray,
                    noise: np.ndarray, pixel_size_m: float, p: RegionParams) -> RegionContrast:
    """Contrast of every region with a ring ``p.ring_gap_m`` to ``p.ring_gap_m + p.ring_width_m`` around it,
    other regions left out of the ring."""
    from imagery.objectchange import presence, ring_around

    gap = max(1, int(round(p.ring_gap_m / pixel_size_m)))
    width = max(2, int(round(p.ring_width_m / pixel_size_m)))
    z = np.zeros((2, n + 1))
    dark = np.zeros((2, n + 1), bool)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        pad = gap + width + 1
        r0, r1 = max(sl[0].start - pad, 0), sl[0].stop + pad
        c0, c1 = max(sl[1].start - pad, 0), sl[1].stop + pad
        region = labels[r0:r1, c0:c1] == i
        ring = ring_around(region, labels[r0:r1, c0:c1] > 0, analysed[r0:r1, c0:c1], gap, width)
        if ring.sum() < 8:
            continue
        for k, image in enumerate((before, after)):
            window = image[:, r0:r1, c0:c1]
            z[k, i] = np.sqrt(presence(window, region, ring, noise))
            dark[k, i] = np.median(window[:, region].mean(axis=0)) < np.median(window[:, ring].mean(axis=0))
    return RegionContrast(z_before=z[0], z_after=z[1], dark_before=dark[0], dark_after=dark[1])


def region_kinds(contrast: RegionContrast, labels_kept: np.ndarray, p: RegionParams) -> dict[int, str]:
    """Change type per kept region: *appeared* when it stands out ``p.kind_ratio`` times more after than
    before, *disappeared* the other way round, *changed* otherwise."""
    kinds: dict[int, str] = {}
    for new_id, old in enumerate(labels_kept, start=1):
        za, zb = contrast.z_after[old], contrast.z_before[old]
        kinds[new_id] = "appeared" if za > p.kind_ratio * zb else "disappeared" if zb > p.kind_ratio * za else "changed"
    return kinds


def explanation_applies(removed_px: int, region_px: int, analysed_px: int) -> bool:
    """An explanation is trusted unless it would remove nearly all of a large change.

    Removing more than :data:`MAX_EXPLAINED_SHARE` of the changed regions when
    they cover more than :data:`LARGE_CHANGE_SHARE` of the analysed area means
    the explanation is not specific on this pair (it would explain a real new
    building as well); a small change that is all nuisance may be removed whole.
    """
    return not (removed_px > MAX_EXPLAINED_SHARE * region_px and region_px > LARGE_CHANGE_SHARE * analysed_px)


def detect_region_changes(before: np.ndarray, after: np.ndarray, analysed: np.ndarray, bands: tuple[str, ...],
                          pixel_size_m: float, params: RegionParams = RegionParams(),
                          stats: SceneStats | None = None, standing: np.ndarray | None = None) -> RegionChanges:
    """Changed regions between two co-registered, normalised dates.

    Pixels finer than ``params.work_pixel_m`` are block-averaged to about
    that size first; labels and z are brought back to the input grid.

    Parameters
    ----------
    before, after : ndarray (bands, rows, cols)
        AFTER normalised to BEFORE's radiometry, same grid.
    analysed : ndarray (rows, cols) bool
    bands : tuple of str
    pixel_size_m : float
        Square pixel size, metres.
    params : RegionParams
    stats : SceneStats, optional
        Scene statistics (noise, medians and MADs of the evidence, greenness and texture thresholds, which
        explanations apply on the pair); default measured on these arrays.
    standing : ndarray (rows, cols) bool, optional
        Buildings present at both dates (roofs whose outline is an edge at both, from
        :mod:`imagery.structures`): a region lying mostly on them is a re-roofed or differently lit
        building, not a change of what stands there.

    Returns
    -------
    RegionChanges

    Notes
    -----
    A block of a larger grid whose origin is a multiple of :func:`lattice_px`, given the scene's
    statistics and a margin of context, finds the regions the whole grid would.
    """
    factor = max(1, int(params.work_pixel_m / pixel_size_m + 1e-9))
    if factor == 1:
        return _detect(before, after, analysed, bands, pixel_size_m, params, stats, standing)
    from imagery.clouds import block_mean, upsample_mask

    small = _detect(block_mean(before, factor), block_mean(after, factor),
                    block_mean(analysed.astype(np.float32), factor) >= 0.75, bands, pixel_size_m * factor, params, stats,
                    None if standing is None else block_mean(standing.astype(np.float32), factor) >= 0.5)
    labels = upsample_mask(small.labels, factor, analysed.shape)
    labels[~analysed] = 0
    return RegionChanges(labels, small.kinds, upsample_mask(small.z, factor, analysed.shape),
                         {**small.details, "work_pixel_m": round(pixel_size_m * factor, 3)})


def lattice_px(pixel_size_m: float, params: RegionParams = RegionParams()) -> int:
    """Blocks of a larger grid must start on multiples of this (pixels) to be block-averaged, and their static
    objects' backgrounds taken, as on the whole grid."""
    from imagery.background import median_block_px
    from imagery.objectchange import STATIC_WINDOW_M

    factor = max(1, int(params.work_pixel_m / pixel_size_m + 1e-9))
    return factor * median_block_px(STATIC_WINDOW_M / (pixel_size_m * factor))


def _detect(before: np.ndarray, after: np.ndarray, analysed: np.ndarray, bands: tuple[str, ...], pixel_size_m: float,
            p: RegionParams, stats: SceneStats | None = None, standing: np.ndarray | None = None) -> RegionChanges:
    stats = scene_stats(stats)
    px = float(pixel_size_m)
    empty = RegionChanges(np.zeros(analysed.shape, np.int32), {}, np.zeros(analysed.shape, np.float32), {"regions": 0})
    if int(analysed.sum()) < 64:
        return empty
    noise = stats.take("noise", lambda: quiet_noise(after - before, analysed))
    evidence = tolerant_chi2(before, after, noise, max(1, int(round(p.tolerance_m / px))))
    window = max(1, int(round(p.window_m / px)))
    z_raw = robust_z(box_mean(evidence, analysed, window), analysed, stats=stats, name="z_raw")
    strong = (z_raw > p.z_threshold) & analysed
    details: dict = {"statistic": "misregistration-tolerant change energy over the quietest-quarter noise, "
                                  f"averaged over {p.window_m:g} m",
                     "rule": f"log evidence more than {p.z_threshold:g} robust sigmas above the scene's median",
                     "strong_pixels": int(strong.sum())}

    typical = stats.take("typical", lambda: float(np.median(evidence[analysed])))
    details["explanations"] = {}

    def explain(name: str, where: np.ndarray, z_now: np.ndarray, evidence_now: np.ndarray, z_name: str):
        """Cut the evidence on ``where`` to the scene's typical and judge what that removes from the change
        (trusted unless it would remove nearly all of a large change); returns z, evidence and z's scale name."""
        gated = np.where(where, np.minimum(evidence_now, typical), evidence_now)
        z_gated = robust_z(box_mean(gated, analysed, window), analysed, stats=stats, name=z_name)
        removed = int(((z_now > p.z_threshold) & ~(z_gated > p.z_threshold) & analysed).sum())
        applied = stats.take(f"{name}.applies", lambda: explanation_applies(removed, int(strong.sum()), int(analysed.sum())))
        details["explanations"][name] = {"removed_pixels": removed,
                                         "removed_share": round(removed / max(int(strong.sum()), 1), 4), "applied": applied}
        return (z_gated, gated, z_name) if applied else (z_now, evidence_now, None)

    # phenology: vegetated at both dates, applied only when specific to part of the change
    vegetation = vegetated_both(before, after, bands, analysed, px, stats)
    z, gated, z_name = explain("vegetation_both_dates", vegetation, z_raw, evidence, "z_gated")
    outline_evidence = gated
    if standing is not None:  # re-roofed or differently lit buildings, judged like phenology on the same scale
        z, _, _ = explain("standing_building", standing, z, gated, z_name or "z_raw")
    labels, n = change_regions(z, analysed, px, p)
    if p.outline_window_m > 0:
        # outlines: the region's pixels whose own (finer) evidence is above the scene's typical
        fine = robust_z(box_mean(outline_evidence, analysed, max(1, int(round(p.outline_window_m / px)))),
                        analysed, stats=stats, name="z_outline")
        labels = np.where(fine > p.outline_z, labels, 0)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes * px**2 >= p.min_region_m2
        keep[0] = False
        labels, n = relabel(labels, keep)
    details["regions_found"] = n

    analysed_px = int(analysed.sum())
    contrast = region_contrast(labels, n, before, after, analysed, noise / np.sqrt(2), px, p)
    explained = {"smooth_surface": smooth_surface_regions(labels, n, before, after, analysed, px, p, stats),
                 "moved_shadow": moved_shadow_regions(labels, n, before, after, bands, analysed, contrast, px, p,
                                                      stats.scope("moved_shadow"))}
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    region_px = int(sizes[1:].sum())
    keep = np.arange(n + 1) > 0
    for name, regions in explained.items():
        removed_px = int(sizes[regions & keep].sum())
        applied = stats.take(f"{name}.applies", lambda: explanation_applies(removed_px, region_px, analysed_px))
        details["explanations"][name] = {"removed_pixels": removed_px, "removed_share": round(removed_px / max(region_px, 1), 4),
                                         "applied": applied}
        if applied:
            keep &= ~regions
    labels, n = relabel(labels, keep)
    kinds = region_kinds(contrast, np.nonzero(keep)[0], p)
    details["regions"] = len(kinds)
    return RegionChanges(labels.astype(np.int32), kinds, z, details)
