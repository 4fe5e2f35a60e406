"""The default method on 8-bit RGB pairs modelled on real pairs it once missed (tests/scenes.py), and the
region stage's rules one by one."""

from __future__ import annotations

import numpy as np
import pytest

from imagery.pipeline import AnalysisParams, analyze, stage_accounting, stage_caveats
from imagery.regionchange import explanation_applies, quiet_noise
from imagery.scenes import inspect_scene
from tests.scenes import fields_change_colour, small_tile, suburb_on_scrub

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


def run(pair, tmp_path, method="auto"):
    before, after = pair.write(tmp_path / method)
    result = analyze(inspect_scene(before), inspect_scene(after), None, AnalysisParams(method=method))
    changed = np.isin(result.mask, (1, 2, 3))
    assert changed.shape == pair.truth.shape  # the analysis grid is the scenes' own grid
    found = [changed[rows, cols].mean() > 0.3 for rows, cols in pair.buildings]
    return result, changed, found


@pytest.mark.parametrize("seed", [0, 1])
def test_a_suburb_built_over_forty_percent_of_the_scene_is_found(tmp_path, seed):
    pair = suburb_on_scrub(seed)
    result, changed, found = run(pair, tmp_path)
    assert sum(found) >= 0.9 * len(found), f"{sum(found)} of {len(found)} new houses reported"
    assert changed[pair.nuisance].mean() < 0.01, "unchanged scrub reported as change"
    # white and grey roofs appearing over hectares are not a cloud: the development is analysed
    assert result.summary()["not_analysed_fraction"] < 0.02
    appeared = [o for o in result.objects if o.change == "appeared" and o.cls in ("structure", "other")]
    assert appeared, "the development is reported as areas that appeared"


@pytest.mark.parametrize("seed", [0, 1])
def test_fields_that_turned_brown_are_not_change_but_new_buildings_among_them_are(tmp_path, seed):
    pair = fields_change_colour(seed)
    result, changed, found = run(pair, tmp_path)
    assert all(found), f"{sum(found)} of {len(found)} new buildings reported"
    _, naive, _ = run(pair, tmp_path, method="diff")
    assert naive[pair.nuisance].mean() > 0.5  # the colour change is strong: a brightness difference takes the fields
    assert changed[pair.nuisance].mean() < 0.2, "recoloured fields reported as change"


def test_a_256_pixel_tile_is_coregistered_in_blocks_and_its_houses_found(tmp_path):
    pair = small_tile(0)
    result, changed, found = run(pair, tmp_path)
    assert all(found)
    assert changed[pair.nuisance].mean() < 0.01
    shift = result.summary()["shift"]
    assert shift["blocks_total"] >= 4  # a few large blocks, not 36 small ones that cannot agree
    assert shift["magnitude_px"] < 0.5  # the dates are registered: no spurious shift is applied


def test_noise_from_the_quietest_quarter_ignores_a_majority_of_changed_pixels():
    rng = np.random.default_rng(0)
    diff = rng.normal(0, 2.0, (3, 200, 200)).astype(np.float32)
    diff[:, :, :120] += rng.normal(0, 40.0, (3, 200, 120))  # 60 % of the scene changed
    sigma = quiet_noise(diff, np.ones((200, 200), bool))
    mad_sigma = 1.4826 * np.median(np.abs(diff.reshape(3, -1)), axis=1)
    assert np.all(sigma < 3 * 2.0)  # within a small factor of the true 2 DN
    assert np.all(sigma < 0.5 * mad_sigma)  # the median absolute difference is over six times too large


def test_an_explanation_that_would_remove_nearly_all_of_a_large_change_is_not_trusted():
    assert explanation_applies(removed_px=50, region_px=100, analysed_px=10_000)
    assert explanation_applies(removed_px=100, region_px=100, analysed_px=10_000)  # small change, all nuisance
    assert not explanation_applies(removed_px=950, region_px=1_000, analysed_px=10_000)


def test_summary_accounts_for_what_each_stage_removed_and_says_when_one_overrode_the_change():
    details = {"candidate_pixels": 1000, "unexplained_pixels": 20,
               "areas": {"explanations": {"moved_shadow": {"removed_pixels": 900, "removed_share": 0.95, "applied": False},
                                          "smooth_surface": {"removed_pixels": 10, "removed_share": 0.01, "applied": True}}}}
    stages = stage_accounting(details)
    assert [(s["stage"], s["explanation"]) for s in stages] == [
        ("objects", "illumination_season_lean"), ("regions", "moved_shadow"), ("regions", "smooth_surface")]
    assert stages[0]["removed_share"] == pytest.approx(0.98)
    caveats = stage_caveats(stages)
    assert len(caveats) == 2
    assert "98 %" in caveats[0] and "lower bound" in caveats[0]
    assert "not applied" in caveats[1] and "shadows" in caveats[1]
