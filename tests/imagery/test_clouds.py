"""Clouds and cloud shadows: what is marked not analysed."""

import numpy as np
import pytest

from imagery.clouds import skylit

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

BANDS = ("blue", "green", "red", "nir")


def test_shade_has_the_colour_of_skylight_and_dark_vehicles_do_not():
    rng = np.random.default_rng(1)
    before = rng.uniform(800, 1200, (4, 60, 60)).astype(np.float32)
    before[3] *= 2.5  # vegetation-like NIR
    after = before * rng.normal(1.0, 0.02, before.shape).astype(np.float32)
    # a cloud shadow: skylight only, blue darkens least, NIR most (shade/sun ratio 0.45, 0.38, 0.32, 0.25)
    after[:, 5:25, 5:25] *= np.array([0.45, 0.38, 0.32, 0.25], np.float32)[:, None, None]
    # dark vehicles arriving: visible bands drop, NIR barely (paint and canopy reflect NIR)
    after[:, 35:55, 35:55] *= np.array([0.35, 0.35, 0.32, 0.9], np.float32)[:, None, None]
    valid = np.ones((60, 60), bool)
    sky = skylit(after, before, BANDS, valid)
    assert sky[5:25, 5:25].mean() > 0.95
    assert sky[35:55, 35:55].mean() < 0.05
    # the scene-wide gain of a band (sensor, sun) does not matter
    gained = after * np.array([1.3, 1.0, 0.8, 1.5], np.float32)[:, None, None]
    assert (skylit(gained, before, BANDS, valid) == sky).mean() > 0.98
    # without red there is no test to make
    assert skylit(after[[0, 1, 3]], before[[0, 1, 3]], ("blue", "green", "nir"), valid).all()
