"""Explanations of a high-resolution change that is not a changed object: light and shade, local spectral
change (season, haze), and lean.

A candidate pixel of :mod:`imagery.objectchange` is *explained* when one date is predicted from the other
(as it is, or through a local spectral map that absorbs season and haze) up to an illumination change along a
plausible shadow line; the pixels left in a region may still be explained by one displacement shared by the
whole region along the scene's lean direction. Arrays are (bands, rows, cols) on the analysis grid (UTM,
``pixel_size_m`` metres); sizes in metres, thresholds from chi-square false-alarm rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from imagery.scenestats import SceneStats, scene_stats

#: Approximate centre wavelength (nm) per band role, for the spectra of the shade lines.
WAVELENGTH_NM = {"blue": 490, "green": 560, "red": 665, "nir": 842, "pan": 600}


# --- illumination and spectral explanations (step 2 of imagery.objectchange) -----------------------------


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


# --- lean (step 3) ---------------------------------------------------------------------------------------


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
