"""Accuracy benchmark: pixel scores on real pairs first, then object- and pixel-level scores on synthetic scenes.

    python bench/accuracy.py [--methods auto,cva,diff] [--vhr PATH] [--oscd PATH] [--no-real] [--no-oscd]
                             [--seeds 3] [--presets ...] [--no-synth] [--no-alt]

Real pairs (every method in the same process): each dataset folder under
``--vhr`` (AirChange at 1.5 m, LEVIR-CD tiles at 0.5 m, ...) and the OSCD
Sentinel-2 cities; per pair and per dataset (pooled over its pixels and the
mean of its pairs) pixel precision, recall, F1 and the share of pixels
reported changed. Read each dataset's README for what its labels mark.

Synthetic scenes (synth presets x seeds, plus the independent
generator synth.alt): what real labels lack, vehicles with known
truth: object precision/recall/F1 (all objects, and vehicles), false objects
per km² and pixel F1.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
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
VHR = ROOT.parent / "shared" / "data" / "vhr"
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
    from synth import make_pair, preset, write_pair

    for name in presets:
        for seed in seeds:
            yield f"synth:{name}:{seed}", (lambda n=name, s=seed: (make_pair(preset(n, seed=s)), write_pair)), name


def alt_scenarios(seeds):
    try:
        from synth import alt as altsynth
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


@dataclass
class RealScore(ObjectScore):
    """Pixel counts (tp, fp, fn) of one method on one real pair, the share it reported changed, its run time."""

    changed_share: float = 0.0
    seconds: float = 0.0


def real_pairs(root: Path) -> list[Path]:
    """Pair folders (before.tif, after.tif, truth_mask.tif) under ``root``, sorted."""
    return sorted(p for p in root.iterdir() if (p / "truth_mask.tif").exists()) if root.exists() else []


def score_real_pair(folder: Path, method: str) -> RealScore:
    """Run ``method`` on a real pair and count change pixels against its truth mask (on the truth's grid)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    with rasterio.open(folder / "truth_mask.tif") as ds:
        truth = ds.read(1)
        t_transform, t_crs = ds.transform, ds.crs
    result, seconds = run_pair(folder, method)
    ours = np.full(truth.shape, 255, np.uint8)
    reproject(result.mask, ours, src_transform=result.grid.transform, src_crs=result.grid.crs,
              dst_transform=t_transform, dst_crs=t_crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=None)
    tp, fp, fn = pixel_counts(ours, truth)
    assessable = truth != 255
    share = float(np.isin(ours[assessable], (1, 2, 3)).mean()) if assessable.any() else 0.0
    return RealScore(tp=tp, fp=fp, fn=fn, changed_share=share, seconds=seconds)


def bench_real(methods, datasets: dict[str, Path]) -> dict:
    """{dataset: {pair: {method: RealScore}}} for every pair of every dataset, all methods in this process."""
    out: dict = {}
    for name, root in datasets.items():
        for folder in real_pairs(root):
            for method in methods:
                score = score_real_pair(folder, method)
                out.setdefault(name, {}).setdefault(folder.name, {})[method] = score
                console.print(f"{name:10s} {folder.name:22s} {method:8s} P {score.precision:.3f} R {score.recall:.3f} "
                              f"F1 {score.f1:.3f} changed {100 * score.changed_share:5.1f} %  {score.seconds:.1f}s",
                              highlight=False)
    return out


def print_real_tables(scores: dict, methods) -> None:
    """Per pair and per dataset (pooled over its pixels, and the mean of its pairs): precision, recall, F1."""
    for name, pairs in scores.items():
        table = Table(title=f"{name}: pixel scores on real pairs (labels: see the dataset's README)")
        table.add_column("pair")
        for m in methods:
            for col in ("P", "R", "F1", "changed %"):
                table.add_column(f"{m} {col}", justify="right")
        for pair, by_method in pairs.items():
            table.add_row(pair, *[v for m in methods for v in (f"{by_method[m].precision:.3f}", f"{by_method[m].recall:.3f}",
                                                                 f"{by_method[m].f1:.3f}", f"{100 * by_method[m].changed_share:.1f}")])
        for label, agg in (("pooled", pooled_real), ("mean", mean_real)):
            table.add_row(label, *[v for m in methods for v in agg([p[m] for p in pairs.values()])])
        console.print(table)


def pooled_real(scores: list[RealScore]) -> list[str]:
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("tp", "fp", "fn"))
    pooled = RealScore(tp=tp, fp=fp, fn=fn)
    return [f"{pooled.precision:.3f}", f"{pooled.recall:.3f}", f"{pooled.f1:.3f}", ""]


def mean_real(scores: list[RealScore]) -> list[str]:
    return [f"{np.mean([getattr(s, k) for s in scores]):.3f}" for k in ("precision", "recall", "f1")] + [
        f"{100 * np.mean([s.changed_share for s in scores]):.1f}"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default=f"{DEFAULT_METHOD},cva,diff")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--oscd", type=Path, default=OSCD)
    ap.add_argument("--vhr", type=Path, default=VHR, help="folder of very-high-resolution datasets (one sub-folder each)")
    ap.add_argument("--no-real", action="store_true", help="skip the real pairs (VHR and OSCD)")
    ap.add_argument("--no-oscd", action="store_true")
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--no-alt", action="store_true")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = list(range(args.seeds))
    if not args.no_real:
        datasets = {p.name: p for p in sorted(args.vhr.iterdir()) if p.is_dir()} if args.vhr.exists() else {}
        if not args.no_oscd:
            datasets["oscd"] = args.oscd
        print_real_tables(bench_real(methods, datasets), methods)
    if not args.no_synth:
        with tempfile.TemporaryDirectory(prefix="basewatch-bench-") as tmp:
            rows, totals = bench_synthetic(methods, [p for p in args.presets.split(",") if p], seeds, Path(tmp),
                                           include_alt=not args.no_alt)
            print_synthetic_tables(totals)


if __name__ == "__main__":
    main()
