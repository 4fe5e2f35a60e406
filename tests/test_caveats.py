"""Caveats: what an analyst must know before quoting counts, derived from the inputs."""

import datetime as dt

from imagery.pipeline import caveats

DATES = (dt.date(2024, 3, 1), dt.date(2024, 4, 1))
GOOD = dict(bands=("blue", "green", "red", "nir"), dtypes=("uint16", "uint16"), pixel_size_m=0.5,
            not_analysed_fraction=0.02, shift_blocks=(20, 36), dates=DATES)


def test_a_clean_multispectral_pair_has_no_caveat():
    assert caveats(**GOOD) == []


def test_each_fact_gives_its_caveat():
    assert "single band" in " ".join(caveats(**{**GOOD, "bands": ("pan",)}))
    assert "8-bit" in " ".join(caveats(**{**GOOD, "bands": ("red", "green", "blue"), "dtypes": ("uint8", "uint16")}))
    assert "vehicle_group" in " ".join(caveats(**{**GOOD, "pixel_size_m": 3.0}))
    assert "construction-scale" in " ".join(caveats(**{**GOOD, "pixel_size_m": 10.0}))
    assert "35 % of the area was not analysed" in " ".join(caveats(**{**GOOD, "not_analysed_fraction": 0.35}))
    assert "no co-registration shift" in " ".join(caveats(**{**GOOD, "shift_blocks": (0, 36)}))
    assert caveats(**{**GOOD, "shift_blocks": (0, 0)}) == []  # co-registration switched off: nothing to say
    assert caveats(**{**GOOD, "dates": (None, DATES[1])}) == ["before acquisition date unknown"]


def test_presence_works_on_a_single_band():
    """The presence test must not fail on panchromatic data (np.cov of one band is 0-d)."""
    import numpy as np

    from imagery.objectchange import presence

    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 2.0, (1, 40, 40)).astype(np.float32)
    region = np.zeros((40, 40), bool)
    region[15:25, 15:25] = True
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[12:28, 12:28] = False
    absent = presence(image, region, ring, np.array([2.0]))
    image[0][region] += 40.0
    present = presence(image, region, ring, np.array([2.0]))
    assert np.isfinite(absent) and absent < 9.0
    assert present > 100.0
