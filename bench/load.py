"""Load benchmark: 60 s of mixed traffic against a real ``basewatch serve`` (not part of ``make test``).

    .venv/bin/python bench/load.py [--seconds 60] [--concurrency 32] [--workers 2]

Starts ``basewatch serve`` (``BASEWATCH_HTTP_WORKERS=--workers``) with an API key on a free 127.0.0.1 port and a
temporary data folder, uploads a synthetic pair (``basewatch synth`` default preset) and runs one analysis;
then ``--concurrency`` clients
(asyncio + httpx, keep-alive) send, for ``--seconds``:

* map tiles of every layer at every zoom from minzoom-1 (answered 404) to maxzoom+2, picked at random
  from the tiles covering the analysis (so tiles are cold at first and cached later);
* TileJSON, WMTS capabilities, the viewer page, analysis status, scene/AOI/analysis lists;

while two more scenes are uploaded and one more analysis is queued and polled to the end. It prints
requests/s, p50/p99 per kind of request (a *cached* tile is one the bench already received once), the
error count (5xx, transport errors, and any status not expected for that request) and the server's RSS
(all its processes) before and after. Requests go to 127.0.0.1 only and stop after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import Service, analyse  # noqa: E402


def rss_mb(pids) -> float:
    """Total RSS of these processes, MB."""
    total = 0.0
    for p in pids:
        try:
            total += next(int(line.split()[1]) for line in Path(f"/proc/{p}/status").read_text().splitlines()
                          if line.startswith("VmRSS")) / 1024
        except (OSError, StopIteration):
            pass
    return total


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) >= 2 else values[0]


class Load:
    def __init__(self, url: str, key: str, analysis: dict, tilejson: dict, scenes: list[Path], aoi_id: str):
        self.url, self.key, self.analysis, self.tilejson, self.scenes, self.aoi_id = url, key, analysis, tilejson, scenes, aoi_id
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.seen_tiles: set[str] = set()
        self.rng = random.Random(0)
        from imagery.tiles import TMS

        tj = tilejson
        self.tiles = [(t.z, t.x, t.y) for z in range(tj["minzoom"] - 1, tj["maxzoom"] + 3)
                      for t in TMS.tiles(*tj["bounds"], zooms=[z])]

    def pick(self) -> tuple[str, str, tuple[int, ...]]:
        """(kind, path, expected statuses)."""
        aid = self.analysis["id"]
        r = self.rng.random()
        if r < 0.8:
            z, x, y = self.rng.choice(self.tiles)
            layer = self.rng.choice(("before", "after", "score", "changes"))
            path = f"/v1/analyses/{aid}/tiles/{z}/{x}/{y}.png?layer={layer}"
            if z < self.tilejson["minzoom"]:
                return "tile below minzoom", path, (404,)
            return ("tile (cached)" if path in self.seen_tiles else "tile (cold)"), path, (200,)
        return self.rng.choice([
            ("tilejson", f"/v1/analyses/{aid}/tilejson.json?layer=changes", (200,)),
            ("wmts", f"/v1/analyses/{aid}/WMTSCapabilities.xml", (200,)),
            ("viewer", f"/v1/analyses/{aid}/viewer", (200,)),
            ("status", f"/v1/analyses/{aid}", (200,)),
            ("list", "/v1/scenes?limit=20", (200,)),
            ("list", "/v1/aois", (200,)),
            ("list", "/v1/analyses", (200,)),
        ])

    async def request(self, client: httpx.AsyncClient, kind: str, method: str, path: str, expected, **kw) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            r = await client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.errors.append(f"{kind} {path}: {type(exc).__name__}")
            return None
        self.latency[kind].append(time.perf_counter() - started)
        if r.status_code not in expected:
            self.errors.append(f"{kind} {path}: {r.status_code} {r.text[:200]}")
        elif kind.startswith("tile ("):
            self.seen_tiles.add(path)
        return r

    async def browse(self, client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            kind, path, expected = self.pick()
            await self.request(client, kind, "GET", path, expected)

    async def upload(self, client: httpx.AsyncClient, path: Path, delay: float) -> str | None:
        await asyncio.sleep(delay)
        r = await self.request(client, "upload", "POST", "/v1/scenes", (201,),
                               files={"file": (path.name, path.read_bytes(), "image/tiff")})
        return r.json()["id"] if r is not None and r.status_code == 201 else None

    async def uploads_and_analysis(self, client: httpx.AsyncClient, until: float) -> None:
        ids = [await self.upload(client, self.scenes[0], 5.0), await self.upload(client, self.scenes[1], 10.0)]
        if None in ids:
            return
        r = await self.request(client, "queue analysis", "POST", f"/v1/aois/{self.aoi_id}/analyses", (202,),
                               json={"before_scene_id": ids[0], "after_scene_id": ids[1]})
        if r is None or r.status_code != 202:
            return
        aid = r.json()["id"]
        while time.monotonic() < until:
            r = await self.request(client, "status", "GET", f"/v1/analyses/{aid}", (200,))
            if r is not None and r.json()["status"] in ("succeeded", "failed"):
                if r.json()["status"] != "succeeded":
                    self.errors.append(f"analysis {aid} failed: {r.json()['error']}")
                self.analysis_done = r.json()
                return
            await asyncio.sleep(1.0)
        self.errors.append(f"analysis {aid} still running after the bench")

    async def run(self, seconds: float, concurrency: int) -> float:
        until = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"},
                                     timeout=30.0, limits=limits) as client:
            started = time.monotonic()
            await asyncio.gather(self.uploads_and_analysis(client, until),
                                 *(self.browse(client, until) for _ in range(concurrency)))
            return time.monotonic() - started


def setup(tmp: Path, workers: int) -> tuple[Service, dict]:
    """Server with a key, a synthetic pair (twice: one for the setup analysis, one for the uploads under load)."""
    from synth import make_pair, preset, write_pair

    pairs = [write_pair(make_pair(preset("default", seed=seed)), tmp / f"pair{seed}") for seed in (1, 2)]
    service = Service(tmp / "data", env={"BASEWATCH_HTTP_WORKERS": str(workers)}, log=tmp / "server.log").start()
    with service.client() as client:
        body = analyse(client, pairs[0]["before"], pairs[0]["after"], json.loads(pairs[0]["aoi"].read_text()))
        tilejson = client.get(f"/v1/analyses/{body['id']}/tilejson.json").json()
        aoi2 = client.post("/v1/aois", json={"name": "bench 2", "geometry": json.loads(pairs[1]["aoi"].read_text())}).json()
    return service, {"analysis": body, "tilejson": tilejson, "aoi": aoi2["id"], "scenes": [pairs[1]["before"], pairs[1]["after"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="BASEWATCH_HTTP_WORKERS of the server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="basewatch-load-") as tmp:
        service, ctx = setup(Path(tmp), args.workers)
        try:
            before = rss_mb(service.pids())
            load = Load(service.url, service.key, ctx["analysis"], ctx["tilejson"], ctx["scenes"], ctx["aoi"])
            elapsed = asyncio.run(load.run(args.seconds, args.concurrency))
            after, processes = rss_mb(service.pids()), len(service.pids())
        finally:
            service.stop()
    total = sum(len(v) for v in load.latency.values())
    print(f"{args.seconds:.0f} s at concurrency {args.concurrency}, {args.workers} HTTP processes: {total} requests, {total / elapsed:.0f} req/s, "
          f"{len(load.errors)} errors")
    print(f"{'request':<20}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for kind in sorted(load.latency):
        ms = [v * 1000 for v in load.latency[kind]]
        print(f"{kind:<20}{len(ms):>8}{statistics.median(ms):>10.1f}{percentile(ms, 99):>10.1f}{max(ms):>10.1f}")
    print(f"server RSS ({args.workers} HTTP processes; {processes} processes in all at the end): "
          f"{before:.0f} MB before, {after:.0f} MB after")
    for line in load.errors[:20]:
        print("error:", line)
    sys.exit(1 if load.errors else 0)


if __name__ == "__main__":
    main()
