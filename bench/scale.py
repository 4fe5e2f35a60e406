"""Scale benchmark: whole scenes block by block (issue 9). A benchmark, not a test.

    python bench/scale.py [--sizes 4096,8192,16384] [--speedup-size 8192] [--no-speedup] [--no-baseline]

Builds (once, cached under bench/out/) 4-band uint16 pairs at 0.5 m of 4096², 8192² and 16384² pixels:
the 4096² synthetic base of bench/speed.py (vehicles, tents, structures, sun, season, haze, shift, cloud),
AFTER resampled onto BEFORE's grid, then tiled 1x1, 2x2 and 4x4 into tiled ZSTD GeoTIFFs (the same
content repeated, so the work per pixel is the same at every size). Then, each in a child process, with
the default method (``auto``) and products written (COGs, report, exports):

* every size with the default settings (whole up to ``AnalysisParams.whole_band_pixels``, 4096² with 4 bands;
  beyond, block-wise with blocks in local processes, one per CPU);
* the 4096² pair block-wise (``whole_band_pixels=0``), what the blocks cost where the whole grid fits;
* the speed-up pair (8192²) on a Dask ``LocalCluster`` of 1 and of 2 worker processes (one thread each).

Peak memory is that of the whole process tree (the child, its block processes, Dask's scheduler, nannies
and workers): the sum of the RSS of every descendant, sampled every 0.5 s from /proc (an upper bound:
shared library pages count once per process). Targets (2-core machine): peak <= 2.5 GB at every size;
time within 1.3x of linear in pixels (relative to 4096²); 2 Dask workers >= 1.6x faster than 1; 4096²
no slower than before issue 9 (the whole-grid path, which the default now takes up to the budget; the
block-wise run beside it shows what blocks would cost there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
BASE_PX = 4096


def make_pairs(sizes: list[int]) -> dict[int, Path]:
    """The tiled pairs, one folder each (``before.tif``, ``after.tif``), generated when missing."""
    sys.path.insert(0, str(ROOT))
    from bench.speed import make_pair

    base = make_pair(BASE_PX)
    return {size: tile_pair(base, size) for size in sizes}


def tile_pair(base: Path, size: int) -> Path:
    """``base``'s pair tiled to ``size``² pixels: BEFORE as it is, AFTER read onto BEFORE's grid (bilinear, its
    misregistration kept), each repeated (size / 4096)² times on the same 0.5 m grid, tiled 512² ZSTD, nodata 0."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from imagery.scenes import inspect_scene, read_onto_grid

    folder = OUT / f"scale_{size}"
    if (folder / "after.tif").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    before_info, after_info = inspect_scene(base / "before.tif"), inspect_scene(base / "after.tif")
    reps = size // BASE_PX
    for name, info in (("before", before_info), ("after", after_info)):
        raster = read_onto_grid(info, before_info.grid, roles=tuple(before_info.bands))
        data = np.where(raster.valid, np.clip(np.round(raster.data), 1, 65535), 0).astype(np.uint16)
        rows, cols = data.shape[1:]
        with rasterio.open(base / "before.tif") as ref:
            transform, crs = ref.transform, ref.crs
        with rasterio.open(base / f"{name}.tif") as src:
            tags, descriptions = src.tags(), src.descriptions
        profile = {"driver": "GTiff", "width": cols * reps, "height": rows * reps, "count": data.shape[0], "dtype": "uint16",
                   "crs": crs, "transform": transform, "nodata": 0, "tiled": True, "blockxsize": 512, "blockysize": 512,
                   "compress": "ZSTD", "bigtiff": "IF_SAFER"}
        tmp = folder / f".{name}.tif"
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.update_tags(**tags)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d or before_info.bands[i - 1])
            for i in range(reps):
                for j in range(reps):
                    dst.write(data, window=Window(j * cols, i * rows, cols, rows))
        os.replace(tmp, folder / f"{name}.tif")
    print(f"tiled {size} x {size} pair -> {folder}", flush=True)
    return folder


CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {root!r})

def main():
    from imagery.pipeline import AnalysisParams, analyze
    from imagery.products import write_products
    from imagery.scenes import inspect_scene
    folder, overrides, dask_workers, block_workers = Path({folder!r}), {overrides!r}, {dask_workers!r}, {block_workers!r}
    b, a = inspect_scene(folder / "before.tif"), inspect_scene(folder / "after.tif")
    cluster = client = executor = None
    if dask_workers:
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=dask_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        executor = client.get_executor(pure=False)
    phase = Path({phase!r})

    def enter(name):  # whole, never half-written: the sampler reads it meanwhile
        (phase.parent / (phase.name + ".tmp")).write_text(name)
        (phase.parent / (phase.name + ".tmp")).replace(phase)

    enter("analysis")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir={out!r}) as tmp:
        params = AnalysisParams(max_pixels=10**10, **overrides)
        if executor is None and block_workers:
            from imagery.blockwise import local_executor
            executor = local_executor(block_workers)
        r = analyze(b, a, None, params, executor=executor,
                    scratch=Path(tmp) / "scratch")
        t1 = time.perf_counter()
        enter("products")
        write_products(r, Path(tmp) / "out", executor=executor)
        t2 = time.perf_counter()
        sizes = {{p.name: p.stat().st_size for p in (Path(tmp) / "out").iterdir()}}
    print(json.dumps({{"analysis_s": t1 - t0, "products_s": t2 - t1, "objects": len(r.objects),
                      "blocks": r.change.details.get("blockwise", {{}}).get("blocks", 1), "timings": r.timings,
                      "block_seconds": r.change.details.get("blockwise", {{}}).get("block_seconds"),
                      "product_bytes": sum(sizes.values())}}))
    if client is not None:
        client.close(); cluster.close()
    elif executor is not None:
        executor.shutdown()

if __name__ == "__main__":
    main()
"""


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (``/proc/PID/task/TID/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def run(folder: Path, *, overrides: dict | None = None, dask_workers: int = 0, block_workers: int | None = None) -> dict:
    """One analysis with products in a child process (``overrides``: AnalysisParams fields): its result, wall seconds
    and the tree's peak RSS."""
    phase_file = OUT / f".scale_phase_{os.getpid()}"
    phase_file.write_text("start")
    code = CHILD.format(root=str(ROOT), folder=str(folder), overrides=overrides or {}, dask_workers=dask_workers, out=str(OUT),
                        block_workers=block_workers,
                        phase=str(phase_file))
    script = OUT / f".scale_child_{os.getpid()}.py"  # a file, so spawned block processes can import __main__
    script.write_text(code)
    peak = [0, 0]  # the tree's, the analysing process's own
    by_phase: dict[str, int] = {}  # the tree's peak while analysing and while writing products
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            own = rss_bytes(proc.pid)
            tree = own + sum(rss_bytes(p) for p in descendants(proc.pid)[1:])
            peak[0] = max(peak[0], tree)
            peak[1] = max(peak[1], own)
            try:
                name = phase_file.read_text()
            except OSError:
                name = "?"
            by_phase[name] = max(by_phase.get(name, 0), tree)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    script.unlink(missing_ok=True)
    phase_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "wall_s": seconds, "peak_mb": peak[0] / 2**20, "parent_peak_mb": peak[1] / 2**20,
            "peak_by_phase_mb": {k: round(v / 2**20) for k, v in by_phase.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4096,8192,16384")
    ap.add_argument("--speedup-size", type=int, default=8192)
    ap.add_argument("--no-speedup", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    pairs = make_pairs(sorted(set(sizes + ([] if args.no_speedup else [args.speedup_size]))))
    rows = []

    def record(label: str, size: int, r: dict):
        rows.append((label, size, r))
        print(f"  {label:34s} {size:6d}²  {r['analysis_s']:7.1f} s analysis + {r['products_s']:5.1f} s products, "
              f"peak {r['peak_mb']:6.0f} MB (parent {r['parent_peak_mb']:.0f}; by phase {r['peak_by_phase_mb']}), "
              f"{r['objects']} objects, {r['blocks']} blocks; stages {json.dumps(r.get('timings', {}))}", flush=True)

    if not args.no_baseline and BASE_PX in pairs:
        record("block-wise (whole_band_pixels=0)", BASE_PX, run(pairs[BASE_PX], overrides={"whole_band_pixels": 0}))
    for size in [s for s in sizes if s <= args.speedup_size]:
        record("auto, local processes", size, run(pairs[size]))
    if not args.no_speedup:
        for n in (1, 2):
            record(f"auto, Dask LocalCluster {n} worker(s)", args.speedup_size, run(pairs[args.speedup_size], dask_workers=n))
    for size in [s for s in sizes if s > args.speedup_size]:  # the longest last
        record("auto, local processes", size, run(pairs[size]))

    cpus = os.cpu_count()
    print(f"\n4 bands, 0.5 m, method auto, products written; {cpus} CPUs (shared with other work)")
    print(f"{'run':36s} {'pixels':>8s} {'total s':>8s} {'analysis':>9s} {'products':>9s} {'s/Mpx':>6s} {'peak MB':>8s} {'objects':>8s}")
    for label, size, r in rows:
        total = r["analysis_s"] + r["products_s"]
        print(f"{label:36s} {size:>7d}² {total:8.1f} {r['analysis_s']:9.1f} {r['products_s']:9.1f} "
              f"{total / (size * size / 1e6):6.2f} {r['peak_mb']:8.0f} {r['objects']:8d}")
    auto = {size: r for label, size, r in rows if label.startswith("auto, local")}
    forced = next((r for label, size, r in rows if label.startswith("block-wise")), None)
    total = lambda r: r["analysis_s"] + r["products_s"]  # noqa: E731
    peak_ok = all(r["peak_mb"] <= 2560 for label, size, r in rows)
    print(f"targets: peak <= 2.5 GB at every size: {'met' if peak_ok else 'MISSED'} "
          f"(max {max(r['peak_mb'] for label, size, r in rows):.0f} MB)")
    if BASE_PX in auto:
        for size, r in sorted(auto.items()):
            if size != BASE_PX:
                ratio = total(r) / (total(auto[BASE_PX]) * (size / BASE_PX) ** 2)
                print(f"  {size}²: {ratio:.2f}x linear from 4096² ({'met' if ratio <= 1.3 else 'MISSED'}: <= 1.3x)")
        default = auto[BASE_PX]
        path = "whole grid" if default["blocks"] == 1 else f"{default['blocks']} blocks"
        print(f"  4096² default ({path}) {total(default):.1f} s"
              + (f"; block-wise {total(forced):.1f} s, {forced['objects']} objects (whole: {default['objects']})"
                 if forced is not None else ""))
    dask = {label: r for label, size, r in rows if "Dask" in label}
    if len(dask) == 2:
        one, two = (dask[k] for k in sorted(dask))
        speedup = total(one) / total(two)
        print(f"  Dask 2 workers vs 1 on {args.speedup_size}²: x{speedup:.2f} "
              f"({'met' if speedup >= 1.6 else 'MISSED'}: >= 1.6x; analysis alone x{one['analysis_s'] / two['analysis_s']:.2f})")


if __name__ == "__main__":
    main()
