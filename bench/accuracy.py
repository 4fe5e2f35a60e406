"""Accuracy benchmark: object- and pixel-level scores on synthetic scenarios and on real Sentinel-2 pairs.

    python bench/accuracy.py [--seeds 3] [--methods default,diff] [--presets ...] [--oscd PATH] [--quick]

For every synthetic scenario (imagery.synth presets x seeds, plus the
independent generator in bench/altsynth.py when present) it prints object
precision/recall/F1 (all objects, and vehicles), false objects per km², and
pixel F1, for each method in the same process; then pixel F1 per OSCD city
(labels mark urban change only) beside the `diff` baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aoi import read_aoi_file  # noqa: E402
from bench.scoring import ObjectScore, f1, pixel_counts, score_objects, truth_mask_on_grid  # noqa: E402
from imagery.pipeline import DEFAULT_METHOD, AnalysisParams, analyze  # noqa: E402
from imagery.scenes import inspect_scene  # noqa: E402

console = Console(width=200)
OSCD = ROOT.parent / "shared" / "data" / "oscd"
PRESETS = ("default", "nuisance_only", "webmercator", "lonlat", "rgb8", "south", "coarse3m", "sentinel10m")
HIGH_RES = ("default", "nuisance_only", "webmercator", "lonlat", "rgb8", "south", "clean")


def run_pair(folder: Path, method: str):
    before = inspect_scene(folder / "before.tif")
    after = inspect_scene(folder / "after.tif")
    aoi = read_aoi_file(folder / "aoi.geojson").geometry if (folder / "aoi.geojson").exists() else None
    t0 = time.perf_counter()
    result = analyze(before, after, aoi, AnalysisParams(method=method))
    return result, time.perf_counter() - t0


def score_pair(folder: Path, result, *, coarse: bool) -> dict:
    grid = result.grid
    truth_fc = json.loads((folder / "truth.json").exists() and (folder / "truth.geojson").read_text())
    truth_grid = truth_mask_on_grid(folder / "truth_mask.tif", grid)
    objects = score_objects(truth_fc, result.objects, grid, truth_grid, many_to_one=coarse)
    vehicles = score_objects(truth_fc, result.objects, grid, truth_grid, classes={"vehicle"}, many_to_one=coarse)
    area_km2 = float(result.analysed.sum()) * grid.res[0] * grid.res[1] / 1e6
    tp, fp, fn = pixel_counts(result.mask, truth_grid)
    return {"objects": objects, "vehicles": vehicles, "area_km2": area_km2, "pixels": (tp, fp, fn)}


def synthetic_scenarios(presets, seeds):
    from imagery.synth import make_pair, preset, write_pair

    for name in presets:
        for seed in seeds:
            yield f"synth:{name}:{seed}", (lambda n=name, s=seed: (make_pair(preset(n, seed=s)), write_pair)), name


def alt_scenarios(seeds):
    try:
        from bench import altsynth
    except ImportError:
        return
    for name in altsynth.SCENARIOS:
        for seed in seeds:
            yield f"alt:{name}:{seed}", (lambda n=name, s=seed: (altsynth.make_pair(n, seed=s), altsynth.write_pair)), name


def bench_synthetic(methods, presets, seeds, workdir: Path, *, include_alt: bool):
    rows = []
    totals = {m: {"all": ObjectScore(), "veh": ObjectScore(), "veh_nuis": ObjectScore(), "fp_nuisance": [0, 0.0], "pix": [0, 0, 0]} for m in methods}
    scenarios = list(synthetic_scenarios(presets, seeds)) + (list(alt_scenarios(seeds)) if include_alt else [])
    for label, make, kind in scenarios:
        folder = workdir / label.replace(":", "_")
        pair, writer = make()
        writer(pair, folder)
        coarse = kind in ("coarse3m", "sentinel10m") or "coarse" in kind
        for method in methods:
            result, seconds = run_pair(folder, method)
            s = score_pair(folder, result, coarse=coarse)
            t = totals[method]
            t["all"] += s["objects"]
            t["pix"] = [a + b for a, b in zip(t["pix"], s["pixels"])]
            if not coarse:
                t["veh"] += s["vehicles"]
                if kind not in ("clean",):
                    t["veh_nuis"] += s["vehicles"]
            if "nuisance" in kind:
                t["fp_nuisance"][0] += s["objects"].fp
                t["fp_nuisance"][1] += s["area_km2"]
            rows.append((label, method, s, seconds))
            o, v = s["objects"], s["vehicles"]
            console.print(f"{label:28s} {method:8s} obj P {o.precision:.2f} R {o.recall:.2f} F1 {o.f1:.2f} "
                          f"(truth {o.details['truth']}, det {o.details['detections']}, fp {o.fp})  "
                          f"veh F1 {v.f1:.2f} (tp {v.tp} fp {v.fp} fn {v.fn})  "
                          f"fp/km² {o.fp / max(s['area_km2'], 1e-9):.1f}  pixF1 {f1(*s['pixels']):.2f}  {seconds:.1f}s",
                          highlight=False)
    return rows, totals


def bench_oscd(methods, oscd: Path):
    import rasterio
    from rasterio.warp import Resampling, reproject

    cities = sorted(p.name for p in oscd.iterdir() if (p / "truth_mask.tif").exists())
    scores = {m: {} for m in methods}
    for city in cities:
        folder = oscd / city
        with rasterio.open(folder / "truth_mask.tif") as ds:
            truth = ds.read(1)
            t_transform, t_crs = ds.transform, ds.crs
        for method in methods:
            result, seconds = run_pair(folder, method)
            ours = np.full(truth.shape, 255, np.uint8)
            reproject(result.mask, ours, src_transform=result.grid.transform, src_crs=result.grid.crs,
                      dst_transform=t_transform, dst_crs=t_crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=None)
            tp, fp, fn = pixel_counts(ours, truth)
            p = tp / (tp + fp) if tp + fp else 1.0
            r = tp / (tp + fn) if tp + fn else 1.0
            scores[method][city] = (p, r, f1(tp, fp, fn), seconds)
    return cities, scores


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default=f"{DEFAULT_METHOD},diff")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--oscd", type=Path, default=OSCD)
    ap.add_argument("--no-oscd", action="store_true")
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--no-alt", action="store_true")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
        if not args.no_synth:
            rows, totals = bench_synthetic(methods, [p for p in args.presets.split(",") if p], seeds, Path(tmp),
                                           include_alt=not args.no_alt)
            table = Table(title="Synthetic scenarios (all seeds pooled)")
            for col in ("method", "objects P", "R", "F1", "vehicle F1 (nuisances)", "vehicle P/R", "false obj/km² (nuisance-only)", "pixel F1"):
                table.add_column(col, justify="right")
            for m, t in totals.items():
                fpk = t["fp_nuisance"][0] / t["fp_nuisance"][1] if t["fp_nuisance"][1] else float("nan")
                vn = t["veh_nuis"]
                table.add_row(m, f"{t['all'].precision:.3f}", f"{t['all'].recall:.3f}", f"{t['all'].f1:.3f}", f"{vn.f1:.3f}",
                              f"{vn.precision:.2f}/{vn.recall:.2f}", f"{fpk:.2f}", f"{f1(*t['pix']):.3f}")
            console.print(table)
    if not args.no_oscd and args.oscd.exists():
        cities, scores = bench_oscd(methods, args.oscd)
        table = Table(title="OSCD Sentinel-2 pairs: pixel scores (urban change labels)")
        table.add_column("city")
        for m in methods:
            table.add_column(f"{m} P", justify="right")
            table.add_column(f"{m} R", justify="right")
            table.add_column(f"{m} F1", justify="right")
        for city in cities:
            table.add_row(city, *[f"{v:.3f}" for m in methods for v in scores[m][city][:3]])
        table.add_row("mean", *[f"{np.mean([scores[m][c][k] for c in cities]):.3f}" for m in methods for k in range(3)])
        console.print(table)


if __name__ == "__main__":
    main()
