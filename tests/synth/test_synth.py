"""Tests of the synthetic scene generator (the synth package): small scenes, real properties."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Proj, Transformer
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject
from skimage.registration import phase_cross_correlation

from imagery.grid import LONLAT, ground_pixel_size_m, utm_crs_for
from synth import (
    APPEARED,
    CHANGED,
    DISAPPEARED,
    NOT_ASSESSABLE,
    PRESETS,
    SynthParams,
    make_pair,
    preset,
    sun_position,
    write_pair,
)

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

SMALL = dict(extent_m=160.0, pixel_size_m=0.5, supersample=2, vehicles_arrived=6, vehicles_left=3, tents_new=2, structures_new=1)
COUNTS = ("vehicles_arrived", "vehicles_left", "tents_new", "structures_new", "roofs_changed", "clearings_new")
NO_CHANGE = dict(vehicles_arrived=0, vehicles_left=0, tents_new=0, structures_new=0, roofs_changed=0, clearings_new=0)


def small(name: str = "default", seed: int = 0, **kw) -> SynthParams:
    """A preset shrunk to a 320 x 320 px scene (fast), with at most the SMALL change counts."""
    p = preset(name, seed)
    shrunk = {k: (min(v, getattr(p, k)) if k in COUNTS else v) for k, v in SMALL.items()}
    p = dataclasses.replace(p, **shrunk)
    if p.after_pixel_size_m is not None:
        p = dataclasses.replace(p, after_pixel_size_m=0.6)
    return dataclasses.replace(p, **kw)


@pytest.fixture(scope="module")
def default_pair():
    return make_pair(small("default", 3))


def on_before(scene_after, before_grid, band: int, resampling=Resampling.bilinear) -> np.ndarray:
    """An after band reprojected onto the before grid (float32, NaN outside)."""
    out = np.full(before_grid.shape, np.nan, np.float32)
    reproject(scene_after.data[band].astype(np.float32), out, src_transform=scene_after.grid.transform,
              src_crs=scene_after.grid.crs, dst_transform=before_grid.transform, dst_crs=before_grid.crs,
              resampling=resampling, src_nodata=0, dst_nodata=np.nan)
    return out


def footprints_utm(pair, change: str | None = None):
    tr = Transformer.from_crs(LONLAT, pair.before.grid.crs, always_xy=True)
    for t in pair.truth:
        if change is None or t.change == change:
            yield t, shapely.transform(t.footprint_lonlat, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def test_same_params_same_pair_and_seeds_differ():
    p = small("default", 5)
    a, b = make_pair(p), make_pair(p)
    np.testing.assert_array_equal(a.before.data, b.before.data)
    np.testing.assert_array_equal(a.after.data, b.after.data)
    np.testing.assert_array_equal(a.truth_mask, b.truth_mask)
    assert a.truth == b.truth
    assert json.dumps(a.info, sort_keys=True) == json.dumps(b.info, sort_keys=True)
    c = make_pair(dataclasses.replace(p, seed=6))
    assert not np.array_equal(a.before.data, c.before.data)


def test_presets_vary_with_seed_and_are_valid():
    for name in PRESETS:
        nominal = preset(name, 0)
        others = [preset(name, s) for s in (1, 2, 3)]
        assert isinstance(nominal, SynthParams)
        assert len({(o.pixel_size_m, o.extent_m, o.shift_px, o.sun_after, o.vehicles_arrived) for o in others}) == 3
    d = preset("default", 0)
    assert (d.extent_m, d.pixel_size_m, d.after_pixel_size_m, d.after_crs) == (512.0, 0.5, 0.6, "utm")
    assert preset("nuisance_only", 4).vehicles_arrived == 0
    assert preset("sentinel10m").pixel_size_m == 10.0 and preset("sentinel10m").vehicles_arrived == 0
    assert preset("south").lat < 0
    clean = preset("clean", 2)
    assert clean.noise == clean.season == clean.gain_offset == clean.cloud_fraction == 0
    assert clean.sun_before == clean.sun_after and clean.shift_px == (0.0, 0.0)


def test_scene_structure(default_pair):
    pr = default_pair
    assert pr.before.data.dtype == np.uint16 and pr.before.data.shape == (4, 320, 320)
    assert pr.before.bands == ("blue", "green", "red", "nir") and pr.before.nodata == 0
    assert pr.truth_mask.shape == pr.before.grid.shape and pr.truth_mask.dtype == np.uint8
    assert pr.after.acquired > pr.before.acquired
    assert pr.before.grid.crs == utm_crs_for(pr.info["params"]["lon"], pr.info["params"]["lat"])
    assert pr.aoi_lonlat.is_valid and pr.aoi_lonlat.within(pr.before.grid.footprint_lonlat())
    assert pr.aoi_lonlat.area > 0.5 * pr.before.grid.footprint_lonlat().area
    assert (pr.after.data[:, ~pr.after.valid] == 0).all() and (pr.after.data[:, pr.after.valid] > 0).all()
    counts = pr.info["counts"]
    assert counts["vehicle"] == {"appeared": 6, "disappeared": 3}
    assert counts["tent"]["appeared"] == 2 and counts["structure"]["appeared"] == 1
    # reflectances are plausible: vegetation is bright in nir, scene mean reflectance 3-35 %
    refl = pr.before.data.astype(float) / 1e4
    assert 0.03 < refl[:3].mean() < 0.35 and refl[3].mean() > refl[2].mean()
    json.dumps(pr.info)


def test_truth_mask_matches_truth_objects(default_pair):
    pr = default_pair
    g = pr.before.grid
    for change, code in (("appeared", APPEARED), ("disappeared", DISAPPEARED)):
        fps = [fp for _, fp in footprints_utm(pr, change)]
        inside = rasterize([(fp, 1) for fp in fps], out_shape=g.shape, transform=g.transform, dtype="uint8").astype(bool)
        assert inside.any()
        # every pixel labelled with the code is inside a footprint of that change ...
        assert not ((pr.truth_mask == code) & ~inside).any()
        # ... and every pixel inside one is labelled, unless not assessable
        assert set(np.unique(pr.truth_mask[inside])) <= {code, NOT_ASSESSABLE}
    for t, fp in footprints_utm(pr):
        assert abs(fp.area - t.area_m2) < 0.01 * t.area_m2 + 0.5
        assert t.length_m >= t.width_m > 0
        if t.cls == "vehicle":
            assert 6.0 <= t.length_m <= 8.0 + 1e-6 and 2.5 <= t.width_m <= 3.5 + 1e-6
    assert set(np.unique(pr.truth_mask)) <= {0, APPEARED, DISAPPEARED, CHANGED, NOT_ASSESSABLE}


def test_changed_roof_is_labelled_changed():
    pr = make_pair(small("default", 1, roofs_changed=1, cloud_fraction=0.0, nodata_corner=False))
    changed = [t for t in pr.truth if t.change == "changed"]
    assert len(changed) == 1 and changed[0].cls == "structure"
    assert (pr.truth_mask == CHANGED).sum() > 50


def test_after_scene_crs_and_pixel_size():
    pr = make_pair(small("default", 2, after_crs="utm"))
    assert pr.after.grid.crs == pr.before.grid.crs and pr.after.grid.res == pytest.approx((0.6, 0.6))
    pr = make_pair(small("webmercator", 2))
    assert pr.after.grid.crs.to_epsg() == 3857
    k = Proj("EPSG:3857").get_factors(pr.info["params"]["lon"], pr.info["params"]["lat"]).meridional_scale
    assert pr.after.grid.res[0] / k == pytest.approx(0.6, rel=1e-6)
    pr = make_pair(small("lonlat", 2))
    assert pr.after.grid.crs.to_epsg() == 4326
    gx, gy = ground_pixel_size_m(pr.after.grid)
    lat = pr.info["params"]["lat"]
    assert gy == pytest.approx(0.6, rel=0.01)
    assert gx == pytest.approx(0.6 * math.cos(math.radians(lat)), rel=0.02)  # non-square on the ground
    assert pr.info["after_ground_pixel_m"] == pytest.approx([gx, gy], rel=1e-3)


def test_clean_no_change_pair_is_identical():
    pr = make_pair(small("clean", 1, **NO_CHANGE))
    assert pr.truth == [] and pr.after.grid.crs == pr.before.grid.crs
    a = on_before(pr.after, pr.before.grid, 2, Resampling.nearest)
    b = pr.before.data[2].astype(np.float32)
    inner = (slice(4, -4), slice(4, -4))
    assert np.nanmax(np.abs(a[inner] - b[inner])) <= 1.0


@pytest.mark.parametrize("after_crs", ["utm", "lonlat"])
def test_misregistration_is_the_requested_shift(after_crs):
    shift = (2.3, -1.4)
    p = small("clean", 2, shift_px=shift, after_crs=after_crs, **NO_CHANGE)
    if after_crs == "lonlat":
        p = dataclasses.replace(p, after_pixel_size_m=0.5)
    pr = make_pair(p)
    a = on_before(pr.after, pr.before.grid, 3, Resampling.cubic)
    b = pr.before.data[3].astype(np.float32)
    inner = (slice(20, -20), slice(20, -20))
    a, b = a[inner], b[inner]
    assert np.isfinite(a).all()
    est, _, _ = phase_cross_correlation(b, a, upsample_factor=50)
    # est is the shift that registers the after onto the before: minus the misregistration
    assert est[0] == pytest.approx(-shift[0], abs=0.2) and est[1] == pytest.approx(-shift[1], abs=0.2)
    assert pr.info["shift"]["dx_m"] == pytest.approx(-1.4 * 0.5) and pr.info["shift"]["dy_m"] == pytest.approx(-2.3 * 0.5)


def test_shadows_move_with_the_sun():
    base = small("clean", 4, **NO_CHANGE)
    p = dataclasses.replace(base, sun_before=(135.0, 45.0), sun_after=(225.0, 45.0))
    pr = make_pair(p)
    b = pr.before.data[:3].astype(np.float32).mean(0)
    a = on_before(pr.after, pr.before.grid, 0, Resampling.nearest)
    a = np.stack([on_before(pr.after, pr.before.grid, i, Resampling.nearest) for i in range(3)]).mean(0)
    new_shadow = a < 0.55 * b  # dark only after
    old_shadow = b < 0.55 * a  # dark only before
    assert new_shadow.sum() > 200 and old_shadow.sum() > 200
    rows, cols = np.indices(b.shape)
    # sun from SE -> shadows to NW; sun from SW -> shadows to NE: they move east, not north/south
    dcol = cols[new_shadow].mean() - cols[old_shadow].mean()
    drow = rows[new_shadow].mean() - rows[old_shadow].mean()
    assert dcol > 2.0 and abs(drow) < dcol
    # with the same sun nothing moves
    same = make_pair(dataclasses.replace(base, sun_before=(135.0, 45.0), sun_after=(135.0, 45.0)))
    a2 = np.stack([on_before(same.after, same.before.grid, i, Resampling.nearest) for i in range(3)]).mean(0)
    b2 = same.before.data[:3].astype(np.float32).mean(0)
    assert ((a2 < 0.55 * b2) | (b2 < 0.55 * a2))[4:-4, 4:-4].sum() == 0


def test_shadows_are_darker_and_bluer():
    pr = make_pair(small("clean", 4, **NO_CHANGE, sun_before=(135.0, 30.0), sun_after=(225.0, 30.0)))
    b = pr.before.data.astype(np.float32)
    a = np.stack([on_before(pr.after, pr.before.grid, i, Resampling.nearest) for i in range(4)])
    shadow_b = (b[:3].mean(0) < 0.5 * a[:3].mean(0)) & np.isfinite(a).all(0)
    lit = a[:, shadow_b]  # the same ground, sunlit in the after scene
    dark = b[:, shadow_b]
    ratio = dark.mean(1) / lit.mean(1)
    assert ratio[0] > ratio[3]  # blue keeps more light (skylight) than nir


def test_nuisance_only_has_no_truth():
    pr = make_pair(small("nuisance_only", 1))
    assert pr.truth == [] and pr.info["counts"] == {}
    assert not np.isin(pr.truth_mask, [APPEARED, DISAPPEARED, CHANGED]).any()
    assert (pr.truth_mask == NOT_ASSESSABLE).any()  # cloud, its shadow or nodata
    # the nuisances are there: the dates differ radiometrically
    a = on_before(pr.after, pr.before.grid, 3)
    ok = np.isfinite(a) & (pr.truth_mask == 0)
    assert np.abs(a[ok] - pr.before.data[3][ok]).mean() > 50


def test_clouds_cover_the_requested_fraction():
    pr = make_pair(small("default", 7, cloud_fraction=0.12, nodata_corner=False))
    c = pr.info["clouds"]
    assert c["cloud_fraction"] == pytest.approx(0.12, abs=0.03)
    assert 0.0 < pr.info["not_assessable_fraction"] < 0.6


def test_southern_hemisphere():
    pr = make_pair(small("south", 1))
    assert pr.before.grid.crs.to_epsg() // 100 == 327
    assert pr.info["sun"]["before"]["elevation"] >= 18
    # southern sun: the sun is to the north (azimuth within 0..90 or 270..360) at the latitude
    az = pr.info["sun"]["before"]["azimuth"]
    assert az < 110 or az > 250


def test_sun_position():
    import datetime as dt

    az, el = sun_position(0.0, 0.0, dt.datetime(2024, 3, 20, 12, 0))
    assert el > 85
    az, el = sun_position(24.0, 48.5, dt.datetime(2024, 6, 21, 10, 24))  # local solar noon ~ 10:24 UTC
    assert el == pytest.approx(90 - 48.5 + 23.44, abs=0.6) and az == pytest.approx(180, abs=5)
    az, el = sun_position(24.0, 48.5, dt.datetime(2024, 6, 21, 7, 0))  # morning: sun in the east
    assert 60 < az < 120 and 20 < el < 50
    az, el = sun_position(28.2, -25.7, dt.datetime(2024, 6, 21, 10, 7))  # southern winter noon: north
    assert (az < 5 or az > 355) and el == pytest.approx(90 - 25.7 - 23.44, abs=0.6)


def test_rgb8_product(tmp_path):
    pr = make_pair(small("rgb8", 1))
    assert pr.before.data.dtype == np.uint8 and pr.before.bands == ("red", "green", "blue")
    assert pr.before.nodata is None and not pr.after.valid.all()
    paths = write_pair(pr, tmp_path / "rgb")
    with rasterio.open(paths["after"]) as ds:
        assert ds.nodata is None and ds.count == 3
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
        mask = ds.dataset_mask()
        assert (mask == 0).sum() == (~pr.after.valid).sum()
        assert ds.descriptions == ("red", "green", "blue")


def test_write_pair_files(default_pair, tmp_path):
    out = tmp_path / "pair"
    paths = write_pair(default_pair, out)
    assert set(paths) == {"before", "after", "truth", "truth_mask", "aoi", "info"}
    for key, scene in (("before", default_pair.before), ("after", default_pair.after)):
        with rasterio.open(paths[key]) as ds:
            assert ds.tags()["ACQUISITION_DATE"] == scene.acquired.isoformat()
            assert ds.descriptions == ("blue", "green", "red", "nir")
            assert ds.nodata == 0 and ds.crs == scene.grid.crs and ds.transform == scene.grid.transform
            assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
            np.testing.assert_array_equal(ds.read(), scene.data)
    with rasterio.open(paths["truth_mask"]) as ds:
        assert ds.nodata is None and ds.dtypes[0] == "uint8"
        np.testing.assert_array_equal(ds.read(1), default_pair.truth_mask)
    fc = json.loads(paths["truth"].read_text())
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    assert len(fc["features"]) == len(default_pair.truth)
    props = fc["features"][0]["properties"]
    assert set(props) == {"id", "change", "class", "area_m2", "length_m", "width_m"}
    ring = np.array(fc["features"][0]["geometry"]["coordinates"][0])
    assert shapely.Polygon(ring).exterior.is_ccw  # RFC 7946 right-hand rule
    aoi = json.loads(paths["aoi"].read_text())
    assert aoi["type"] == "FeatureCollection" and len(aoi["features"]) == 1
    assert aoi["features"][0]["geometry"]["type"] == "Polygon"
    info = json.loads(paths["info"].read_text())
    assert info["seed"] == 3 and info["shift"]["rows_px"] == default_pair.info["shift"]["rows_px"]
    # writing again replaces the folder; nothing is left beside it
    write_pair(default_pair, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair"]


def test_bad_params_are_refused():
    with pytest.raises(ValueError):
        SynthParams(after_crs="mercator")
    with pytest.raises(ValueError):
        SynthParams(sun_after=(200.0, 0.0))
    with pytest.raises(ValueError):
        preset("nope")
    with pytest.raises(ValueError):
        make_pair(dataclasses.replace(small(), extent_m=60.0, pixel_size_m=0.5))
