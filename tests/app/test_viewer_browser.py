"""The analysis viewer in a real browser (Debian's chromium driven by Playwright) against a real server.

A small synthetic pair is uploaded and analysed through the HTTP API of a live server
(tests/live.py) that has API keys, so the page is opened the way an analyst opens it:
``/v1/analyses/{id}/viewer?token=KEY``. The browser may reach nothing but that server.

Chromium is never downloaded here (no ``playwright install``): ``make test`` installs Debian's
``chromium`` package, and this test fails (it does not skip) when it is missing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from imagery import contract
from tests.live import ROOT, LiveServer, wait_for_analysis

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1440, "height": 900}  # a laptop: everything analysts need without scrolling
MAP_BACKGROUND = np.array((0x0B, 0x0D, 0x10))  # #map background in viewer.css
CHANGE_RGB = np.array([(0xFF, 0x2A, 0x2A), (0x19, 0xD3, 0xFF), (0xFF, 0xD2, 0x1A)])

pytestmark = pytest.mark.timeout(180)


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


def create_key(data_dir: Path, team: str) -> str:
    """`basewatch keys create` against the server's data folder; the key is printed alone on stdout."""
    env = {**os.environ, "BASEWATCH_DATA_DIR": str(data_dir)}
    out = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--name", f"viewer-test-{team}", "--team", team],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert key and "\n" not in key, out.stdout
    return key


def write_scenes(folder: Path) -> dict[str, Path]:
    """A small synthetic before/after pair (240 m, ~0.55 m pixels) with vehicles, tents and a structure."""
    from synth import make_pair, preset, write_pair

    params = dataclasses.replace(preset("default", seed=3), extent_m=240.0)
    return write_pair(make_pair(params), folder)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A live server with keys for teams a and b, and one succeeded analysis of team a."""
    root = tmp_path_factory.mktemp("viewer")
    data_dir = root / "data"
    data_dir.mkdir()
    key, other_key = create_key(data_dir, "a"), create_key(data_dir, "b")
    paths = write_scenes(root / "pair")
    server = LiveServer(data_dir).start()
    try:
        with server.client(key) as client:
            scene_ids = []
            for name in ("before", "after"):
                with open(paths[name], "rb") as fh:
                    r = client.post("/v1/scenes", files={"file": (f"{name}.tif", fh, "image/tiff")})
                assert r.status_code == 201, r.text
                scene_ids.append(r.json()["id"])
            r = client.post("/v1/aois", json={"name": "viewer test", "geometry": json.loads(paths["aoi"].read_text())})
            assert r.status_code == 201, r.text
            r = client.post(f"/v1/aois/{r.json()['id']}/analyses",
                            json={"before_scene_id": scene_ids[0], "after_scene_id": scene_ids[1]})
            assert r.status_code == 202, r.text
            analysis = wait_for_analysis(client, r.json()["id"], timeout=120)
            assert analysis["status"] == "succeeded", analysis.get("error")
            r = client.get(f"/v1/analyses/{analysis['id']}/changes.geojson")
            assert r.status_code == 200, r.text
            changes = r.json()
        yield {"server": server, "key": key, "other_key": other_key, "analysis": analysis, "changes": changes}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: the viewer test needs Debian's chromium "
                    "(`make browser`, or `apt-get install chromium`)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def wait_until(page, expression: str, timeout: float = 20.0):
    """Poll a JS expression until truthy. (page.wait_for_function evaluates strings with eval,
    which the viewer's Content-Security-Policy forbids; page.evaluate is not affected.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            hook = page.evaluate("JSON.stringify(Object.assign({}, window.basewatchViewer || {}, {map: undefined}))")
            raise AssertionError(f"timed out waiting for {expression!r}; viewer state {hook}")
        page.wait_for_timeout(100)  # not time.sleep: Playwright handles routed requests only while called


def wait_settled(page, timeout: float = 20.0):
    """Until no tile layer is loading (twice in a row, 150 ms apart, so a new batch is not missed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait_until(page, "window.basewatchViewer.idle", timeout=max(0.1, deadline - time.monotonic()))
        page.wait_for_timeout(150)
        if page.evaluate("window.basewatchViewer.idle"):
            return
    raise AssertionError("tiles kept loading")


def rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def change_coloured(img: np.ndarray, tolerance: int = 24) -> int:
    """Pixels within ``tolerance`` (per channel) of one of the change colours."""
    near = np.abs(img[:, :, None, :] - CHANGE_RGB[None, None]).max(axis=-1) <= tolerance
    return int(near.any(axis=-1).sum())


def bbox_center(geometry: dict) -> tuple[float, float]:
    """(lat, lng) of the middle of a GeoJSON polygon's bounding box."""
    coords = np.array([pt for ring in (geometry["coordinates"] if geometry["type"] == "Polygon"
                                       else [r for poly in geometry["coordinates"] for r in poly]) for pt in ring])
    return (coords[:, 1].min() + coords[:, 1].max()) / 2, (coords[:, 0].min() + coords[:, 0].max()) / 2


def viewer_path(analysis_id: str, token: str | None = None) -> str:
    return f"/v1/analyses/{analysis_id}/viewer" + (f"?token={token}" if token else "")


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------


def test_viewer_needs_a_key_and_the_right_team(site, browser):
    server, analysis_id = site["server"], site["analysis"]["id"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(viewer_path(analysis_id)).status_code == 401
        assert http.get(viewer_path(analysis_id, "bw_not-a-key")).status_code == 401
        assert http.get(viewer_path(analysis_id, site["other_key"])).status_code == 404  # another team's analysis
        assert http.get(viewer_path("0" * 32, site["key"])).status_code == 404
        r = http.get(viewer_path(analysis_id, site["key"]))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert f'data-analysis-id="{analysis_id}"' in r.text and "{{" not in r.text
        assert "default-src 'none'" in r.headers["content-security-policy"]
        r = http.get(viewer_path(analysis_id), headers={"Authorization": f"Bearer {site['key']}"})
        assert r.status_code == 200
        # Static assets: public, immutable, nothing outside app/static.
        r = http.get("/v1/viewer-assets/vendor/leaflet/leaflet.js")
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
        assert "javascript" in r.headers["content-type"]
        for bad in ("../main.py", "..%2Fmain.py", "%2e%2e/%2e%2e/pyproject.toml", "viewer/../../routes/viewer.py", "/etc/passwd", "viewer"):
            assert http.get(f"/v1/viewer-assets/{bad}").status_code == 404, bad

    page = browser.new_page(viewport=VIEWPORT)
    try:
        response = page.goto(server.url + viewer_path(analysis_id))
        assert response.status == 401
    finally:
        page.close()


def test_viewer_renders_swipes_and_zooms_to_objects(site, browser):
    server, key, analysis = site["server"], site["key"], site["analysis"]
    features = site["changes"]["features"]
    assert features, "the analysis found no change object, so the object list cannot be tested"

    context = browser.new_context(viewport=VIEWPORT)
    foreign, problems, requests = [], [], []

    def only_this_server(route):
        if route.request.url.startswith(server.url + "/") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r))
    try:
        started = time.monotonic()
        response = page.goto(server.url + viewer_path(analysis["id"], key))
        assert response.status == 200
        wait_until(page, "window.basewatchViewer && (window.basewatchViewer.ready || window.basewatchViewer.error)", 30)
        assert page.evaluate("window.basewatchViewer.error") is None
        wait_until(page, "window.basewatchViewer.tilesLoaded > 0")
        wait_settled(page)
        state = page.evaluate("({t: basewatchViewer.tilesLoaded, e: basewatchViewer.tileErrors, o: basewatchViewer.objects,"
                              " z: basewatchViewer.map.getZoom()})")
        assert state["e"] == 0, f"{state['e']} tiles failed"
        assert state["o"] == len(features)
        print(f"viewer ready with {state['t']} tiles in {time.monotonic() - started:.1f} s")

        # The map shows imagery (not a blank or uniform area) and the change overlay's colours.
        img = rgb(page.locator("#map").screenshot())
        h, w, _ = img.shape
        core = img[h // 8: -h // 8, w // 8: -w // 8]
        assert core.std() > 12, f"the map looks blank (std {core.std():.1f})"
        painted = (np.abs(core - MAP_BACKGROUND).max(axis=-1) > 12).mean()
        assert painted > 0.3, f"only {painted:.0%} of the map's middle shows imagery"
        page.uncheck("#toggle-labels")  # the numbers are drawn in the change colours too
        with_overlay = change_coloured(rgb(page.locator("#map").screenshot()))
        page.uncheck("#toggle-changes")
        wait_settled(page)
        without_overlay = change_coloured(rgb(page.locator("#map").screenshot()))
        page.check("#toggle-changes")
        page.check("#toggle-labels")
        wait_settled(page)
        assert with_overlay >= 20 and with_overlay > 3 * without_overlay + 10, \
            f"change colours: {with_overlay} px with the overlay, {without_overlay} px without"

        # The panel: total count, dates, counts table, report link, object list.
        count_text = page.text_content("#object-count").replace(",", "")
        assert int(count_text) == len(features) == analysis["summary"]["counts"]["total"]
        assert page.text_content("#before-date") == analysis["summary"]["before_date"]
        assert page.text_content("#after-date") == analysis["summary"]["after_date"]
        shown = page.eval_on_selector_all("#caveats li", "items => items.map(li => li.textContent)")
        assert analysis["summary"]["caveats"], "the test scene should carry a caveat (clouds) for the list to be tested"
        assert shown == analysis["summary"]["caveats"]
        assert page.locator("#counts tbody tr").count() == len(contract.CLASSES)
        # Change types, their names and colours come from the product contract the page embeds.
        assert page.eval_on_selector_all("#counts thead th", "ths => ths.map(th => th.textContent)") == \
            ["Class"] + [contract.CHANGE_LABELS[c] for c in contract.CHANGE_TYPES]
        assert page.eval_on_selector_all(".chip[data-change]", "cs => cs.map(c => c.dataset.change)") == list(contract.CHANGE_TYPES)
        swatch_colours = page.eval_on_selector_all(".chip .swatch", "ss => ss.map(s => getComputedStyle(s).backgroundColor)")
        assert swatch_colours == ["rgb({}, {}, {})".format(*contract.rgb(contract.CHANGE_COLOURS[c])) for c in contract.CHANGE_TYPES]
        appeared = sum(f["properties"]["change"] == "appeared" for f in features)
        page.click('.chip[data-change="appeared"]')
        assert page.locator("#object-list .object").count() == len(features) - appeared
        page.click('.chip[data-change="appeared"]')
        assert page.locator("#object-list .object").count() == len(features)
        assert page.text_content("#aoi-name") == "viewer test"
        assert analysis["summary"]["aoi"]["mgrs"] in page.text_content("#aoi-location")
        for link, path, media in (("#report-link", "report.png", "image/png"), ("#report-pdf-link", "report.pdf", "application/pdf"),
                                  ("#kml-link", "exports/kml", "application/vnd.google-earth.kml+xml"),
                                  ("#gpkg-link", "exports/gpkg", "application/geopackage+sqlite3"),
                                  ("#csv-link", "exports/csv", "text/csv; charset=utf-8")):
            href = page.get_attribute(link, "href")
            assert href.endswith(f"/v1/analyses/{analysis['id']}/{path}?token={key}"), href
            assert httpx.get(href, timeout=30).headers["content-type"] == media

        # The object list stands beside the map, its first rows visible without scrolling at 1440 x 900.
        map_box = page.locator("#map").bounding_box()
        rows = page.locator("#object-list .object")
        for i in range(min(5, len(features))):
            row = rows.nth(i).bounding_box()
            assert row["x"] >= map_box["x"] + map_box["width"] - 1, (row, map_box)
            assert row["y"] >= 0 and row["y"] + row["height"] <= VIEWPORT["height"], row
            assert row["width"] >= 200

        # Object numbers are vector markers, decluttered: those shown never overlap.
        shown = page.evaluate("basewatchViewer.labelsShown")
        assert 0 < shown <= len(features)
        boxes = page.eval_on_selector_all(".bw-label:not(.cluttered) span", "es => es.map(e => { const r = e.getBoundingClientRect();"
                                          " return [r.left, r.top, r.right, r.bottom]; })")
        assert len(boxes) == shown
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)

        # Auth as asked: header on JSON fetches, token-bearing TileJSON URLs for tiles.
        json_requests = [r for r in requests if r.resource_type == "fetch"]
        assert json_requests and all(r.headers.get("authorization") == f"Bearer {key}" for r in json_requests)
        tiles = [r for r in requests if "/tiles/" in r.url]
        assert tiles and all(f"token={key}" in r.url for r in tiles)

        # Clicking the first object zooms to it, centres it and draws its outline.
        zoom_before = page.evaluate("basewatchViewer.map.getZoom()")
        first = page.locator("#object-list .object").first
        object_id = first.get_attribute("data-id")
        feature = next(f for f in features if str(f["properties"].get("id", f.get("id"))) == object_id)
        page.evaluate("basewatchViewer.map.panBy([150, 90], {animate: false})")  # so that centring is visible
        first.click()
        wait_until(page, f"basewatchViewer.selected && basewatchViewer.selected.id === {json.dumps(object_id)}"
                         " && !basewatchViewer.selected.moving")
        wait_settled(page)
        lat, lng = bbox_center(feature["geometry"])
        pt = page.evaluate(f"(() => {{ const m = basewatchViewer.map, p = m.latLngToContainerPoint([{lat}, {lng}]), s = m.getSize();"
                           f" return {{dx: p.x - s.x / 2, dy: p.y - s.y / 2, zoom: m.getZoom()}}; }})()")
        assert math.hypot(pt["dx"], pt["dy"]) <= 3, f"object {object_id} is {pt} px from the map centre"
        assert pt["zoom"] >= zoom_before
        assert page.evaluate(f"basewatchViewer.map.getBounds().contains(L.geoJSON({json.dumps(feature)}).getBounds())")
        assert page.locator(".leaflet-bw-highlight-pane path").count() >= 1
        assert "selected" in first.get_attribute("class")
        assert page.locator(".bw-popup").count() == 1
        # the popup says what, when and where: id, class, change, area, dates, coordinates, MGRS, vehicles
        props = feature["properties"]
        popup = page.text_content(".bw-popup")
        c_lat, c_lon = props["centre_lat"], props["centre_lon"]
        for expected in (f"#{object_id}", {"vehicle": "Vehicle", "vehicle_group": "Vehicle group", "tent": "Tent",
                                           "structure": "Structure", "other": "Other"}[props["class"]],
                         props["change"], f"{props['area_m2']:,.1f} m²", f"{props['before_date']} → {props['after_date']}",
                         f"{abs(c_lat):.6f}° {'N' if c_lat >= 0 else 'S'}, {abs(c_lon):.6f}° {'E' if c_lon >= 0 else 'W'}",
                         props["mgrs"], f"Vehicles (est.){props['vehicles']}"):
            assert expected in popup, (expected, popup)

        # Dragging the swipe divider moves the clip of the after layer.
        pane = ".leaflet-bw-after-pane"
        clip_before = page.eval_on_selector(pane, "e => getComputedStyle(e).clipPath")
        assert clip_before.startswith("polygon(")
        handle = page.locator("#swipe .swipe-handle").bounding_box()
        x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 120, y + 5, steps=6)
        page.mouse.move(x - 240, y + 10, steps=6)
        page.mouse.up()
        clip_after = page.eval_on_selector(pane, "e => getComputedStyle(e).clipPath")
        swipe = page.evaluate("basewatchViewer.swipe")
        map_box = page.locator("#map").bounding_box()
        assert clip_after != clip_before
        assert abs(swipe - (x - 240 - map_box["x"]) / map_box["width"]) < 0.01, swipe
        # the clip's left edge is at the divider, in the pane's (layer point) coordinates
        left = page.evaluate("(() => { const m = basewatchViewer.map; return Math.round(m.containerPointToLayerPoint([0, 0]).x)"
                             " + Math.round(m.getSize().x * basewatchViewer.swipe); })()")
        assert clip_after.startswith(f"polygon({left}px "), (clip_after, left)
        # and the map did not pan while the divider was dragged
        pt2 = page.evaluate(f"(() => {{ const m = basewatchViewer.map, p = m.latLngToContainerPoint([{lat}, {lng}]), s = m.getSize();"
                            f" return {{dx: p.x - s.x / 2, dy: p.y - s.y / 2}}; }})()")
        assert math.hypot(pt2["dx"], pt2["dy"]) <= 3

        # a click on a number selects its object too
        page.locator(".leaflet-popup-close-button").click()
        label = page.locator(".bw-label:not(.cluttered) span").first
        label_id = label.text_content()
        label.click()
        wait_until(page, f"basewatchViewer.selected && basewatchViewer.selected.id === {json.dumps(label_id)}")
        wait_until(page, "!basewatchViewer.selected.moving")
        wait_settled(page)
        assert f"#{label_id} " in page.text_content(".bw-popup")
        page.screenshot(path=str(server.data_dir.parent / "viewer.png"))
        assert not foreign, f"the viewer tried to reach other hosts: {foreign}"
        assert not problems, problems
        print(f"viewer test done in {time.monotonic() - started:.1f} s")
    finally:
        context.close()


def test_timeline_panel_lists_dates_with_gaps_and_opens_the_analysis_of_a_date(site, browser, tmp_path):
    """A watched AOI fed four dates of tests/series.py (empty, vehicles arrived, two left and one came, cloudy):
    the panel lists them in date order with the vehicles per zone, the cloudy date as a gap, the analysis shown
    as current; a click on a date opens its analysis."""
    from tests import series

    server, key = site["server"], site["key"]
    plan = [series.PLAN[i] for i in (0, 1, 3, 4)]
    files = series.write_series(tmp_path / "series", tuple(plan))
    with server.client(key) as client:
        aoi = client.post("/v1/aois", json={"name": "watched base", "geometry": series.aoi_geojson()}).json()
        for name, geometry in series.zones_geojson().items():
            assert client.post(f"/v1/aois/{aoi['id']}/zones", json={"name": name, "geometry": geometry}).status_code == 201
        assert client.patch(f"/v1/aois/{aoi['id']}", json={"watch": True}).status_code == 200
        for d in plan:
            with open(files[d.date], "rb") as fh:
                r = client.post("/v1/scenes", files={"file": (f"{d.date}.tif", fh, "image/tiff")}, data={"acquired_at": d.date})
            assert r.status_code == 201, r.text
        analyses = client.get("/v1/analyses", params={"aoi_id": aoi["id"]}).json()["items"]
        assert len(analyses) == 3
        for a in analyses:
            assert wait_for_analysis(client, a["id"], timeout=120)["status"] == "succeeded"
        items = client.get(f"/v1/aois/{aoi['id']}/timeline").json()["items"]
    middle, first = items[2]["analysis_id"], items[1]["analysis_id"]  # D1 -> D3, D0 -> D1

    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(server.url + viewer_path(middle, key))
        wait_until(page, "basewatchViewer.ready && basewatchViewer.timeline === 4")
        assert page.locator("#timeline-block").is_visible()
        rows = page.locator("#timeline li")
        assert rows.count() == 4
        assert [rows.nth(i).get_attribute("data-date") for i in range(4)] == [d.date for d in plan]
        assert "first date" in rows.nth(0).text_content()
        arrived = rows.nth(1).text_content()
        assert "+4 / −0 veh." in arrived and "north +3 / −0 veh." in arrived and "south +1 / −0 veh." in arrived, arrived
        left = rows.nth(2).text_content()
        assert "+1 / −3 veh." in left and "north +0 / −2 veh." in left and "south +1 / −1 veh." in left, left
        assert "current" in rows.nth(2).get_attribute("class")
        cloudy = rows.nth(3)
        assert "gap" in cloudy.get_attribute("class") and "not seen" in cloudy.text_content(), cloudy.text_content()
        assert page.get_attribute("#timeline-png-link", "href").endswith(f"/v1/aois/{aoi['id']}/timeline.png?token={key}")
        page.screenshot(path=str(server.data_dir.parent / "viewer-timeline.png"))
        # a click on a date opens its analysis, whose row is then the current one
        rows.nth(1).locator("a").click()
        page.wait_for_url(f"**/v1/analyses/{first}/viewer?token={key}")
        wait_until(page, "basewatchViewer.ready && basewatchViewer.timeline === 4")
        assert "current" in page.locator("#timeline li").nth(1).get_attribute("class")
        assert page.text_content("#analysis-id") == first
    finally:
        page.close()
