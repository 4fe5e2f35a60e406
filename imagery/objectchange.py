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
2. :class:`Explainer` -- a candidate pixel is explained when one date is
   predicted from the other (as it is, or through a local spectral map that
   absorbs season and haze) up to an illumination change along a plausible
   shadow line (:func:`shade_directions`: shade is darker by any depth and
   no redder than sunlight -- from grey to skylight-blue).
3. :func:`lean_explained` -- the pixels left in a region may be explained by
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

import cv2
import numpy as np
from scipy import ndimage
from scipy import stats as scipy_stats
from skimage import morphology

from imagery.background import disk, edge_padded, local_median, median_block_px, robust_sigma, shifted
from imagery.scenestats import SceneStats, scene_stats

#: Approximate centre wavelength (nm) per band role, for the spectra of the shade lines.
WAVELENGTH_NM = {"blue": 490, "green": 560, "red": 665, "nir": 842, "pan": 600}


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


# --- 2. illumination and spectral explanations ----------------------------------------------------------


#: Exponents alpha of the shade spectra tried, k(lambda) ~ lambda ** -alpha: 0 is a grey shadow (all bands
#: scaled alike), larger values are skylight, ever bluer than direct sun.
SHADE_EXPONENTS = (0.0, 1.0, 2.0, 4.0)


def shade_directions(bands: tuple[str, ...], *, depth: float = 0.7) -> np.ndarray:
    """Directions 1 - k of the plausible shadow lines, one per :data:`SHADE_EXPONENTS` value.

    ``k`` is the shade/sun ratio spectrum ``(1 - depth) * (lambda / 490 nm) ** -alpha``
    scaled to at most 0.95; only its spectral shape matters because the depth
    along the line is fitted per pixel. Bands without a known wavelength use
    600 nm.
    """
    wl = np.array([WAVELENGTH_NM.get(b, 600) for b in bands], dtype=float)
    out = []
    for alpha in SHADE_EXPONENTS:
        k = (1 - depth) * (wl / 490.0) ** -alpha
        k = np.minimum(k / max(k.max() / 0.95, 1.0), 0.95)
        out.append(1.0 - k)
    return np.array(out, dtype=np.float32)


def illumination_chi2(y: np.ndarray, x: np.ndarray, noise: np.ndarray, directions: np.ndarray,
                      tau_range: tuple[float, float] = (-0.5, 1.4)) -> np.ndarray:
    """Smallest chi-square distance of the ratio y / x (or x / y) from a plausible shadow line.

    Parameters
    ----------
    y, x : ndarray (bands, n) float32
        The tested pixels and their reference.
    noise : ndarray (bands,)
    directions : ndarray (lines, bands)
        Directions ``1 - k`` of the shadow lines (:func:`shade_directions`).

    Returns
    -------
    ndarray (n,) float32
        Over both orders (into and out of shade) and every line, the smallest
        chi-square of ``1 - ratio`` from ``tau * direction``, ``tau`` (how
        deep into shade; negative for facets turning to the sun) fitted per
        pixel and clipped to ``tau_range``, and on each line to where its
        deepest band reaches 3 % of the sunlit level (deep shadows under a
        low sun in clear air); a line is 0.7 deep at ``tau`` = 1.
    """
    inv_var = (1.0 / noise.astype(np.float32) ** 2)[:, None]
    u = np.asarray(directions, dtype=np.float32)  # (lines, bands)
    u2 = u * u
    lo, hi = tau_range
    hi_per_line = np.minimum(hi, 0.97 / np.maximum(u.max(axis=1), 1e-6))[:, None]  # no band below 3 % of sunlit
    best = None
    for num, den in ((y, x), (x, y)):
        r = num / den
        dev = 1.0 - r
        w = den * den * inv_var / (1.0 + r * r)
        wd = w * dev
        s_dd = (wd * dev).sum(0)  # chi2 = s_dd - 2 tau s_du + tau^2 s_uu
        s_du = u @ wd  # (lines, n)
        s_uu = u2 @ w
        tau = np.clip(s_du / s_uu, lo, hi_per_line)
        chi = (s_dd - tau * (2.0 * s_du - tau * s_uu)).min(0)
        best = chi if best is None else np.minimum(best, chi)
    return np.maximum(best, 0.0)


@dataclass(frozen=True)
class SpectralMap:
    """A local affine spectral map, smooth over a window: target ~ source @ a + b, coefficients per block."""

    a: np.ndarray  # (block rows, block cols, bands in, bands out)
    b: np.ndarray  # (block rows, block cols, bands out)
    block: int

    def predict(self, source: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Predicted target (bands, n) for source values (bands, n) at pixels (rows, cols)."""
        br = np.minimum(rows // self.block, self.a.shape[0] - 1)
        bc = np.minimum(cols // self.block, self.a.shape[1] - 1)
        return (np.einsum("nio,in->on", self.a[br, bc], source) + self.b[br, bc].T).astype(np.float32)


def spectral_block_px(window_px: float) -> int:
    """Side (pixels) of the blocks :func:`local_spectral_map` fits on (an eighth of the window); blocks start at
    row and column 0."""
    return max(1, int(window_px // 8))


def local_spectral_map(source: np.ndarray, target: np.ndarray, valid: np.ndarray, pixel_size_m: float,
                       window_m: float, ridge: np.ndarray) -> SpectralMap:
    """Fit ``target`` from ``source`` by an affine spectral map in ``window_m`` windows.

    A guided-filter style least-squares fit on block means (blocks of an
    eighth of the window) box-smoothed over the window: "what the material at
    each place became around here" (season, haze, differential gain).
    ``ridge`` (bands,) regularises the fit with the noise variance.
    """
    nb, rows, cols = source.shape
    window_px = window_m / pixel_size_m
    block = spectral_block_px(window_px)
    nr, nc = -(-rows // block), -(-cols // block)
    v = valid.astype(np.float32)

    def block_mean(x):
        pad = np.zeros((nr * block, nc * block), np.float32)
        pad[:rows, :cols] = x
        return cv2.resize(pad, (nc, nr), interpolation=cv2.INTER_AREA).astype(np.float64)  # exact block means

    size = max(3, int(round(window_px / block)) | 1)

    def box(a):
        return ndimage.uniform_filter(a, size=(size, size) + (1,) * (a.ndim - 2), mode="nearest")

    w = np.maximum(box(block_mean(v)), 1e-6)
    sv = [source[i] * v for i in range(nb)]
    mx = np.stack([box(block_mean(sv[i])) / w for i in range(nb)], axis=-1)  # (nr, nc, nb)
    my = np.stack([box(block_mean(target[j] * v)) / w for j in range(nb)], axis=-1)
    cxx = np.empty((nr, nc, nb, nb))
    cxy = np.empty((nr, nc, nb, nb))
    for i in range(nb):
        for j in range(nb):
            cxx[..., i, j] = box(block_mean(sv[i] * source[j])) / w - mx[..., i] * mx[..., j]
            cxy[..., i, j] = box(block_mean(sv[i] * target[j])) / w - mx[..., i] * my[..., j]
    del sv
    cxx += np.diag(ridge)
    a = np.linalg.solve(cxx, cxy)  # (nr, nc, in, out)
    b = my - np.einsum("rci,rcio->rco", mx, a)
    return SpectralMap(a=box(a).astype(np.float32), b=box(b).astype(np.float32), block=block)


@dataclass
class Explainer:
    """Both dates, their local spectral maps and the noise model, for explaining candidate pixels."""

    after: np.ndarray
    before: np.ndarray
    map_to_after: SpectralMap
    map_to_before: SpectralMap
    noise: np.ndarray
    directions: np.ndarray
    threshold: float

    def explained_after(self, rows: np.ndarray, cols: np.ndarray, d: tuple[int, int]) -> np.ndarray:
        """AFTER at p explained by BEFORE at p + d (as it is, or through the local map), up to illumination."""
        return self._explained(self.after, self.before, self.map_to_after, rows, cols, d)

    def explained_before(self, rows: np.ndarray, cols: np.ndarray, d: tuple[int, int]) -> np.ndarray:
        """BEFORE at p explained by AFTER at p - d (as it is, or through the local map), up to illumination."""
        return self._explained(self.before, self.after, self.map_to_before, rows, cols, (-d[0], -d[1]))

    def _explained(self, tested: np.ndarray, reference: np.ndarray, mapping: SpectralMap, rows: np.ndarray,
                   cols: np.ndarray, d: tuple[int, int]) -> np.ndarray:
        """``tested`` at p explained by ``reference`` at p + d, raw or through ``mapping`` (reference -> tested).

        :func:`illumination_chi2` tries both orders of the ratio, so which date is tested does not change it.
        """
        h, w = tested.shape[1:]
        rr = np.clip(rows + d[0], 0, h - 1)
        cc = np.clip(cols + d[1], 0, w - 1)
        value = tested[:, rows, cols]
        ref = reference[:, rr, cc]
        ok = illumination_chi2(value, ref, self.noise, self.directions) <= self.threshold
        rest = np.nonzero(~ok)[0]
        if rest.size:
            mapped = np.maximum(mapping.predict(ref[:, rest], rr[rest], cc[rest]), 1e-6)
            ok[rest] = illumination_chi2(value[:, rest], mapped, self.noise, self.directions) <= self.threshold
        return ok

    def explained(self, rows: np.ndarray, cols: np.ndarray, shifts) -> tuple[np.ndarray, np.ndarray]:
        """(AFTER explained, BEFORE explained) at any of ``shifts``; pixels already explained are not retested."""
        ok_a = np.zeros(rows.shape, bool)
        ok_b = np.zeros(rows.shape, bool)
        for d in shifts:
            todo = np.nonzero(~ok_a)[0]
            if todo.size:
                ok_a[todo] = self.explained_after(rows[todo], cols[todo], d)
            todo = np.nonzero(~ok_b)[0]
            if todo.size:
                ok_b[todo] = self.explained_before(rows[todo], cols[todo], d)
        return ok_a, ok_b

    def unexplained(self, rows: np.ndarray, cols: np.ndarray, shifts) -> np.ndarray:
        """Pixels that no reference explains at any of ``shifts``, in one direction or the other."""
        ok_a, ok_b = self.explained(rows, cols, shifts)
        return ~(ok_a & ok_b)


def around(d: tuple[int, int]) -> list[tuple[int, int]]:
    """The 3 x 3 displacements centred on ``d`` (misregistration tolerance)."""
    return [(d[0] + u, d[1] + v) for u in (-1, 0, 1) for v in (-1, 0, 1)]


# --- 3. lean ----------------------------------------------------------------------------------------------


def lean_explained(explainer: Explainer, rows: np.ndarray, cols: np.ndarray, labels_of_pixels: np.ndarray, n: int,
                   unexplained: np.ndarray, radius_px: int, candidates: np.ndarray | None = None,
                   stats: SceneStats | None = None) -> tuple[np.ndarray, dict]:
    """Re-test the unexplained pixels of each region under one displacement per region (lean).

    Tall objects lean by height x tan(off-nadir) away from the sensor, all in
    the same direction, so between two views a tree or a building is
    displaced along one line, the scene's (:func:`lean_angle`, a scene
    statistic of ``stats``); every region is tried at
    each displacement along that line (+- 1 pixel) and keeps the one that
    explains most of it. A displacement farther than the region is deep along
    it is refused (a leaning object leaves a crescent about as deep as its
    lean; farther matches are another object, e.g. a parked neighbour), and,
    when ``candidates`` is given, so is one whose old place did not change.

    Returns
    -------
    (ndarray, dict)
        Updated unexplained flags (one per candidate pixel) and what was found.
    """
    sel = np.nonzero(unexplained)[0]
    info: dict = {}
    if sel.size == 0 or radius_px < 1:
        return unexplained, info
    r2, c2, l2 = rows[sel], cols[sel], labels_of_pixels[sel]
    counts = np.bincount(l2, minlength=n + 1)
    angle = scene_stats(stats).take("lean_angle", lambda: lean_angle(explainer, r2, c2, l2, counts, radius_px))
    if angle is None:
        return unexplained, info
    info["lean_angle_deg"] = round(float(np.degrees(angle)), 1)
    step = np.array([np.sin(angle), np.cos(angle)])
    perp = (int(round(np.cos(angle))), -int(round(np.sin(angle))))
    ts = [t for t in range(-radius_px, radius_px + 1) if t]
    line = [(int(round(t * step[0])), int(round(t * step[1]))) for t in ts]
    # explained at each line position (with the perpendicular +-1 pixel), then +-1 position along the line
    per_a, per_b = [], []
    for d in line:
        ok_a, ok_b = explainer.explained(r2, c2, [(d[0] + k * perp[0], d[1] + k * perp[1]) for k in (-1, 0, 1)])
        per_a.append(ok_a)
        per_b.append(ok_b)
    best = counts.astype(float)
    best_flags: dict[int, tuple[tuple[int, int], np.ndarray]] = {}
    for j, d in enumerate(line):
        lo, hi = max(0, j - 1), min(len(line), j + 2)
        flags = ~(np.any(per_a[lo:hi], axis=0) & np.any(per_b[lo:hi], axis=0))
        left = np.bincount(l2[flags], minlength=n + 1)
        better = left < best
        best[better] = left[better]
        for i in np.nonzero(better)[0]:
            best_flags[int(i)] = (d, flags[l2 == i])
    del per_a, per_b
    h, w = explainer.after.shape[1:]
    order = np.argsort(labels_of_pixels, kind="stable")
    bounds = np.searchsorted(labels_of_pixels[order], np.arange(n + 2))
    result = unexplained.copy()
    moved = 0
    for i, (d, flags) in best_flags.items():
        whole = order[bounds[i]:bounds[i + 1]]
        norm = float(np.hypot(*d))
        depth = float(np.ptp(rows[whole] * d[0] / norm + cols[whole] * d[1] / norm)) + 1.0
        if norm > depth:
            continue
        pix = sel[l2 == i]
        if candidates is not None:
            rr = np.clip(rows[pix] + d[0], 0, h - 1)
            cc = np.clip(cols[pix] + d[1], 0, w - 1)
            if candidates[rr, cc].mean() < 0.5:
                continue
        result[pix] = flags
        moved += 1
    info["regions_moved"] = moved
    return result, info


def lean_angle(explainer: Explainer, r2: np.ndarray, c2: np.ndarray, l2: np.ndarray, counts: np.ndarray,
               radius_px: int) -> float | None:
    """The lean direction (radians in [0, pi): a line) of the 40 regions with most unexplained pixels.

    ``r2, c2, l2``: the unexplained candidate pixels and their regions; ``counts``: unexplained pixels per
    region. Each region's best displacement on a 3-pixel lattice within ``radius_px`` (each with a 3 x 3
    tolerance) votes; None when no displacement explains any of them better.
    """
    n = counts.size - 1
    top = np.argsort(counts)[::-1][:40]
    top = top[counts[top] > 0]
    probe = np.isin(l2, top)
    lattice = [(dy, dx) for dy in range(-radius_px, radius_px + 1, 3) for dx in range(-radius_px, radius_px + 1, 3)
               if 0 < dy * dy + dx * dx <= (radius_px + 1) ** 2]
    best_shift: dict[int, tuple[int, int]] = {}
    if probe.any():
        pr, pc, pl = r2[probe], c2[probe], l2[probe]
        best = counts.astype(float)
        for d in lattice:
            left = np.bincount(pl[explainer.unexplained(pr, pc, around(d))], minlength=n + 1)
            better = left < best
            best[better] = left[better]
            for i in np.nonzero(better)[0]:
                best_shift[int(i)] = d
    vectors = np.array(list(best_shift.values()), dtype=float)
    if not len(vectors):
        return None
    angles = np.arctan2(vectors[:, 0], vectors[:, 1]) % np.pi  # a line: d and -d alike
    grid = np.linspace(0, np.pi, 36, endpoint=False)
    return float(grid[np.argmax(np.exp(4 * np.cos(2 * (grid[:, None] - angles[None, :]))).sum(1))])


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
    core_labels, n_cores = ndimage.label(cores, structure=np.ones((3, 3), bool))
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
        ring = ring_around(region, (labels[r0:r1, c0:c1] > 0) | static[r0:r1, c0:c1], analysed[r0:r1, c0:c1], gap, width)
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
    out_labels, kinds, residues = drop_residues(out_labels, kinds, labels, p.min_region_share)
    details = {"candidates": int(n), "candidate_pixels": int(rows.size), "unexplained_pixels": int(unexplained.sum()),
               "residues_dropped": residues,
               "objects": len(kinds), **lean}
    return ObjectChanges(out_labels, kinds, stat, details)
