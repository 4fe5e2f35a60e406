"""Radiometric normalisation of AFTER to BEFORE, and the IR-MAD transformation.

The statistics (IR-MAD weights, regression coefficients) are fitted on a
sample of valid pixels in a first pass; applying them is a per-pixel pass, so
both fit block-wise processing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, stats

#: Pixels sampled for global statistics; enough for stable 8x8 covariances.
DEFAULT_SAMPLE = 400_000


def sample_indexes(valid: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Flat indexes of up to ``n`` valid pixels, drawn without replacement, sorted."""
    flat = np.flatnonzero(valid)
    if flat.size <= n:
        return flat
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(flat, size=n, replace=False))


@dataclass(frozen=True)
class MADFit:
    """An IR-MAD transformation fitted on no-change-weighted pixels.

    Attributes
    ----------
    a, b : ndarray (bands, bands)
        Canonical vectors (columns) for BEFORE and AFTER.
    mean_before, mean_after : ndarray (bands,)
        Weighted means the variates are centred on.
    sigma : ndarray (bands,)
        Standard deviation of each MAD variate over the no-change pixels.
    rho : ndarray (bands,)
        Canonical correlations, ascending (the first MAD variate is the most
        change-sensitive).
    iterations : int
    calibration : float
        Median of the chi-square statistic over the fitting sample divided by
        the theoretical chi-square median: > 1 means the theoretical
        distribution understates unchanged pixels' spread; divide by it.
    """

    a: np.ndarray
    b: np.ndarray
    mean_before: np.ndarray
    mean_after: np.ndarray
    sigma: np.ndarray
    rho: np.ndarray
    iterations: int
    calibration: float = 1.0

    @property
    def dof(self) -> int:
        return len(self.sigma)

    def variates(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """MAD variates, standardised: (bands, n) or (bands, rows, cols) float32."""
        shape = before.shape
        x = before.reshape(shape[0], -1)
        y = after.reshape(shape[0], -1)
        u = self.a.T.astype(np.float32) @ (x - self.mean_before[:, None].astype(np.float32))
        v = self.b.T.astype(np.float32) @ (y - self.mean_after[:, None].astype(np.float32))
        u -= v
        u /= self.sigma[:, None].astype(np.float32)
        return u.reshape(shape)

    def chi2(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Calibrated chi-square change statistic per pixel (sum of squared standardised MADs / calibration)."""
        z = self.variates(before, after)
        out = np.einsum("b...,b...->...", z, z)
        out /= self.calibration
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "iterations": self.iterations,
            "canonical_correlations": [round(float(r), 4) for r in self.rho],
            "chi2_calibration": round(float(self.calibration), 4),
        }


def weighted_moments(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted means and covariance blocks of stacked (x; y), x and y (bands, n)."""
    ws = w.sum()
    mx = (x * w).sum(axis=1) / ws
    my = (y * w).sum(axis=1) / ws
    xc = (x - mx[:, None]) * np.sqrt(w)
    yc = (y - my[:, None]) * np.sqrt(w)
    sxx = xc @ xc.T / ws
    syy = yc @ yc.T / ws
    sxy = xc @ yc.T / ws
    return mx, my, sxx, syy, sxy


def fit_irmad(before: np.ndarray, after: np.ndarray, *, max_iter: int = 30, tol: float = 1e-4) -> MADFit:
    """Fit IR-MAD on sampled pixels.

    Parameters
    ----------
    before, after : ndarray (bands, n)
        The same pixels in both dates, float (any radiometric unit).
    max_iter : int
        Reweighting iterations at most.
    tol : float
        Stop when no canonical correlation moves more than this.

    Returns
    -------
    MADFit

    References
    ----------
    A. A. Nielsen (2007), The regularized iteratively reweighted MAD method
    for change detection in multi- and hyperspectral data, IEEE TIP 16(2).
    M. J. Canty & A. A. Nielsen (2008), Automatic radiometric normalization
    of multitemporal satellite imagery with the iteratively re-weighted MAD
    transformation, RSE 112.
    """
    x = before.astype(np.float64)
    y = after.astype(np.float64)
    p, n = x.shape
    w = np.ones(n)
    rho_old = np.zeros(p)
    it = 0
    for it in range(1, max_iter + 1):
        mx, my, sxx, syy, sxy = weighted_moments(x, y, w)
        ridge = 1e-9 * np.trace(sxx) / p
        sxx = sxx + ridge * np.eye(p)
        syy = syy + 1e-9 * np.trace(syy) / p * np.eye(p)
        # Generalised eigenproblem: Sxy Syy^-1 Syx a = rho^2 Sxx a (ascending rho^2).
        c = sxy @ linalg.solve(syy, sxy.T, assume_a="pos")
        c = (c + c.T) / 2
        rho2, a = linalg.eigh(c, sxx)
        rho2 = np.clip(rho2, 0.0, 1.0)
        rho = np.sqrt(rho2)
        b = linalg.solve(syy, sxy.T @ a, assume_a="pos")
        # Unit variance, and positive correlation between paired variates.
        a /= np.sqrt(np.einsum("ij,ik,kj->j", a, sxx, a))
        b /= np.sqrt(np.einsum("ij,ik,kj->j", b, syy, b))
        sign = np.sign(np.einsum("ij,ik,kj->j", a, sxy, b))
        sign[sign == 0] = 1
        b *= sign
        sigma = np.sqrt(np.maximum(2.0 * (1.0 - rho), 1e-12))
        z = ((a.T @ (x - mx[:, None])) - (b.T @ (y - my[:, None]))) / sigma[:, None]
        chi2 = (z * z).sum(axis=0)
        w = stats.chi2.sf(chi2, p)
        if np.max(np.abs(rho - rho_old)) < tol:
            break
        rho_old = rho
    # Unchanged pixels' chi-square is inflated after reweighting: calibrate its
    # median on the pixels most likely unchanged (the lower half).
    calibration = float(np.median(chi2) / stats.chi2.median(p))
    calibration = max(calibration, 1e-6)
    return MADFit(a=a, b=b, mean_before=mx, mean_after=my, sigma=sigma, rho=rho, iterations=it, calibration=calibration)


@dataclass(frozen=True)
class BandFit:
    """after ≈ slope * before + intercept for one band, on invariant pixels."""

    slope: float
    intercept: float
    r: float
    rmse: float


@dataclass(frozen=True)
class Normalisation:
    """How AFTER was made comparable with BEFORE."""

    method: str  # "irmad-orthogonal" | "histogram"
    bands: tuple[str, ...]
    fits: tuple[BandFit, ...] = ()
    invariant_pixels: int = 0
    reason: str = ""
    quantiles: tuple = field(default=(), repr=False)

    def to_dict(self) -> dict:
        out = {"method": self.method, "invariant_pixels": self.invariant_pixels}
        if self.fits:
            out["bands"] = {
                band: {"slope": round(f.slope, 5), "intercept": round(f.intercept, 5), "r": round(f.r, 4), "rmse": round(f.rmse, 5)}
                for band, f in zip(self.bands, self.fits)
            }
        if self.reason:
            out["reason"] = self.reason
        return out


def orthogonal_regression(x: np.ndarray, y: np.ndarray) -> BandFit:
    """Total-least-squares line y = slope * x + intercept (errors in both dates).

    Both dates are noisy, so ordinary least squares would bias the slope
    towards zero; orthogonal regression does not (Canty & Nielsen 2008).
    """
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    mx, my = x.mean(), y.mean()
    sxx = np.mean((x - mx) ** 2)
    syy = np.mean((y - my) ** 2)
    sxy = np.mean((x - mx) * (y - my))
    if sxy == 0 or sxx == 0:
        slope = 1.0
    else:
        slope = (syy - sxx + np.sqrt((syy - sxx) ** 2 + 4 * sxy**2)) / (2 * sxy)
    intercept = my - slope * mx
    r = sxy / np.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0
    resid = (y - (slope * x + intercept)) / np.sqrt(1 + slope**2)
    return BandFit(float(slope), float(intercept), float(r), float(np.sqrt(np.mean(resid**2))))


def invariant_mask(chi2_calibrated: np.ndarray, dof: int, *, no_change_probability: float = 0.9) -> np.ndarray:
    """Pixels IR-MAD calls unchanged: calibrated chi-square no-change probability above the level."""
    return stats.chi2.sf(chi2_calibrated, dof) > no_change_probability


def fit_normalisation(
    before: np.ndarray,
    after: np.ndarray,
    bands: tuple[str, ...],
    *,
    mad: MADFit | None,
    min_invariant: int = 500,
    min_r: float = 0.5,
) -> Normalisation:
    """Fit per-band AFTER-on-BEFORE normalisation on sampled pixels.

    Parameters
    ----------
    before, after : ndarray (bands, n)
        Sampled valid pixels.
    bands : tuple of str
        Band roles, for the report.
    mad : MADFit or None
        IR-MAD fit; None for single-band data.
    min_invariant : int
        Fewer invariant pixels than this falls back to histogram matching.
    min_r : float
        A band whose invariant pixels correlate less than this falls back too.

    Returns
    -------
    Normalisation
        Orthogonal regression on IR-MAD invariant pixels, or histogram
        matching (quantile mapping fitted on the sample) with the reason.
    """
    reason = ""
    if mad is not None:
        chi2 = mad.chi2(before, after)
        inv = invariant_mask(chi2, mad.dof)
        n_inv = int(inv.sum())
        if n_inv >= min_invariant:
            fits = tuple(orthogonal_regression(before[k, inv], after[k, inv]) for k in range(before.shape[0]))
            if all(f.r >= min_r and f.slope > 0 for f in fits):
                return Normalisation("irmad-orthogonal", tuple(bands), fits, n_inv)
            reason = "invariant pixels correlate poorly between the dates"
        else:
            reason = f"only {n_inv} invariant pixels"
    else:
        reason = "single band: no IR-MAD"
    levels = np.linspace(0, 100, 257)
    quantiles = tuple((np.percentile(after[k], levels), np.percentile(before[k], levels)) for k in range(before.shape[0]))
    return Normalisation("histogram", tuple(bands), (), 0, reason, quantiles)


def apply_normalisation(after: np.ndarray, norm: Normalisation) -> np.ndarray:
    """AFTER expressed in BEFORE's radiometry, float32 (bands, rows, cols); input not modified."""
    out = np.empty_like(after, dtype=np.float32)
    for k in range(after.shape[0]):
        if norm.method == "histogram":
            src_q, dst_q = norm.quantiles[k]
            out[k] = np.interp(after[k], src_q, dst_q).astype(np.float32)
        else:
            f = norm.fits[k]
            np.subtract(after[k], f.intercept, out=out[k])
            out[k] /= f.slope
    return out
