"""Issue 13, tiles at the speed of bytes: the warm path, several HTTP processes, WebP, TCP_NODELAY, against a
real ``basewatch serve`` (two HTTP worker processes unless stated)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagery.tiles import TMS
from tests.live import ROOT, LiveServer, alive, create_key, descendants, run_analysis, served_analysis
from tests.pairs import small_pair

TILE_ROUTE = "/v1/analyses/{analysis_id}/tiles/{z}/{x}/{y}.png"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two HTTP processes, keys of team a (two) and team b, one succeeded analysis of team a."""
    keys = {"a": ("alice", "team-a"), "b": ("bob", "team-b")}
    env = {"BASEWATCH_HTTP_WORKERS": "2", "BASEWATCH_AUTH_FAILURES_PER_MINUTE": "1000"}
    with served_analysis(tmp_path_factory.mktemp("serving"), keys, env) as site:
        yield site


def tiles_of(site, z: int, n: int, analysis_id: str | None = None, layer: str = "before") -> list[str]:
    """``n`` tile paths at zoom ``z`` over the analysis."""
    tiles = list(TMS.tiles(*site.tilejson["bounds"], zooms=[z]))[:n]
    assert len(tiles) == n
    aid = analysis_id or site.analysis["id"]
    return [f"/v1/analyses/{aid}/tiles/{t.z}/{t.x}/{t.y}.png?layer={layer}" for t in tiles]


def metric(site, name: str, **labels) -> float:
    """The sum of a counter's samples whose labels include ``labels`` (summed over every HTTP process)."""
    text = site.server.client(site.keys["a"]).get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def fresh_connections(site, key: str, path: str, n: int, **headers) -> list[httpx.Response]:
    """``path`` over ``n`` new connections, which the kernel spreads over the HTTP processes."""
    out = []
    for _ in range(n):
        with site.server.client(key) as client:
            out.append(client.get(path, headers=headers))
    return out


def test_serve_runs_the_http_processes_it_is_asked_for(site):
    uvicorn_workers = [p for p in descendants(site.server.proc.pid)
                       if "--multiprocessing-fork" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
                       and Path(f"/proc/{p}/stat").read_text().split()[3] == str(site.server.proc.pid)]
    assert len(uvicorn_workers) >= 2  # the HTTP processes (and the analysis workers once one ran)


def test_a_cached_tile_is_answered_without_a_database_query(site):
    paths = tiles_of(site, site.tilejson["maxzoom"], 4) + tiles_of(site, site.tilejson["maxzoom"], 4, layer="changes")
    with site.server.client(site.keys["a"]) as client:  # one keep-alive connection: one HTTP process
        etags = {p: client.get(p).headers["etag"] for p in paths}  # rendered (or read from disk) once
        queries, memory, not_modified = (metric(site, "basewatch_db_queries_total", route=TILE_ROUTE),
                                         metric(site, "basewatch_tile_requests_total", cache="memory"),
                                         metric(site, "basewatch_tile_requests_total", cache="not_modified"))
        assert metric(site, "basewatch_db_queries_total", route="/v1/analyses/{analysis_id}") > 0  # the counter counts
        for _ in range(10):
            for p in paths:
                assert client.get(p).status_code == 200
                assert client.get(p, headers={"If-None-Match": etags[p]}).status_code == 304
    assert metric(site, "basewatch_db_queries_total", route=TILE_ROUTE) == queries
    assert metric(site, "basewatch_tile_requests_total", cache="memory") - memory == 10 * len(paths)
    assert metric(site, "basewatch_tile_requests_total", cache="not_modified") - not_modified == 10 * len(paths)


def test_cached_tiles_still_need_the_right_key(site):
    path = tiles_of(site, site.tilejson["maxzoom"], 1)[0]
    assert all(r.status_code == 200 for r in fresh_connections(site, site.keys["a"], path, 6))  # cached everywhere
    assert all(r.status_code == 404 for r in fresh_connections(site, site.keys["b"], path, 4))  # another team's
    assert all(r.status_code == 401 for r in fresh_connections(site, "bw_not_a_key", path, 4))
    assert site.server.client().get(path).status_code == 401
    r = site.server.client().get(path + f"&token={site.keys['a']}")
    assert r.status_code == 200 and r.headers["cache-control"].startswith("private")  # key in the URL
    assert site.server.client(site.keys["a"]).get(path).headers["cache-control"].startswith("public")


def test_revoking_a_key_is_seen_at_once_by_every_process(site):
    key = create_key(site.server.data_dir, "soon-gone", "team-a")
    path = tiles_of(site, site.tilejson["maxzoom"], 1, layer="score")[0]
    warm = fresh_connections(site, key, path, 8)
    assert [r.status_code for r in warm] == [200] * 8
    out = subprocess.run([sys.executable, "-m", "app.cli", "keys", "revoke", key[:10]], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "BASEWATCH_DATA_DIR": str(site.server.data_dir)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [r.status_code for r in fresh_connections(site, key, path, 12)] == [401] * 12
    assert [r.status_code for r in fresh_connections(site, key, path, 4, **{"If-None-Match": warm[0].headers["etag"]})] == [401] * 4
    assert fresh_connections(site, site.keys["a"], path, 1)[0].status_code == 200


def test_deleting_an_analysis_is_seen_at_once_by_every_process(site):
    client = site.server.client(site.keys["a"])
    body = run_analysis(client, *site.pair)
    paths = tiles_of(site, site.tilejson["maxzoom"], 2, analysis_id=body["id"])
    for p in paths:
        assert [r.status_code for r in fresh_connections(site, site.keys["a"], p, 6)] == [200] * 6
    assert client.delete(f"/v1/analyses/{body['id']}").status_code == 204
    for p in paths:
        assert [r.status_code for r in fresh_connections(site, site.keys["a"], p, 8)] == [404] * 8
    assert not (site.server.data_dir / "tilecache" / body["id"]).exists()


def test_http_processes_share_the_disk_cache_and_sum_their_metrics(site):
    path = tiles_of(site, site.tilejson["maxzoom"] - 1, 1, layer="after")[0]
    before = {k: metric(site, "basewatch_tile_requests_total", layer="after", cache=k) for k in ("rendered", "disk", "memory")}
    assert [r.status_code for r in fresh_connections(site, site.keys["a"], path, 20)] == [200] * 20
    after = {k: metric(site, "basewatch_tile_requests_total", layer="after", cache=k) for k in before}
    delta = {k: after[k] - before[k] for k in before}
    assert delta["rendered"] == 1  # once for every process: the others read it from the disk cache
    assert delta["disk"] == 1      # the other process (20 connections all reaching one has odds of 1 in 500,000)
    assert sum(delta.values()) == 20  # /metrics adds up every process


def test_webp_when_the_client_asks_for_it(site):
    path = tiles_of(site, site.tilejson["maxzoom"], 1, layer="after")[0]
    client = site.server.client(site.keys["a"])
    chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
    answers = {accept: client.get(path, headers={"Accept": accept}) for accept in ("*/*", chrome, "image/webp;q=0, */*")}
    types = {accept: r.headers["content-type"] for accept, r in answers.items()}
    assert types == {"*/*": "image/png", chrome: "image/webp", "image/webp;q=0, */*": "image/png"}
    for r in answers.values():
        assert r.status_code == 200 and "accept" in r.headers["vary"].lower()
        assert Image.open(io.BytesIO(r.content)).format == r.headers["content-type"].split("/")[1].upper()
    assert answers[chrome].headers["etag"] != answers["*/*"].headers["etag"]
    assert len(answers[chrome].content) < len(answers["*/*"].content)
    again = client.get(path, headers={"Accept": chrome, "If-None-Match": answers[chrome].headers["etag"]})
    assert again.status_code == 304
    assert client.get(path, headers={"If-None-Match": answers[chrome].headers["etag"]}).status_code == 200  # PNG's differs


def test_an_open_service_keeps_its_loopback_rule_for_cached_tiles(tmp_path):
    srv = LiveServer(tmp_path / "data").start()
    try:
        body = run_analysis(srv.client(), *small_pair(tmp_path / "pair")[:2])
        tj = srv.client().get(f"/v1/analyses/{body['id']}/tilejson.json").json()
        t = TMS.tile(*tj["center"][:2], tj["maxzoom"])
        path = f"/v1/analyses/{body['id']}/tiles/{t.z}/{t.x}/{t.y}.png?layer=before"
        client = srv.client()
        assert client.get(path).status_code == 200  # now in memory
        assert client.get(path).status_code == 200
        r = client.get(path, headers={"Host": "attacker.example"})  # DNS rebinding
        assert r.status_code == 403
    finally:
        srv.stop()


def test_kill_9_takes_the_http_processes_with_it(tmp_path):
    srv = LiveServer(tmp_path / "data", env={"BASEWATCH_HTTP_WORKERS": "2"}).start()
    try:
        deadline = time.monotonic() + 30
        while len(children := descendants(srv.proc.pid)) < 3:  # resource tracker and two HTTP processes
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(srv.proc.pid, signal.SIGKILL)  # the supervisor alone
        srv.proc.wait(10)
        deadline = time.monotonic() + 15
        while [p for p in children if alive(p)]:
            assert time.monotonic() < deadline, "an HTTP process outlived its supervisor"
            time.sleep(0.2)
        with pytest.raises(httpx.ConnectError):  # nobody serves on alone
            httpx.get(f"{srv.url}/healthz", timeout=2)
        srv = LiveServer(tmp_path / "data", port=srv.port, env={"BASEWATCH_HTTP_WORKERS": "2"}).start()
        assert srv.client().get("/healthz").status_code == 200
    finally:
        srv.stop()


def test_accepted_connections_get_tcp_nodelay():
    """asyncio (uvicorn's server) sets TCP_NODELAY on accepted connections only when the listener says IPPROTO_TCP,
    as ``listen_socket``'s does; uvicorn's own (protocol 0) leaves Nagle on: +40 ms per keep-alive response."""
    from app.server import listen_socket

    async def nodelay_of(sock: socket.socket) -> int:
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                seen.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            port = sock.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            value = await asyncio.wait_for(seen, 5)
            writer.close()
        return value

    assert asyncio.run(nodelay_of(listen_socket("127.0.0.1", 0))) != 0
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # what uvicorn binds
    plain.bind(("127.0.0.1", 0))
    assert asyncio.run(nodelay_of(plain)) == 0
