"""Threshold rules: each takes sample values and returns a threshold; the caller applies it.

A registry (:data:`THRESHOLDS`) so a method names its rule instead of
carrying a constant.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from skimage.filters import threshold_otsu


def otsu(values: np.ndarray, *, bins: int = 256) -> float:
    """Otsu's threshold (maximum between-class variance).

    References
    ----------
    N. Otsu (1979), A threshold selection method from gray-level histograms,
    IEEE SMC 9(1).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or values.min() == values.max():
        return float(values.max()) if values.size else 0.0
    return float(threshold_otsu(values, nbins=bins))


def kittler_illingworth(values: np.ndarray, *, bins: int = 256) -> float:
    """Kittler–Illingworth minimum-error threshold between two Gaussian classes.

    Better than Otsu when one class (change) is much smaller than the other.

    References
    ----------
    J. Kittler & J. Illingworth (1986), Minimum error thresholding,
    Pattern Recognition 19(1).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or values.min() == values.max():
        return float(values.max()) if values.size else 0.0
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    p = hist / hist.sum()
    c1 = np.cumsum(p)
    m1 = np.cumsum(p * centres)
    s1 = np.cumsum(p * centres**2)
    c2 = 1 - c1
    m2 = m1[-1] - m1
    s2 = s1[-1] - s1
    with np.errstate(divide="ignore", invalid="ignore"):
        mu1, mu2 = m1 / c1, m2 / c2
        var1 = s1 / c1 - mu1**2
        var2 = s2 / c2 - mu2**2
        cost = 1 + 2 * (c1 * np.log(np.sqrt(var1)) + c2 * np.log(np.sqrt(var2))) - 2 * (c1 * np.log(c1) + c2 * np.log(c2))
    ok = (c1 > 1e-6) & (c2 > 1e-6) & (var1 > 0) & (var2 > 0) & np.isfinite(cost)
    if not ok.any():
        return otsu(values, bins=bins)
    return float(edges[1:][ok][np.argmin(cost[ok])])


THRESHOLDS: dict[str, Callable[..., float]] = {
    "otsu": otsu,
    "kittler-illingworth": kittler_illingworth,
}
