"""Per-pixel change statistics: a registry of methods, each returning a score in [0, 1] and a threshold.

Every method turns the two normalised dates into a chi-square-like
statistic whose no-change distribution is calibrated on the data, then
reports ``score = P(change)`` and the threshold its stated rule picks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage, stats

from imagery.normalize import MADFit
from imagery.thresholds import kittler_illingworth, otsu


@dataclass(frozen=True)
class ChangeInputs:
    """What a change method gets.

    Attributes
    ----------
    before, after : ndarray (bands, rows, cols) float32
        BEFORE, and AFTER normalised to BEFORE's radiometry, co-registered.
    analysed : ndarray (rows, cols) bool
        Pixels to analyse (inside AOI, valid in both dates, not cloud).
    bands : tuple of str
    pixel_size_m : float
    mad : MADFit or None
        IR-MAD fitted on the raw dates (multiband only).
    sample : ndarray
        Flat indexes of the statistics sample (valid pixels).
    """

    before: np.ndarray
    after: np.ndarray
    analysed: np.ndarray
    bands: tuple[str, ...]
    pixel_size_m: float
    mad: MADFit | None
    sample: np.ndarray
    raw_after: np.ndarray | None = None


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


def robust_sigma(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (Gaussian-consistent)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    mad = float(np.median(np.abs(values - np.median(values)))) * 1.4826
    return mad if mad > 0 else float(values.std() or 1.0)


def chi2_score(statistic: np.ndarray, dof: int) -> np.ndarray:
    """P(change) = chi-square CDF of a calibrated statistic, float32."""
    return stats.chi2.cdf(statistic, dof).astype(np.float32)


def calibrate(statistic_sample: np.ndarray, dof: int) -> float:
    """Scale that makes the sample median equal the chi-square(dof) median (no-change pixels dominate)."""
    med = float(np.median(statistic_sample))
    return med / stats.chi2.median(dof) if med > 0 else 1.0


def threshold_statistic(statistic: np.ndarray, inputs: ChangeInputs, dof: int) -> tuple[float, str]:
    """Threshold on a calibrated chi-square statistic.

    Rule: Kittler–Illingworth on log(statistic) over the sample, but never
    below the chi-square(dof) quantile for a false-alarm rate of one pixel
    in 10^4 of unchanged pixels.
    """
    sample = statistic.ravel()[inputs.sample]
    ki = float(np.exp(kittler_illingworth(np.log(np.maximum(sample, 1e-6)))))
    floor = float(stats.chi2.isf(1e-4, dof))
    thr = max(ki, floor)
    return thr, f"max(Kittler-Illingworth on log chi2, chi2({dof}) false-alarm 1e-4) = {thr:.2f}"


def finish(statistic: np.ndarray, dof: int, inputs: ChangeInputs, details: dict) -> ChangeResult:
    thr, rule = threshold_statistic(statistic, inputs, dof)
    score = chi2_score(statistic, dof)
    score[~inputs.analysed] = 0.0
    changed = (statistic >= thr) & inputs.analysed
    return ChangeResult(score=score, changed=changed, threshold=float(stats.chi2.cdf(thr, dof)), rule=rule,
                        details={**details, "statistic_threshold": thr})


def irmad_method(inputs: ChangeInputs) -> ChangeResult:
    """IR-MAD chi-square on the raw dates, calibrated on the data (Nielsen 2007)."""
    if inputs.mad is None:
        return cva_method(inputs)
    raw_after = inputs.raw_after if inputs.raw_after is not None else inputs.after
    chi2 = inputs.mad.chi2(inputs.before, raw_after)
    return finish(chi2, inputs.mad.dof, inputs, {"statistic": "IR-MAD chi-square", **inputs.mad.to_dict()})


def cva_method(inputs: ChangeInputs) -> ChangeResult:
    """Change vector analysis: squared difference per band over a robust noise sigma, summed, calibrated."""
    diff = inputs.after - inputs.before
    stat = np.zeros(inputs.analysed.shape, dtype=np.float32)
    for k in range(diff.shape[0]):
        sigma = robust_sigma(diff[k].ravel()[inputs.sample])
        stat += (diff[k] / sigma) ** 2
    dof = diff.shape[0]
    stat /= calibrate(stat.ravel()[inputs.sample], dof)
    return finish(stat, dof, inputs, {"statistic": "change vector magnitude"})


def diff_method(inputs: ChangeInputs) -> ChangeResult:
    """Naive baseline: absolute brightness difference, Otsu threshold."""
    d = np.abs(inputs.after.mean(axis=0) - inputs.before.mean(axis=0))
    sample = d.ravel()[inputs.sample]
    scale = float(np.percentile(sample, 99.9)) or 1.0
    score = np.clip(d / scale, 0, 1).astype(np.float32)
    score[~inputs.analysed] = 0.0
    thr = otsu(score.ravel()[inputs.sample])
    return ChangeResult(score=score, changed=(score >= thr) & inputs.analysed, threshold=thr,
                        rule=f"Otsu on |brightness difference| = {thr:.3f}", details={"statistic": "brightness difference"})


METHODS: dict[str, Callable[[ChangeInputs], ChangeResult]] = {
    "irmad": irmad_method,
    "cva": cva_method,
    "diff": diff_method,
}
