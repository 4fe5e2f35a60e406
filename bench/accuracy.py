"""Accuracy benchmark: object- and pixel-level scores on synthetic scenarios and on real Sentinel-2 pairs.

    python bench/accuracy.py [--seeds 3] [--methods default,diff] [--presets ...] [--oscd PATH] [--no-synth] [--no-oscd] [--no-alt]

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


def run_pair(folder: Path, method: str):
    before = inspect_scene(folder / "before.tif")
    after = inspect_scene(folder / "after.tif")
    aoi = read_aoi_file(folder / "aoi.geojson").geometry if (folder / "aoi.geojson").exists() else None
    t0 = time.perf_counter()
    result = analyze(before, after, aoi, AnalysisParams(method=method))
    return result, time.perf_counter() - t0


def score_pair(folder: Path, result, *, coarse: bool) -> dict:
    grid = result.grid
    truth_fc = json.loads((folder / "truth.geojson").read_text())
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


def is_coarse(kind: str) -> bool:
    """Scenarios whose pixels (>= 3 m) do not resolve single vehicles: scored many-to-one, vehicles not counted."""
    return kind in ("coarse3m", "sentinel10m") or "coarse" in kind


def new_totals() -> dict:
    return {"all": ObjectScore(), "veh": ObjectScore(), "fp": 0, "km2": 0.0, "pix": [0, 0, 0], "n": 0}


def bench_synthetic(methods, presets, seeds, workdir: Path, *, include_alt: bool):
    """Score every scenario; totals per method and scenario family (the preset name without the seed)."""
    rows = []
    totals: dict[str, dict[str, dict]] = {m: {} for m in methods}
    scenarios = list(synthetic_scenarios(presets, seeds)) + (list(alt_scenarios(seeds)) if include_alt else [])
    for label, make, kind in scenarios:
        folder = workdir / label.replace(":", "_")
        pair, writer = make()
        writer(pair, folder)
        coarse = is_coarse(kind)
        family = label.rsplit(":", 1)[0]
        for method in methods:
            result, seconds = run_pair(folder, method)
            s = score_pair(folder, result, coarse=coarse)
            t = totals[method].setdefault(family, new_totals())
            t["all"] += s["objects"]
            t["pix"] = [a + b for a, b in zip(t["pix"], s["pixels"])]
            t["fp"] += s["objects"].fp
            t["km2"] += s["area_km2"]
            t["n"] += 1
            if not coarse:
                t["veh"] += s["vehicles"]
            rows.append((label, method, s, seconds))
            o, v = s["objects"], s["vehicles"]
            console.print(f"{label:28s} {method:8s} obj P {o.precision:.2f} R {o.recall:.2f} F1 {o.f1:.2f} "
                          f"(truth {o.details['truth']}, det {o.details['detections']}, fp {o.fp})  "
                          f"veh F1 {v.f1:.2f} (tp {v.tp} fp {v.fp} fn {v.fn})  "
                          f"fp/km² {o.fp / max(s['area_km2'], 1e-9):.1f}  pixF1 {f1(*s['pixels']):.2f}  {seconds:.1f}s",
                          highlight=False)
    return rows, totals


def pooled(families: dict[str, dict], keep) -> dict:
    """Sum the totals of the families for which keep(family) is true."""
    out = new_totals()
    for family, t in families.items():
        if keep(family):
            out["all"] += t["all"]
            out["veh"] += t["veh"]
            out["fp"] += t["fp"]
            out["km2"] += t["km2"]
            out["pix"] = [a + b for a, b in zip(out["pix"], t["pix"])]
            out["n"] += t["n"]
    return out


def print_synthetic_tables(totals: dict) -> None:
    table = Table(title="Synthetic scenarios by family (seeds pooled)")
    for col in ("family", "method", "runs", "objects P", "R", "F1", "vehicle P", "R", "F1", "false obj/km²", "pixel F1"):
        table.add_column(col, justify="right")
    for method, families in totals.items():
        for family, t in families.items():
            v = t["veh"]
            coarse = is_coarse(family.split(":")[1])
            table.add_row(family, method, str(t["n"]), f"{t['all'].precision:.2f}", f"{t['all'].recall:.2f}", f"{t['all'].f1:.2f}",
                          *(("-", "-", "-") if coarse else (f"{v.precision:.2f}", f"{v.recall:.2f}", f"{v.f1:.2f}")),
                          f"{t['fp'] / t['km2']:.1f}" if t["km2"] else "-", f"{f1(*t['pix']):.2f}")
    console.print(table)
    summary = Table(title="Pooled: vehicles in high-resolution scenes with nuisances (classed vehicle / right change type: "
                          "shares of the found truth vehicles); false objects in nuisance-only scenes")
    for col in ("method", "vehicle P", "R", "F1", "classed vehicle", "right change type", "false obj/km² (nuisance-only)",
                "coarse objects F1 (many-to-one)", "pixel F1 (all)"):
        summary.add_column(col, justify="right")
    for method, families in totals.items():
        kind = lambda f: f.split(":")[1]  # noqa: E731
        veh = pooled(families, lambda f: not is_coarse(kind(f)) and "clean" not in kind(f))["veh"]
        nuis = pooled(families, lambda f: "nuisance" in kind(f))
        coarse = pooled(families, lambda f: is_coarse(kind(f)))["all"]
        everything = pooled(families, lambda f: True)
        summary.add_row(method, f"{veh.precision:.3f}", f"{veh.recall:.3f}", f"{veh.f1:.3f}",
                        f"{veh.class_accuracy:.2f}", f"{veh.typed_tp / veh.tp if veh.tp else 1.0:.2f}",
                        f"{nuis['fp'] / nuis['km2']:.2f}" if nuis["km2"] else "-", f"{coarse.f1:.3f}", f"{f1(*everything['pix']):.3f}")
    console.print(summary)


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
            print_synthetic_tables(totals)
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
