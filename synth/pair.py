"""A synthetic before/after pair with its truth (:func:`make_pair`) and its files (:func:`write_pair`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import mapping
from shapely.geometry.polygon import orient

from imagery.grid import Grid, densified_box
from synth.presets import MS16_BANDS, RGB8_BANDS, SynthPair, SynthParams, SynthScene, _MAT, _draw_dates, _greenness, _spec
from synth.world import _World, _build_world
from synth.render import _DateCtx, _after_grid, _aoi, _before_grid, _canvas, _clouds, _diffuse, _nodata_corner, _radiometry, _reduce_after, _reduce_before, _render, _sample_coarse, _sensor, _shared_arrays, _to_ms16, _to_rgb8, _truth_mask, _truth_objects, _world_bounds

# make_pair
# ---------------------------------------------------------------------------------------------


def _endmembers(rng, p: SynthParams) -> dict:
    soil_name = "soil_red" if p.lat < -10 or rng.random() < 0.15 else str(rng.choice(["soil_brown", "soil_light", "soil_brown"]))
    return dict(grass=_spec("grass", rng, 0.08), dry=_spec("dry_veg", rng, 0.08), soil=_spec(soil_name, rng, 0.1), soil_name=soil_name)


def _tree_season(rng, world: _World, p: SynthParams, dg: float):
    """Deciduous crowns change colour with the season (towards autumn when greenness drops)."""
    autumn = np.asarray(_MAT["tree_autumn"], np.float32)
    for o in world.objs:
        if o.kind != "tree":
            continue
        s = o.surfs[0]
        if s.spec[3] < 0.26:  # conifer: stable
            continue
        f = float(np.clip(p.season * (-dg * 1.2 + rng.normal(0, 0.12)), -0.3, 1.0))
        if f >= 0:
            s.spec_after = (s.spec * (1 - f) + autumn * f).astype(np.float32)
        else:
            s.spec_after = (s.spec * np.array([1 + 0.2 * f, 1 + 0.1 * f, 1 + 0.3 * f, 1 - 0.2 * f], np.float32)).astype(np.float32)


def make_pair(params: SynthParams) -> SynthPair:
    """Render a synthetic before/after pair of a military base with its exact ground truth.

    Parameters
    ----------
    params : SynthParams

    Returns
    -------
    SynthPair
        ``before`` on a square UTM grid (``params.pixel_size_m``), ``after`` on its own grid
        (``params.after_crs`` and ``params.after_pixel_size_m``), truth footprints in EPSG:4326,
        the truth mask on the before grid, an AOI and an ``info`` record.
    """
    p = params
    seeds = np.random.SeedSequence(p.seed).spawn(8)
    r_layout, r_noise, r_rad, r_cloud, r_misc, r_sensor, r_dates, r_display = (np.random.default_rng(s) for s in seeds)
    if p.dates:
        date_b, date_a = (dt.date.fromisoformat(d) for d in p.dates)
    else:
        date_b, date_a = _draw_dates(r_dates, p.lat)
    dg = _greenness(date_a, p.lat) - _greenness(date_b, p.lat)
    season_shift = 0.5 * dg

    before = _before_grid(p)
    utm = before.crs
    shift_m = (p.shift_px[1] * p.pixel_size_m, -p.shift_px[0] * p.pixel_size_m)
    after = _after_grid(p, before, shift_m)
    cv = _canvas(p, before, after, shift_m)

    world = _build_world(p, r_layout, _world_bounds(p, before, cv), before.bounds, (season_shift, _greenness(date_b, p.lat)))
    world.greens = _endmembers(r_misc, p)
    _tree_season(r_misc, world, p, dg)
    shared = _shared_arrays(r_noise, world, cv)

    # --- before ---
    ctx_b = _DateCtx("before", tuple(p.sun_before), tuple(p.view_before), _diffuse(p.sun_before[1]))
    rho_b = np.stack([_reduce_before(band, cv, before) for band in _render(world, cv, shared, ctx_b)])

    # --- after ---
    cloud_info: dict = {}
    ctx_a = _DateCtx("after", tuple(p.sun_after), tuple(p.view_after), _diffuse(p.sun_after[1]))
    if p.cloud_fraction > 0:
        targets = np.array([o.footprint.centroid.coords[0] for o in world.objs if o.truth is not None]).reshape(-1, 2)
        ctx_a.cloud, cloud_info = _clouds(r_cloud, p, cv, before.bounds, p.sun_after, targets)
        ctx_a.cloud_spec = np.array([0.6, 0.61, 0.62, 0.6], np.float32) * r_cloud.uniform(0.9, 1.15)
    rho_a = np.stack([_reduce_after(band, cv, after, utm, shift_m) for band in _render(world, cv, shared, ctx_a)])
    del shared

    # --- validity ---
    valid_a = np.ones(after.shape, bool)
    invalid_world = []
    if p.nodata_corner:
        corner = _nodata_corner(r_misc, after)
        valid_a &= ~rasterize([(corner, 1)], out_shape=after.shape, transform=after.transform, dtype="uint8",
                              all_touched=True).astype(bool)
        tr = Transformer.from_crs(after.crs, utm, always_xy=True)
        cw = shapely.transform(shapely.segmentize(corner, max(corner.length / 200, 1e-9)),
                               lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
        invalid_world.append(affinity.translate(cw, -shift_m[0], -shift_m[1]))
    # the after footprint (in world coordinates) must cover the before scene
    tr = Transformer.from_crs(after.crs, utm, always_xy=True)
    af = shapely.transform(densified_box(after.bounds, 41), lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
    af = affinity.translate(af, -shift_m[0], -shift_m[1])
    outside = before.footprint().buffer(p.pixel_size_m).difference(af)
    if not outside.is_empty:
        invalid_world.append(outside)
    invalid = np.zeros(before.shape, bool)
    if invalid_world:
        invalid |= rasterize([(g, 1) for g in invalid_world], out_shape=before.shape, transform=before.transform,
                             dtype="uint8", all_touched=True).astype(bool)
    cloud_frac = shadow_frac = 0.0
    if ctx_a.cloud is not None:
        A, S, k = ctx_a.cloud
        rr = cv.off[0] + (np.arange(before.rows) + 0.5) * cv.ss  # before pixel centres on the canvas
        cc = cv.off[1] + (np.arange(before.cols) + 0.5) * cv.ss
        cb, sb = _sample_coarse(A, k, rr, cc), _sample_coarse(S, k, rr, cc)
        invalid |= (cb > 0.05) | (sb > 0.05)
        cloud_frac, shadow_frac = float((cb > 0.5).mean()), float((sb > 0.5).mean())
    ctx_a.cloud = None

    # --- sensor ---
    rad_b = _radiometry(r_rad, p, 0.35)
    rad_a = _radiometry(r_rad, p, 1.0)
    rho_b = _sensor(r_sensor, rho_b, rad_b, p, p.psf_sigma_px)
    rho_a = _sensor(r_sensor, rho_a, rad_a, p, p.psf_sigma_px)
    display: dict = {}
    valid_b = np.ones(before.shape, bool)
    if p.product == "ms16":
        data_b, data_a, bands, nodata = _to_ms16(rho_b, valid_b), _to_ms16(rho_a, valid_a), MS16_BANDS, 0
    else:
        data_b, display["before"] = _to_rgb8(r_display, rho_b, valid_b, p.seed == 0)
        data_a, display["after"] = _to_rgb8(r_display, rho_a, valid_a, p.seed == 0)
        bands, nodata = RGB8_BANDS, None
    del rho_a, rho_b

    # --- truth ---
    truth_pairs = _truth_objects(world, utm, before)
    mask = _truth_mask(truth_pairs, before, invalid)
    truth = [t for _, t in truth_pairs]
    aoi = _aoi(r_misc, before)
    hidden = []
    if truth_pairs:
        ids = rasterize([(o.footprint, t.id) for o, t in truth_pairs], out_shape=before.shape,
                        transform=before.transform, dtype="uint16" if len(truth) < 65535 else "int32")
        n_all = np.bincount(ids.ravel(), minlength=len(truth) + 1)
        n_bad = np.bincount(ids[invalid], minlength=len(truth) + 1)
        hidden = [t.id for t in truth if n_all[t.id] and n_bad[t.id] > 0.5 * n_all[t.id]]

    counts: dict = {}
    for t in truth:
        counts.setdefault(t.cls, {}).setdefault(t.change, 0)
        counts[t.cls][t.change] += 1
    px_a = after.pixel_size_m()
    info = dict(
        generator="basewatch.synth",
        seed=p.seed,
        params=_jsonable(dataclasses.asdict(p)),
        dates=[date_b.isoformat(), date_a.isoformat()],
        sun={"before": {"azimuth": p.sun_before[0], "elevation": p.sun_before[1]},
             "after": {"azimuth": p.sun_after[0], "elevation": p.sun_after[1]}},
        view={"before": {"azimuth": p.view_before[0], "off_nadir": p.view_before[1]},
              "after": {"azimuth": p.view_after[0], "off_nadir": p.view_after[1]}},
        shift={"rows_px": p.shift_px[0], "cols_px": p.shift_px[1], "dx_m": round(shift_m[0], 4),
               "dy_m": round(shift_m[1], 4),
               "meaning": "after content appears rows_px before-pixels south and cols_px east of its true place"},
        radiometry={"before": rad_b, "after": rad_a, "bands": list(MS16_BANDS), "diffuse_before": ctx_b.diffuse.round(4).tolist(),
                    "diffuse_after": ctx_a.diffuse.round(4).tolist()},
        display=display,
        season={"strength": p.season, "greenness_change": round(dg, 4), "soil": world.greens["soil_name"]},
        clouds={"requested_fraction": p.cloud_fraction, "cloud_fraction": round(cloud_frac, 4),
                "cloud_shadow_fraction": round(shadow_frac, 4), **cloud_info},
        not_assessable_fraction=round(float(invalid.mean()), 4),
        grids={"before": before.to_dict(), "after": after.to_dict(), "canvas_res_m": cv.res, "supersample": cv.ss},
        after_ground_pixel_m=[round(float(px_a[0]), 4), round(float(px_a[1]), 4)],
        counts=counts,
        truth_hidden_ids=hidden,
        layout=world.info,
        product=p.product,
        bands=list(bands),
    )
    sc_b = SynthScene(data_b, before, tuple(bands), date_b, nodata, valid_b)
    sc_a = SynthScene(data_a, after, tuple(bands), date_a, nodata, valid_a)
    return SynthPair(sc_b, sc_a, truth, mask, aoi, info)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _write_scene(scene: SynthScene, path: Path) -> None:
    bands, rows, cols = scene.data.shape
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype=scene.data.dtype.name,
                   crs=scene.grid.crs, transform=scene.grid.transform, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", predictor=2, interleave="pixel" if bands == 3 else "band")
    if scene.nodata is not None:
        profile["nodata"] = scene.nodata
    if scene.data.dtype == np.uint8 and bands == 3:
        profile["photometric"] = "RGB"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(scene.data)
            ds.update_tags(ACQUISITION_DATE=scene.acquired.isoformat())
            for i, role in enumerate(scene.bands, start=1):
                ds.set_band_description(i, role)
            if scene.nodata is None:
                ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue][:bands]
                valid = scene.valid if scene.valid is not None else np.ones((rows, cols), bool)
                ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))


def _write_mask(mask: np.ndarray, grid: Grid, path: Path) -> None:
    rows, cols = mask.shape
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="uint8", crs=grid.crs,
                       transform=grid.transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate") as ds:
        ds.write(mask, 1)
        ds.set_band_description(1, "truth: 0 none, 1 appeared, 2 disappeared, 3 changed, 255 not assessable")


def _round_coords(geom, nd: int = 8) -> dict:
    """GeoJSON geometry with coordinates rounded to ``nd`` decimals (8 decimals of a degree ~ 1 mm)."""
    return _rounded(mapping(geom), nd)


def _rounded(obj, nd):
    if isinstance(obj, dict):
        return {k: _rounded(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, nd) for v in obj]
    if isinstance(obj, float):
        return round(obj, nd)
    return obj


def write_pair(pair: SynthPair, outdir: Path) -> dict[str, Path]:
    """Write a pair as files into ``outdir`` (replaced as a whole).

    Files: ``before.tif``, ``after.tif`` (tiled DEFLATE GeoTIFFs, tag ``ACQUISITION_DATE``,
    band descriptions = band roles; nodata 0 for ms16, an internal mask for rgb8),
    ``truth.geojson`` (RFC 7946, EPSG:4326), ``truth_mask.tif`` (uint8, before grid),
    ``aoi.geojson`` and ``truth.json`` (the ``info`` record). Everything is written to a
    temporary folder beside ``outdir`` and renamed into place.

    Parameters
    ----------
    pair : SynthPair
    outdir : path-like

    Returns
    -------
    dict of str to Path
        Keys ``before``, ``after``, ``truth``, ``truth_mask``, ``aoi``, ``info``.
    """
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    names = dict(before="before.tif", after="after.tif", truth="truth.geojson", truth_mask="truth_mask.tif",
                 aoi="aoi.geojson", info="truth.json")
    try:
        _write_scene(pair.before, tmp / names["before"])
        _write_scene(pair.after, tmp / names["after"])
        _write_mask(pair.truth_mask, pair.before.grid, tmp / names["truth_mask"])
        feats = [dict(type="Feature", geometry=_round_coords(t.footprint_lonlat),
                      properties={"id": t.id, "change": t.change, "class": t.cls, "area_m2": t.area_m2,
                                  "length_m": t.length_m, "width_m": t.width_m}) for t in pair.truth]
        (tmp / names["truth"]).write_text(json.dumps(dict(type="FeatureCollection", features=feats)))
        aoi = dict(type="FeatureCollection", features=[dict(type="Feature", properties={"name": "aoi"},
                                                            geometry=_round_coords(orient(pair.aoi_lonlat, 1.0)))])
        (tmp / names["aoi"]).write_text(json.dumps(aoi))
        (tmp / names["info"]).write_text(json.dumps(_jsonable(pair.info), indent=1))
        old = None
        if outdir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old.", dir=outdir.parent))
            os.rename(outdir, old / "x")
        os.rename(tmp, outdir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {k: outdir / v for k, v in names.items()}
