"""AOI parsing: valid shapes accepted with their area and UTM zone, everything else refused in one line."""

import json

import pytest

from aoi import InvalidAOIError, parse_aoi, read_aoi_file

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

SQUARE = {"type": "Polygon", "coordinates": [[[24.0, 48.0], [24.01, 48.0], [24.01, 48.01], [24.0, 48.01], [24.0, 48.0]]]}


def test_polygon_feature_and_collection_accepted_with_area_and_zone():
    for obj in (SQUARE, {"type": "Feature", "properties": {}, "geometry": SQUARE},
                {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": SQUARE}]}):
        aoi = parse_aoi(obj)
        # 0.01 deg x 0.01 deg at 48 N: 744 m x 1112 m
        assert aoi.area_m2 == pytest.approx(744.6 * 1112.2, rel=0.01)
        assert aoi.utm_crs.to_epsg() == 32635


def test_southern_hemisphere_zone():
    south = {"type": "Polygon", "coordinates": [[[28.2, -25.7], [28.21, -25.7], [28.21, -25.69], [28.2, -25.69], [28.2, -25.7]]]}
    assert parse_aoi(south).utm_crs.to_epsg() == 32735


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ({"type": "Point", "coordinates": [0, 0]}, "Polygon or MultiPolygon"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "Self-intersection"),
    ({"type": "Polygon", "coordinates": [[[179.9, 0], [-179.9, 0], [-179.9, 0.1], [179.9, 0.1], [179.9, 0]]]}, "antimeridian"),
    ({"type": "Polygon", "coordinates": [[[200, 0], [201, 0], [201, 1], [200, 0]]]}, "longitude"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}, "limit"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [0.00001, 0], [0.00001, 0.00001], [0, 0]]]}, "minimum"),
    ({"type": "Polygon", "coordinates": []}, "empty"),
    ({"type": "FeatureCollection", "features": []}, "no features"),
])
def test_invalid_aoi_refused_with_reason(bad, message):
    with pytest.raises(InvalidAOIError, match=message):
        parse_aoi(bad)


def test_aoi_file(tmp_path):
    p = tmp_path / "aoi.geojson"
    p.write_text(json.dumps(SQUARE))
    assert read_aoi_file(p).name == "aoi"
    with pytest.raises(InvalidAOIError, match="no such"):
        read_aoi_file(tmp_path / "missing.geojson")
