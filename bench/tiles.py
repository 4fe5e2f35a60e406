"""Tile serving benchmark: basewatch's TileRenderer (+ in-process LRU) against titiler.core, same COG.

    .venv/bin/python bench/tiles.py [--product DIR] [--tiles 300] [--concurrency 4] [--workers 2]

Without ``--product`` it first runs ``basewatch detect`` on the OSCD rennes pair into a temporary folder.
Both servers run under uvicorn on 127.0.0.1 with the same number of worker processes and are driven by
the same httpx client code at the same concurrency:

* **basewatch**: a minimal FastAPI app; ``/tiles/{z}/{x}/{y}.png?layer=before`` answers from a bounded
  in-memory LRU of PNG bytes (per worker process) or renders with :class:`imagery.tiles.TileRenderer`
  in the thread pool.
* **titiler**: a minimal ``titiler.core`` ``TilerFactory`` app serving ``before.tif`` with the same
  bands, the same stretch (``rescale``), gamma (``color_formula``) and bilinear resampling; and, for
  reference, titiler with its defaults (nearest resampling, no gamma).

Each server gets a set of distinct tiles twice: *cold* (first request of each tile) and *warm* (the same
set again). Requests are spread over ``--concurrency`` keep-alive connections (one synchronous httpx
client per thread) with a fixed tile -> connection assignment, so a warm request reaches the worker
process that rendered the tile (as a sticky connection would); the basewatch rows report the share of
warm requests answered from the LRU.
Server CPU per tile is read from /proc (all uvicorn worker processes).

The servers are started like ``uvicorn --workers N`` but with a listening socket that keeps
TCP_NODELAY on accepted connections (see :func:`serve`); ``--uvicorn-cli`` uses the stock CLI instead,
which adds ~40 ms to every keep-alive request after the first on Linux (uvicorn issue #3149).

Needs ``titiler.core`` (``pip install titiler.core``). Requests go to 127.0.0.1 only; each pass is
bounded by the tile count and a timeout. Typical run: about a minute.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RENNES = Path(os.environ.get("BASEWATCH_SHARED", "/work/shared")) / "data" / "oscd" / "rennes"
PRODUCT_ENV = "BASEWATCH_BENCH_PRODUCT"
CACHE_ITEMS, CACHE_BYTES = 4096, 256 * 1024 * 1024


# ------------------------------------------------------------------------------------------------
# the two apps (imported by the uvicorn workers through --factory)
# ------------------------------------------------------------------------------------------------

class LRU:
    """Thread-safe LRU of bytes bounded by item count and total size."""

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value: bytes) -> None:
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._bytes += len(value)
            while len(self._data) > self.max_items or self._bytes > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self._bytes -= len(old)


def make_basewatch_app():
    """FastAPI app serving the product in $BASEWATCH_BENCH_PRODUCT with TileRenderer + LRU."""
    sys.path.insert(0, str(ROOT))
    from fastapi import FastAPI, HTTPException, Response
    from fastapi.concurrency import run_in_threadpool

    from imagery.tiles import LAYERS, TileOutOfRange, TileRenderer

    renderer = TileRenderer(os.environ[PRODUCT_ENV])
    cache = LRU(CACHE_ITEMS, CACHE_BYTES)
    app = FastAPI()

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    @app.get("/tiles/{z}/{x}/{y}.png")
    async def tile(z: int, x: int, y: int, layer: str = "before"):
        key = (layer, z, x, y)
        data = cache.get(key)
        if data is not None:
            return Response(data, media_type="image/png", headers={"x-cache": "hit"})
        if layer not in LAYERS:
            raise HTTPException(404, "unknown layer")
        try:
            data = await run_in_threadpool(renderer.render, layer, z, x, y)
        except TileOutOfRange as exc:
            raise HTTPException(404, str(exc)) from None
        cache.put(key, data)
        return Response(data, media_type="image/png", headers={"x-cache": "miss"})

    return app


def make_titiler_app():
    """Minimal titiler.core app: one TilerFactory (COG endpoints, ?url=)."""
    from fastapi import FastAPI
    from titiler.core.factory import TilerFactory

    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers

    app = FastAPI()
    app.include_router(TilerFactory().router)
    add_exception_handlers(app, DEFAULT_STATUS_CODES)  # e.g. TileOutsideBounds -> 404, as titiler's own app

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    return app


# ------------------------------------------------------------------------------------------------
# server processes
# ------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(factory: str, port: int, workers: int) -> None:
    """Run ``tiles:<factory>`` under uvicorn with ``workers`` processes on 127.0.0.1:``port``.

    Same as ``uvicorn --workers N`` except that the listening socket is created with
    ``proto=IPPROTO_TCP``: uvicorn's own (``Config.bind_socket``) leaves ``proto`` at 0, so asyncio
    does not set TCP_NODELAY on accepted connections and, on Linux, every keep-alive request after
    the first waits ~40 ms for a delayed ACK (uvicorn issue #3149).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(f"tiles:{factory}", factory=True, host="127.0.0.1", port=port, workers=workers,
                            log_level="warning", access_log=False, timeout_keep_alive=120)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


class Server:
    """A uvicorn process group on 127.0.0.1 (started and stopped by this benchmark only)."""

    def __init__(self, factory: str, workers: int, env: dict, log: Path, *, stock_cli: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        here = str(Path(__file__).resolve().parent)
        if stock_cli:
            cmd = [sys.executable, "-m", "uvicorn", "--factory", f"tiles:{factory}", "--app-dir", here,
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers), "--log-level", "warning",
                   "--no-access-log", "--timeout-keep-alive", "120"]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", factory, "--port", str(self.port),
                   "--workers", str(workers)]
        env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
        self.log = log
        with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), start_new_session=True,
                                         stdout=out, stderr=subprocess.STDOUT)
        self.workers = workers

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200 and len(self.worker_pids()) >= self.workers:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def worker_pids(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker processes, seconds."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / tick

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


# ------------------------------------------------------------------------------------------------
# client
# ------------------------------------------------------------------------------------------------

def run_pass(clients, urls: list[str], timeout_s: float) -> dict:
    """GET every URL once; URL i goes over connection i % len(clients), one thread per connection.

    Synchronous httpx clients in threads: the async client costs ~2x more CPU per request, which on a
    2-core machine is taken from the servers under test.
    """
    import httpx

    lat: list[float] = []
    counts = {"hits": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s

    def worker(k: int, client) -> None:
        mine, hits, errors = [], 0, 0
        for url in urls[k::len(clients)]:
            if time.monotonic() > deadline:
                errors += 1
                continue
            t0 = time.perf_counter()
            try:
                r = client.get(url)
            except httpx.HTTPError as exc:
                errors += 1
                print(f"    {type(exc).__name__} on {url}", flush=True)
                continue
            mine.append(time.perf_counter() - t0)
            if r.status_code != 200 or not r.content.startswith(b"\x89PNG"):
                errors += 1
                print(f"    HTTP {r.status_code} on {url}: {r.text[:200]}", flush=True)
            hits += r.headers.get("x-cache") == "hit"
        with lock:
            lat.extend(mine)
            counts["hits"] += hits
            counts["errors"] += errors

    threads = [threading.Thread(target=worker, args=(k, c)) for k, c in enumerate(clients)]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, client_cpu = time.perf_counter() - t0, time.process_time() - c0
    lat_ms = sorted(v * 1000 for v in lat) or [float("nan")]
    return {
        "n": len(lat), "rps": len(lat) / wall, "wall_s": wall, **counts,
        "client_ms": client_cpu * 1000 / max(len(lat), 1),
        "p50": statistics.median(lat_ms), "p95": lat_ms[min(len(lat_ms) - 1, int(0.95 * len(lat_ms)))],
    }


def bench_server(server: Server, urls: list[str], warmup: list[str], concurrency: int, timeout_s: float) -> dict:
    """Warm-up, then the cold and the warm pass over ``concurrency`` keep-alive connections."""
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=300)
    clients = [httpx.Client(limits=limits, timeout=30.0) for _ in range(concurrency)]
    try:
        run_pass(clients, warmup, timeout_s)  # open the connections, load the code paths
        out = {}
        for name in ("cold", "warm"):
            cpu0 = server.cpu_seconds()
            res = run_pass(clients, urls, timeout_s)
            res["cpu_ms"] = (server.cpu_seconds() - cpu0) * 1000 / max(res["n"], 1)
            out[name] = res
        return out
    finally:
        for c in clients:
            c.close()


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------

def make_product(tmp: Path) -> Path:
    exe = Path(sys.executable).parent / "basewatch"
    cmd = [str(exe) if exe.exists() else "basewatch", "detect", str(RENNES / "before.tif"), str(RENNES / "after.tif"),
           "--out", str(tmp / "product"), "--quiet"]
    print("making the product:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=str(tmp), stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - t0:.1f} s", flush=True)
    return tmp / "product"


def pick_tiles(product: Path, n: int, seed: int = 0):
    """n distinct tiles over the product: native zoom and one below, then deeper zooms until there are n."""
    sys.path.insert(0, str(ROOT))
    from rio_tiler.io import Reader

    from imagery.tiles import TMS, TileRenderer

    with TileRenderer(product) as r, Reader(str(product / "before.tif")) as cog:
        info = r.info()
        tiles = []
        z = max(info.native_zoom - 1, 0)
        while len(tiles) < n and z <= 24:
            # tiles over the data for both servers (rio-tiler's edge test differs slightly from basewatch's)
            tiles += [t for t in TMS.tiles(*info.bounds, zooms=[z])
                      if r.tile_exists(t.z, t.x, t.y) and cog.tile_exists(t.x, t.y, t.z)]
            z += 1
        rng = random.Random(seed)
        keep = sorted(rng.sample(tiles, n) if len(tiles) > n else tiles, key=lambda t: (t.z, t.x, t.y))
        rng.shuffle(keep)
        return info, keep


def fmt_row(name: str, phase: str, r: dict, with_hits: bool) -> str:
    hit = f"{100 * r['hits'] / max(r['n'], 1):5.0f}%" if with_hits else "     -"
    return (f"{name:<22} {phase:<5} {r['n']:>5} {r['rps']:>9.1f} {r['p50']:>8.1f} {r['p95']:>8.1f} "
            f"{r['cpu_ms']:>9.2f} {r['client_ms']:>9.2f} {hit} {r['errors']:>4}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--product", type=Path, help="existing product folder (default: run basewatch detect on rennes)")
    ap.add_argument("--tiles", type=int, default=300, help="distinct tiles per pass (default 300)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes per server")
    ap.add_argument("--no-titiler-defaults", action="store_true", help="skip the titiler run with default (nearest) resampling")
    ap.add_argument("--pass-timeout", type=float, default=60.0, help="seconds per pass at most")
    ap.add_argument("--uvicorn-cli", action="store_true",
                    help="start the servers with the stock `uvicorn --workers` CLI (no TCP_NODELAY: +40 ms per keep-alive request)")
    ap.add_argument("--serve", metavar="FACTORY", help=argparse.SUPPRESS)  # internal: run one server
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return 0

    try:
        import titiler.core  # noqa: F401
    except ImportError:
        print("titiler.core is not installed: .venv/bin/pip install titiler.core", file=sys.stderr)
        return 2

    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    servers: list[Server] = []
    try:
        product = args.product.resolve() if args.product else make_product(tmp)
        info, tiles = pick_tiles(product, args.tiles)
        zoom_mix = {}
        for t in tiles:
            zoom_mix[t.z] = zoom_mix.get(t.z, 0) + 1
        print(f"product {product}: {info.pixel_size_m:.2f} m pixels, native zoom {info.native_zoom}, "
              f"zooms {info.minzoom}-{info.maxzoom}")
        print(f"{len(tiles)} distinct tiles, by zoom {dict(sorted(zoom_mix.items()))}; concurrency {args.concurrency}, "
              f"{args.workers} uvicorn workers per server; load average {os.getloadavg()[0]:.2f}")
        warm_tile = warmup_tile(info)

        before = str(product / "before.tif")
        rescale = "&".join(f"rescale={lo:.6g},{hi:.6g}" for lo, hi in info.stretch.values())
        import rasterio

        with rasterio.open(before) as ds:
            roles = [(d or "").lower() for d in ds.descriptions]
        bidx = "&".join(f"bidx={roles.index(b) + 1 if b in roles else 1}" for b in info.bands)
        gamma = "&color_formula=gamma+RGB+1.2" if len(info.bands) == 3 else ""
        titiler_same = f"url={before}&{bidx}&{rescale}&resampling=bilinear&reproject=bilinear{gamma}"
        titiler_default = f"url={before}&{bidx}&{rescale}"

        runs = [
            ("basewatch (LRU)", "make_basewatch_app", lambda t: f"/tiles/{t.z}/{t.x}/{t.y}.png?layer=before", True),
            ("titiler (same render)", "make_titiler_app",
             lambda t: f"/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?{titiler_same}", False),
        ]
        if not args.no_titiler_defaults:
            runs.append(("titiler (defaults)", "make_titiler_app",
                         lambda t: f"/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?{titiler_default}", False))

        results = {}
        for name, factory, path, hits in runs:
            server = Server(factory, args.workers, {PRODUCT_ENV: str(product)}, tmp / f"{factory}.log",
                            stock_cli=args.uvicorn_cli)
            servers.append(server)
            server.wait_ready()
            urls = [server.url + path(t) for t in tiles]
            warmup = [server.url + path(warm_tile)] * (2 * args.concurrency)
            results[name] = bench_server(server, urls, warmup, args.concurrency, args.pass_timeout)
            server.stop()
            print(f"  {name}: done", flush=True)

        print()
        print(f"{'server':<22} {'pass':<5} {'tiles':>5} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'srv cpu':>9} {'cli cpu':>9} {'hits':>6} {'err':>4}")
        print(f"{'':<22} {'':<5} {'':>5} {'':>9} {'':>8} {'':>8} {'ms/tile':>9} {'ms/tile':>9}")
        for name, _, _, hits in runs:
            for phase in ("cold", "warm"):
                print(fmt_row(name, phase, results[name][phase], hits))
        bw, tt = results["basewatch (LRU)"], results["titiler (same render)"]
        print()
        for phase in ("cold", "warm"):
            line = (f"basewatch/titiler {phase}: throughput x{bw[phase]['rps'] / tt[phase]['rps']:.2f}, "
                    f"p50 x{bw[phase]['p50'] / tt[phase]['p50']:.2f}, cpu/tile x{bw[phase]['cpu_ms'] / max(tt[phase]['cpu_ms'], 1e-9):.2f}")
            if "titiler (defaults)" in results:
                td = results["titiler (defaults)"][phase]
                line += f"; vs titiler defaults: throughput x{bw[phase]['rps'] / td['rps']:.2f}"
            print(line)
        print(f"targets: warm >= 10x titiler: {'met' if bw['warm']['rps'] >= 10 * tt['warm']['rps'] else 'NOT met'}; "
              f"cold >= titiler: {'met' if bw['cold']['rps'] >= tt['cold']['rps'] else 'NOT met'}")
        print(f"total {time.perf_counter() - t_start:.0f} s; load average now {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def warmup_tile(info):
    """A tile of the product below the measured zooms: used to open the connections and warm the code."""
    sys.path.insert(0, str(ROOT))
    from imagery.tiles import TMS

    lon, lat, _ = info.center
    return TMS.tile(lon, lat, max(min(info.minzoom, info.native_zoom - 2), 0))


if __name__ == "__main__":
    sys.exit(main())
