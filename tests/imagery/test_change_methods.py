"""Each change method of the table on its own, on hand-made arrays with known change (issue 8: direct tests).

A 4-band scene at 2 m (so ``auto`` would pick HACD-class rules), textured ground, Gaussian sensor noise in
both dates, a strip left unanalysed (nodata), and two changes: a 20 x 20 px block whose spectrum changed
strongly (a new roof) and a scene-wide gain already normalised away. Every method must find the block, keep
its false alarms outside it small, and score only analysed pixels.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from imagery.change import METHODS, ChangeInputs
from imagery.grid import Grid
from imagery.normalize import fit_irmad, sample_indexes
from imagery.raster import Raster
from imagery.thresholds import kittler_illingworth, otsu

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

BANDS = ("blue", "green", "red", "nir")
SIZE = 160
BLOCK = (slice(60, 80), slice(90, 110))
NOISE = 0.004  # reflectance units


#: Pixel size each method is used at (metres): HACD is the default above 5 m (Sentinel-2 class).
PIXEL_M = {"cva": 2.0, "diff": 2.0, "irmad": 2.0, "hacd": 10.0}
#: Share of the block each method must find. HACD finds only part of a uniform new surface on textured ground
#: (0.38-0.43 here, seeds 0 and 1): its hyperbolic rule discounts an AFTER pixel that is anomalous on its own
#: (README, Known limits); the bar records today's behaviour so that a regression below it fails.
MIN_RECALL = {"cva": 0.9, "diff": 0.9, "irmad": 0.9, "hacd": 0.35}


def scene(seed: int = 0, pixel_size_m: float = 2.0) -> tuple[ChangeInputs, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.array([0.06, 0.09, 0.11, 0.28], np.float32)[:, None, None]
    texture = rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32)
    texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3  # a little spatial correlation
    before = base * (1 + 0.15 * texture)[None] + rng.normal(0, NOISE, (4, SIZE, SIZE)).astype(np.float32)
    after = base * (1 + 0.15 * texture)[None] + rng.normal(0, NOISE, (4, SIZE, SIZE)).astype(np.float32)
    after[:, BLOCK[0], BLOCK[1]] = np.array([0.20, 0.21, 0.22, 0.24], np.float32)[:, None, None]  # bright roof
    analysed = np.ones((SIZE, SIZE), bool)
    analysed[:, :12] = False  # a nodata strip
    truth = np.zeros((SIZE, SIZE), bool)
    truth[BLOCK] = True
    sample = sample_indexes(analysed, 20_000)
    mad = fit_irmad(before.reshape(4, -1)[:, sample], after.reshape(4, -1)[:, sample])
    grid = Grid(CRS.from_epsg(32635), Affine(pixel_size_m, 0, 400000, 0, -pixel_size_m, 5370000), (SIZE, SIZE))
    before_raster = Raster(before, analysed, grid, BANDS)
    inputs = ChangeInputs(before=before_raster, after=before_raster.with_data(after), analysed=analysed,
                          pixel_size_m=pixel_size_m, mad=mad, sample=sample, raw_after=before_raster.with_data(after))
    return inputs, truth


@pytest.mark.parametrize("method", ["cva", "diff", "irmad", "hacd"])
@pytest.mark.parametrize("seed", [0, 1])
def test_method_finds_the_changed_block_and_little_else(method, seed):
    inputs, truth = scene(seed, PIXEL_M[method])
    result = METHODS[method](inputs)
    assert result.score.shape == truth.shape and result.score.dtype == np.float32
    assert 0.0 <= float(result.score.min()) and float(result.score.max()) <= 1.0
    assert not result.score[~inputs.analysed].any() and not result.changed[~inputs.analysed].any()
    recall = result.changed[truth].mean()
    false_alarm = result.changed[inputs.analysed & ~truth].mean()
    assert recall > MIN_RECALL[method], (method, recall)
    assert false_alarm < 0.02, (method, false_alarm)
    assert result.rule and isinstance(result.threshold, float)
    # the score ranks change above no change
    assert np.median(result.score[truth]) > np.percentile(result.score[inputs.analysed & ~truth], 99)


@pytest.mark.parametrize("method", ["cva", "irmad", "hacd"])
def test_method_reports_little_on_a_pair_without_change(method):
    """Noise alone is not change. (``diff``, the naive baseline, is left out: Otsu always splits its histogram in
    two, so it calls about a third of a changeless pair changed; that is why it is only a baseline.)"""
    inputs, _ = scene(2, PIXEL_M[method])
    noise = np.random.default_rng(9).normal(0, NOISE, inputs.before.data.shape).astype(np.float32)
    after = inputs.before.with_data(inputs.before.data + noise)
    quiet = replace(inputs, after=after, raw_after=after)
    share = METHODS[method](quiet).changed[inputs.analysed].mean()
    assert share < 0.01, (method, share)


def test_irmad_without_a_fit_falls_back_to_cva():
    inputs, _ = scene(0)
    no_fit = replace(inputs, mad=None, raw_after=None)
    assert np.array_equal(METHODS["irmad"](no_fit).changed, METHODS["cva"](no_fit).changed)


def test_the_dates_must_share_bands_and_grid():
    inputs, _ = scene(0)
    three = inputs.before.select(("blue", "green", "red"))
    with pytest.raises(ValueError, match="same bands"):
        replace(inputs, after=three)
    grid = inputs.before.grid
    smaller = Grid(grid.crs, grid.transform, (SIZE - 1, SIZE))
    cropped = Raster(inputs.before.data[:, :-1], inputs.analysed[:-1], smaller, BANDS)
    with pytest.raises(ValueError, match="same grid"):
        replace(inputs, after=cropped)
    with pytest.raises(ValueError, match="same grid"):
        replace(inputs, raw_after=cropped)
    with pytest.raises(ValueError, match="analysed mask"):
        replace(inputs, analysed=inputs.analysed[:-1])
    assert inputs.bands == BANDS  # the roles travel with the pixels


@pytest.mark.parametrize("rule", [otsu, kittler_illingworth])
def test_thresholds_split_two_classes(rule):
    rng = np.random.default_rng(0)
    big, small = rng.normal(0.0, 1.0, 20_000), rng.normal(8.0, 1.0, 1_000)
    t = rule(np.concatenate([big, small]))
    assert 2.0 < t < 6.5, t
    assert (big > t).mean() < 0.02 and (small > t).mean() > 0.95


@pytest.mark.parametrize("rule", [otsu, kittler_illingworth])
def test_thresholds_of_constant_or_empty_samples(rule):
    assert rule(np.full(10, 3.0)) == 3.0
    assert rule(np.array([])) == 0.0


def test_kittler_illingworth_suits_a_small_class_better_than_otsu():
    rng = np.random.default_rng(1)
    big, small = rng.normal(0.0, 1.0, 50_000), rng.normal(5.0, 0.5, 300)  # change is 0.6 % of the pixels
    values = np.concatenate([big, small])
    errors = {rule.__name__: (big > rule(values)).sum() + (small <= rule(values)).sum() for rule in (otsu, kittler_illingworth)}
    assert errors["kittler_illingworth"] <= errors["otsu"], errors
