"""Tile benchmark: the real service route against titiler.core serving the same COG, driven by wrk.

    .venv/bin/python bench/tiles.py [--pair DIR] [--tiles 300] [--concurrency 4] [--workers 2] [--seconds 10]

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``) and ``titiler.core`` (``pip install -e '.[bench]'``).

* **basewatch**: ``basewatch serve`` with ``BASEWATCH_HTTP_WORKERS=--workers``, an API key, and an analysis
  of ``--pair`` (``before.tif``, ``after.tif``; default the OSCD Rennes pair) run through the API; tiles are
  ``GET /v1/analyses/{id}/tiles/{z}/{x}/{y}.png?layer=before`` with ``Authorization: Bearer``, exactly as a
  map client asks.
* **titiler**: a ``titiler.core`` ``TilerFactory`` app with ``--workers`` uvicorn processes serving that
  analysis's ``before.tif`` with the same bands, stretch (``rescale``), gamma (``color_formula``) and bilinear
  resampling ("same render"), and with its defaults (nearest, no gamma). Its listener gets TCP_NODELAY like
  basewatch's (``app.server.listen_socket``), so neither pays Linux's 40 ms delayed ACK.

The same ``--tiles`` distinct tiles (from the zoom below the data's native one, deeper until there are
enough) are requested at ``--concurrency`` keep-alive connections (``wrk -t1``): *cold*, each tile once
(basewatch renders each; titiler renders every request), then *warm*, the same tiles in a loop for
``--seconds`` after one unmeasured loop (every basewatch process holds them in memory). Rows give tiles/s,
latency percentiles (wrk), and the server's CPU per tile (all its processes, from /proc). A basewatch WebP
row shows the same tiles for a client whose ``Accept`` prefers image/webp. Every server and wrk run started
here is stopped at the end; requests go to 127.0.0.1 only. Typical run: about two minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import Service, analyse, cpu_seconds, descendants, free_port  # noqa: E402

#: The OSCD Rennes pair, in ../shared beside the repository (as bench/accuracy.py), or under $BASEWATCH_SHARED.
RENNES = Path(os.environ.get("BASEWATCH_SHARED", ROOT.parent / "shared")) / "data" / "oscd" / "rennes"

#: wrk script: paths from a file; "once" sends each path once (then /healthz, not counted) and prints ONCE
#: when the last tile has come back (wrk is then stopped with SIGINT), "loop" cycles through them. Prints
#: one JSON line from done().
WRK_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  -- i starts at -1: wrk calls request() once after init() to check the script (that request is never sent)
  paths, n, i, images, bad, mode = {}, 0, -1, 0, 0, args[2]
  for line in io.lines(args[1]) do n = n + 1; paths[n] = line end
end
function request()
  i = i + 1
  if mode == "once" and i > n then return wrk.format("GET", "/healthz") end
  return wrk.format("GET", paths[(math.max(i, 1) - 1) % n + 1])
end
function response(status, headers, body)
  local ctype = headers["content-type"] or headers["Content-Type"] or ""
  if status == 200 and ctype:find("json") then return end  -- /healthz
  answered = (answered or 0) + 1
  if status == 200 and ctype:sub(1, 6) == "image/" then images = images + 1
  else
    bad = bad + 1
    if bad <= 3 then io.write(string.format("BAD %d %s\n", status, body:sub(1, 200))) end
  end
  if mode == "once" and answered == n then io.write("ONCE\n"); io.stdout:flush() end
end
function done(summary, latency, requests)
  local images, bad = 0, 0
  for _, t in ipairs(threads) do images = images + t:get("images"); bad = bad + t:get("bad") end
  local e = summary.errors
  io.write(string.format('WRK {"images": %d, "bad": %d, "errors": %d, "seconds": %f, "bytes": %d, ' ..
    '"p50": %f, "p90": %f, "p99": %f, "max": %f}\n', images, bad, e.connect + e.read + e.write + e.timeout,
    summary.duration / 1e6, summary.bytes, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


# ------------------------------------------------------------------------------------------------
# titiler (imported by its uvicorn workers)
# ------------------------------------------------------------------------------------------------

def make_titiler_app():
    """Minimal titiler.core app: one TilerFactory (COG endpoints, ?url=), titiler's own error handlers."""
    from fastapi import FastAPI
    from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
    from titiler.core.factory import TilerFactory

    app = FastAPI()
    app.include_router(TilerFactory().router)
    add_exception_handlers(app, DEFAULT_STATUS_CODES)  # e.g. TileOutsideBounds -> 404, as titiler's own app

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    return app


def serve_titiler(port: int, workers: int) -> None:
    """titiler under uvicorn's supervisor with ``workers`` processes, on basewatch's kind of listener."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from app.server import listen_socket

    config = uvicorn.Config("bench.tiles:make_titiler_app", factory=True, host="127.0.0.1", port=port, workers=workers,
                            log_level="warning", access_log=False, timeout_keep_alive=120)
    Multiprocess(config, sockets=[listen_socket("127.0.0.1", port)]).run()


class Titiler:
    def __init__(self, workers: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, __file__, "--serve-titiler", "--port", str(self.port),
                                          "--workers", str(workers)], cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.log, self.workers = log, workers

    def start(self, timeout: float = 60.0) -> "Titiler":
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"titiler exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200 and len(descendants(self.proc.pid)) > self.workers:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("titiler did not start")

    def cpu_seconds(self) -> float:
        return cpu_seconds([self.proc.pid, *descendants(self.proc.pid)])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


# ------------------------------------------------------------------------------------------------
# driving wrk
# ------------------------------------------------------------------------------------------------

def wrk(server, paths: list[str], mode: str, *, seconds: float, concurrency: int, headers: dict, tmp: Path) -> dict:
    """One wrk run; its JSON summary plus tiles/s and the server's CPU ms per tile."""
    script, listing = tmp / "tiles.lua", tmp / "paths.txt"
    script.write_text(WRK_SCRIPT)
    listing.write_text("\n".join(paths) + "\n")
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += [server.url, "--", str(listing), mode]
    started, cpu0 = time.perf_counter(), server.cpu_seconds()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, elapsed = [], None
    try:
        if mode == "once":  # wrk runs for its -d whatever the script does: stop it when the last tile is back
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("ONCE"):
                    elapsed = time.perf_counter() - started
                    break
            cpu = server.cpu_seconds() - cpu0
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if mode != "once":
        cpu = server.cpu_seconds() - cpu0
    lines += out.splitlines()
    for bad in [ln.strip() for ln in lines if ln.startswith("BAD ")]:
        print(f"    {bad}", flush=True)
    line = next((ln for ln in lines if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out[-1000:]} {err[-1000:]}")
    res = json.loads(line[4:])
    if elapsed is not None:
        res["seconds"] = elapsed
    res["tps"] = res["images"] / res["seconds"]
    res["cpu_ms"] = cpu * 1000 / max(res["images"], 1)
    if mode == "once":
        res["bad"] += max(0, len(paths) - res["images"] - res["bad"])  # not answered within the time bound
    return res


def run_server(name: str, server, paths: list[str], args, tmp: Path, headers: dict) -> dict:
    """Cold (each tile once) then warm (an unmeasured loop, then --seconds of loops)."""
    print(f"  {name}: cold", flush=True)
    cold = wrk(server, paths, "once", seconds=300, concurrency=args.concurrency, headers=headers, tmp=tmp)
    wrk(server, paths, "loop", seconds=max(2.0, args.seconds / 4), concurrency=args.concurrency, headers=headers, tmp=tmp)
    print(f"  {name}: warm", flush=True)
    warm = wrk(server, paths, "loop", seconds=args.seconds, concurrency=args.concurrency, headers=headers, tmp=tmp)
    return {"cold": cold, "warm": warm}


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------

def pick_tiles(product: Path, n: int, seed: int = 0):
    """n distinct tiles over the product, both servers' tiles: the zoom below the native one and deeper."""
    from rio_tiler.io import Reader

    from imagery.tiles import TMS, TileRenderer

    with TileRenderer(product) as r, Reader(str(product / "before.tif")) as cog:
        info = r.info()
        tiles, z = [], max(info.native_zoom - 1, info.minzoom)
        while len(tiles) < n and z <= 24:
            # rio-tiler's edge test differs slightly from basewatch's: keep tiles both serve
            tiles += [t for t in TMS.tiles(*info.bounds, zooms=[z]) if r.tile_exists(t.z, t.x, t.y) and cog.tile_exists(t.x, t.y, t.z)]
            z += 1
    rng = random.Random(seed)
    keep = rng.sample(tiles, n) if len(tiles) > n else tiles
    rng.shuffle(keep)
    return info, keep


def fmt_row(name: str, phase: str, r: dict) -> str:
    return (f"{name:<24} {phase:<5} {r['images']:>6} {r['tps']:>9.1f} {r['p50']:>8.2f} {r['p90']:>8.2f} {r['p99']:>8.2f} "
            f"{r['cpu_ms']:>8.2f} {r['bytes'] / max(r['images'], 1) / 1024:>7.1f} {r['bad'] + r['errors']:>4}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", type=Path, default=RENNES, help="folder with before.tif and after.tif (default: OSCD Rennes)")
    ap.add_argument("--tiles", type=int, default=300, help="distinct tiles (default 300)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="HTTP processes of each server")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each warm run")
    ap.add_argument("--no-titiler-defaults", action="store_true", help="skip titiler with its default (nearest) rendering")
    ap.add_argument("--serve-titiler", action="store_true", help=argparse.SUPPRESS)  # internal: run the titiler server
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_titiler:
        serve_titiler(args.port, args.workers)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    try:
        import titiler.core  # noqa: F401
    except ImportError:
        print("titiler.core is not installed: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    service = Service(tmp / "data", env={"BASEWATCH_HTTP_WORKERS": str(args.workers)}, log=tmp / "basewatch.log")
    titiler = None
    try:
        service.start()
        print(f"analysing {args.pair} through the API ...", flush=True)
        with service.client() as client:
            analysis = analyse(client, args.pair / "before.tif", args.pair / "after.tif")
        product = service.data_dir / "analyses" / analysis["id"]
        info, tiles = pick_tiles(product, args.tiles)
        zooms = {}
        for t in tiles:
            zooms[t.z] = zooms.get(t.z, 0) + 1
        print(f"product {product.name}: {info.pixel_size_m:.2f} m pixels, native zoom {info.native_zoom}, zooms "
              f"{info.minzoom}-{info.maxzoom}; {len(tiles)} tiles by zoom {dict(sorted(zooms.items()))}; concurrency "
              f"{args.concurrency}, {args.workers} HTTP processes per server; load average {os.getloadavg()[0]:.2f}")

        auth = {"Authorization": f"Bearer {service.key}"}
        path = f"/v1/analyses/{analysis['id']}/tiles/{{z}}/{{x}}/{{y}}.png?layer=before"
        results = {"basewatch": run_server("basewatch", service, [path.format(z=t.z, x=t.x, y=t.y) for t in tiles], args, tmp, auth)}
        results["basewatch WebP"] = run_server("basewatch WebP", service, [path.format(z=t.z, x=t.x, y=t.y) for t in tiles], args,
                                               tmp, {**auth, "Accept": "image/webp,*/*"})
        service.stop()

        before = product / "before.tif"
        rescale = "&".join(f"rescale={lo:.6g},{hi:.6g}" for lo, hi in info.stretch.values())
        import rasterio

        with rasterio.open(before) as ds:
            roles = [(d or "").lower() for d in ds.descriptions]
        bidx = "&".join(f"bidx={roles.index(b) + 1 if b in roles else 1}" for b in info.bands)
        gamma = "&color_formula=gamma+RGB+1.2" if len(info.bands) == 3 else ""
        variants = {"titiler (same render)": f"url={before}&{bidx}&{rescale}&resampling=bilinear&reproject=bilinear{gamma}"}
        if not args.no_titiler_defaults:
            variants["titiler (defaults)"] = f"url={before}&{bidx}&{rescale}"
        titiler = Titiler(args.workers, tmp / "titiler.log").start()
        for name, query in variants.items():
            paths = [f"/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?{query}" for t in tiles]
            results[name] = run_server(name, titiler, paths, args, tmp, {})
        titiler.stop()

        print()
        print(f"{'server':<24} {'pass':<5} {'tiles':>6} {'tiles/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
              f"{'cpu ms':>8} {'KB':>7} {'err':>4}")
        for name, res in results.items():
            for phase in ("cold", "warm"):
                print(fmt_row(name, phase, res[phase]))
        bw, tt = results["basewatch"], results["titiler (same render)"]
        print()
        for phase in ("cold", "warm"):
            line = (f"basewatch/titiler {phase}: tiles/s x{bw[phase]['tps'] / tt[phase]['tps']:.1f}, "
                    f"server cpu per tile x{bw[phase]['cpu_ms'] / max(tt[phase]['cpu_ms'], 1e-9):.2f}")
            if "titiler (defaults)" in results:
                line += f"; against titiler's defaults x{bw[phase]['tps'] / results['titiler (defaults)'][phase]['tps']:.1f}"
            print(line)
        checks = [("warm >= 20x titiler", bw["warm"]["tps"] >= 20 * tt["warm"]["tps"]),
                  ("warm p99 < 20 ms", bw["warm"]["p99"] < 20),
                  ("cold >= 2x titiler", bw["cold"]["tps"] >= 2 * tt["cold"]["tps"]),
                  ("no errors", not any(r[p]["bad"] + r[p]["errors"] for r in results.values() for p in ("cold", "warm")))]
        print("targets: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks))
        print(f"total {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}")
        return 0 if all(ok for _, ok in checks) else 1
    finally:
        service.stop()
        if titiler is not None:
            titiler.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
