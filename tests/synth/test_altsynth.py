"""The independent scene-pair generator synth.alt: determinism, truth, shading, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from rasterio import features
from rasterio.enums import ColorInterp
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from synth import alt as A

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

SMALL = {"size_m": 200.0}


@pytest.fixture(scope="module")
def default_pair():
    return A.make_pair("alt_default", seed=0)


def test_scenarios_are_known_and_unknown_ones_refused():
    assert set(A.SCENARIOS) == set(A.SCENARIO_CFG)
    with pytest.raises(ValueError):
        A.make_pair("nope")
    with pytest.raises(ValueError):
        A.make_pair("alt_clean", overrides={"bogus": 1})


def test_deterministic_and_seeds_differ():
    a = A.make_pair("alt_clean", seed=3, overrides=SMALL)
    b = A.make_pair("alt_clean", seed=3, overrides=SMALL)
    np.testing.assert_array_equal(a.before.data, b.before.data)
    np.testing.assert_array_equal(a.after.data, b.after.data)
    np.testing.assert_array_equal(a.truth_mask, b.truth_mask)
    assert a.truth == b.truth and a.aoi == b.aoi
    assert json.dumps(a.info, sort_keys=True) == json.dumps(b.info, sort_keys=True)
    c = A.make_pair("alt_clean", seed=4, overrides=SMALL)
    assert c.info["location"] != a.info["location"]
    assert c.truth != a.truth
    assert a.before.shape != c.before.shape or not np.array_equal(a.before.data, c.before.data)


def test_clean_pair_differs_only_around_changes():
    pr = A.make_pair("alt_clean", seed=1, overrides=SMALL)
    assert pr.before.crs == pr.after.crs and pr.before.transform == pr.after.transform
    assert pr.info["sun"]["before"] == pr.info["sun"]["after"]
    assert not (pr.truth_mask == A.NOT_ASSESSABLE).any()
    same = np.all(pr.before.data == pr.after.data, axis=0)
    assert same.mean() > 0.85                       # the rest is objects and their shadows
    changed = np.isin(pr.truth_mask, (1, 2, 3))
    assert changed.any() and (~same[changed]).mean() > 0.9


def _truth_in_grid(pair, change):
    geoms = [shape(transform_geom("EPSG:4326", pair.before.crs, f["geometry"]))
             for f in pair.truth if f["properties"]["change"] == change]
    return geoms


def test_truth_mask_matches_truth_geojson(default_pair):
    pr = default_pair
    m = pr.truth_mask
    assert m.shape == pr.before.shape and m.dtype == np.uint8
    assert set(np.unique(m)) <= {0, 1, 2, 3, 255}
    assert (m == 255).any()                          # cloud, shadow or nodata in AFTER
    t = pr.before.transform
    px = abs(t.a)
    for change, code in A.CHANGE_CODES.items():
        geoms = _truth_in_grid(pr, change)
        if not geoms:
            assert not (m == code).any()
            continue
        near = features.rasterize([(unary_union(geoms).buffer(px), 1)], out_shape=m.shape, transform=t,
                                  all_touched=True).astype(bool)
        assert not ((m == code) & ~near).any(), change
        for g in geoms:
            inside = features.rasterize([(g, 1)], out_shape=m.shape, transform=t).astype(bool)
            if inside.sum() >= 4 and (m[inside] != 255).all():
                assert (m[inside] == code).mean() > 0.5, change
    props = [f["properties"] for f in pr.truth]
    assert props and all(p["change"] in A.CHANGE_CODES and p["class"] in ("vehicle", "tent", "structure") for p in props)
    assert all(p["area_m2"] > 0 and p["length_m"] >= p["width_m"] > 0 for p in props)
    assert len({p["id"] for p in props}) == len(props)
    counted = sum(n for per_class in pr.info["counts"].values() for n in per_class.values())
    assert counted == len(pr.truth)
    kinds = {(p["change"], p["class"]) for p in props}
    assert ("appeared", "vehicle") in kinds and ("disappeared", "vehicle") in kinds
    assert ("changed", "structure") in kinds


def test_vehicle_sizes_are_realistic(default_pair):
    veh = [f["properties"] for f in default_pair.truth if f["properties"]["class"] == "vehicle"]
    assert veh
    for p in veh:
        assert 4.0 <= p["length_m"] <= 10.5 and 1.8 <= p["width_m"] <= 3.5 and 2.0 <= p["height_m"] <= 3.6


def test_cast_shadow_geometry():
    res = 0.25
    h = np.zeros((200, 200), np.float32)
    h[90:110, 90:110] = 5.0                           # a 5 m box, 5 m a side
    lit = A.sun_lit_fraction(h, res, azimuth=180.0, elevation=45.0)   # sun in the south: shadow to the north
    shadow = lit < 0.5
    rows = np.nonzero(shadow[:, 100])[0]
    assert rows.max() < 90 and rows.min() == pytest.approx(90 - 5.0 / res, abs=2)
    assert not shadow[110:, :].any() and not shadow[90:110, 90:110].any()
    lit2 = A.sun_lit_fraction(h, res, azimuth=90.0, elevation=30.0)   # sun in the east: shadow to the west
    cols = np.nonzero(lit2[100] < 0.5)[0]
    assert cols.max() < 90 and cols.min() == pytest.approx(90 - 5.0 / math.tan(math.radians(30)) / res, abs=2)


def _dark(pr, date):
    sc = getattr(pr, date)
    v = sc.data.astype(np.float32).sum(axis=0)
    ok = pr.truth_mask == 0
    return (v < np.percentile(v[ok], 6)) & ok


def test_shadows_move_when_the_sun_changes():
    same = A.make_pair("alt_clean", seed=2, overrides=SMALL)
    az, el = same.info["sun"]["before"]["azimuth"], same.info["sun"]["before"]["elevation"]
    moved = A.make_pair("alt_clean", seed=2, overrides=SMALL | {"after_sun": ((az + 90) % 360, max(el - 20, 20))})
    assert moved.info["sun"]["after"]["azimuth"] != az

    def iou(a, b):
        return (a & b).sum() / max((a | b).sum(), 1)

    assert iou(_dark(same, "before"), _dark(same, "after")) > 0.9
    assert iou(_dark(moved, "before"), _dark(moved, "after")) < 0.5
    # shadows are bluer than what is around them (sky light)
    b = moved.after.data.astype(np.float32)
    d = _dark(moved, "after")
    ratio = b[0] / np.maximum(b[3], 1)
    assert np.median(ratio[d]) > np.median(ratio[~d & (moved.truth_mask == 0)])


def test_nuisance_only_has_no_truth_but_every_nuisance():
    pr = A.make_pair("alt_nuisance_only", seed=1, overrides=SMALL)
    assert pr.truth == [] and pr.info["counts"] == {}
    assert not np.isin(pr.truth_mask, [1, 2, 3]).any()
    assert (pr.truth_mask == 255).any()
    info = pr.info
    assert pr.after.crs == "EPSG:3857" and pr.before.crs.startswith("EPSG:32")
    assert info["sun"]["before"] != info["sun"]["after"]
    assert math.hypot(*info["misregistration"]["shift_m"]) > 0
    assert info["view"]["after"]["off_nadir_deg"] > 0
    assert info["clouds"]["before"] and info["clouds"]["after"]
    assert info["radiometry"]["before"]["gain"] != info["radiometry"]["after"]["gain"]
    assert info["nodata_fraction"]["before"] > 0 and info["nodata_fraction"]["after"] > 0


def test_write_pair_files(default_pair, tmp_path):
    from imagery.scenes import inspect_scene

    pr = default_pair
    out = tmp_path / "pair"
    paths = A.write_pair(pr, out)
    assert set(paths) == {"before", "after", "truth", "truth_mask", "aoi", "info"}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["before.tif", "after.tif", "truth.geojson", "truth_mask.tif", "aoi.geojson", "truth.json"])
    for key, sc in (("before", pr.before), ("after", pr.after)):
        with rasterio.open(paths[key]) as ds:
            assert ds.count == 4 and ds.dtypes[0] == "uint16" and ds.nodata == 0
            assert ds.descriptions == ("blue", "green", "red", "nir")
            assert ds.tags()["ACQUISITION_DATE"] == sc.date
            assert ds.crs.to_string() == sc.crs and ds.transform == sc.transform
            np.testing.assert_array_equal(ds.read(), sc.data)
        info = inspect_scene(paths[key])
        assert info.bands == ("blue", "green", "red", "nir") and info.acquired.isoformat() == sc.date
    assert pr.before.date < pr.after.date
    with rasterio.open(paths["truth_mask"]) as ds:
        assert ds.dtypes[0] == "uint8" and ds.crs.to_string() == pr.before.crs and ds.transform == pr.before.transform
        np.testing.assert_array_equal(ds.read(1), pr.truth_mask)
    fc = json.loads(paths["truth"].read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(pr.truth)
    for f in fc["features"]:
        assert f["geometry"]["type"] == "Polygon"
        assert {"id", "change", "class", "area_m2", "length_m", "width_m"} <= set(f["properties"])
        lon, lat = f["geometry"]["coordinates"][0][0]
        assert abs(lon - pr.info["location"]["lon"]) < 0.05 and abs(lat - pr.info["location"]["lat"]) < 0.05
    aoi = json.loads(paths["aoi"].read_text())
    assert aoi["type"] == "FeatureCollection" and len(aoi["features"]) == 1
    poly = shape(aoi["features"][0]["geometry"])
    assert poly.geom_type == "Polygon"
    with rasterio.open(paths["before"]) as ds:
        foot = shape(transform_geom(ds.crs, "EPSG:4326", mapping(shape({"type": "Polygon", "coordinates": [[
            (ds.bounds.left, ds.bounds.bottom), (ds.bounds.right, ds.bounds.bottom), (ds.bounds.right, ds.bounds.top),
            (ds.bounds.left, ds.bounds.top), (ds.bounds.left, ds.bounds.bottom)]]}))))
    assert foot.contains(poly) and poly.area > 0.6 * foot.area
    info = json.loads(paths["info"].read_text())
    assert info["seed"] == 0 and info["scenario"] == "alt_default"
    for key in ("sun", "misregistration", "radiometry", "counts", "dates", "grids", "clouds", "sensor"):
        assert key in info
    # rewriting in place replaces the folder and leaves no temporary folders behind
    A.write_pair(pr, out)
    assert [p.name for p in tmp_path.iterdir()] == ["pair"]


def test_rgb8_and_geographic_products(tmp_path):
    rgb = A.make_pair("alt_rgb8", seed=0, overrides=SMALL)
    paths = A.write_pair(rgb, tmp_path / "rgb")
    for key in ("before", "after"):
        with rasterio.open(paths[key]) as ds:
            assert ds.count == 3 and ds.dtypes[0] == "uint8" and ds.nodata == 0
            assert ds.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            assert ds.descriptions == ("red", "green", "blue")
    with rasterio.open(paths["after"]) as ds:
        assert ds.crs.to_epsg() == 3857
    assert rgb.info["radiometry"]["after"]["stretch"]["jpeg_quality"] < 95
    geo = A.make_pair("alt_geographic", seed=0, overrides=SMALL)
    paths = A.write_pair(geo, tmp_path / "geo")
    for key in ("before", "after", "truth_mask"):
        with rasterio.open(paths[key]) as ds:
            assert ds.crs.to_epsg() == 4326
            assert ds.res[0] != pytest.approx(ds.res[1], rel=0.05)     # degrees: not square at 48-62 deg
    assert abs(geo.info["location"]["lat"]) >= 36
    assert np.isin(geo.truth_mask, (1, 2, 3)).any()
