"""IR-MAD and radiometric normalisation recover known gains and offsets despite changed pixels."""

import numpy as np
import pytest

from imagery.normalize import apply_normalisation, fit_irmad, fit_normalisation, orthogonal_regression

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


def synthetic_pair(seed=1, n=200_000, change_fraction=0.05):
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 0.05, size=(1, n))
    mix = rng.random((1, n))
    spectra = np.array([[0.5], [0.8], [1.0], [1.6]]) * (1 - mix) + np.array([[0.4], [0.9], [0.5], [3.0]]) * mix
    before = spectra * base + rng.normal(0, 0.002, (4, n))
    gain = np.array([1.25, 0.9, 1.1, 0.8])[:, None]
    offset = np.array([0.05, 0.03, 0.02, 0.01])[:, None]
    after = gain * (spectra * base) + offset + rng.normal(0, 0.002, (4, n))
    changed = rng.random(n) < change_fraction
    after[:, changed] = rng.random((4, changed.sum())) * 0.4
    return before.astype(np.float32), after.astype(np.float32), gain.ravel(), offset.ravel(), changed


def test_known_gain_and_offset_recovered():
    before, after, gain, offset, changed = synthetic_pair()
    mad = fit_irmad(before, after)
    norm = fit_normalisation(before, after, ("blue", "green", "red", "nir"), mad=mad)
    assert norm.method == "irmad-orthogonal"
    for k, fit in enumerate(norm.fits):
        assert fit.slope == pytest.approx(gain[k], rel=0.01)
        assert fit.intercept == pytest.approx(offset[k], abs=0.003)
    restored = apply_normalisation(after[:, :, None], norm)[:, :, 0]
    assert np.abs(restored[:, ~changed] - before[:, ~changed]).mean() < 0.005


def test_irmad_separates_changed_pixels_and_is_calibrated():
    before, after, _, _, changed = synthetic_pair(seed=2)
    mad = fit_irmad(before, after)
    chi2 = mad.chi2(before, after)
    # calibrated: unchanged pixels' median near the chi-square(4) median (3.36)
    assert np.median(chi2[~changed]) == pytest.approx(3.36, rel=0.25)
    assert np.median(chi2[changed]) > 50 * np.median(chi2[~changed])


def test_orthogonal_regression_is_unbiased_with_noise_in_both():
    rng = np.random.default_rng(0)
    x_true = rng.uniform(0, 1, 100_000)
    x = x_true + rng.normal(0, 0.05, x_true.size)
    y = 2.0 * x_true + 0.3 + rng.normal(0, 0.1, x_true.size)
    fit = orthogonal_regression(x, y)
    assert fit.slope == pytest.approx(2.0, rel=0.03)


def test_single_band_falls_back_to_histogram_matching():
    rng = np.random.default_rng(3)
    before = rng.gamma(2, 0.1, (1, 50_000)).astype(np.float32)
    after = (before * 1.5 + 0.1).astype(np.float32)
    norm = fit_normalisation(before, after, ("pan",), mad=None)
    assert norm.method == "histogram" and "single band" in norm.reason
    restored = apply_normalisation(after[:, :, None], norm)[:, :, 0]
    assert np.abs(restored - before).mean() < 0.01
