"""Watching a base over time (issue 11): watched AOIs and their chain of analyses, zones and per-zone counts,
the timeline, alerts through a durable outbox, scenes registered from STAC items. Real servers throughout:
basewatch under uvicorn, and a loopback HTTP server (tests/localhttp.py) that serves STAC items and
receives the alert webhooks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from types import SimpleNamespace

import pytest
from PIL import Image
from pyproj import Transformer
from shapely.geometry import box, shape

from imagery.objects import ChangeObject, counts_by
from imagery.products import zone_counts
from tests.live import LiveServer, wait_for_analysis
from tests.localhttp import LocalHTTP
from tests import series
from tests.pairs import footprint_geojson, small_pair
from tests.live import create_key, leftovers, upload

SECRET = "s3cret-of-the-receiver"
UTM = "EPSG:32635"  # the CRS of tests.pairs.small_pair, origin (400000, 5370000), 0.5 m pixels
TO_LONLAT = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def lonlat_box(west: float, south: float, east: float, north: float) -> dict:
    """A GeoJSON polygon of a UTM box of the test scenes, in lon/lat."""
    ring = [TO_LONLAT.transform(x, y) for x, y in ((west, south), (east, south), (east, north), (west, north), (west, south))]
    return {"type": "Polygon", "coordinates": [ring]}


# The series (tests/series.py) covers x 400000-400140, y 5369860-5370000; the AOI is that shrunk by 10 m, with
# zones north (y 5369955-5369985) and south (y 5369900-5369950).
DATES = [d.date for d in series.PLAN]


def summed(tables: list[dict]) -> dict:
    """counts_by tables added up."""
    out = json.loads(json.dumps(tables[0]))
    for t in tables[1:]:
        for change, row in t["objects"].items():
            for cls, n in row.items():
                out["objects"][change][cls] += n
        for change, n in t["vehicles_estimated"].items():
            out["vehicles_estimated"][change] += n
        out["total"] += t["total"]
    return out


# --- per-zone counts, as a function ------------------------------------------------------------


def test_zone_counts_put_each_object_in_the_zone_it_overlaps_most():
    def obj(oid, geom, change="appeared", cls="vehicle"):
        return ChangeObject(id=oid, change=change, cls=cls, label=oid, geometry=geom, area_m2=geom.area, length_m=7,
                            width_m=3, orientation_deg=0, score=0.9, brightness_before=0.1, brightness_after=0.05,
                            vehicles=1 if cls == "vehicle" else 0)

    x0, y0 = 400000.0, 5369900.0
    zones = {"west": box(x0, y0, x0 + 50, y0 + 50), "east": box(x0 + 50, y0, x0 + 100, y0 + 50)}
    zones_lonlat = {name: shape(lonlat_box(*z.bounds)) for name, z in zones.items()}
    objects = [obj(1, box(x0 + 10, y0 + 10, x0 + 17, y0 + 13)),                      # west
               obj(2, box(x0 + 47, y0 + 10, x0 + 54, y0 + 13), "disappeared"),       # straddles, mostly east
               obj(3, box(x0 + 60, y0 + 20, x0 + 80, y0 + 40), "appeared", "structure"),  # east
               obj(4, box(x0 + 10, y0 + 60, x0 + 17, y0 + 63))]                      # outside both
    assigned, counts, outside = zone_counts(objects, zones_lonlat, UTM)
    assert assigned == ["west", "east", "east", None]
    assert counts["west"]["objects"]["appeared"]["vehicle"] == 1 and counts["west"]["total"] == 1
    assert counts["east"]["objects"]["disappeared"]["vehicle"] == 1
    assert counts["east"]["objects"]["appeared"]["structure"] == 1
    assert counts["east"]["vehicles_estimated"]["disappeared"] == 1 and counts["east"]["total"] == 2
    assert outside["total"] == 1
    assert summed([*counts.values(), outside]) == counts_by(objects)
    assert zone_counts(objects, {}, UTM) == ([None] * 4, {}, counts_by(objects))


# --- a watched base, end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server with keys (team a analyst and viewer, team b) whose alerts and STAC fetches may reach one
    loopback HTTP server, by the name 127.0.0.1 only (``other``, another one, is never allowed); and the series
    of dates of one base (tests/series.py)."""
    root = tmp_path_factory.mktemp("watch")
    data = root / "data"
    keys = {"a": create_key(data, "alice", "team-a"), "viewer": create_key(data, "val", "team-a", "viewer"),
            "b": create_key(data, "bob", "team-b")}
    web, other = LocalHTTP(), LocalHTTP()
    allowed = json.dumps([f"127.0.0.1:{web.port}"])
    srv = LiveServer(data, env={"BASEWATCH_ALERT_HOSTS": allowed, "BASEWATCH_STAC_HOSTS": allowed,
                                "BASEWATCH_MAX_STAC_ITEM_KB": "8"}).start()
    files = series.write_series(root / "series")
    try:
        yield SimpleNamespace(server=srv, web=web, other=other, keys=keys, files=files,
                              a=srv.client(keys["a"]), viewer=srv.client(keys["viewer"]), b=srv.client(keys["b"]))
    finally:
        srv.stop()
        web.close()
        other.close()


def stac_item(href: str, date: str, **asset) -> bytes:
    return json.dumps({
        "type": "Feature", "stac_version": "1.0.0", "id": "scene-x", "geometry": None,
        "properties": {"datetime": date, "platform": "synthetic-sat"},
        "assets": {"thumbnail": {"href": "thumb.png", "type": "image/png"},
                   "analytic": {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                                "roles": ["data"], "eo:bands": [{"name": f"B{i}", "common_name": c} for i, c in
                                                                enumerate(("blue", "green", "red", "nir"), 1)], **asset}},
    }).encode()


@pytest.fixture(scope="module")
def chain(site):
    """A watched AOI with zones north and south and an alert (a vehicle arriving in zone north), fed the series
    out of date order: D0 (before the watch), then D3, D1, D4 (cloudy, from a STAC item), D2."""
    c, web = site.a, site.web
    ids = {DATES[0]: upload(c, site.files[DATES[0]], acquired_at=DATES[0]).json()["id"]}
    aoi = c.post("/v1/aois", json={"name": "North base", "geometry": series.aoi_geojson()}).json()
    for name, geometry in series.zones_geojson().items():
        r = c.post(f"/v1/aois/{aoi['id']}/zones", json={"name": name, "geometry": geometry})
        assert r.status_code == 201, r.text
    r = c.post(f"/v1/aois/{aoi['id']}/alerts", json={"url": f"{web.url}/hook", "secret": SECRET,
                                                     "rule": {"class": "vehicle", "change": "appeared", "min": 1, "zone": "north"}})
    assert r.status_code == 201, r.text
    alert = r.json()
    r = c.patch(f"/v1/aois/{aoi['id']}", json={"watch": True})
    assert r.status_code == 200 and r.json()["watch"] is True
    assert c.get("/v1/analyses", params={"aoi_id": aoi["id"]}).json()["items"] == []  # from then on only
    web.routes["/items/d4.json"] = (200, {"Content-Type": "application/geo+json"}, stac_item("../assets/d4.tif", "2024-05-01T09:30:00Z"))
    web.routes["/assets/d4.tif"] = (200, {"Content-Type": "image/tiff"}, site.files[DATES[4]].read_bytes())
    for date in (DATES[3], DATES[1], DATES[4], DATES[2]):
        if date == DATES[4]:
            r = c.post("/v1/scenes", json={"stac_item": f"{web.url}/items/d4.json", "aoi_id": aoi["id"]})
        else:
            r = upload(c, site.files[date], acquired_at=date)
        assert r.status_code == 201, r.text
        ids[date] = r.json()["id"]
    analyses = c.get("/v1/analyses", params={"aoi_id": aoi["id"]}).json()["items"]
    done = [wait_for_analysis(c, a["id"], timeout=180) for a in analyses]
    return SimpleNamespace(aoi=aoi, ids=ids, analyses=done, alert=alert, date_of={v: k for k, v in ids.items()})


def vehicle_counts(counts: dict) -> dict[str, int]:
    """Vehicles (class vehicle) that appeared and disappeared in a counts table."""
    return {change: counts["objects"][change]["vehicle"] for change in ("appeared", "disappeared")}


def test_watched_aoi_fed_scenes_out_of_order_ends_with_the_right_chain(site, chain):
    pairs = sorted((chain.date_of[a["before_scene_id"]], chain.date_of[a["after_scene_id"]]) for a in chain.analyses)
    # each new scene against the previous one by date, the next one against it; D0 -> D3 and D1 -> D3 were split
    d = DATES
    assert pairs == [(d[0], d[1]), (d[0], d[3]), (d[1], d[2]), (d[1], d[3]), (d[2], d[3]), (d[3], d[4])]
    assert all(a["watched"] and a["status"] == "succeeded" for a in chain.analyses), [a["error"] for a in chain.analyses]
    items = site.a.get(f"/v1/aois/{chain.aoi['id']}/timeline").json()
    assert items["next"] is None
    dates = [i["date"] for i in items["items"]]
    assert dates == DATES and [i["scene_id"] for i in items["items"]] == [chain.ids[d] for d in dates]
    by_id = {a["id"]: a for a in chain.analyses}
    first = items["items"][0]
    assert first["analysis_id"] is None and first["gap"] is False  # the chain's first date has nothing before it
    for prev, item in zip(items["items"], items["items"][1:]):
        analysis = by_id[item["analysis_id"]]
        assert (analysis["before_scene_id"], analysis["after_scene_id"]) == (prev["scene_id"], item["scene_id"])
        assert item["counts"] == analysis["summary"]["counts"] and item["zones"] == analysis["summary"]["zones"]
        cloudy = series.by_date(item["date"]).cloudy
        # the cloud hides some 30 % of the AOI: a gap; the clear dates are seen whole
        assert item["gap"] is cloudy and (item["analysed_fraction"] < 0.8 if cloudy else item["analysed_fraction"] > 0.95), item
        # vehicles per zone and overall are exactly the generator's (the cloudy date: nothing moved where it is clear,
        # and vehicle E under the cloud is not reported gone)
        before, after = series.by_date(prev["date"]), series.by_date(item["date"])
        for zone in (None, "north", "south"):
            counts = item["zones"][zone] if zone else item["counts"]
            truth = series.truth(before, after, zone)
            assert vehicle_counts(counts) == truth, (item["date"], zone, counts)
            assert {k: counts["vehicles_estimated"][k] for k in truth} == truth, (item["date"], zone, counts)
    # pages of two, in date order, add up to the same timeline
    seen, cursor = [], None
    while True:
        page = site.a.get(f"/v1/aois/{chain.aoi['id']}/timeline", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += page["items"]
        cursor = page["next"]
        if not cursor:
            break
    assert seen == items["items"]


def test_scene_registered_from_a_stac_item(site, chain):
    scene = site.a.get(f"/v1/scenes/{chain.ids['2024-05-01']}").json()
    assert scene["acquired_at"] == "2024-05-01" and scene["sensor"] == "synthetic-sat"
    assert scene["bands"] == ["blue", "green", "red", "nir"] and scene["filename"] == "d4.tif"
    assert scene["source_url"] == f"{site.web.url}/items/d4.json"
    assert (scene["width"], scene["height"]) == (series.SIZE, series.SIZE)  # the AOI and its 100 m margin: all of it
    gets = [r for r in site.web.received if r.method == "GET"]
    assert "/items/d4.json" in [r.path for r in gets] and all(r.path != "/thumb.png" for r in gets)
    assets = [r for r in gets if r.path == "/assets/d4.tif"]
    assert assets and all(r.headers.get("Range", "").startswith("bytes=") for r in assets)  # GDAL over range requests


def test_stac_asset_copies_only_the_window_of_the_aoi(site, tmp_path):
    """A 600 m scene (away from the watched base), an AOI of 40 m in one corner: only that window and its 100 m
    margin are read and stored."""
    from tests.conftest import textured, write_tif
    from affine import Affine
    import numpy as np

    size = 1200
    data = (np.stack([textured((size, size), seed=k) for k in range(4)]) * 3000 + 500).astype(np.uint16)
    big = write_tif(tmp_path / "big.tif", data, transform=Affine(0.5, 0, 401000, 0, -0.5, 5370000), nodata=0,
                    descriptions=("blue", "green", "red", "nir"))
    body = big.read_bytes()
    site.web.routes["/assets/big.tif"] = (200, {"Content-Type": "image/tiff"}, body)
    site.web.routes["/items/big-scene.json"] = (200, {}, stac_item("/assets/big.tif", "2024-08-01T10:00:00Z", **{
        "proj:epsg": 32635, "proj:shape": [size, size]}))
    c = site.a
    aoi = c.post("/v1/aois", json={"name": "corner", "geometry": lonlat_box(401020, 5369940, 401060, 5369980)}).json()
    r = c.post("/v1/scenes", json={"stac_item": f"{site.web.url}/items/big-scene.json", "aoi_id": aoi["id"]})
    assert r.status_code == 201, r.text
    scene = r.json()
    # the window: x 401000 (the edge) - 401160, y 5369840 - 5370000 (the edge): 320 x 320 px of 1200 x 1200 (a pixel
    # more where the lon/lat AOI's UTM bounds round outwards)
    assert 320 <= scene["width"] <= 323 and 320 <= scene["height"] <= 323, scene
    assert scene["bands"] == ["blue", "green", "red", "nir"] and scene["acquired_at"] == "2024-08-01"
    assert site.web.sent["/assets/big.tif"] < len(body) / 3, (site.web.sent["/assets/big.tif"], len(body))
    # the item's proj: fields are checked against the header; another team's AOI is not found
    site.web.routes["/items/wrong-crs.json"] = (200, {}, stac_item("/assets/big.tif", "2024-08-01", **{"proj:epsg": 32631}))
    r = c.post("/v1/scenes", json={"stac_item": f"{site.web.url}/items/wrong-crs.json"})
    assert r.status_code == 422 and "EPSG:32631" in r.json()["detail"], r.text
    assert site.b.post("/v1/scenes", json={"stac_item": f"{site.web.url}/items/big-scene.json", "aoi_id": aoi["id"]}).status_code == 404
    far = c.post("/v1/aois", json={"name": "far", "geometry": lonlat_box(410000, 5369940, 410040, 5369980)}).json()
    r = c.post("/v1/scenes", json={"stac_item": f"{site.web.url}/items/big-scene.json", "aoi_id": far["id"]})
    assert r.status_code == 422 and "does not cover the AOI" in r.json()["detail"], r.text
    # an inline item, its asset on the allowed host
    inline = json.loads(stac_item(f"{site.web.url}/assets/big.tif", "2024-08-02"))
    r = c.post("/v1/scenes", json={"stac_item": inline, "aoi_id": aoi["id"]})
    assert r.status_code == 201 and r.json()["source_url"] == f"{site.web.url}/assets/big.tif", r.text
    assert leftovers(site.server.data_dir) == []


def test_stac_items_from_hosts_not_allowed_are_refused(site):
    web, c = site.web, site.a
    web.routes["/items/elsewhere.json"] = (200, {}, stac_item(f"http://localhost:{web.port}/assets/d4.tif", "2024-06-01"))
    web.routes["/items/moved.json"] = (302, {"Location": f"http://localhost:{web.port}/items/d4.json"}, b"")
    web.routes["/items/big.json"] = (200, {}, b"{" + b" " * 9000 + b"}")
    web.routes["/items/notstac.json"] = (200, {}, b'{"type": "FeatureCollection"}')
    web.routes["/items/nogeotiff.json"] = (200, {}, stac_item("x.jp2", "2024-06-01", type="image/jp2"))
    other = site.other  # a second loopback server, on no allow-list: it must never be contacted
    other.routes["/items/d4.json"] = web.routes["/items/d4.json"]
    other.routes["/assets/d4.tif"] = web.routes["/assets/d4.tif"]
    web.routes["/items/asset-elsewhere.json"] = (200, {}, stac_item(f"{other.url}/assets/d4.tif", "2024-06-01"))
    web.routes["/assets/moved.tif"] = (302, {"Location": f"{other.url}/assets/d4.tif"}, b"")
    web.routes["/items/asset-moved.json"] = (200, {}, stac_item("/assets/moved.tif", "2024-06-01"))
    before = c.get("/v1/scenes", params={"limit": 500}).json()["items"]
    n_requests = len(web.received)
    cases = [
        (f"http://localhost:{web.port}/items/d4.json", 422, "not allowed"),         # the same server by another name
        (f"http://2130706433:{web.port}/items/d4.json", 422, "not allowed"),        # 127.0.0.1 as a number
        (f"http://127.0.0.1:{web.port}@localhost:{web.port}/items/d4.json", 422, "user name"),
        (f"http://127.0.0.1:{web.port + 1 if web.port < 65535 else 1}/items/d4.json", 422, "not allowed"),  # another port
        ("file:///etc/passwd", 422, "http"),
        (f"{web.url}/items/moved.json", 422, "not allowed"),                        # redirected to a name not allowed
        (f"{web.url}/items/elsewhere.json", 422, "not allowed"),                    # its asset on a host not allowed
        (f"{web.url}/items/big.json", 502, "limit"),
        (f"{web.url}/items/notstac.json", 422, "not a STAC item"),
        (f"{web.url}/items/nogeotiff.json", 422, "no GeoTIFF asset"),
        (f"{web.url}/items/missing.json", 502, "HTTP 404"),
        (f"{other.url}/items/d4.json", 422, "not allowed"),                        # another host
        (f"{web.url}/items/asset-elsewhere.json", 422, "not allowed"),              # its asset on another host
        (f"{web.url}/items/asset-moved.json", 422, "not allowed"),                  # its asset redirected there
    ]
    for url, status, message in cases:
        r = c.post("/v1/scenes", json={"stac_item": url})
        assert r.status_code == status and message in r.json()["detail"], (url, r.text)
    inline = json.loads(stac_item(f"{other.url}/assets/d4.tif", "2024-06-01"))
    r = c.post("/v1/scenes", json={"stac_item": inline})
    assert r.status_code == 422 and "not allowed" in r.json()["detail"], r.text
    inline = json.loads(stac_item("/assets/d4.tif", "2024-06-01"))
    r = c.post("/v1/scenes", json={"stac_item": inline})
    assert r.status_code == 422 and "absolute" in r.json()["detail"], r.text
    assert other.received == []  # the log of the host not allowed: not one request
    assert c.post("/v1/scenes", json={"stac_item": 5}).status_code == 422
    assert c.post("/v1/scenes", json={"stac_item": f"{web.url}/items/d4.json", "extra": 1}).status_code == 422
    assert site.viewer.post("/v1/scenes", json={"stac_item": f"{web.url}/items/d4.json"}).status_code == 403
    # only the allowed name was ever contacted, and nothing was left behind
    assert {r.host for r in web.received[n_requests:]} == {f"127.0.0.1:{web.port}"}
    assert c.get("/v1/scenes", params={"limit": 500}).json()["items"] == before
    assert leftovers(site.server.data_dir) == []


def test_zone_rules(site, chain):
    c, aoi_id = site.a, chain.aoi["id"]
    zones_before = c.get(f"/v1/aois/{aoi_id}/zones").json()["items"]
    assert {z["name"] for z in zones_before} == {"north", "south"}
    cases = [
        ({"name": "too far", "geometry": lonlat_box(400015, 5369860, 400060, 5369880)}, 422, "not within its AOI"),
        ({"name": "elsewhere", "geometry": lonlat_box(401000, 5369932, 401020, 5369950)}, 422, "not within its AOI"),
        ({"name": "overlap", "geometry": lonlat_box(400040, 5369940, 400065, 5369970)}, 422, "overlaps zone"),
        ({"name": "north", "geometry": lonlat_box(400015, 5369875, 400033, 5369887)}, 409, "already has a zone"),
        ({"name": "bad", "geometry": {"type": "Point", "coordinates": [25.6, 48.4]}}, 422, "Polygon"),
        ({"name": "bowtie", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}, 422,
         "Self-intersection"),
    ]
    for body, status, message in cases:
        r = c.post(f"/v1/aois/{aoi_id}/zones", json=body)
        assert r.status_code == status and message in r.json()["detail"], (body["name"], r.text)
    ok = {"name": "gate", "geometry": lonlat_box(400015, 5369875, 400033, 5369887)}
    assert site.viewer.post(f"/v1/aois/{aoi_id}/zones", json=ok).status_code == 403
    assert site.b.post(f"/v1/aois/{aoi_id}/zones", json=ok).status_code == 404
    assert site.b.get(f"/v1/aois/{aoi_id}/zones").status_code == 404
    assert c.get(f"/v1/aois/{aoi_id}/zones").json()["items"] == zones_before
    r = c.post(f"/v1/aois/{aoi_id}/zones", json=ok)
    assert r.status_code == 201 and r.json()["area_m2"] == pytest.approx(12 * 18, rel=0.02)
    north = next(z for z in zones_before if z["name"] == "north")
    assert c.delete(f"/v1/aois/{aoi_id}/zones/{north['id']}").status_code == 409  # the alert watches it
    assert site.viewer.delete(f"/v1/aois/{aoi_id}/zones/{r.json()['id']}").status_code == 403
    assert c.delete(f"/v1/aois/{aoi_id}/zones/{r.json()['id']}").status_code == 204
    assert c.get(f"/v1/aois/{aoi_id}/zones").json()["items"] == zones_before


def test_per_zone_counts_sum_to_the_total(site, chain):
    for analysis in chain.analyses:
        summary = analysis["summary"]
        assert set(summary["zones"]) == {"north", "south"}
        assert summed([*summary["zones"].values(), summary["outside_zones"]]) == summary["counts"]
        fc = site.a.get(f"/v1/analyses/{analysis['id']}/changes.geojson").json()
        for zone, counts in [*summary["zones"].items(), (None, summary["outside_zones"])]:
            assert sum(1 for f in fc["features"] if f["properties"]["zone"] == zone) == counts["total"]


def test_timeline_png(site, chain):
    r = site.a.get(f"/v1/aois/{chain.aoi['id']}/timeline.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.width == 1000 and img.height >= 3 * 240  # the AOI and one panel per zone
    assert site.b.get(f"/v1/aois/{chain.aoi['id']}/timeline.png").status_code == 404
    assert site.server.client().get(f"/v1/aois/{chain.aoi['id']}/timeline.png",
                                    params={"token": site.keys["viewer"]}).status_code == 200


def test_alert_events_reach_the_receiver_signed(site, chain):
    """One event per analysis in which the generator put a vehicle arriving in zone north (D0 -> D1: A, B, C;
    D0 -> D3, split since: C), none for the others, each signed over its exact body."""
    met = {(a, b) for a in DATES for b in DATES
           if a < b and series.truth(series.by_date(a), series.by_date(b), "north")["appeared"] >= 1}
    expected = {a["id"] for a in chain.analyses if (chain.date_of[a["before_scene_id"]], chain.date_of[a["after_scene_id"]]) in met}
    assert len(expected) == 2, "the rule is met by D0 -> D1 and D0 -> D3"
    deadline = time.monotonic() + 30
    while {json.loads(p.body)["analysis_id"] for p in site.web.posts()} != expected:
        assert time.monotonic() < deadline, [json.loads(p.body)["analysis_id"] for p in site.web.posts()]
        time.sleep(0.2)
    for post in site.web.posts():
        assert post.path == "/hook"
        assert post.headers["X-Basewatch-Signature"] == "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
        event = json.loads(post.body)
        assert post.headers["X-Basewatch-Delivery"] == event["delivery_id"]
        analysis = next(a for a in chain.analyses if a["id"] == event["analysis_id"])
        assert event["aoi"] == {"id": chain.aoi["id"], "name": "North base"} and event["zone"] == "north"
        assert event["dates"] == {"before": analysis["summary"]["before_date"], "after": analysis["summary"]["after_date"]}
        assert event["counts"] == analysis["summary"]["zones"]["north"] and event["count"] >= 1
        assert event["links"]["viewer"].endswith(f"/v1/analyses/{analysis['id']}/viewer")
        assert event["links"]["report"].endswith(f"/v1/analyses/{analysis['id']}/report.pdf")
    url = f"/v1/aois/{chain.aoi['id']}/alerts/{chain.alert['id']}/deliveries"
    deliveries = site.a.get(url).json()["items"]
    assert {d["analysis_id"] for d in deliveries} == expected
    assert all(d["status"] == "delivered" and len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200
               for d in deliveries)
    assert "secret" not in json.dumps(site.a.get(f"/v1/aois/{chain.aoi['id']}/alerts").json())
    assert site.b.get(url).status_code == 404 and site.viewer.get(url).status_code == 200


def test_alert_rules_are_checked(site, chain):
    c, aoi_id, port = site.a, chain.aoi["id"], site.web.port
    rule = {"class": "vehicle", "change": "appeared", "min": 1}
    cases = [
        ({"url": f"http://localhost:{port}/hook", "secret": SECRET, "rule": rule}, 422, "not allowed"),
        ({"url": f"http://127.0.0.1.nip.io:{port}/hook", "secret": SECRET, "rule": rule}, 422, "not allowed"),
        ({"url": f"http://127.0.0.1:{port}@evil.example/hook", "secret": SECRET, "rule": rule}, 422, "user name"),
        ({"url": "ftp://127.0.0.1/hook", "secret": SECRET, "rule": rule}, 422, "http"),
        ({"url": f"{site.web.url}/hook", "secret": SECRET, "rule": {**rule, "zone": "nowhere"}}, 422, "no zone named"),
        ({"url": f"{site.web.url}/hook", "secret": "short", "rule": rule}, 422, "secret"),
        ({"url": f"{site.web.url}/hook", "secret": SECRET, "rule": {**rule, "class": "tank"}}, 422, "class"),
        ({"url": f"{site.web.url}/hook", "secret": SECRET, "rule": {**rule, "min": 0}}, 422, "min"),
    ]
    for body, status, message in cases:
        r = c.post(f"/v1/aois/{aoi_id}/alerts", json=body)
        assert r.status_code == status and message in json.dumps(r.json()["detail"]), (body, r.text)
    ok = {"url": f"{site.web.url}/other", "secret": SECRET, "rule": rule}
    assert site.viewer.post(f"/v1/aois/{aoi_id}/alerts", json=ok).status_code == 403
    assert site.b.post(f"/v1/aois/{aoi_id}/alerts", json=ok).status_code == 404
    assert len(c.get(f"/v1/aois/{aoi_id}/alerts").json()["items"]) == 1
    created = c.post(f"/v1/aois/{aoi_id}/alerts", json=ok).json()
    assert created["rule"] == {**rule, "zone": None}
    assert site.b.delete(f"/v1/aois/{aoi_id}/alerts/{created['id']}").status_code == 404
    assert c.delete(f"/v1/aois/{aoi_id}/alerts/{created['id']}").status_code == 204
    assert c.get(f"/v1/aois/{aoi_id}/alerts/{created['id']}/deliveries").status_code == 404


def test_watch_is_per_team_and_a_baseline_adds_its_analyses(site, chain):
    c, aoi_id = site.a, chain.aoi["id"]
    assert site.viewer.patch(f"/v1/aois/{aoi_id}", json={"watch": False}).status_code == 403
    assert site.b.patch(f"/v1/aois/{aoi_id}", json={"watch": False}).status_code == 404
    assert c.patch(f"/v1/aois/{aoi_id}", json={"baseline_scene_id": "nope"}).status_code == 404
    assert c.patch(f"/v1/aois/{aoi_id}", json={"watch": "maybe"}).status_code == 422
    foreign = upload(site.b, site.files[DATES[0]], acquired_at="2024-01-01").json()["id"]  # team b's scene over the same ground
    assert c.patch(f"/v1/aois/{aoi_id}", json={"baseline_scene_id": foreign}).status_code == 404
    baseline = chain.ids["2024-01-01"]
    r = c.patch(f"/v1/aois/{aoi_id}", json={"baseline_scene_id": baseline})
    assert r.status_code == 200 and r.json()["baseline_scene_id"] == baseline and r.json()["watch"] is True
    assert c.delete(f"/v1/scenes/{baseline}").status_code == 409
    count = len(c.get("/v1/analyses", params={"aoi_id": aoi_id}).json()["items"])
    d5 = upload(c, site.files[DATES[3]], acquired_at="2024-06-01").json()["id"]
    listed = c.get("/v1/analyses", params={"aoi_id": aoi_id}).json()["items"]  # newest first
    new = listed[: len(listed) - count]
    assert sorted((a["before_scene_id"], a["after_scene_id"]) for a in new) == sorted([(chain.ids["2024-05-01"], d5), (baseline, d5)])
    # team b's scene over the same ground joins no chain of team a
    assert all(foreign not in (a["before_scene_id"], a["after_scene_id"]) for a in c.get("/v1/analyses", params={"aoi_id": aoi_id}).json()["items"])
    # no longer watched: a new scene queues nothing
    assert c.patch(f"/v1/aois/{aoi_id}", json={"watch": False}).json()["watch"] is False
    upload(c, site.files[DATES[0]], acquired_at="2024-07-01")
    assert len(c.get("/v1/analyses", params={"aoi_id": aoi_id}).json()["items"]) == count + 2


# --- the outbox: retried, and never lost across a kill -9 ---------------------------------------------


def deliveries(client, aoi_id: str, alert_id: str) -> list[dict]:
    return client.get(f"/v1/aois/{aoi_id}/alerts/{alert_id}/deliveries").json()["items"]


def wait_deliveries(client, aoi_id, alert_id, done, timeout=60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not done(found := deliveries(client, aoi_id, alert_id)):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    return found


def test_alert_is_retried_with_backoff_and_survives_a_kill_9_between_attempts(tmp_path):
    web = LocalHTTP(post_statuses=[500, 503])  # the receiver fails twice, then accepts
    env = {"BASEWATCH_ALERT_HOSTS": json.dumps([f"127.0.0.1:{web.port}"]), "BASEWATCH_ALERT_RETRY_S": "2"}
    srv = LiveServer(tmp_path / "data", env=env).start()
    restarted = None
    try:
        c = srv.client()
        before, after, _ = small_pair(tmp_path / "pair", size=160, vehicles=2)
        ids = [upload(c, p).json()["id"] for p in (before, after)]
        aoi = c.post("/v1/aois", json={"name": "depot", "geometry": footprint_geojson(before)}).json()
        alert = c.post(f"/v1/aois/{aoi['id']}/alerts", json={"url": f"{web.url}/hook", "secret": SECRET,
                                                             "rule": {"class": "any", "change": "appeared", "min": 2}}).json()
        r = c.post(f"/v1/aois/{aoi['id']}/analyses", json={"before_scene_id": ids[0], "after_scene_id": ids[1]})
        assert wait_for_analysis(c, r.json()["id"])["status"] == "succeeded"
        failed_twice = wait_deliveries(c, aoi["id"], alert["id"], lambda d: d and len(d[0]["attempts"]) == 2)
        srv.kill()  # between the second and the third attempt
        assert failed_twice[0]["status"] == "pending" and failed_twice[0]["next_attempt_at"]
        restarted = LiveServer(srv.data_dir, port=srv.port, env=env).start()
        [delivery] = wait_deliveries(restarted.client(), aoi["id"], alert["id"], lambda d: d and d[0]["status"] == "delivered")
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
        assert [bool(a["error"]) for a in delivery["attempts"]] == [True, True, False]
        times = [dt_parse(a["at"]) for a in delivery["attempts"]]
        assert times[1] - times[0] >= 2 - 0.2 and times[2] - times[1] >= 4 - 0.2  # 2 s, then doubled
        posts = web.posts()
        assert len(posts) == 3 and len({p.body for p in posts}) == 1 and len({p.headers["X-Basewatch-Delivery"] for p in posts}) == 1
        for post in posts:
            assert post.headers["X-Basewatch-Signature"] == "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
        assert json.loads(posts[0].body)["delivery_id"] == delivery["id"]
    finally:
        (restarted or srv).stop()
        srv.kill()
        web.close()


def dt_parse(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text).timestamp()


# --- many processes on PostgreSQL: each pair queued once, each delivery sent by one process -----------------


def test_watch_and_outbox_are_safe_across_processes_on_postgresql(pg_url):
    import datetime as dt
    import threading

    from app import store, watch
    from app.db import make_engine, migrate, session_factory
    from app.models import Alert, Aoi, Delivery, Scene, utcnow

    migrate(pg_url)
    sessions = session_factory(make_engine(pg_url, pool_size=8))
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    with sessions() as s:
        s.add(Aoi(id="a1", team="t", name="a", geometry=square, west=0, south=0, east=1, north=1, area_m2=1e10,
                  watch=True, watched_since=utcnow() - dt.timedelta(days=1)))
        for i in range(12):
            s.add(Scene(id=f"s{i:02d}", team="t", filename="x", path="x", acquired_at=dt.date(2024, 1, 1) + dt.timedelta(days=i),
                        bands=["red"], crs="EPSG:32631", pixel_size_m=1, width=1, height=1, dtype="uint8", footprint=square,
                        west=0, south=0, east=1, north=1, checksum="x", size_bytes=1))
        s.commit()  # no ORM relationships order the inserts: parents first
        s.add(Alert(id="al", team="t", aoi_id="a1", url="http://127.0.0.1:9/", secret="x" * 16, rule={}))
        s.commit()
        s.add_all([Delivery(id=f"d{i:02d}", alert_id="al", analysis_id=f"an{i}", body="{}") for i in range(20)])
        s.commit()
    queued, claimed = [], []

    def process():
        with sessions() as s:
            queued.extend((a.before_scene_id, a.after_scene_id) for a in watch.sync(s, store.get_aoi(s, "t", "a1")))
            for _ in range(10):
                claimed.extend(d.id for d, _ in store.claim_deliveries(s, lease_s=60, limit=3))

    threads = [threading.Thread(target=process) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(queued) == [(f"s{i:02d}", f"s{i + 1:02d}") for i in range(11)]
    with sessions() as s:
        assert store.watched_pairs(s, "a1") == set(queued)
    assert sorted(claimed) == [f"d{i:02d}" for i in range(20)]
