"""Issue 12, "no request may take the machine, no key may leak": each finding against a real server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import rasterio
from affine import Affine

from imagery.tiles import LAYERS, TMS
from tests.live import ROOT, LiveServer, alive, create_key, descendants, leftovers, run_analysis, served_analysis, upload
from tests.pairs import footprint_geojson, small_pair


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server with keys (team a analyst and viewer, team b), access log on, one succeeded analysis of team a."""
    keys = {"a": ("alice", "team-a"), "viewer": ("val", "team-a", "viewer"), "b": ("bob", "team-b")}
    with served_analysis(tmp_path_factory.mktemp("hardening"), keys, {"BASEWATCH_LOG_LEVEL": "info"}) as site:
        yield site


def tile_path(site, z: int, layer: str = "before", dx: int = 0, dy: int = 0) -> str:
    t = TMS.tile(*site.tilejson["center"][:2], z)
    return f"/v1/analyses/{site.analysis['id']}/tiles/{z}/{t.x + dx}/{t.y + dy}.png?layer={layer}"


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def sparse_tif(path: Path, size: int = 20_000) -> Path:
    """A tiled 4-band uint16 GeoTIFF declaring size x size pixels with no tile written (a few KB)."""
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32635",
                       transform=Affine(0.5, 0, 400000, 0, -0.5, 5370000), tiled=True, blockxsize=256, blockysize=256,
                       sparse_ok=True, compress="deflate") as ds:
        ds.update_tags(ACQUISITION_DATE="2024-01-01")
    assert path.stat().st_size < 100_000
    return path


# --- 1. one tile took the machine ---------------------------------------------------------------


def test_every_zoom_answers_fast_and_memory_stays_bounded(site):
    client = site.server.client(site.keys["viewer"])
    minzoom = site.tilejson["minzoom"]
    for z in range(0, 31):
        for layer in LAYERS:
            started = time.monotonic()
            r = client.get(tile_path(site, z, layer))
            assert time.monotonic() - started < 5, (z, layer)
            if z < minzoom:
                assert r.status_code == 404 and "minzoom" in r.json()["detail"], (z, layer, r.text)
            else:
                assert r.status_code == 200 and r.content.startswith(b"\x89PNG"), (z, layer, r.text)
    assert peak_rss_mb(site.server.proc.pid) < 1500


def test_rendering_stops_when_the_client_goes(site):
    srv = LiveServer(site.server.data_dir, env={"BASEWATCH_TILE_THREADS": "1"}).start()
    try:
        paths = [tile_path(site, 22, layer, dx, dy) for dx in range(4) for dy in range(4) for layer in LAYERS]
        clients = []
        for path in paths:  # 64 map clients ask for a tile each, then go away before the answer
            sock = socket.create_connection(("127.0.0.1", srv.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                         f"Authorization: Bearer {site.keys['a']}\r\n\r\n".encode())
            clients.append(sock)
        time.sleep(0.05)
        for sock in clients:
            sock.close()
        time.sleep(2.0)
        counts = {}
        for line in srv.client(site.keys["a"]).get("/metrics").text.splitlines():
            if line.startswith("basewatch_tile_requests_total{"):
                outcome = line.split('cache="')[1].split('"')[0]
                counts[outcome] = counts.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
        assert counts.get("cancelled", 0) >= len(paths) // 2, counts
        assert counts.get("rendered", 0) + counts.get("disk", 0) <= len(paths) // 2, counts
    finally:
        srv.stop()


# --- 2. a 3 KB upload froze the API -------------------------------------------------------------------


def test_sparse_upload_is_refused_from_its_header(site, tmp_path):
    client = site.server.client(site.keys["a"])
    started = time.monotonic()
    r = upload(client, sparse_tif(tmp_path / "sparse.tif"))
    assert r.status_code == 422 and "decompression-bomb" in r.json()["detail"], r.text
    assert time.monotonic() - started < 10
    assert leftovers(site.server.data_dir) == []


def test_heavy_conversion_runs_outside_the_api_and_is_bounded_in_time(tmp_path):
    srv = LiveServer(tmp_path / "data", env={"BASEWATCH_MAX_SCENE_COMPRESSION_RATIO": "1e12",
                                             "BASEWATCH_CONVERT_TIMEOUT_S": "12"}).start()
    try:
        path = sparse_tif(tmp_path / "sparse.tif")
        result = {}
        uploader = threading.Thread(target=lambda: result.update(r=upload(srv.client(), path)))
        uploader.start()
        latencies = []
        while uploader.is_alive():
            started = time.monotonic()
            assert httpx.get(srv.url + "/healthz", timeout=30).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.2)
        uploader.join()
        r = result["r"]
        assert r.status_code == 422 and "longer than 12 s" in r.json()["detail"], r.text
        assert len(latencies) > 20 and max(latencies) < 1.0, max(latencies)
        assert leftovers(srv.data_dir) == [] and not list((srv.data_dir / "scenes").iterdir())
        assert not [p for p in descendants(srv.proc.pid) if "app.convert" in Path(f"/proc/{p}/cmdline").read_text()]
    finally:
        srv.stop()


# --- 3. a burst of requests gave 500s -----------------------------------------------------------------


def test_a_burst_of_tile_and_viewer_requests_gets_no_5xx(site):
    srv = LiveServer(site.server.data_dir).start()  # cold caches
    try:
        aid, key = site.analysis["id"], site.keys["a"]
        tilejson = site.tilejson
        far = [tile_path(site, z, layer) for z in range(tilejson["minzoom"] - 4, tilejson["minzoom"]) for layer in LAYERS]
        near = [tile_path(site, z, layer) for z in range(tilejson["minzoom"], tilejson["maxzoom"] + 1) for layer in LAYERS]
        paths = far + (near * 3)[:24] + [f"/v1/analyses/{aid}/viewer?token={key}"] * 8
        gate = threading.Barrier(len(paths))

        def get(path):
            gate.wait()
            return httpx.get(srv.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=60).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(len(paths)) as pool:
            statuses = list(pool.map(get, paths))
        assert statuses == [404] * len(far) + [200] * (len(paths) - len(far)), statuses
        assert time.monotonic() - started < 20
    finally:
        srv.stop()


def test_slow_uploads_do_not_starve_the_api(site):
    client = site.server.client(site.keys["a"])

    def slow_upload(_):
        boundary = "basewatchboundary"

        def body():
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.tif\"\r\n"
                   "Content-Type: image/tiff\r\n\r\n").encode()
            for _ in range(8):
                time.sleep(0.5)
                yield b"not a tiff " * 100
            yield f"\r\n--{boundary}--\r\n".encode()

        return httpx.post(site.server.url + "/v1/scenes", content=body(), timeout=60,
                          headers={"Authorization": f"Bearer {site.keys['a']}",
                                   "Content-Type": f"multipart/form-data; boundary={boundary}"}).status_code

    with ThreadPoolExecutor(16) as pool:
        uploads = pool.map(slow_upload, range(16))
        time.sleep(1.0)
        for _ in range(6):
            started = time.monotonic()
            assert client.get("/v1/aois").status_code == 200
            assert time.monotonic() - started < 2
            time.sleep(0.3)
        assert list(uploads) == [422] * 16
    assert leftovers(site.server.data_dir) == []


# --- 4. revoking the last key opened the service; 10. failed keys were not limited ---------------------


def test_revoked_key_fails_at_once_and_auth_stays_on(tmp_path):
    data = tmp_path / "data"
    key = create_key(data, "only", "team-x")
    srv = LiveServer(data, env={"BASEWATCH_AUTH_FAILURES_PER_MINUTE": "5"}).start()
    try:
        assert srv.client(key).get("/v1/scenes").status_code == 200
        out = subprocess.run([sys.executable, "-m", "app.cli", "keys", "revoke", key[:10]], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, "BASEWATCH_DATA_DIR": str(data)}, timeout=60)
        assert out.returncode == 0, out.stderr
        assert srv.client(key).get("/v1/scenes").status_code == 401  # no wait: the next request knows
        anon = srv.client()
        assert anon.get("/v1/scenes").status_code == 401
        assert anon.post("/v1/aois", json={"name": "x", "geometry": {}}).status_code == 401
        # failed keys: 5 a minute per address (the revoked key was the first), then 429 for every key (no oracle)
        statuses = [srv.client(f"bw_guess{i}").get("/v1/scenes").status_code for i in range(6)]
        assert statuses == [401] * 4 + [429] * 2, statuses
        r = srv.client(key).get("/v1/scenes")
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    finally:
        srv.stop()


def test_serve_refuses_public_bind_when_auth_is_off(tmp_path):
    data = tmp_path / "data"
    create_key(data, "someone", "t")
    env = {**os.environ, "BASEWATCH_DATA_DIR": str(data), "BASEWATCH_HOST": "0.0.0.0", "BASEWATCH_AUTH": "off"}
    out = subprocess.run([sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "loopback" in out.stderr


# --- 4. the loopback rule while open; 6. an open instance was open to every web page -----------------


def test_open_service_serves_loopback_and_same_origin_writes_only(tmp_path):
    srv = LiveServer(tmp_path / "data", env={"BASEWATCH_CORS_API_ORIGINS": '["https://ops.example"]'}).start()
    try:
        client = srv.client()
        aoi = {"name": "x", "geometry": footprint_geojson(small_pair(tmp_path / "pair", size=64)[0])}
        assert client.get("/v1/aois").status_code == 200
        # a remote client through a reverse proxy on this machine, and a DNS-rebinding page: refused
        assert client.get("/v1/aois", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 403
        assert client.get("/v1/aois", headers={"Host": "rebound.example"}).status_code == 403
        # another web page's script: no write, preflighted or not
        evil = {"Origin": "https://evil.example"}
        r = client.post("/v1/aois", json=aoi, headers=evil)
        assert r.status_code == 403 and "evil.example" in r.json()["detail"]
        r = client.post("/v1/scenes", files={"file": ("x.tif", b"II*\x00", "image/tiff")}, headers=evil)
        assert r.status_code == 403
        pre = client.options("/v1/aois", headers={**evil, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
        assert client.get("/v1/aois").json()["items"] == []
        # the service's own pages and the configured origin may write
        assert client.post("/v1/aois", json=aoi, headers={"Origin": srv.url}).status_code == 201
        r = client.post("/v1/aois", json=aoi, headers={"Origin": "https://ops.example"})
        assert r.status_code == 201 and r.headers["access-control-allow-origin"] == "https://ops.example"
        # map resources stay readable from any page
        pre = client.options("/v1/analyses/x/tiles/1/0/0.png", headers={**evil, "Access-Control-Request-Method": "GET"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    finally:
        srv.stop()


# --- 5. keys leaked -------------------------------------------------------------------------------------


def test_keys_stay_out_of_urls_and_logs(site):
    aid, key = site.analysis["id"], site.keys["a"]
    header = site.server.client(key)
    query = site.server.client()
    tj = header.get(f"/v1/analyses/{aid}/tilejson.json?layer=before").json()
    assert "token" not in tj["tiles"][0]
    assert key not in header.get(f"/v1/analyses/{aid}/WMTSCapabilities.xml").text
    tj = query.get(f"/v1/analyses/{aid}/tilejson.json?layer=before&token={key}").json()
    assert f"token={key}" in tj["tiles"][0]  # the client asked with ?token=: its URLs need it
    assert f"token={key}" in query.get(f"/v1/analyses/{aid}/WMTSCapabilities.xml?token={key}").text
    assert query.get(tile_path(site, site.tilejson["maxzoom"]) + f"&token={key}").status_code == 200
    time.sleep(0.5)
    log = site.server.log_path.read_text()
    assert "token=[redacted]" in log and key not in log


# --- 7. body limits, nesting, disk full -------------------------------------------------------------------


def test_json_body_size_and_depth_limits(site):
    client = site.server.client(site.keys["a"])
    big = {"name": "big", "geometry": {"type": "Polygon", "coordinates": [[[0, 0]] * 200_000]}}
    r = client.post("/v1/aois", json=big)
    assert r.status_code == 413 and "KB" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while read
        yield b'{"name": "big", "description": "'
        for _ in range(300):
            yield b"x" * 10_000
        yield b'"}'

    r = client.post("/v1/aois", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    deep = '{"name": "deep", "geometry": ' + "[" * 5000 + "]" * 5000 + "}"
    r = client.post("/v1/aois", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "nested" in r.json()["detail"]
    aid = site.analysis["id"]
    deep_params = '{"before_scene_id": "a", "after_scene_id": "b", "params": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    r = client.post(f"/v1/aois/{aid}/analyses", content=deep_params, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = upload(client, site.pair[0], bands="[" * 5000 + "]" * 5000)
    assert r.status_code == 422 and "bands" in r.json()["detail"]
    assert leftovers(site.server.data_dir) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs: a disk that really fills up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True, text=True)
    assert out.returncode == 0, f"this test mounts a small tmpfs (needs root): {out.stderr}"
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_disk_full_is_507_and_leaves_nothing(small_disk, site):
    srv = LiveServer(small_disk / "data", env={"BASEWATCH_MIN_FREE_DISK_MB": "0"}).start()
    try:
        client = srv.client()
        aoi = {"name": "x", "geometry": footprint_geojson(site.pair[0])}
        assert client.post("/v1/aois", json=aoi).status_code == 201
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler = small_disk / "filler"
        with open(filler, "wb") as fh:  # leave ~200 KB
            fh.write(b"\0" * (free - 200_000))
        r = client.post("/v1/scenes", files={"file": ("big.tif", b"II*\x00" + os.urandom(2_000_000), "image/tiff")})
        assert r.status_code == 507 and "disk" in r.json()["detail"], r.text
        assert leftovers(srv.data_dir) == []
        with open(filler, "ab") as fh:  # and now nothing at all
            try:
                fh.write(b"\0" * 1_000_000)
            except OSError:
                pass
        r = client.post("/v1/aois", json={**aoi, "description": "d" * 4000})
        assert r.status_code == 507 and r.json()["detail"], r.text
        filler.unlink()
        assert client.post("/v1/aois", json=aoi).status_code == 201
        # the disk budget is checked before a conversion starts: the upload fits, its conversion (~2.2 MB) would not
        srv.stop()
        free_mb = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize / 2**20
        srv = LiveServer(small_disk / "data", env={"BASEWATCH_MIN_FREE_DISK_MB": str(int(free_mb - 1.2))}).start()
        r = upload(srv.client(), site.pair[0])
        assert r.status_code == 507 and "not enough disk space to convert" in r.json()["detail"], r.text
        assert leftovers(srv.data_dir) == []
    finally:
        srv.stop()


# --- 8. a corrupt product ----------------------------------------------------------------------------------


def test_corrupt_product_is_one_json_error_logged_once(site):
    client = site.server.client(site.keys["a"])
    body = run_analysis(client, *site.pair)
    product = site.server.data_dir / "analyses" / body["id"] / "before.tif"
    product.write_bytes(b"II*\x00" + b"\xff" * 4000)
    for _ in range(5):
        r = client.get(f"/v1/analyses/{body['id']}/tiles/18/0/0.png?layer=before")
        assert r.status_code in (404, 500)
        r = client.get(f"/v1/analyses/{body['id']}/tilejson.json?layer=before")
        assert r.status_code == 500 and "cannot be read" in r.json()["detail"]
    time.sleep(0.5)
    log = site.server.log_path.read_text()
    assert log.count(f"analysis {body['id']}: product files unreadable") == 1
    assert "Traceback" not in log


# --- 9. kill -9 in the middle -------------------------------------------------------------------------------


def test_kill_9_leaves_no_partial_files_and_no_orphan_process(tmp_path):
    data = tmp_path / "data"
    srv = LiveServer(data, env={"BASEWATCH_MAX_SCENE_COMPRESSION_RATIO": "1e12"}).start()
    try:
        run_analysis(srv.client(), *small_pair(tmp_path / "pair")[:2])  # an analysis worker now waits for work
        path = sparse_tif(tmp_path / "sparse.tif")
        def doomed_upload():
            try:
                upload(srv.client(), path)
            except httpx.HTTPError:  # the server is killed under it
                pass

        threading.Thread(target=doomed_upload, daemon=True).start()
        deadline = time.monotonic() + 30
        while not any("app.convert" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
                      for p in descendants(srv.proc.pid) if alive(p)):
            assert time.monotonic() < deadline, "the conversion did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # the conversion is writing its temporary file
        children = descendants(srv.proc.pid)
        assert len(children) >= 2
        os.kill(srv.proc.pid, signal.SIGKILL)  # the server alone, not its process group
        srv.proc.wait(10)
        deadline = time.monotonic() + 15
        while [p for p in children if alive(p)]:
            assert time.monotonic() < deadline, [Path(f"/proc/{p}/cmdline").read_text() for p in children if alive(p)]
            time.sleep(0.2)
        assert list((data / "uploads").iterdir())  # what the crash left
        srv = LiveServer(data, port=srv.port).start()
        assert leftovers(data) == []
        scene_files = {p.name for p in (data / "scenes").iterdir()}
        assert scene_files == {f"{s['id']}.tif" for s in srv.client().get("/v1/scenes").json()["items"]}
    finally:
        srv.stop()


# --- 10. metrics, ETags, nosniff, ?token= -------------------------------------------------------------------


def test_metrics_need_a_key_and_count_the_callers_team(site):
    srv = site.server
    assert srv.client().get("/metrics").status_code == 401
    mine = srv.client(site.keys["a"]).get("/metrics").text
    theirs = srv.client(site.keys["b"]).get("/metrics").text
    assert 'basewatch_analyses{status="succeeded"} 0.0' not in mine
    assert 'basewatch_analyses{status="succeeded"} 0.0' in theirs
    assert "basewatch_request_seconds_bucket" in theirs


def test_if_none_match_follows_rfc_9110(site):
    client = site.server.client(site.keys["a"])
    for path in (tile_path(site, site.tilejson["maxzoom"]), f"/v1/analyses/{site.analysis['id']}/summary.json"):
        etag = client.get(path).headers["etag"]
        for header in (f"W/{etag}", f'"other", {etag}', f'W/"x",W/{etag}', "*"):
            assert client.get(path, headers={"If-None-Match": header}).status_code == 304, (path, header)
        assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_nosniff_on_every_response(site):
    aid = site.analysis["id"]
    client = site.server.client(site.keys["a"])
    responses = [client.get("/healthz"), client.get("/openapi.json"), client.get(tile_path(site, site.tilejson["maxzoom"])),
                 client.get(f"/v1/analyses/{aid}/tilejson.json"), client.get("/v1/scenes/nope"), site.server.client().get("/v1/scenes"),
                 client.get(f"/v1/analyses/{aid}/files/before.tif"), client.get("/v1/viewer-assets/viewer/viewer.js"),
                 client.post("/v1/aois", content=b"{" * 10, headers={"Content-Type": "application/json"})]
    for r in responses:
        assert r.headers.get("x-content-type-options") == "nosniff", (r.request.url, r.status_code)


def test_token_query_only_on_map_routes(site):
    aid, key = site.analysis["id"], site.keys["a"]
    client = site.server.client()
    for path in ("/v1/scenes", "/v1/aois", "/v1/analyses", f"/v1/analyses/{aid}", "/metrics"):
        assert client.get(f"{path}?token={key}").status_code == 401, path
    for path in (f"/v1/analyses/{aid}/tilejson.json", f"/v1/analyses/{aid}/WMTSCapabilities.xml", f"/v1/analyses/{aid}/viewer",
                 f"/v1/analyses/{aid}/changes.geojson", f"/v1/analyses/{aid}/report.png", f"/v1/analyses/{aid}/summary.json",
                 f"/v1/analyses/{aid}/files/change_mask.tif"):
        assert client.get(f"{path}?token={key}").status_code == 200, path
