"""Pipeline stages on synthetic pairs with known nuisances: alignment across CRSs and pixel sizes, normalisation."""

from __future__ import annotations

import dataclasses

import pytest

from imagery.pipeline import AnalysisParams, Stopwatch, prepare
from imagery.scenes import inspect_scene
from synth import make_pair, preset, write_pair

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


def prepared(tmp_path, params):
    pair = make_pair(params)
    files = write_pair(pair, tmp_path / "pair")
    before, after = inspect_scene(files["before"]), inspect_scene(files["after"])
    prep = prepare(before, after, None, AnalysisParams(), report=lambda *a: None, watch=Stopwatch())
    prep.scene_pixel_sizes = (before.pixel_size_m, after.pixel_size_m)
    return pair, prep


@pytest.mark.parametrize("after_crs", ["utm", "webmercator", "lonlat"])
def test_known_misregistration_is_recovered_across_crs_and_pixel_size(tmp_path, after_crs):
    base = preset("clean", seed=0)
    params = dataclasses.replace(base, extent_m=260.0, after_crs=after_crs, after_pixel_size_m=0.6,
                                 shift_px=(2.3, -1.4), vehicles_arrived=0, vehicles_left=0, tents_new=0, structures_new=0)
    pair, prep = prepared(tmp_path, params)
    east, north = prep.shift.offset_m(prep.grid)
    truth = pair.info["shift"]
    px = prep.pixel_size_m
    # the synthetic AFTER shows its content dx east / dy north of the true place
    assert east == pytest.approx(truth["dx_m"], abs=0.1 * px)
    assert north == pytest.approx(truth["dy_m"], abs=0.1 * px)
    assert prep.shift.quality > 0.5
    assert prep.grid.crs.to_epsg() == pair.before.grid.crs.to_epsg()  # the AOI's UTM zone
    assert px == pytest.approx(max(prep.scene_pixel_sizes), rel=1e-3)  # the coarser of the two ground pixel sizes


def test_gain_and_offset_between_dates_are_removed(tmp_path):
    params = dataclasses.replace(preset("clean", seed=1), extent_m=260.0, gain_offset=1.0)
    pair, prep = prepared(tmp_path, params)
    assert prep.normalisation.method == "irmad-orthogonal"
    valid = prep.valid
    for k in range(prep.before.count):
        b = prep.before.data[k][valid]
        a = prep.after_norm[k][valid]
        raw = prep.after.data[k][valid]
        # after normalisation the dates agree far better than before it
        assert abs(float((a - b).mean())) < 0.1 * abs(float((raw - b).mean())) + 0.01 * float(b.mean())
