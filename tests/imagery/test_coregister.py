"""Co-registration recovers known sub-pixel shifts and ignores disagreeing blocks."""

import numpy as np
import pytest
from scipy import ndimage

from imagery.coregister import estimate_shift, structure_band
from tests.conftest import textured

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


@pytest.mark.parametrize("shift", [(2.7, -1.6), (-4.35, 3.2), (0.4, 0.25), (1.0, -5.0)])
def test_known_shift_recovered_to_a_tenth_of_a_pixel(shift):
    img = textured((512, 512), seed=3)
    moved = ndimage.shift(img, shift, order=3, mode="nearest")
    valid = np.ones(img.shape, bool)
    est = estimate_shift(structure_band(img, valid), structure_band(moved, valid), valid)
    assert est.rows == pytest.approx(shift[0], abs=0.1)
    assert est.cols == pytest.approx(shift[1], abs=0.1)
    assert est.quality > 0.8


def test_shift_survives_gain_offset_and_noise():
    rng = np.random.default_rng(0)
    img = textured((512, 512), seed=5)
    moved = ndimage.shift(img, (-2.3, 1.45), order=3, mode="nearest") * 1.7 + 0.2 + rng.normal(0, 0.01, img.shape)
    valid = np.ones(img.shape, bool)
    est = estimate_shift(structure_band(img, valid), structure_band(moved.astype(np.float32), valid), valid)
    assert (est.rows, est.cols) == (pytest.approx(-2.3, abs=0.1), pytest.approx(1.45, abs=0.1))


def test_blocks_that_disagree_are_rejected():
    img = textured((512, 512), seed=7)
    moved = ndimage.shift(img, (1.5, -2.0), order=3, mode="nearest")
    # One quadrant changed completely (new content), it must not pull the estimate.
    moved[:256, :256] = textured((256, 256), seed=99)
    valid = np.ones(img.shape, bool)
    est = estimate_shift(structure_band(img, valid), structure_band(moved, valid), valid)
    assert (est.rows, est.cols) == (pytest.approx(1.5, abs=0.1), pytest.approx(-2.0, abs=0.1))
    assert est.blocks_used < est.blocks_total


def test_valid_ground_in_pieces_is_measured_in_blocks_that_fit_the_pieces():
    """A mosaic of windows (the statistics sample of a large grid): four 264-pixel windows of valid ground in a
    720-pixel grid, the rest empty. Only one default 256-pixel block is 80 % valid, and it straddles two windows
    and the gap; smaller blocks inside the windows measure the shift."""
    img = textured((720, 720), seed=11)
    moved = ndimage.shift(img, (2.7, -1.5), order=3, mode="nearest")
    valid = np.zeros(img.shape, bool)
    for r in (48, 408):
        for c in (48, 408):
            valid[r:r + 264, c:c + 264] = True
    img, moved = np.where(valid, img, 0.0), np.where(valid, moved, 0.0)
    est = estimate_shift(structure_band(img, valid), structure_band(moved, valid), valid)
    assert est.blocks_total >= 3
    assert (est.rows, est.cols) == (pytest.approx(2.7, abs=0.15), pytest.approx(-1.5, abs=0.15))


def test_a_single_block_is_never_trusted_alone():
    img = textured((160, 160), seed=13)
    moved = np.roll(textured((160, 160), seed=14), 3, axis=0)  # unrelated content: any estimate is noise
    valid = np.zeros(img.shape, bool)
    valid[:70, :70] = True  # room for one 64-pixel block only
    est = estimate_shift(structure_band(img, valid), structure_band(moved, valid), valid)
    assert est.blocks_total == 1 and (est.rows, est.cols) == (0.0, 0.0) and est.quality == 0.0


def test_offset_in_metres_matches_grid():
    from affine import Affine
    from rasterio.crs import CRS

    from imagery.coregister import ShiftEstimate
    from imagery.grid import Grid

    grid = Grid(CRS.from_epsg(32635), Affine(0.5, 0, 0, 0, -0.5, 0), (10, 10))
    est = ShiftEstimate(rows=2.0, cols=-4.0, blocks_used=4, blocks_total=4, spread_px=0.0)
    # a feature 2 rows lower (south) and 4 columns left (west) in AFTER
    assert est.offset_m(grid) == (-2.0, -1.0)
