"""Per-pixel change statistics: a registry of methods, each returning a score in [0, 1] and a threshold.

Every method turns the two normalised dates into a chi-square-like
statistic whose no-change distribution is calibrated on the data, then
reports ``score = P(change)`` and the threshold its stated rule picks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import cv2
import numpy as np
from scipy import ndimage
from scipy import special
from scipy import stats as scipy_stats

from imagery.background import robust_sigma
from imagery.normalize import MADFit
from imagery.raster import Raster
from imagery.scenestats import SceneStats, scene_stats
from imagery.thresholds import kittler_illingworth, otsu


@dataclass(frozen=True)
class ChangeInputs:
    """What a change method gets: the two dates as raster values on the analysis grid, and what to compare.

    Attributes
    ----------
    before : Raster
        BEFORE on the analysis grid (a UTM grid of ``pixel_size_m`` metres), bands with their roles.
    after : Raster
        AFTER co-registered and normalised to BEFORE's radiometry, on the same grid with the same bands.
    analysed : ndarray (rows, cols) bool
        Pixels to analyse (inside AOI, valid in both dates, not cloud).
    pixel_size_m : float
        The analysis pixel size, metres.
    mad : MADFit or None
        IR-MAD fitted on the raw dates (multiband only).
    sample : ndarray
        Flat indexes of the statistics sample (valid pixels).
    raw_after : Raster, optional
        AFTER co-registered but not normalised (default ``after``).
    stats : SceneStats, optional
        Scene-wide statistics and decisions (thresholds, noise, fitted models), one scope per method; default
        measured on these pixels. A block of a larger grid gets the whole grid's (see
        :mod:`imagery.scenestats`).
    """

    before: Raster
    after: Raster
    analysed: np.ndarray
    pixel_size_m: float
    mad: MADFit | None
    sample: np.ndarray
    raw_after: Raster | None = None
    stats: SceneStats | None = None

    def __post_init__(self):
        if self.after.bands != self.before.bands or self.after.grid.shape != self.before.grid.shape:
            raise ValueError("BEFORE and AFTER must have the same bands on the same grid")
        if self.raw_after is not None and (self.raw_after.bands != self.before.bands
                                           or self.raw_after.grid.shape != self.before.grid.shape):
            raise ValueError("raw AFTER must have BEFORE's bands on the same grid")
        if self.analysed.shape != tuple(self.before.grid.shape):
            raise ValueError(f"the analysed mask {self.analysed.shape} does not match the grid {self.before.grid.shape}")

    @property
    def bands(self) -> tuple[str, ...]:
        """The band roles of both dates."""
        return self.before.bands

    def scene(self, method: str) -> SceneStats:
        """The scene statistics of ``method``."""
        return scene_stats(self.stats).scope(method)


@dataclass(frozen=True)
class ChangeResult:
    """A change statistic and its threshold.

    Attributes
    ----------
    score : ndarray (rows, cols) float32
        0-1, higher = more likely changed; 0 where not analysed.
    changed : ndarray (rows, cols) bool
        Score at or above the threshold, inside ``analysed``.
    threshold : float
        On the score.
    rule : str
        How the threshold was chosen, in words.
    """

    score: np.ndarray
    changed: np.ndarray
    threshold: float
    rule: str
    details: dict = field(default_factory=dict)
    objects: tuple | None = None  # (labels int32, {label: change type}) when the method found objects itself
    area_labels: frozenset = frozenset()  # labels of ``objects`` that are changed areas, not delineated things
    building_labels: frozenset = frozenset()  # labels of ``objects`` that are buildings whatever their size (roofs)


def chi2_score(statistic: np.ndarray, dof: int) -> np.ndarray:
    """P(change) = chi-square CDF of a calibrated statistic (regularised lower gamma), float32."""
    return special.gammainc(dof / 2.0, np.maximum(statistic, 0.0).astype(np.float32) / 2.0).astype(np.float32)


def calibrate(statistic_sample: np.ndarray, dof: int) -> float:
    """Scale that makes the sample median equal the chi-square(dof) median (no-change pixels dominate)."""
    med = float(np.median(statistic_sample))
    return med / scipy_stats.chi2.median(dof) if med > 0 else 1.0


def threshold_statistic(statistic: np.ndarray, inputs: ChangeInputs, dof: int) -> tuple[float, str]:
    """Threshold on a calibrated chi-square statistic.

    Rule: Kittler–Illingworth on log(statistic) over the sample, but never
    below the chi-square(dof) quantile for a false-alarm rate of one pixel
    in 10^4 of unchanged pixels.
    """
    sample = statistic.ravel()[inputs.sample]
    ki = float(np.exp(kittler_illingworth(np.log(np.maximum(sample, 1e-6)))))
    floor = float(scipy_stats.chi2.isf(1e-4, dof))
    thr = max(ki, floor)
    return thr, f"max(Kittler-Illingworth on log chi2, chi2({dof}) false-alarm 1e-4) = {thr:.2f}"


def finish(statistic: np.ndarray, dof: int, inputs: ChangeInputs, details: dict, stats: SceneStats) -> ChangeResult:
    thr, rule = stats.take("threshold", lambda: threshold_statistic(statistic, inputs, dof))
    score = chi2_score(statistic, dof)
    score[~inputs.analysed] = 0.0
    changed = (statistic >= thr) & inputs.analysed
    return ChangeResult(score=score, changed=changed, threshold=float(scipy_stats.chi2.cdf(thr, dof)), rule=rule,
                        details={**details, "statistic_threshold": thr})


def irmad_method(inputs: ChangeInputs) -> ChangeResult:
    """IR-MAD chi-square on the raw dates, calibrated on the data (Nielsen 2007)."""
    if inputs.mad is None:
        return cva_method(inputs)
    raw_after = inputs.raw_after if inputs.raw_after is not None else inputs.after
    chi2 = inputs.mad.chi2(inputs.before.data, raw_after.data)
    return finish(chi2, inputs.mad.dof, inputs, {"statistic": "IR-MAD chi-square", **inputs.mad.to_dict()},
                  inputs.scene("irmad"))


def cva_method(inputs: ChangeInputs) -> ChangeResult:
    """Change vector analysis: squared difference per band over a robust noise sigma, summed, calibrated."""
    stats = inputs.scene("cva")
    diff = inputs.after.data - inputs.before.data
    stat = np.zeros(inputs.analysed.shape, dtype=np.float32)
    for k in range(diff.shape[0]):
        sigma = stats.take(f"sigma{k}", lambda: robust_sigma(diff[k].ravel()[inputs.sample], nonzero=True))
        stat += (diff[k] / sigma) ** 2
    dof = diff.shape[0]
    stat /= stats.take("calibration", lambda: calibrate(stat.ravel()[inputs.sample], dof))
    return finish(stat, dof, inputs, {"statistic": "change vector magnitude"}, stats)


def diff_method(inputs: ChangeInputs) -> ChangeResult:
    """Naive baseline: absolute brightness difference, Otsu threshold."""
    stats = inputs.scene("diff")
    d = np.abs(inputs.after.data.mean(axis=0) - inputs.before.data.mean(axis=0))
    scale = stats.take("scale", lambda: float(np.percentile(d.ravel()[inputs.sample], 99.9)) or 1.0)
    score = np.clip(d / scale, 0, 1).astype(np.float32)
    score[~inputs.analysed] = 0.0
    thr = stats.take("threshold", lambda: otsu(score.ravel()[inputs.sample]))
    return ChangeResult(score=score, changed=(score >= thr) & inputs.analysed, threshold=thr,
                        rule=f"Otsu on |brightness difference| = {thr:.3f}", details={"statistic": "brightness difference"})


# --- hyperbolic anomalous change (HACD) ----------------------------------------------------------

#: Prior probability that a pixel changed; the Bayes decision threshold is LLR > log((1 - PI) / PI).
CHANGE_PRIOR = 0.01
#: Point-target filter window, pixels (sensor-scale artefacts: glints, moving cars, band parallax).
POINT_FILTER_PX = 3
#: Spatial-context Gaussian sigma and evidence-pooling sigma, in pixels (ground sample distances).
CONTEXT_SIGMA_PX = 2.0
POOL_SIGMA_PX = 1.0
#: Above this pixel size (vehicle groups are no longer resolved) a pixel vegetated at both dates cannot hold a man-made change.
VEGETATION_RULE_MIN_PX_M = 5.0


_KERNEL3 = np.ones((3, 3), np.uint8)


def _morph(image: np.ndarray, op: int) -> np.ndarray:
    return cv2.morphologyEx(image, op, _KERNEL3, borderType=cv2.BORDER_REPLICATE)


def point_filter(band: np.ndarray) -> np.ndarray:
    """Alternating sequential filter (3 x 3 px): mean of open-close and close-open.

    Removes bright and dark structures narrower than 3 pixels (glints, moving
    cars at 10 m, band-parallax fringes) and keeps anything larger.
    """
    band = np.ascontiguousarray(band, dtype=np.float32)
    oc = _morph(_morph(band, cv2.MORPH_OPEN), cv2.MORPH_CLOSE)
    co = _morph(_morph(band, cv2.MORPH_CLOSE), cv2.MORPH_OPEN)
    oc += co
    oc *= 0.5
    return oc


def gaussian(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of a 2-D float32 image (edges replicated)."""
    return cv2.GaussianBlur(np.ascontiguousarray(image, dtype=np.float32), (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)


def fill_values(image: np.ndarray, valid: np.ndarray) -> list[float]:
    """Per-band median of valid pixels (on up to a million of them): the neutral value for invalid pixels."""
    if not valid.any():
        return [0.0] * image.shape[0]
    stride = max(1, int(valid.sum()) // 1_000_000)
    return [float(np.median(image[k][valid][::stride])) for k in range(image.shape[0])]


def context_features(image: np.ndarray, valid: np.ndarray, fills: list[float] | None = None) -> np.ndarray:
    """Point-filtered bands and the same bands smoothed over ``CONTEXT_SIGMA_PX``: (2 * bands, rows, cols) float32.

    Invalid pixels take the band's ``fills`` value first so filters do not spread nodata.
    """
    fills = fills if fills is not None else fill_values(image, valid)
    out = np.empty((2 * image.shape[0], *image.shape[1:]), dtype=np.float32)
    for k in range(image.shape[0]):
        band = np.where(valid, image[k], fills[k]).astype(np.float32)
        out[k] = point_filter(band)
        out[image.shape[0] + k] = gaussian(out[k], CONTEXT_SIGMA_PX)
    return out


@dataclass(frozen=True)
class JointGaussian:
    """A Gaussian model of (before, after) feature pairs fitted on the scene's own pixels."""

    mean: np.ndarray
    inv_joint: np.ndarray
    inv_before: np.ndarray
    inv_after: np.ndarray
    log_det_ratio: float

    @classmethod
    def fit(cls, before: np.ndarray, after: np.ndarray) -> "JointGaussian":
        """Fit on samples ``before``, ``after`` of shape (features, n)."""
        d = before.shape[0]
        z = np.concatenate([before, after]).astype(np.float64)
        mean = z.mean(axis=1)
        cov = np.cov(z)
        cov += 1e-6 * np.trace(cov) / (2 * d) * np.eye(2 * d)
        logdet = np.linalg.slogdet(cov)[1] - np.linalg.slogdet(cov[:d, :d])[1] - np.linalg.slogdet(cov[d:, d:])[1]
        return cls(mean, np.linalg.inv(cov), np.linalg.inv(cov[:d, :d]), np.linalg.inv(cov[d:, d:]), float(logdet))

    def llr(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """log p(x) p(y) / p(x, y) per pixel for features (features, n): evidence that AFTER is unrelated to BEFORE.

        One quadratic form with the combined matrix inv(C) - blockdiag(inv(Cb), inv(Ca)), float32 BLAS.
        """
        z = np.concatenate([before, after]).astype(np.float32)
        z -= self.mean[:, None].astype(np.float32)
        q = self.combined.astype(np.float32) @ z
        q *= z
        out = q.sum(axis=0)
        out += self.log_det_ratio
        out *= 0.5
        return out

    @property
    def combined(self) -> np.ndarray:
        d = self.inv_before.shape[0]
        m = self.inv_joint.copy()
        m[:d, :d] -= self.inv_before
        m[d:, d:] -= self.inv_after
        return m


#: Rows of halo around each block so filters near block edges see the same neighbourhood.
HALO_PX = 16


def row_blocks(rows: int, block_rows: int):
    """(start, stop, halo_start, halo_stop) for blocks of ``block_rows`` with :data:`HALO_PX` halos."""
    for start in range(0, rows, block_rows):
        stop = min(rows, start + block_rows)
        yield start, stop, max(0, start - HALO_PX), min(rows, stop + HALO_PX)


def hacd_llr(before: np.ndarray, after: np.ndarray, analysed: np.ndarray, sample: np.ndarray,
             *, block_rows: int = 512, stats: SceneStats | None = None) -> np.ndarray:
    """Pooled anomalous-change evidence (nats) per pixel, block by block.

    Parameters
    ----------
    before, after : ndarray (bands, rows, cols)
    analysed : ndarray (rows, cols) bool
    sample : ndarray
        Flat indexes of analysed pixels the model is fitted on.
    block_rows : int
        Rows per block; memory is about 2 x 2 x bands x block_rows x cols float32.
    stats : SceneStats, optional
        Scene statistics: the fill values and the fitted joint Gaussian; default fitted here.

    Returns
    -------
    ndarray (rows, cols) float32
        LLR smoothed over ``POOL_SIGMA_PX``.

    Notes
    -----
    Two passes over row blocks: the statistics pass computes the context
    features of every block (every fourth block when there are eight or
    more) and keeps those of the sampled pixels, then the joint Gaussian is
    fitted; the per-pixel pass computes each block's
    features and evaluates the LLR. Blocks carry a halo so results do not
    depend on the block size. A tile of a larger grid given the grid's
    statistics (``stats``) gets the grid's LLR.

    References
    ----------
    J. Theiler & S. Perkins (2006), Proposed framework for anomalous change
    detection, ICML workshop; J. Theiler (2008), Quantitative comparison of
    quadratic covariance-based anomalous change detectors, Applied Optics 47(28).
    """
    stats = scene_stats(stats)
    rows, cols = analysed.shape
    fills = [stats.take(f"fill_{name}", lambda: fill_values(image, analysed))
             for name, image in (("before", before), ("after", after))]

    def fit() -> JointGaussian:
        picked = sample[analysed.ravel()[sample]]
        picked = np.sort(picked)
        sample_rows = picked // cols
        picked_b, picked_a = [], []
        blocks = list(row_blocks(rows, block_rows))
        every = 4 if len(blocks) >= 8 else 1  # the statistics pass reads a quarter of the rows of large scenes
        for start, stop, h0, h1 in blocks[::every]:
            lo, hi = np.searchsorted(sample_rows, [start, stop])
            if hi == lo:
                continue
            idx = picked[lo:hi] - h0 * cols
            fb = context_features(before[:, h0:h1], analysed[h0:h1], fills[0]).reshape(-1, (h1 - h0) * cols)
            fa = context_features(after[:, h0:h1], analysed[h0:h1], fills[1]).reshape(-1, (h1 - h0) * cols)
            picked_b.append(fb[:, idx])
            picked_a.append(fa[:, idx])
        return JointGaussian.fit(np.concatenate(picked_b, axis=1), np.concatenate(picked_a, axis=1))

    model = stats.take("model", fit)
    out = np.empty((rows, cols), dtype=np.float32)
    for start, stop, h0, h1 in row_blocks(rows, block_rows):
        fb = context_features(before[:, h0:h1], analysed[h0:h1], fills[0])
        fa = context_features(after[:, h0:h1], analysed[h0:h1], fills[1])
        d = fb.shape[0]
        llr = model.llr(fb.reshape(d, -1), fa.reshape(d, -1)).reshape(h1 - h0, cols)
        out[start:stop] = llr[start - h0: stop - h0]
    return gaussian(out, POOL_SIGMA_PX)


def vegetated_both(before: np.ndarray, after: np.ndarray, bands: tuple[str, ...], analysed: np.ndarray,
                   stats: SceneStats | None = None) -> np.ndarray:
    """Pixels vegetated at both dates (NDVI above that date's Otsu threshold, a scene statistic, and above 0);
    none without NIR."""
    if not ("nir" in bands and "red" in bands):
        return np.zeros(analysed.shape, bool)
    stats = scene_stats(stats)
    nir, red = bands.index("nir"), bands.index("red")
    out = np.ones(analysed.shape, bool)
    for name, image in (("before", before), ("after", after)):
        ndvi = (image[nir] - image[red]) / np.maximum(image[nir] + image[red], 1e-6)
        out &= ndvi > stats.take(f"ndvi_{name}", lambda: max(otsu(ndvi[analysed]), 0.0))
    return out


def hacd_method(inputs: ChangeInputs) -> ChangeResult:
    """Anomalous change: a joint Gaussian of both dates' context features; Bayes rule with a 1 % change prior.

    Scene-wide changes (season, sun, haze, gain) live in the fitted joint
    covariance and do not score. At coarse pixels (> 5 m) pixels vegetated at
    both dates are never called change.
    """
    stats = inputs.scene("hacd")
    llr = hacd_llr(inputs.before.data, inputs.after.data, inputs.analysed, inputs.sample, stats=stats)
    threshold_llr = float(np.log((1 - CHANGE_PRIOR) / CHANGE_PRIOR))
    score = (0.5 * (1.0 + np.tanh(0.5 * (llr - threshold_llr)))).astype(np.float32)  # logistic, overflow-free
    excluded = ~inputs.analysed
    if inputs.pixel_size_m > VEGETATION_RULE_MIN_PX_M:
        excluded |= vegetated_both(inputs.before.data, inputs.after.data, inputs.bands, inputs.analysed, stats)
    score[excluded] = 0.0
    return ChangeResult(score=score, changed=score > 0.5, threshold=0.5,
                        rule=f"Bayes rule, change prior {CHANGE_PRIOR:g}: LLR > {threshold_llr:.2f} nats",
                        details={"statistic": "hyperbolic anomalous change (joint Gaussian LLR)", "llr_threshold": threshold_llr,
                                 "vegetation_rule": inputs.pixel_size_m > VEGETATION_RULE_MIN_PX_M})



# --- object-level change at high resolution -------------------------------------------------------------

#: Pixels up to this size resolve vehicles: the default method reasons about objects there.
OBJECT_MAX_PX_M = 1.5


def objects_method(inputs: ChangeInputs) -> ChangeResult:
    """Objects that appeared, disappeared or changed, with sun, season, lean and sensor changes explained away.

    See :mod:`imagery.objectchange`. The score is the chi-square CDF of the
    candidate statistic (noise-calibrated change after removing the local
    background change, misregistration-tolerant).
    """
    from imagery.objectchange import detect_object_changes

    found = detect_object_changes(inputs.before.data, inputs.after.data, inputs.analysed, inputs.bands, inputs.pixel_size_m,
                                  stats=inputs.scene("objects"))
    dof = inputs.before.count
    score = chi2_score(found.statistic, dof)
    score[~inputs.analysed] = 0.0
    changed = found.labels > 0
    return ChangeResult(score=score, changed=changed, threshold=float(scipy_stats.chi2.cdf(scipy_stats.chi2.isf(1e-3, dof), dof)),
                        rule="objects present in one date and absent in the other, changes not explained by "
                             "illumination, local spectral change or lean (chi-square false-alarm 1e-3 per pixel)",
                        details={"statistic": "object-level change", **found.details},
                        objects=(found.labels, found.kinds))


def regions_method(inputs: ChangeInputs, standing: np.ndarray | None = None) -> ChangeResult:
    """Changed areas (buildings with their plots, earthworks, cleared ground), see :mod:`imagery.regionchange`.

    ``standing``: buildings present at both dates (optional), an explanation of the regions lying on them.
    The score is a logistic of the evidence's robust z-score centred on the threshold.
    """
    from imagery.regionchange import RegionParams, detect_region_changes

    params = RegionParams()
    found = detect_region_changes(inputs.before.data, inputs.after.data, inputs.analysed, inputs.bands, inputs.pixel_size_m, params,
                                  stats=inputs.scene("regions"), standing=standing)
    score = (0.5 * (1.0 + np.tanh(0.5 * (found.z - params.z_threshold)))).astype(np.float32)
    score[~inputs.analysed] = 0.0
    return ChangeResult(score=score, changed=found.labels > 0, threshold=0.5,
                        rule=found.details.get("rule", ""), details={"statistic": "region-level change", **found.details},
                        objects=(found.labels, found.kinds), area_labels=frozenset(found.kinds))


def structure_changes(inputs: ChangeInputs) -> tuple[ChangeResult, np.ndarray]:
    """Buildings built or demolished, from the roofs of each date, see :mod:`imagery.structures`.

    Returns the result and the roofs standing at both dates (bool, rows x cols). Each date's roofs are
    judged on that date's own pixels (the after date before its normalisation to the before's colour
    balance, which would tint its roofs). The score is 1 on the structures found and 0 elsewhere (the
    stage decides per roof, not per pixel).
    """
    from imagery.structures import detect_structure_changes

    after = inputs.raw_after.data if inputs.raw_after is not None else inputs.after.data
    found = detect_structure_changes(inputs.before.data, after, inputs.analysed, inputs.bands,
                                     inputs.pixel_size_m, stats=inputs.scene("structures"))
    result = ChangeResult(score=(found.labels > 0).astype(np.float32), changed=found.labels > 0, threshold=0.5,
                          rule="roofs (building-sized grey segments with a cast shadow) at one date whose outline "
                               "is not an edge at the other",
                          details={"statistic": "roof outlines", **found.details},
                          objects=(found.labels, found.kinds), building_labels=frozenset(found.kinds))
    return result, found.present_both


def structures_method(inputs: ChangeInputs) -> ChangeResult:
    """Buildings built or demolished (:func:`structure_changes`)."""
    return structure_changes(inputs)[0]


def merge_results(first: ChangeResult, second: ChangeResult) -> ChangeResult:
    """The objects of ``first`` and those of ``second`` in one result.

    Where both found something ``first`` keeps its pixels and ``second``
    keeps the rest; the score is the larger of the two. Labels that are
    changed areas (``area_labels``) or buildings (``building_labels``) stay so. Details are ``first``'s with
    ``second``'s under ``"areas"``.
    """
    t_labels, t_kinds = first.objects
    a_labels, a_kinds = second.objects
    offset = int(t_labels.max()) if t_labels.size else 0
    labels = t_labels.copy()
    free = (labels == 0) & (a_labels > 0)
    labels[free] = a_labels[free] + offset
    present = set(np.unique(labels[free]).tolist())
    second_kinds = {label + offset: kind for label, kind in a_kinds.items() if label + offset in present}
    second_areas = {label + offset for label in second.area_labels if label + offset in present}
    second_buildings = {label + offset for label in second.building_labels if label + offset in present}
    return ChangeResult(score=np.maximum(first.score, second.score), changed=labels > 0, threshold=first.threshold,
                        rule=f"{first.rule}; changed areas: {second.rule}",
                        details={**first.details, "areas": second.details},
                        objects=(labels, {**t_kinds, **second_kinds}), area_labels=first.area_labels | second_areas,
                        building_labels=first.building_labels | second_buildings)


#: Above this pixel size (Sentinel-2 class) areas are found by anomalous change (HACD), not by the region stage.
REGION_MAX_PX_M = 5.0


def drop_objects_on(result: ChangeResult, roofs: np.ndarray, standing: np.ndarray) -> ChangeResult:
    """``result`` without its objects that are a re-roofed or relit building standing at both dates: half
    their pixels or more on ``standing`` (the roofs with their outline and shadow's foot), covering half of
    one of the ``roofs`` (bool masks, rows x cols) or more. Things that came onto a roof, or onto an apron
    taken for one (vehicles, tents), cover a small part of it and stay. The pixels removed, and those of
    all objects before, are in ``details["standing_building_pixels"]`` and ``details["object_pixels"]``."""
    labels, kinds = result.objects
    n = int(labels.max()) if labels.size else 0
    parts, n_parts = ndimage.label(roofs)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    on_standing = np.bincount(labels.ravel(), weights=standing.ravel().astype(np.float64), minlength=n + 1)
    part_sizes = np.bincount(parts.ravel(), minlength=n_parts + 1)
    both = (labels > 0) & (parts > 0)
    pairs, overlap = np.unique(labels[both].astype(np.int64) * (n_parts + 1) + parts[both], return_counts=True)
    covers = np.zeros(n + 1, bool)
    for pair, count in zip(pairs, overlap):
        label, part = divmod(int(pair), n_parts + 1)
        covers[label] |= bool(count >= 0.5 * part_sizes[part])
    drop = covers & (on_standing >= 0.5 * np.maximum(sizes, 1))
    kept = np.where(drop[labels], 0, labels).astype(labels.dtype)
    details = {**result.details, "standing_building_pixels": int(sizes[drop].sum()), "object_pixels": int(sizes[1:].sum())}
    return replace(result, changed=kept > 0, objects=(kept, {k: v for k, v in kinds.items() if not drop[k]}),
                   details=details)


def auto_method(inputs: ChangeInputs) -> ChangeResult:
    """By pixel size and bands:

    * up to 1.5 m with at least two bands (vehicles resolved): ``objects`` for vehicles and tents (objects on
      roofs standing at both dates dropped), plus ``structures`` for buildings built or demolished (red,
      green and blue at 1 m or finer; where an object is, the object keeps its pixels), plus
      ``regions`` for changed areas (buildings at 1.5 m, earthworks, cleared ground) that the object stage
      explains away on real pairs;
    * up to 5 m, or a single band: ``regions`` (one band cannot tell a shadow from a darker material, so the
      object stage would explain everything away);
    * coarser: ``hacd``.
    """
    from imagery.structures import applies as structures_apply
    from imagery.structures import with_surroundings

    if inputs.pixel_size_m <= OBJECT_MAX_PX_M and inputs.before.count >= 2:
        things, chosen, standing = objects_method(inputs), "objects+regions", None
        if structures_apply(inputs.bands, inputs.pixel_size_m):
            structures, roofs = structure_changes(inputs)
            standing = with_surroundings(roofs, inputs.pixel_size_m)
            objects = drop_objects_on(things, roofs, standing)
            things = replace(merge_results(objects, structures), rule=f"{things.rule}; buildings: {structures.rule}",
                             details={**objects.details, "structures": structures.details})
            chosen = "objects+structures+regions"
        result = merge_results(things, regions_method(inputs, standing))
    elif inputs.pixel_size_m <= REGION_MAX_PX_M:
        result, chosen = regions_method(inputs), "regions"
    else:
        result, chosen = hacd_method(inputs), "hacd"
    return replace(result, details={**result.details, "resolved_method": chosen})


@dataclass(frozen=True)
class Method:
    """A change method of the registry: its function and a one-line summary (CLI help, OpenAPI)."""

    function: Callable[[ChangeInputs], ChangeResult]
    summary: str

    def __call__(self, inputs: ChangeInputs) -> ChangeResult:
        return self.function(inputs)


#: The change methods by name. Adding one is one entry here plus its function; the CLI, the API's
#: ``method`` enum and the pipeline all read this table.
METHODS: dict[str, Method] = {
    "auto": Method(auto_method, "the default: objects, buildings and changed areas up to 1.5 m, changed areas up to 5 m, "
                                "HACD coarser"),
    "objects": Method(objects_method, "objects that appeared, disappeared or changed, with sun, season and lean "
                                      "explained away (high resolution)"),
    "regions": Method(regions_method, "changed areas: buildings with their plots, earthworks, cleared ground"),
    "structures": Method(structures_method, "buildings built or demolished, from the roofs of each date (RGB, high "
                                            "resolution)"),
    "hacd": Method(hacd_method, "hyperbolic anomalous change (joint Gaussian likelihood ratio)"),
    "irmad": Method(irmad_method, "IR-MAD chi-square on the raw dates, calibrated on the data"),
    "cva": Method(cva_method, "change vector analysis: squared difference over a robust noise sigma, calibrated"),
    "diff": Method(diff_method, "brightness difference, Otsu threshold (a baseline)"),
}
