"""The brief-ready report (report.png, report.pdf) and the exports (KML, GeoPackage, CSV) of a real analysis.

The report is measured, not eyeballed: every object number's box (text and padding, in display
pixels) is compared with every other, in a motor pool packed with vehicles; every text on the
page must lie inside the page. Exports are read back with GDAL (pyogrio) and the csv module.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from matplotlib.text import Text
from PIL import Image
from shapely.geometry import box, shape

from imagery.contract import CHANGE_COLOURS
from imagery.exports import write_exports
from imagery.objects import ChangeObject
from imagery.pipeline import AnalysisParams, analyze
from imagery.products import changes_feature_collection, read_changes, read_summary, write_products
from imagery.report import report_figure
from imagery.scenes import inspect_scene
from tests.pairs import footprint_geojson, small_pair

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

AOI = {"id": "aoi-1", "name": "North motor pool", "area_m2": 18000.0}


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    before, after, _ = small_pair(tmp_path_factory.mktemp("reportpair"))
    return analyze(inspect_scene(before), inspect_scene(after), shape(footprint_geojson(before)), AnalysisParams())


@pytest.fixture(scope="module")
def products(analysis, tmp_path_factory):
    out = tmp_path_factory.mktemp("products") / "result"
    write_products(analysis, out, aoi=AOI)
    return out


def vehicle(oid: int, x: float, y: float, change: str) -> ChangeObject:
    geom = box(x, y, x + 6.5, y + 3.0)
    return ChangeObject(id=oid, change=change, cls="vehicle", label=oid, geometry=geom, area_m2=geom.area, length_m=6.5,
                        width_m=3.0, orientation_deg=90.0, score=0.9, brightness_before=0.1, brightness_after=0.05)


def crowded(analysis, rows: int = 6, cols: int = 8):
    """The analysis with a motor pool of rows x cols vehicles parked 1.5 m apart in the middle of the scene."""
    left, bottom, right, top = analysis.grid.bounds
    x0, y0 = (left + right) / 2 - cols * 4, (bottom + top) / 2 - rows * 2.25
    objects = [vehicle(1 + r * cols + c, x0 + c * 8.0, y0 + r * 4.5, ("appeared", "disappeared")[(r + c) % 2])
               for r in range(rows) for c in range(cols)]
    return dataclasses.replace(analysis, objects=objects)


def all_texts(fig) -> list[Text]:
    """Every text of the figure, table cells included."""
    cells = [c.get_text() for ax in fig.axes for table in ax.tables for c in table.get_celld().values()]
    return [t for t in fig.findobj(Text) + cells if t.get_visible() and t.get_text()]


def label_boxes(fig):
    """Per panel, the display-pixel boxes (x0, y0, x1, y1) of the object numbers, padding included."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = []
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_gid() == "object-label"]
        if texts:
            panels.append((ax, {int(t.get_text()): t.get_bbox_patch().get_window_extent(renderer).extents for t in texts}))
    return panels


def test_numbers_never_overlap_in_a_crowded_motor_pool(analysis):
    dense = crowded(analysis)
    summary = dense.summary() | {"aoi": AOI}
    fig, labels, unplaced = report_figure(dense, summary)
    panels = label_boxes(fig)
    assert len(panels) == 2  # before and after both carry the numbers
    renderer = fig.canvas.get_renderer()
    for ax, boxes in panels:
        assert set(boxes) | set(unplaced) == {o.id for o in dense.objects}
        assert len(boxes) >= 0.9 * len(dense.objects), f"only {len(boxes)} of {len(dense.objects)} numbered"
        b = np.array(list(boxes.values()))
        inter_w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        inter_h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        overlap = (inter_w > 0) & (inter_h > 0)
        np.fill_diagonal(overlap, False)
        pairs = [(list(boxes)[i], list(boxes)[j]) for i, j in zip(*np.nonzero(overlap)) if i < j]
        assert not pairs, f"overlapping numbers: {pairs}"
        x0, y0, x1, y1 = ax.get_window_extent(renderer).extents
        assert (b[:, 0] >= x0).all() and (b[:, 2] <= x1).all() and (b[:, 1] >= y0).all() and (b[:, 3] <= y1).all()
        # and no number hides much of another vehicle
        for oid, (lx0, ly0, lx1, ly1) in boxes.items():
            for o in dense.objects:
                if o.id == oid:
                    continue
                (vx0, vy0), (vx1, vy1) = ax.transData.transform(np.reshape(o.geometry.bounds, (2, 2)))
                covered = max(0, min(lx1, vx1) - max(lx0, vx0)) * max(0, min(ly1, vy1) - max(ly0, vy0))
                assert covered <= 0.35 * (vx1 - vx0) * (vy1 - vy0), f"number {oid} hides vehicle {o.id}"
    # numbers that had to move away from their vehicle are joined to it by a leader line
    assert any(lab.leader for lab in labels)
    for lab in labels:
        if lab.leader:
            start = shapely.Point(lab.leader[0])
            assert next(o for o in dense.objects if o.id == lab.object_id).geometry.distance(start) < 0.01


def test_every_text_fits_the_page(analysis):
    long_rule = "a threshold rule long enough to run off any page " * 8
    summary = analysis.summary() | {"aoi": {**AOI, "name": "A base with a rather long name"}}
    summary["threshold"] = {**summary["threshold"], "rule": long_rule}
    summary["caveats"] = ["single band: shade cannot be told from a darker material " * 3, "after acquisition date unknown"]
    fig, _, _ = report_figure(analysis, summary)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox.extents
    texts = all_texts(fig)
    assert len(texts) > 20
    for t in texts:
        x0, y0, x1, y1 = t.get_window_extent(renderer).extents
        assert x0 >= page[0] - 0.5 and x1 <= page[2] + 0.5 and y0 >= page[1] - 0.5 and y1 <= page[3] + 0.5, t.get_text()[:60]


def test_report_names_the_aoi_its_location_sources_and_counts(products, analysis):
    summary = read_summary(products)
    aoi = summary["aoi"]
    assert aoi["name"] == "North motor pool" and aoi["id"] == "aoi-1"
    lon, lat = aoi["centre_lonlat"]
    # the MGRS digits are the UTM coordinates within their 100 km square (the pair is in UTM 35N)
    from pyproj import Transformer

    e, n = Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True).transform(lon, lat)
    zone, square, east, north = aoi["mgrs"].split()
    assert zone == "35U" and len(square) == 2
    assert abs(int(east) - e % 100000) <= 1 and abs(int(north) - n % 100000) <= 1
    fig, _, _ = report_figure(analysis, summary)
    text = "\n".join(t.get_text() for t in all_texts(fig))
    assert "North motor pool" in text and aoi["mgrs"] in text and f"{lat:.5f}° N" in text
    assert "before.tif" in text and "after.tif" in text and "2024-03-01 → 2024-04-15 (45 days)" in text
    assert "vehicles (est.)" in text and summary["software"]["version"] in text and "Caveats" in text
    png = Image.open(products / "report.png")
    assert png.width >= 2000 and 0.5 < png.height / png.width < 1.0
    pdf = (products / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and b"basewatch change report: North motor pool" in pdf


def test_exports_open_in_gdal_and_csv_with_provenance(products):
    fc, summary = read_changes(products), read_summary(products)
    by_id = {f["properties"]["id"]: f for f in fc["features"]}
    assert by_id, "the test pair should yield change objects"
    expected = ("before.tif", "after.tif", "2024-03-01", "2024-04-15", summary["method"], summary["software"]["version"])

    # GeoPackage: typed fields, valid MultiPolygons in EPSG:4326 where the GeoJSON puts them, provenance metadata
    info = pyogrio.read_info(products / "changes.gpkg")
    assert info["driver"] == "GPKG" and info["crs"] == "EPSG:4326" and info["geometry_type"] == "MultiPolygon"
    assert info["features"] == len(by_id)
    meta, _, wkb, values = pyogrio.raw.read(products / "changes.gpkg")
    fields = dict(zip(meta["fields"], values))
    assert meta["dtypes"][list(meta["fields"]).index("area_m2")] == "float64"
    for oid, geom, change, area in zip(fields["id"], shapely.from_wkb(wkb), fields["change"], fields["area_m2"]):
        source = by_id[int(oid)]
        assert geom.is_valid and change == source["properties"]["change"] and area == source["properties"]["area_m2"]
        assert geom.buffer(1e-7).contains(shape(source["geometry"]).representative_point())
    provenance = " ".join(f"{k}={v}" for k, v in info["dataset_metadata"].items())
    assert all(value in provenance for value in expected)

    # KML (Google Earth): one styled placemark per object, the document describes the sources
    info = pyogrio.read_info(products / "changes.kml")
    assert info["driver"] == "LIBKML" and info["features"] == len(by_id)
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    doc = ET.parse(products / "changes.kml").getroot().find("k:Document", ns)
    assert all(value in doc.find("k:description", ns).text for value in expected)
    placemarks = doc.findall(".//k:Placemark", ns)
    assert len(placemarks) == len(by_id)
    for pm in placemarks:
        data = {d.get("name"): d.text for d in pm.iter("{http://www.opengis.net/kml/2.2}SimpleData")}
        colour = CHANGE_COLOURS[data["change"]].lstrip("#").lower()
        kml_colour = pm.find("k:Style/k:LineStyle/k:color", ns).text.lower()  # aabbggrr
        assert kml_colour == "ff" + colour[4:6] + colour[2:4] + colour[0:2]
        assert pm.find("k:name", ns).text.startswith(f"#{data['id']} ")
        assert by_id[int(data["id"])]["properties"]["mgrs"] in pm.find("k:description", ns).text

    # CSV (spreadsheets): one row per object with its centre, MGRS reference and provenance columns
    with open(products / "changes.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(by_id)
    for row in rows:
        props = by_id[int(row["id"])]["properties"]
        assert row["class"] == props["class"] and float(row["centre_lat"]) == props["centre_lat"] and row["mgrs"] == props["mgrs"]
        assert (row["before_file"], row["after_file"], row["before_date"], row["after_date"]) == expected[:4]
        assert row["method"] == summary["method"] and row["software"].endswith(summary["software"]["version"])
        assert row["aoi"] == "North motor pool"


def test_exports_of_an_analysis_without_objects(products, tmp_path):
    summary = read_summary(products)
    written = write_exports({"type": "FeatureCollection", "features": []}, summary, tmp_path)
    assert sorted(p.name for p in written) == ["changes.csv", "changes.gpkg", "changes.kml"]
    assert pyogrio.read_info(tmp_path / "changes.gpkg")["features"] == 0
    assert (tmp_path / "changes.csv").read_text().startswith("id,change,class,")


def test_feature_centres_are_inside_their_objects(analysis):
    fc = changes_feature_collection(analysis.objects, analysis.grid, "2024-03-01", "2024-04-15")
    for f in fc["features"]:
        p = f["properties"]
        assert shape(f["geometry"]).buffer(2e-5).contains(shapely.Point(p["centre_lon"], p["centre_lat"]))
        assert len(p["mgrs"].split()) == 4
    json.dumps(fc)
