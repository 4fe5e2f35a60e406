"""Clients that just work, against a live server with a key and one finished analysis.

* A Python client generated from ``/openapi.json`` by openapi-python-client (as an integrator would)
  downloads every product, parses the JSON ones, and reads errors as ``{"detail"}``.
* ``HEAD`` answers like ``GET`` without a body (GDAL probes every file with HEAD before range reads).
* The document states the media type of every file and tile, both ways of sending the key, and
  short operation ids.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.live import LiveServer
from tests.pairs import small_pair
from tests.live import create_key
from tests.live import run_analysis

#: (operation id, extra arguments, path under /v1/analyses/{id}/) of every product download.
PRODUCTS = [
    ("get_changes", {}, "changes.geojson"),
    ("get_summary", {}, "summary.json"),
    ("get_report_png", {}, "report.png"),
    ("get_report_pdf", {}, "report.pdf"),
    ("get_export_kml", {}, "exports/kml"),
    ("get_export_gpkg", {}, "exports/gpkg"),
    ("get_export_csv", {}, "exports/csv"),
    *[("get_product_file", {"name": n}, f"files/{n}") for n in
      ("change_mask.tif", "change_score.tif", "before.tif", "after.tif", "report.png", "report.pdf", "changes.kml", "changes.gpkg")],
]
#: Binary answers a client must never decode as text or JSON.
BINARY = ("image/png", "image/tiff", "application/pdf", "application/geopackage+sqlite3")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("clients")
    key = create_key(root / "data", "integrator", "team-c")
    srv = LiveServer(root / "data", env={"BASEWATCH_LOG_LEVEL": "info"}).start()  # with the access log
    try:
        analysis = run_analysis(srv.client(key), *small_pair(root / "pair", size=200, vehicles=3)[:2])
        yield {"server": srv, "key": key, "analysis": analysis, "root": root}
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def generated(site):
    """The package openapi-python-client generates from the live server's /openapi.json, imported."""
    root = site["root"]
    spec = root / "openapi.json"
    spec.write_bytes(httpx.get(site["server"].url + "/openapi.json", timeout=30).content)
    cli = Path(sys.executable).with_name("openapi-python-client")
    out = subprocess.run([str(cli), "generate", "--path", str(spec), "--output-path", str(root / "basewatch_client"),
                          "--meta", "none"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PATH": f"{cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("basewatch_client")
    finally:
        sys.path.remove(str(root))


def operation(package, name: str):
    """The generated module of an operation id, whatever tag it was filed under."""
    for tag in Path(package.__path__[0], "api").iterdir():
        if (tag / f"{name}.py").is_file():
            return importlib.import_module(f"{package.__name__}.api.{tag.name}.{name}")
    raise AssertionError(f"no generated function for operation {name}")


def test_a_generated_client_downloads_every_product(site, generated):
    server, key, aid = site["server"], site["key"], site["analysis"]["id"]
    client = generated.AuthenticatedClient(base_url=server.url, token=key, timeout=httpx.Timeout(60))
    with httpx.Client(base_url=f"{server.url}/v1/analyses/{aid}", headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for op, extra, path in PRODUCTS:
            got = operation(generated, op).sync_detailed(analysis_id=aid, client=client, **extra)
            direct = http.get(path)
            assert got.status_code == 200 == direct.status_code, (op, path, got.status_code)
            assert got.content == direct.content and len(got.content) > 100, (op, path)
            if direct.headers["content-type"].startswith(BINARY):
                assert got.parsed is None or isinstance(got.parsed, (bytes, generated.types.File)), (op, path)

    # JSON products and resources come back parsed
    changes = operation(generated, "get_changes").sync(analysis_id=aid, client=client)
    assert changes.to_dict()["type"] == "FeatureCollection" and changes.to_dict()["features"]
    summary = operation(generated, "get_summary").sync(analysis_id=aid, client=client).to_dict()
    assert summary["counts"]["total"] == len(changes.to_dict()["features"])
    analysis = operation(generated, "get_analysis").sync(analysis_id=aid, client=client)
    assert analysis.status == "succeeded" and analysis.links.to_dict()["report_pdf"].endswith(f"/{aid}/report.pdf")

    # errors are {"detail"} models, for every documented status
    missing = operation(generated, "get_report_pdf").sync_detailed(analysis_id="0" * 32, client=client)
    assert missing.status_code == 404 and missing.parsed.detail == "not found"
    anonymous = generated.Client(base_url=server.url)
    refused = operation(generated, "get_export_gpkg").sync_detailed(analysis_id=aid, client=anonymous)
    assert refused.status_code == 401 and "API key" in refused.parsed.detail
    bad = operation(generated, "get_product_file").sync_detailed(analysis_id=aid, name="../basewatch.db", client=client)
    assert bad.status_code == 404 and bad.parsed.detail


def test_openapi_states_media_types_security_and_short_operation_ids(site):
    spec = httpx.get(site["server"].url + "/openapi.json", timeout=30).json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "token"}
    assert spec["components"]["securitySchemes"]["token"] == {**spec["components"]["securitySchemes"]["token"],
                                                               "type": "apiKey", "in": "query", "name": "token"}
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) and all(len(i) <= 20 and "_v1_" not in i for i in ids), ids
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status in ("401", "403", "404", "409", "413"):
                assert op["responses"][status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
            content = op["responses"].get("200", {}).get("content", {})
            declared = set(content)
            if path.endswith((".png", ".pdf", "/files/{name}", "/exports/gpkg")):
                assert "application/json" not in declared, (path, declared)
                assert all(c["schema"]["format"] == "binary" for t, c in content.items() if t.startswith(BINARY)), path
            if path == "/healthz":
                assert op["security"] == []
            elif any(p in path for p in ("/tiles/", "/files/", "/exports/", "/report.", "/changes.geojson", "/summary.json",
                                         "/tilejson.json", "/WMTSCapabilities.xml", "/viewer", "/timeline.png")):
                assert op["security"] == [{"bearer": []}, {"token": []}], path
                assert "token" not in [p["name"] for p in op.get("parameters", [])], path
            else:
                assert op["security"] == [{"bearer": []}], path
    assert "/v1/analyses/{analysis_id}/report.pdf" in spec["paths"]
    assert {"/exports/kml", "/exports/gpkg", "/exports/csv"} <= {p[len("/v1/analyses/{analysis_id}"):] for p in spec["paths"]}


def test_head_answers_like_get_without_a_body(site):
    server, key, aid = site["server"], site["key"], site["analysis"]["id"]
    root = f"/v1/analyses/{aid}"
    paths = [f"{root}/{p}" for _, _, p in PRODUCTS] + [
        f"{root}/tiles/18/{x}/{y}.png?layer=changes" for x, y in [first_tile(server, key, aid)]] + [
        f"{root}/tilejson.json?layer=after", f"{root}/WMTSCapabilities.xml", f"{root}/viewer", root, "/healthz"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for path in paths:
            get, head = http.get(path), http.head(path)
            assert head.status_code == get.status_code == 200, (path, head.status_code, get.status_code)
            assert head.content == b"", path
            for name in ("content-type", "content-length", "etag", "cache-control", "content-disposition"):
                assert head.headers.get(name) == get.headers.get(name), (path, name)
            assert int(head.headers["content-length"]) == len(get.content), path
        # GDAL's probe then a range read: HEAD, then GET with Range
        head = http.head(f"{root}/files/change_mask.tif")
        part = http.get(f"{root}/files/change_mask.tif", headers={"Range": "bytes=0-15"})
        assert part.status_code == 206 and len(part.content) == 16 and head.headers["accept-ranges"] == "bytes"
        # errors keep their status (and still no body); HEAD is listed in Allow
        assert http.head(f"{root}/exports/shp").status_code == 404
        assert http.head(f"/v1/analyses/{'0' * 32}/report.pdf").status_code == 404
        assert httpx.head(server.url + f"{root}/report.pdf").status_code == 401
        r = http.post(f"{root}/report.pdf")
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_gdal_reads_a_cog_over_http_with_head_probes_answered(site):
    """GDAL's /vsicurl/ probes the file with HEAD, then reads byte ranges: no 405, no second probe by GET."""
    import rasterio
    from rasterio.windows import Window

    server, key, aid = site["server"], site["key"], site["analysis"]["id"]
    mark = len(server.log_path.read_text(errors="replace"))
    url = f"/vsicurl/{server.url}/v1/analyses/{aid}/files/change_score.tif?token={key}"
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", VSI_CACHE=False, CPL_VSIL_CURL_CACHE_SIZE=0):
        with rasterio.open(url) as remote, rasterio.open(server.data_dir / "analyses" / aid / "change_score.tif") as local:
            assert remote.profile == local.profile
            window = Window(20, 30, 64, 48)
            assert (remote.read(1, window=window) == local.read(1, window=window)).all()
    log = [line for line in server.log_path.read_text(errors="replace")[mark:].splitlines() if "/files/change_score.tif" in line]
    assert any('"HEAD ' in line and '" 200' in line for line in log), log
    assert not [line for line in log if '" 405' in line], log
    assert [line for line in log if '"GET ' in line and '" 206' in line], log  # the pixels came as range reads


def first_tile(server, key, aid) -> tuple[int, int]:
    """A z=18 tile inside the analysis, from its TileJSON bounds."""
    import morecantile

    tj = httpx.get(f"{server.url}/v1/analyses/{aid}/tilejson.json", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    w, s, e, n = tj["bounds"]
    tile = morecantile.tms.get("WebMercatorQuad").tile((w + e) / 2, (s + n) / 2, 18)
    return tile.x, tile.y


def test_exports_download_with_names_and_provenance(site, tmp_path):
    server, key, aid = site["server"], site["key"], site["analysis"]["id"]
    import pyogrio

    with httpx.Client(base_url=f"{server.url}/v1/analyses/{aid}", timeout=60) as http:
        for fmt, media in (("kml", "application/vnd.google-earth.kml+xml"), ("gpkg", "application/geopackage+sqlite3"),
                           ("csv", "text/csv; charset=utf-8")):
            r = http.get(f"exports/{fmt}", params={"token": key})  # a plain link, as a browser follows it
            assert r.status_code == 200 and r.headers["content-type"] == media
            assert r.headers["content-disposition"] == f'attachment; filename="basewatch-{aid}.{fmt}"'
            (tmp_path / f"x.{fmt}").write_bytes(r.content)
        info = pyogrio.read_info(tmp_path / "x.gpkg")
        assert info["features"] == site["analysis"]["summary"]["counts"]["total"]
        assert info["dataset_metadata"]["BEFORE_FILE"] == "before.tif" and info["dataset_metadata"]["AOI"] == "hardening"
        assert json.loads(http.get("summary.json", params={"token": key}).text)["aoi"]["name"] == "hardening"
