"""Caveats: what an analyst must know before quoting counts, derived from the inputs."""

import datetime as dt

import pytest

from imagery.pipeline import caveats

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

DATES = (dt.date(2024, 3, 1), dt.date(2024, 4, 1))
GOOD = dict(bands=("blue", "green", "red", "nir"), dtypes=("uint16", "uint16"), pixel_size_m=0.5,
            not_analysed_fraction=0.02, shift_blocks=(20, 36), dates=DATES)


def test_a_clean_multispectral_pair_has_no_caveat():
    assert caveats(**GOOD) == []


def test_each_fact_gives_its_caveat():
    assert "single band" in " ".join(caveats(**{**GOOD, "bands": ("pan",)}))
    assert "8-bit" in " ".join(caveats(**{**GOOD, "bands": ("red", "green", "blue"), "dtypes": ("uint8", "uint16")}))
    assert "vehicle_group" in " ".join(caveats(**{**GOOD, "pixel_size_m": 3.0}))
    assert "vehicle_group" in " ".join(caveats(**{**GOOD, "pixel_size_m": 10.0}))
    assert "construction-scale" in " ".join(caveats(**{**GOOD, "pixel_size_m": 20.0}))
    assert "35 % of the area was not analysed" in " ".join(caveats(**{**GOOD, "not_analysed_fraction": 0.35}))
    assert "no co-registration shift" in " ".join(caveats(**{**GOOD, "shift_blocks": (0, 36)}))
    assert caveats(**{**GOOD, "shift_blocks": (0, 0)}) == []  # co-registration switched off: nothing to say
    assert caveats(**{**GOOD, "dates": (None, DATES[1])}) == ["before acquisition date unknown"]



def test_a_single_band_pair_is_analysed_and_its_caveat_reaches_the_summary(tmp_path):
    """A panchromatic pair runs end to end (auto picks the region stage) and summary.json carries the single-band caveat."""
    import numpy as np
    import rasterio

    from imagery.pipeline import AnalysisParams, analyze
    from imagery.scenes import inspect_scene
    from synth import make_pair, preset, write_pair

    write_pair(make_pair(preset("default", seed=0)), tmp_path / "ms")
    for name in ("before", "after"):
        with rasterio.open(tmp_path / "ms" / f"{name}.tif") as ds:
            visible = ds.read([ds.descriptions.index(b) + 1 for b in ("red", "green", "blue")], masked=True)
            profile = ds.profile | {"count": 1}
            tags = ds.tags()
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as ds:
            ds.write(visible.mean(axis=0).filled(profile.get("nodata") or 0).astype(profile["dtype"]), 1)
            ds.set_band_description(1, "pan")
            ds.update_tags(**tags)
    result = analyze(inspect_scene(tmp_path / "before.tif"), inspect_scene(tmp_path / "after.tif"), None, AnalysisParams())
    summary = result.summary()
    assert summary["bands"] == ["pan"]
    assert summary["change_details"]["resolved_method"] == "regions"
    assert any("single band" in c for c in summary["caveats"])
    assert np.isin(result.mask, (1, 2, 3)).any(), "a single-band pair with real changes should show some change"
