"""The command line: detect on a real pair of files, and every kind of bad input refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine

from tests.conftest import write_tif
from tests.live import ROOT
from tests.pairs import footprint_geojson, small_pair


def basewatch(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return small_pair(tmp_path_factory.mktemp("clipair"))


def test_detect_writes_the_product_folder(pair, tmp_path):
    before, after, centres = pair
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": footprint_geojson(before)}))
    out = tmp_path / "result"
    r = basewatch("detect", before, after, "--out", out, "--aoi", aoi, "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["changes.geojson", "changes.kml", "changes.gpkg", "changes.csv", "change_mask.tif", "change_score.tif", "before.tif",
         "after.tif", "summary.json", "report.png", "report.pdf"])
    assert "objects" in r.stdout and "products:" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["before_date"] == "2024-03-01" and summary["after_date"] == "2024-04-15"
    assert summary["sources"]["before"]["file"] == "before.tif"  # names, never server paths
    fc = json.loads((out / "changes.geojson").read_text())
    assert sum(f["properties"]["change"] == "appeared" for f in fc["features"]) >= len(centres) - 1
    with rasterio.open(out / "change_mask.tif") as ds:
        assert ds.crs.to_epsg() == 32635 and ds.nodata == 255
    assert summary["aoi"]["name"] == "aoi" and len(summary["aoi"]["mgrs"].split()) == 4  # named after the AOI file
    # an existing folder is not overwritten without --overwrite
    r = basewatch("detect", before, after, "--out", out, "--quiet")
    assert r.returncode != 0 and "already exists" in r.stderr

    # `export` writes the same exports again from the product folder, elsewhere
    r = basewatch("export", out, "--format", "csv", "--format", "gpkg", "--out", tmp_path / "exports")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["changes.csv", "changes.gpkg"]
    assert (tmp_path / "exports" / "changes.csv").read_bytes() == (out / "changes.csv").read_bytes()
    for args, message in (([out, "--format", "shp"], "unknown format 'shp'"), ([tmp_path / "nowhere"], "not a product folder")):
        r = basewatch("export", *args)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def bad_input_cases(tmp_path, pair):
    before, after, _ = pair
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(before.read_bytes()[: before.stat().st_size // 2])
    vrt = tmp_path / "scene.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="320" rasterYSize="320"><VRTRasterBand dataType="UInt16" band="1">'
                   f'<SimpleSource><SourceFilename>{before}</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>')
    bomb = tmp_path / "bomb.tif"
    with rasterio.open(bomb, "w", driver="GTiff", width=200_000, height=200_000, count=4, dtype="uint16",
                       crs="EPSG:32635", transform=Affine(0.5, 0, 400000, 0, -0.5, 5370000), tiled=True, sparse_ok=True):
        pass
    far = write_tif(tmp_path / "far.tif", np.full((4, 64, 64), 1000, np.uint16), crs="EPSG:32635",
                    transform=Affine(0.5, 0, 600000, 0, -0.5, 5000000), nodata=0,
                    tags={"ACQUISITION_DATE": "2024-05-01"}, descriptions=("blue", "green", "red", "nir"))
    bad_aoi = tmp_path / "bowtie.geojson"
    bad_aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}))
    outside_aoi = tmp_path / "elsewhere.geojson"
    outside_aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[10, 10], [10.01, 10], [10.01, 10.01], [10, 10.01], [10, 10]]]}))
    return [
        ("non-raster", [text, after], "not a GeoTIFF"),
        ("truncated", [truncated, after], "truncated"),
        ("vrt", [vrt, after], "not a GeoTIFF"),
        ("raster bomb", [bomb, after], "200000 x 200000"),
        ("no overlap", [before, far], "do not overlap"),
        ("invalid aoi", [before, after, "--aoi", bad_aoi], "Self-intersection"),
        ("aoi not covered", [before, after, "--aoi", outside_aoi], "do not cover the AOI"),
        ("missing file", [tmp_path / "missing.tif", after], "no such file"),
        ("unknown method", [before, after, "--method", "magic"], "unknown method"),
    ]


def test_bad_input_is_one_line_nonzero_and_leaves_nothing(pair, tmp_path):
    for label, args, message in bad_input_cases(tmp_path, pair):
        out = tmp_path / f"out-{label.replace(' ', '-')}"
        r = basewatch("detect", *args, "--out", out, "--quiet")
        assert r.returncode != 0, label
        lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], (label, r.stderr)
        assert "Traceback" not in r.stderr
        assert not out.exists(), label
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")], label


def test_synth_and_config_commands(tmp_path):
    r = basewatch("synth", tmp_path / "pair", "--preset", "clean", "--seed", "2")
    assert r.returncode == 0, r.stderr
    assert {"before.tif", "after.tif", "truth.geojson", "truth_mask.tif", "aoi.geojson"} <= {p.name for p in (tmp_path / "pair").iterdir()}
    r = basewatch("config")
    assert r.returncode == 0 and "BASEWATCH_DATA_DIR" in r.stdout and "BASEWATCH_PORT" in r.stdout


def test_watch_writes_the_timeline_of_a_series(tmp_path):
    """`basewatch watch` on four dates of tests/series.py given out of order: analyses chained by date, the
    vehicles per zone equal the generator's, the cloudy date a gap; timeline.json and timeline.png written."""
    from PIL import Image

    from tests import series

    plan = tuple(series.PLAN[i] for i in (0, 1, 3, 4))
    files = series.write_series(tmp_path / "series", plan)
    aoi = tmp_path / "base.geojson"
    aoi.write_text(json.dumps(series.aoi_geojson()))
    zones = tmp_path / "zones.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name}, "geometry": g} for name, g in series.zones_geojson().items()]}))
    out = tmp_path / "watch"
    shuffled = [files[plan[i].date] for i in (2, 0, 3, 1)]
    r = basewatch("watch", aoi, *shuffled, "--zones", zones, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "Timeline" in r.stdout and "timeline.json" in r.stdout
    doc = json.loads((out / "timeline.json").read_text())
    items = doc["items"]
    assert doc["zones"] == ["north", "south"] and doc["aoi"]["name"] == "base"
    assert [i["date"] for i in items] == [d.date for d in plan] and [i["scene_id"] for i in items] == [f"{d.date}.tif" for d in plan]
    assert items[0]["analysis_id"] is None and not items[0]["gap"]
    for prev, item, before, after in zip(items, items[1:], plan, plan[1:]):
        assert (out / item["analysis_id"] / "summary.json").is_file()
        assert item["gap"] is after.cloudy, item
        for zone in (None, "north", "south"):
            counts = item["zones"][zone] if zone else item["counts"]
            assert {c: counts["objects"][c]["vehicle"] for c in ("appeared", "disappeared")} == series.truth(before, after, zone)
    assert Image.open(out / "timeline.png").format == "PNG"
    # bad input: one line, non-zero, nothing half-written
    overlapping = tmp_path / "overlap.geojson"
    overlapping.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": n}, "geometry": series.zones_geojson()["north"]} for n in ("a", "b")]}))
    for args, message in (([aoi, *shuffled, "--out", out], "already exists"),
                          ([aoi, shuffled[0], "--out", tmp_path / "one"], "at least two scenes"),
                          ([aoi, *shuffled[:2], "--zones", overlapping, "--out", tmp_path / "z"], "overlaps zone 'a'"),
                          ([aoi, *shuffled[:2], "--zones", aoi, "--out", tmp_path / "z"], "FeatureCollection")):
        r = basewatch("watch", *args, "--quiet")
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (tmp_path / "z").exists() and not (tmp_path / "one").exists()
