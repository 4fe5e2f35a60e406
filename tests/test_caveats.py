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

