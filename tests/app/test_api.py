"""The HTTP service end to end against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from tests.conftest import write_tif
from tests.live import ROOT, LiveServer, create_key, leftovers, upload, wait_for_analysis
from tests.pairs import footprint_geojson, small_pair


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("api") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return small_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def finished(server, pair):
    """One succeeded analysis: (client, analysis body, scene ids, aoi id)."""
    before, after, _ = pair
    client = server.client()
    b = upload(client, before, sensor="synthetic").json()
    a = upload(client, after).json()
    aoi = client.post("/v1/aois", json={"name": "test base", "geometry": footprint_geojson(before)}).json()
    r = client.post(f"/v1/aois/{aoi['id']}/analyses", json={"before_scene_id": b["id"], "after_scene_id": a["id"]})
    assert r.status_code == 202
    body = wait_for_analysis(client, r.json()["id"])
    assert body["status"] == "succeeded", body["error"]
    return client, body, (b["id"], a["id"]), aoi["id"]


def test_upload_records_scene_metadata(finished, pair):
    client, body, (b, a), _ = finished
    scene = client.get(f"/v1/scenes/{b}").json()
    assert scene["bands"] == ["blue", "green", "red", "nir"]
    assert scene["acquired_at"] == "2024-03-01"
    assert scene["pixel_size_m"] == pytest.approx(0.5, rel=1e-3)
    assert scene["sensor"] == "synthetic"
    assert len(scene["checksum"]) == 64


def test_analysis_queued_then_succeeded_with_summary_and_links(finished):
    client, body, _, _ = finished
    assert body["progress"] == 1.0
    assert body["summary"]["counts"]["total"] >= 1
    for link in ("changes", "report", "tilejson_changes", "wmts", "viewer"):
        assert link in body["links"]


def test_changes_geojson_finds_the_vehicles(finished, pair):
    client, body, _, _ = finished
    _, _, centres = pair
    fc = client.get(f"/v1/analyses/{body['id']}/changes.geojson").json()
    assert fc["type"] == "FeatureCollection"
    appeared = [f for f in fc["features"] if f["properties"]["change"] == "appeared"]
    assert len(appeared) >= len(centres) - 1
    for f in fc["features"]:
        polygons = [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"]
        lon, lat = polygons[0][0][0]
        assert 25 < lon < 26.5 and 48 < lat < 49.5  # EPSG:4326 lon/lat order


def test_report_png(finished):
    client, body, _, _ = finished
    r = client.get(f"/v1/analyses/{body['id']}/report.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.width > 1000


def test_product_cog_download_is_a_valid_cog(finished, tmp_path):
    client, body, _, _ = finished
    r = client.get(f"/v1/analyses/{body['id']}/files/change_mask.tif")
    assert r.status_code == 200
    p = tmp_path / "mask.tif"
    p.write_bytes(r.content)
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(str(p), quiet=True)
    assert valid, errors
    with rasterio.open(p) as ds:
        values = set(np.unique(ds.read(1)).tolist())
    assert values <= {0, 1, 2, 3, 255} and 1 in values


def test_lists_are_paginated(finished):
    client, _, _, _ = finished
    page1 = client.get("/v1/scenes?limit=1").json()
    assert len(page1["items"]) == 1 and page1["next"]
    page2 = client.get(f"/v1/scenes?limit=1&cursor={page1['next']}").json()
    assert len(page2["items"]) == 1 and page2["items"][0]["id"] != page1["items"][0]["id"]
    assert client.get("/v1/scenes?cursor=garbage").status_code == 422


def test_aoi_read_lists_covering_scenes_and_filters(finished):
    client, _, (b, a), aoi_id = finished
    aoi = client.get(f"/v1/aois/{aoi_id}").json()
    assert {s["id"] for s in aoi["scenes"]} >= {b, a}
    assert {s["id"] for s in client.get(f"/v1/scenes?aoi_id={aoi_id}").json()["items"]} >= {b, a}
    assert client.get("/v1/scenes?acquired_from=2024-04-01").json()["items"][0]["id"] == a
    assert client.get(f"/v1/analyses?aoi_id={aoi_id}&status=succeeded").json()["items"]


def test_healthz_metrics_openapi_and_cors(server, finished):
    client = server.client()
    assert client.get("/healthz").json() == {"status": "ok"}
    metrics = client.get("/metrics").text
    assert 'basewatch_analyses{status="succeeded"}' in metrics
    assert "basewatch_request_seconds_bucket" in metrics
    assert client.get("/openapi.json").json()["info"]["title"] == "basewatch"
    aid = finished[1]["id"]
    pre = client.options(f"/v1/analyses/{aid}/tilejson.json",
                         headers={"Origin": "https://maps.example", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] in ("*", "https://maps.example")
    # the rest of the API is not for other origins' pages unless configured (BASEWATCH_CORS_API_ORIGINS)
    pre = client.options("/v1/analyses", headers={"Origin": "https://maps.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("notes.tif", b"just some text", "not a GeoTIFF"),
    ("trick.vrt", b'<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand band="1"><SimpleSource>'
                  b"<SourceFilename>/etc/passwd</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>", "not a GeoTIFF"),
])
def test_bad_uploads_refused_and_nothing_left(server, name, content, message):
    client = server.client()
    before = client.get("/v1/scenes").json()["items"]
    r = client.post("/v1/scenes", files={"file": (name, content, "image/tiff")}, data={"acquired_at": "2024-01-01"})
    assert r.status_code == 422 and message in r.json()["detail"]
    assert name in r.json()["detail"] and "uploads" not in r.json()["detail"]
    assert client.get("/v1/scenes").json()["items"] == before
    assert leftovers(server.data_dir) == []


def test_truncated_and_bomb_uploads_refused(server, pair, tmp_path):
    client = server.client()
    data = pair[0].read_bytes()
    r = client.post("/v1/scenes", files={"file": ("cut.tif", data[: len(data) // 2], "image/tiff")})
    assert r.status_code == 422 and "cut.tif" in r.json()["detail"]
    bomb = tmp_path / "bomb.tif"
    with rasterio.open(bomb, "w", driver="GTiff", width=200_000, height=200_000, count=1, dtype="uint8", crs="EPSG:32635",
                       transform=Affine(0.5, 0, 400000, 0, -0.5, 5370000), tiled=True, sparse_ok=True, compress="deflate"):
        pass
    r = upload(client, bomb, acquired_at="2024-01-01")
    assert r.status_code == 422 and "200000 x 200000" in r.json()["detail"]
    assert leftovers(server.data_dir) == []


def test_upload_without_date_or_bad_bands(server, tmp_path):
    client = server.client()
    p = write_tif(tmp_path / "nodate.tif", np.ones((4, 32, 32), np.uint16))
    r = upload(client, p)
    assert r.status_code == 422 and "acquired_at" in r.json()["detail"]
    r = upload(client, p, acquired_at="yesterday")
    assert r.status_code == 422 and "ISO 8601" in r.json()["detail"]
    r = upload(client, p, acquired_at="2024-01-01", bands="red,green")
    assert r.status_code == 422 and "band roles" in r.json()["detail"]
    assert client.post("/v1/scenes", json={"file": "x"}).status_code == 422
    assert leftovers(server.data_dir) == []


def test_oversized_upload_is_413(tmp_path):
    srv = LiveServer(tmp_path / "small", env={"BASEWATCH_MAX_UPLOAD_MB": "1"}).start()
    try:
        client = srv.client()
        big = b"II*\x00" + bytes(3 * 1024 * 1024)
        r = client.post("/v1/scenes", files={"file": ("big.tif", big, "image/tiff")})
        assert r.status_code == 413
        assert leftovers(srv.data_dir) == []
    finally:
        srv.stop()


@pytest.mark.parametrize("geometry, message", [
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "Self-intersection"),
    ({"type": "Point", "coordinates": [0, 0]}, "Polygon"),
    ({"type": "Polygon", "coordinates": [[[179.9, 0], [-179.9, 0], [-179.9, 0.1], [179.9, 0.1], [179.9, 0]]]}, "antimeridian"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]]}, "limit"),
])
def test_invalid_aoi(server, geometry, message):
    r = server.client().post("/v1/aois", json={"name": "bad", "geometry": geometry})
    assert r.status_code == 422 and message in r.json()["detail"]


def test_analysis_requests_that_cannot_work(finished, tmp_path):
    client, _, (b, a), aoi_id = finished
    far = client.post("/v1/aois", json={"name": "elsewhere", "geometry": {"type": "Polygon", "coordinates": [
        [[10, 10], [10.01, 10], [10.01, 10.01], [10, 10.01], [10, 10]]]}}).json()
    cases = [
        (f"/v1/aois/{far['id']}/analyses", {"before_scene_id": b, "after_scene_id": a}, 422, "does not cover the AOI"),
        (f"/v1/aois/{aoi_id}/analyses", {"before_scene_id": a, "after_scene_id": b}, 422, "newer"),
        (f"/v1/aois/{aoi_id}/analyses", {"before_scene_id": b, "after_scene_id": b}, 422, "different"),
        (f"/v1/aois/{aoi_id}/analyses", {"before_scene_id": b, "after_scene_id": a, "method": "magic"}, 422, "unknown method"),
        (f"/v1/aois/{aoi_id}/analyses", {"before_scene_id": b, "after_scene_id": a, "params": {"zoom": 3}}, 422, "params"),
        (f"/v1/aois/{aoi_id}/analyses", {"before_scene_id": "nope", "after_scene_id": a}, 404, "not found"),
        ("/v1/aois/nope/analyses", {"before_scene_id": b, "after_scene_id": a}, 404, "not found"),
    ]
    for url, body, status, message in cases:
        r = client.post(url, json=body)
        assert r.status_code == status and message in r.json()["detail"], (url, body, r.text)


def test_unknown_ids_and_tiles_out_of_range(finished):
    client, body, _, _ = finished
    aid = body["id"]
    for url in ("/v1/scenes/nope", "/v1/aois/nope", "/v1/analyses/nope", "/v1/analyses/nope/changes.geojson",
                "/v1/analyses/nope/tiles/1/0/0.png", f"/v1/analyses/{aid}/files/../../basewatch.db",
                f"/v1/analyses/{aid}/files/secret.txt", f"/v1/analyses/{aid}/tiles/3/8/0.png",
                f"/v1/analyses/{aid}/tiles/31/0/0.png"):
        r = client.get(url)
        assert r.status_code in (404, 422), url
        assert "Traceback" not in r.text
    assert client.get(f"/v1/analyses/{aid}/tiles/3/8/0.png").json()["detail"] == "tile outside the tile matrix"
    assert client.get("/v1/analyses/nope").json() == {"detail": "not found"}


def test_scene_in_use_cannot_be_deleted_but_unused_can(finished, pair, server):
    client, _, (b, _), _ = finished
    assert client.delete(f"/v1/scenes/{b}").status_code == 409
    extra = upload(client, pair[0]).json()
    path = server.data_dir / "scenes" / f"{extra['id']}.tif"
    assert path.exists()
    assert client.delete(f"/v1/scenes/{extra['id']}").status_code == 204
    assert not path.exists() and client.get(f"/v1/scenes/{extra['id']}").status_code == 404


# --- auth and teams ------------------------------------------------------------------------------


def test_auth_teams_and_roles(tmp_path, pair):
    srv = LiveServer(tmp_path / "auth").start()
    try:
        key_a = create_key(srv.data_dir, "alice", "team-a")
        key_b = create_key(srv.data_dir, "bob", "team-b")
        viewer_a = create_key(srv.data_dir, "val", "team-a", "viewer")
        anon = srv.client()
        import time

        time.sleep(1.2)  # the server re-checks whether keys exist once a second
        assert anon.get("/v1/scenes").status_code == 401
        assert anon.get("/healthz").status_code == 200
        assert srv.client("wrong").get("/v1/scenes").status_code == 401
        a, b, va = srv.client(key_a), srv.client(key_b), srv.client(viewer_a)
        scene = upload(a, pair[0]).json()
        assert scene["id"]
        assert upload(va, pair[0]).status_code == 403
        assert va.get(f"/v1/scenes/{scene['id']}").status_code == 200
        assert b.get(f"/v1/scenes/{scene['id']}").status_code == 404
        assert b.get(f"/v1/scenes/{scene['id']}").json() == {"detail": "not found"}
        assert scene["id"] not in [s["id"] for s in b.get("/v1/scenes").json()["items"]]
        assert b.delete(f"/v1/scenes/{scene['id']}").status_code in (403, 404)
        assert va.delete(f"/v1/scenes/{scene['id']}").status_code == 403
        aoi = a.post("/v1/aois", json={"name": "x", "geometry": footprint_geojson(pair[0])}).json()
        assert b.get(f"/v1/aois/{aoi['id']}").status_code == 404
        assert va.post("/v1/aois", json={"name": "x", "geometry": footprint_geojson(pair[0])}).status_code == 403
    finally:
        srv.stop()


def test_open_server_refuses_non_loopback(tmp_path):
    env = {**__import__("os").environ, "BASEWATCH_DATA_DIR": str(tmp_path / "d"), "BASEWATCH_HOST": "0.0.0.0"}
    out = subprocess.run([sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "loopback" in out.stderr


# --- durability ------------------------------------------------------------------------------------


def test_killed_server_loses_no_analysis(tmp_path):
    import time

    pair_dir = tmp_path / "big"
    before, after, _ = small_pair(pair_dir, size=1400, vehicles=8)
    srv = LiveServer(tmp_path / "crash").start()
    client = srv.client()
    b = upload(client, before).json()
    a = upload(client, after).json()
    aoi = client.post("/v1/aois", json={"name": "crash", "geometry": footprint_geojson(before)}).json()
    aid = client.post(f"/v1/aois/{aoi['id']}/analyses", json={"before_scene_id": b["id"], "after_scene_id": a["id"]}).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/analyses/{aid}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    srv.kill()
    assert not (srv.data_dir / "analyses" / aid).exists()
    srv2 = LiveServer(srv.data_dir, port=srv.port).start()
    try:
        body = wait_for_analysis(srv2.client(), aid)
        assert body["status"] == "succeeded", body["error"]
        assert body["attempts"] == 2
        assert sorted(p.name for p in (srv.data_dir / "analyses" / aid).iterdir()) == sorted(
            ["after.tif", "before.tif", "change_mask.tif", "change_score.tif", "changes.geojson", "changes.kml", "changes.gpkg",
             "changes.csv", "report.png", "report.pdf", "summary.json"])
    finally:
        srv2.stop()
