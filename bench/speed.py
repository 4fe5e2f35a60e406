"""Speed and memory benchmark: a 4096 x 4096 4-band pair through the whole pipeline.

    python bench/speed.py [--size 4096] [--method hacd] [--repeat 1]

Generates (once, cached under bench/out/) a synthetic pair of SIZE x SIZE pixels at
0.5 m, then in child processes (so peak memory is measured per run) times:
  * baseline: reading both scenes onto the analysis grid (the I/O floor of any method),
  * the `diff` method end to end (the naive baseline),
  * the default method end to end, products written,
and prints seconds, peak RSS (MB), the ratio to the baseline, and the stage timings.
Targets: <= 30 s and <= 2.5 GB for the default method on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def make_pair(size: int) -> Path:
    folder = OUT / f"speed_{size}"
    if (folder / "after.tif").exists():
        return folder
    sys.path.insert(0, str(ROOT))
    from dataclasses import replace

    from synth import make_pair as synth, preset, write_pair

    params = replace(preset("default", seed=0), extent_m=size * 0.5, pixel_size_m=0.5, after_pixel_size_m=0.5,
                     vehicles_arrived=60, vehicles_left=30, tents_new=12, structures_new=3)
    t0 = time.perf_counter()
    write_pair(synth(params), folder)
    print(f"generated {size} x {size} pair in {time.perf_counter() - t0:.0f} s -> {folder}")
    return folder


CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {root!r})
from imagery.scenes import inspect_scene, read_onto_grid
from imagery.pipeline import AnalysisParams, analyze, common_bands, analysis_area
from imagery.grid import analysis_grid
folder, mode, method = Path({folder!r}), {mode!r}, {method!r}
b, a = inspect_scene(folder / "before.tif"), inspect_scene(folder / "after.tif")
t0 = time.perf_counter()
timings = {{}}
if mode == "read":
    bands = common_bands(b, a)
    grid = analysis_grid(analysis_area(b, a, None), pixel_size_m=max(b.pixel_size_m, a.pixel_size_m), margin_m=0, max_pixels=10**9)
    x = read_onto_grid(b, grid, roles=bands); y = read_onto_grid(a, grid, roles=bands)
else:
    from imagery.products import write_products
    r = analyze(b, a, None, AnalysisParams(method=method, max_pixels=10**9))
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        write_products(r, Path(tmp) / "out")
        timings = dict(r.timings, products=time.perf_counter() - t1)
seconds = time.perf_counter() - t0
peak_mb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({{"seconds": seconds, "peak_mb": peak_mb, "timings": timings}}))
"""


def run(folder: Path, mode: str, method: str) -> dict:
    code = CHILD.format(root=str(ROOT), folder=str(folder), mode=mode, method=method)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--method", default=None, help="default: the product default")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from imagery.pipeline import DEFAULT_METHOD

    method = args.method or DEFAULT_METHOD
    folder = make_pair(args.size)
    rows = []
    for label, mode, m in (("baseline: read both onto the grid", "read", ""), ("diff (naive method)", "full", "diff"),
                           (f"{method} (default), with products", "full", method)):
        for _ in range(args.repeat):
            rows.append((label, run(folder, mode, m)))
    base = min(r["seconds"] for label, r in rows if label.startswith("baseline"))
    print(f"\n{args.size} x {args.size} px, 4 bands, 0.5 m; 2-core machine")
    print(f"{'run':40s} {'seconds':>8s} {'x baseline':>10s} {'peak MB':>8s}")
    for label, r in rows:
        print(f"{label:40s} {r['seconds']:8.1f} {r['seconds'] / base:10.1f} {r['peak_mb']:8.0f}")
    last = rows[-1][1]
    print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in last["timings"].items()))
    ok_t, ok_m = last["seconds"] <= 30, last["peak_mb"] <= 2560
    print(f"targets: <= 30 s {'met' if ok_t else 'MISSED'}, <= 2.5 GB {'met' if ok_m else 'MISSED'}")


if __name__ == "__main__":
    main()
