"""One analysis: two scenes (and an AOI) in, change products out.

``analyze`` runs the stages of the design card in order; each stage is a
function on arrays and grids from its own module. Reading scenes happens
through :mod:`imagery.scenes`; writing products is :mod:`imagery.products`'
job. A grid that fits one block or the whole-grid budget
(``AnalysisParams.blockwise``) is analysed whole, in memory; a larger one
block by block (:mod:`imagery.blockwise`).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from rasterio import features
from shapely.geometry.base import BaseGeometry

from imagery import __version__
from imagery.change import METHODS, ChangeInputs, ChangeResult
from imagery.clouds import not_analysed
from imagery.contract import MASK_CHANGED
from imagery.coregister import NO_SHIFT, ShiftEstimate, estimate_shift, structure_band
from imagery.errors import AnalysisError, BandError, GridTooLargeError, NoOverlapError
from imagery.grid import Grid, analysis_grid, nominal_pixel_size_m
from imagery.normalize import (DEFAULT_SAMPLE, MADFit, Normalisation, apply_normalisation, fit_irmad, fit_normalisation,
                               sample_indexes)
from imagery.objects import MASK_VALUES, ChangeObject, counts_by
from imagery.raster import BAND_ROLES, Raster, brightness
from imagery.scenes import SceneInfo, read_onto_grid
from imagery.scenestats import SceneStats

Progress = Callable[[str, float], None]

DEFAULT_METHOD = "auto"


#: Largest grid analysed whole by default, pixels x bands: 4096² with 4 bands.
WHOLE_BAND_PIXELS = 4096 * 4096 * 4


@dataclass(frozen=True)
class AnalysisParams:
    """Options of one analysis.

    Attributes
    ----------
    method : str
        Change method, a key of :data:`imagery.change.METHODS`.
    margin_m : float
        Margin around the AOI bounds in the analysis grid, metres.
    max_pixels : int
        Largest analysis grid allowed.
    pixel_size_m : float, optional
        Analysis pixel size; default the coarser of the two scenes.
    coregister : bool
        Estimate and remove the residual shift of AFTER.
    mask_clouds : bool
        Detect clouds and cloud shadows and leave them not analysed.
    sample_pixels : int
        Pixels sampled for the normalisation fit.
    block_px : int
        A grid with a side longer than this is analysed block-wise, in
        blocks of about this side (:mod:`imagery.blockwise`), unless it
        fits ``whole_band_pixels``.
    whole_band_pixels : int
        A grid of at most this many pixels x bands is analysed whole, in one
        process, whatever its side: 4096² with 4 bands peaks at about 2.4 GB
        and runs faster whole than block-wise on 2 CPUs (the block-wise
        statistics pass and halos cost more than the second CPU gains).
        0: block-wise whenever a side exceeds ``block_px``.
    max_disk_bytes : int, optional
        Disk space the products may take; a grid whose products could need
        more is refused before any pixel is read.
    """

    method: str = DEFAULT_METHOD
    margin_m: float = 0.0
    max_pixels: int = 2_000_000_000
    pixel_size_m: float | None = None
    coregister: bool = True
    mask_clouds: bool = True
    sample_pixels: int = DEFAULT_SAMPLE
    block_px: int = 1536
    whole_band_pixels: int = WHOLE_BAND_PIXELS
    max_disk_bytes: int | None = None

    def blockwise(self, shape: tuple[int, int], bands: int) -> bool:
        """Whether a grid of ``shape`` (rows, cols) with ``bands`` bands is analysed block-wise."""
        return max(shape) > self.block_px and shape[0] * shape[1] * bands > self.whole_band_pixels

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Analysis:
    """Everything an analysis produced, on the analysis grid.

    A whole-grid analysis holds its rasters in memory (``before``, ``after``,
    ``analysed``, ``score``, ``mask`` on ``grid``). A block-wise one holds
    them in tiled GeoTIFFs (``rasters``, an :class:`imagery.products.TiledRasters`),
    and ``before``, ``after`` and ``analysed`` are an overview of every
    n-th pixel on ``overview_grid`` (for the report); ``score`` and ``mask``
    are None and ``pixel_counts`` gives the counts the summary needs.
    """

    grid: Grid
    before: Raster
    after: Raster
    analysed: np.ndarray
    score: np.ndarray | None
    mask: np.ndarray | None
    objects: list[ChangeObject]
    shift: ShiftEstimate
    normalisation: Normalisation
    change: ChangeResult
    params: AnalysisParams
    area_lonlat: BaseGeometry
    timings: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    rasters: object | None = None
    overview_grid: Grid | None = None
    pixel_counts: dict | None = None

    def counts(self) -> tuple[int, int]:
        """(analysed, changed) pixels of the analysis grid."""
        if self.pixel_counts is not None:
            return self.pixel_counts["analysed"], self.pixel_counts["changed"]
        return int(self.analysed.sum()), int(np.isin(self.mask, MASK_CHANGED).sum())

    def report_view(self) -> Analysis:
        """What the report draws: this analysis, or for a block-wise one its overview on ``overview_grid``."""
        return self if self.overview_grid is None else replace(self, grid=self.overview_grid)

    def summary(self) -> dict:
        """The JSON-ready summary (summary.json)."""
        px_m = nominal_pixel_size_m(self.grid)
        px_area = px_m**2
        analysed_px, changed_px = self.counts()
        not_analysed = 1 - float(analysed_px) / max(1, self.aoi_pixels())
        return {
            "software": {"name": "basewatch", "version": __version__},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "before_date": iso(self.before.acquired),
            "after_date": iso(self.after.acquired),
            "sources": self.sources,
            "counts": counts_by(self.objects),
            "changed_area_m2": round(changed_px * px_area, 1),
            "analysed_area_m2": round(float(analysed_px) * px_area, 1),
            "not_analysed_fraction": round(not_analysed, 4),
            "not_analysed_by_cause": self.sources.get("not_analysed", {}),
            "grid": self.grid.to_dict(),
            "bands": list(self.before.bands),
            "shift": self.shift.to_dict(self.grid),
            "normalisation": self.normalisation.to_dict(),
            "method": self.params.method,
            "threshold": {"score": round(self.change.threshold, 6), "rule": self.change.rule},
            "change_details": jsonable(self.change.details),
            "stages": stage_accounting(self.change.details),
            "params": self.params.to_dict(),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "caveats": caveats(
                bands=tuple(self.before.bands), dtypes=tuple(self.sources.get(d, {}).get("dtype", "") for d in ("before", "after")),
                pixel_size_m=px_m, not_analysed_fraction=not_analysed,
                shift_blocks=(self.shift.blocks_used, self.shift.blocks_total), dates=(self.before.acquired, self.after.acquired))
            + stage_caveats(stage_accounting(self.change.details)),
        }

    def aoi_pixels(self) -> int:
        return int(self.sources["aoi_pixels"]) if "aoi_pixels" in self.sources else int(self.analysed.size)


def caveats(*, bands: tuple[str, ...], dtypes: tuple[str, ...], pixel_size_m: float, not_analysed_fraction: float,
            shift_blocks: tuple[int, int], dates: tuple) -> list[str]:
    """What an analyst must know before quoting this analysis's counts, from facts about its inputs.

    ``pixel_size_m`` is the analysis grid's ground pixel size (metres);
    ``not_analysed_fraction`` the share of the AOI left out (0-1); ``shift_blocks`` the co-registration
    blocks that agreed and those measured ((0, 0) when co-registration was not run).
    """
    out = []
    if len(bands) == 1:
        out.append("single band: shade cannot be told from a darker material, so moved shadows may be reported as "
                   "change and dark vehicles missed (use multispectral imagery where possible)")
    elif "uint8" in dtypes:
        out.append("8-bit display product: dark vehicles are often indistinguishable from moved shadows and go "
                   "unreported; treat counts as a lower bound")
    if pixel_size_m > 10.0:
        out.append(f"{pixel_size_m:.1f} m pixels: only construction-scale change (vehicles and tents are not resolved)")
    elif pixel_size_m > 1.5:
        out.append(f"{pixel_size_m:.1f} m pixels do not resolve single vehicles: vehicle-sized change is reported "
                   "as vehicle_group areas, without counts")
    if not_analysed_fraction > 0.1:
        out.append(f"{100 * not_analysed_fraction:.0f} % of the area was not analysed (cloud, cloud shadow, nodata): "
                   "counts cover the analysed part only")
    used, measured = shift_blocks
    if measured and not used:
        out.append(f"no co-registration shift found (the {measured} blocks measured disagree): the scenes are "
                   "compared as georeferenced, and changes along edges may be misregistration")
    for name, date in zip(("before", "after"), dates):
        if date is None:
            out.append(f"{name} acquisition date unknown")
    return out


#: A stage that removes at least this share of its candidate change gets a caveat.
OVERRIDE_SHARE = 0.9

#: What each explanation stands for, in an analyst's words.
EXPLANATION_WORDS = {
    "illumination_season_lean": "sun, shade, season or lean",
    "vegetation_both_dates": "vegetation at both dates (phenology)",
    "smooth_surface": "fields or water that changed colour (smooth at both dates)",
    "moved_shadow": "cast shadows that moved with the sun",
    "outline_at_both_dates": "buildings present at both dates (their outline is an edge at both)",
    "standing_building": "re-roofed or differently lit buildings (on a roof whose outline is an edge at both dates)",
}


def stage_accounting(details: dict) -> list[dict]:
    """Per stage of the change method: the candidate change it removed (pixels, share) and why.

    Read from the method's details (the object stage's candidate and
    unexplained pixels, the region stage's explanations), so ``0 objects``
    can be told apart from "everything was explained away".
    """
    out = []
    if details.get("candidate_pixels"):
        candidates = int(details["candidate_pixels"])
        removed = candidates - int(details.get("unexplained_pixels", 0))
        out.append({"stage": "objects", "explanation": "illumination_season_lean", "candidate_pixels": candidates,
                    "removed_pixels": removed, "removed_share": round(removed / candidates, 4), "applied": True})
    if details.get("standing_building_pixels"):
        removed = int(details["standing_building_pixels"])
        out.append({"stage": "objects", "explanation": "standing_building", "removed_pixels": removed,
                    "removed_share": round(removed / max(int(details.get("object_pixels", 0)), 1), 4),
                    "applied": True})
    structures = details.get("structures", {})
    if structures.get("candidate_pixels"):
        candidates, removed = int(structures["candidate_pixels"]), int(structures["removed_pixels"])
        out.append({"stage": "structures", "explanation": "outline_at_both_dates", "candidate_pixels": candidates,
                    "removed_pixels": removed, "removed_share": round(removed / candidates, 4), "applied": True})
    regions = details.get("areas", details if "explanations" in details else {})
    for name, e in regions.get("explanations", {}).items():
        out.append({"stage": "regions", "explanation": name, "removed_pixels": int(e["removed_pixels"]),
                    "removed_share": float(e["removed_share"]), "applied": bool(e["applied"])})
    return out


def stage_caveats(stages: list[dict]) -> list[str]:
    """Caveats for stages that overrode most of the change, or explanations judged unspecific on this pair."""
    out = []
    for s in stages:
        words = EXPLANATION_WORDS.get(s["explanation"], s["explanation"])
        pct = 100 * s["removed_share"]
        if not s["applied"]:
            out.append(f"the {s['stage']} stage would have explained {pct:.0f} % of a large change as {words}; "
                       "on this pair that explanation is not specific and was not applied, so part of the changed "
                       "areas may be that")
        elif s["stage"] == "objects" and s["removed_share"] >= OVERRIDE_SHARE:
            out.append(f"the object stage explained {pct:.0f} % of its candidate change as {words}: on this pair "
                       "those explanations may also cover real vehicles, so vehicle counts are a lower bound")
        elif s["removed_share"] >= OVERRIDE_SHARE and s["stage"] != "structures":  # most buildings stand at both dates
            out.append(f"the {s['stage']} stage removed {pct:.0f} % of the candidate change as {words}")
    return out


def iso(date) -> str | None:
    return date.isoformat() if date is not None else None


def jsonable(obj):
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return round(float(obj), 6)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def common_bands(before: SceneInfo, after: SceneInfo) -> tuple[str, ...]:
    """Band roles present in both scenes, canonical order; raises if none."""
    shared = tuple(r for r in BAND_ROLES if r in before.band_index and r in after.band_index)
    if not shared:
        raise BandError(
            f"the scenes share no band: before has {', '.join(before.bands)}, after has {', '.join(after.bands)}"
        )
    if "pan" in shared and len(shared) > 1:
        shared = tuple(r for r in shared if r != "pan")
    return shared


def analysis_area(before: SceneInfo, after: SceneInfo, aoi_lonlat: BaseGeometry | None) -> BaseGeometry:
    """The lon/lat area both scenes cover (and the AOI, when given); raises if empty."""
    overlap = before.footprint_lonlat().intersection(after.footprint_lonlat())
    if overlap.is_empty or overlap.area == 0:
        raise NoOverlapError("the two scenes do not overlap")
    if aoi_lonlat is None:
        return overlap
    area = overlap.intersection(aoi_lonlat)
    if area.is_empty or area.area == 0:
        raise NoOverlapError("the scenes do not cover the AOI")
    return area


def rasterize_area(area_lonlat: BaseGeometry, grid: Grid) -> np.ndarray:
    """Pixels whose centre lies inside a lon/lat geometry, bool (rows, cols)."""
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping

    geom = transform_geom("EPSG:4326", grid.crs, mapping(area_lonlat))
    return features.rasterize([(geom, 1)], out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8").astype(bool)


class Stopwatch:
    """Wall-clock timings per stage, seconds."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str):
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - self._t
        self._t = now


@dataclass
class Prepared:
    """Both dates on one grid, co-registered and radiometrically comparable: what change methods work on."""

    grid: Grid
    before: Raster
    after: Raster
    after_norm: np.ndarray
    inside: np.ndarray
    valid: np.ndarray
    shift: ShiftEstimate
    normalisation: Normalisation
    mad: MADFit | None  # IR-MAD fitted on the raw dates (multiband only)
    sample: np.ndarray
    pixel_size_m: float
    area_lonlat: BaseGeometry


@dataclass(frozen=True)
class Plan:
    """What is decided before any pixel is read: the analysis grid, the bands, the area (lon/lat)."""

    grid: Grid
    bands: tuple[str, ...]
    area_lonlat: BaseGeometry
    pixel_size_m: float


def plan_analysis(before_info: SceneInfo, after_info: SceneInfo, aoi_lonlat: BaseGeometry | None,
                  params: AnalysisParams) -> Plan:
    """Stage 1-2 planning: the bands both scenes have, the area both cover, the analysis grid (refused when it
    exceeds ``params.max_pixels`` or its products ``params.max_disk_bytes``)."""
    bands = common_bands(before_info, after_info)
    area = analysis_area(before_info, after_info, aoi_lonlat)
    pixel_size = params.pixel_size_m or max(before_info.pixel_size_m, after_info.pixel_size_m)
    if before_info.grid.is_projected and math.isclose(before_info.grid.res[0], before_info.grid.res[1], rel_tol=1e-9) \
            and math.isclose(before_info.grid.res[0], pixel_size, rel_tol=1e-3):
        pixel_size = before_info.grid.res[0]  # the before scene's exact pixel: its lattice can be shared
    grid = analysis_grid(area, pixel_size_m=pixel_size, margin_m=params.margin_m, max_pixels=params.max_pixels,
                         align_to=before_info.grid)
    if params.max_disk_bytes is not None:
        from imagery.products import product_bytes

        need = product_bytes(grid.rows * grid.cols, len(bands), blockwise=params.blockwise(grid.shape, len(bands)))
        if need > params.max_disk_bytes:
            raise GridTooLargeError(
                f"the products of a {grid.cols} x {grid.rows} px analysis could take {need / 1e9:.1f} GB of disk, "
                f"{max(params.max_disk_bytes, 0) / 1e9:.1f} GB are available; use a smaller AOI or a coarser pixel_size_m")
    return Plan(grid=grid, bands=bands, area_lonlat=area, pixel_size_m=pixel_size)


#: Reads a scene onto the prepared layout, the layout moved by an offset (CRS units): ``read(info, (dx, dy))``.
Reader = Callable[[SceneInfo, tuple[float, float]], Raster]


def prepare(
    before_info: SceneInfo,
    after_info: SceneInfo,
    aoi_lonlat: BaseGeometry | None,
    params: AnalysisParams,
    *,
    report: Progress,
    watch: Stopwatch,
) -> Prepared:
    """Stages 1-4: plan the grid, read both scenes onto it, co-register, normalise."""
    report("planning", 0.0)
    plan = plan_analysis(before_info, after_info, aoi_lonlat, params)
    inside = rasterize_area(plan.area_lonlat, plan.grid)
    if not inside.any():
        raise NoOverlapError("the area to analyse is smaller than one pixel")
    watch.lap("plan")

    def read(info: SceneInfo, offset: tuple[float, float]) -> Raster:
        return read_onto_grid(info, plan.grid.translated(*offset) if offset != (0.0, 0.0) else plan.grid, roles=plan.bands)

    return prepare_on(before_info, after_info, plan, plan.grid, inside, read, params, report=report, watch=watch)


def prepare_on(before_info: SceneInfo, after_info: SceneInfo, plan: Plan, grid: Grid, inside: np.ndarray, read: Reader,
               params: AnalysisParams, *, report: Progress, watch: Stopwatch) -> Prepared:
    """Stages 2-4 on a layout of pixels (``grid``: the analysis grid, or a mosaic of sample windows of it):
    read both scenes, co-register (:func:`read_registered`), fit and apply the normalisation
    (:func:`normalise`).

    ``inside`` (bool, ``grid.shape``) marks the pixels inside the area; ``read`` reads a scene onto the
    layout, moved by an offset for AFTER's shift.
    """
    before, after, valid, shift = read_registered(before_info, after_info, plan, grid, inside, read, params,
                                                  report=report, watch=watch)
    report("normalising", 0.4)
    sample = sample_indexes(valid, params.sample_pixels)
    if sample.size < 64:
        raise AnalysisError("too few valid pixels to compare the dates")
    norm, mad = fit_pair(before.data.reshape(before.count, -1)[:, sample], after.data.reshape(after.count, -1)[:, sample],
                         plan.bands)
    after_norm = apply_normalisation(after.data, norm)
    watch.lap("normalise")
    return Prepared(grid=grid, before=before, after=after, after_norm=after_norm, inside=inside, valid=valid, shift=shift,
                    normalisation=norm, mad=mad, sample=sample, pixel_size_m=plan.pixel_size_m, area_lonlat=plan.area_lonlat)


def read_registered(before_info: SceneInfo, after_info: SceneInfo, plan: Plan, grid: Grid, inside: np.ndarray,
                    read: Reader, params: AnalysisParams, *, report: Progress,
                    watch: Stopwatch) -> tuple[Raster, Raster, np.ndarray, ShiftEstimate]:
    """Stages 2-3: both scenes read onto the layout, AFTER re-read moved by the co-registration shift;
    returns (before, after, valid in both and inside, shift)."""
    report("reading", 0.05)
    before = read(before_info, (0.0, 0.0))
    after = read(after_info, (0.0, 0.0))
    watch.lap("read")
    valid = before.valid & after.valid & inside
    if valid.sum() < 64:
        raise NoOverlapError("the scenes share no valid pixels inside the area to analyse")

    report("co-registering", 0.25)
    shift = NO_SHIFT
    if params.coregister:
        b_struct = structure_band(brightness(before), valid)
        a_struct = structure_band(brightness(after), valid)
        shift = estimate_shift(b_struct, a_struct, valid)
        del b_struct, a_struct
        if shift.magnitude_px >= MIN_SHIFT_PX:
            after = read(after_info, shift.offset_m(plan.grid))
            after = Raster(after.data, after.valid, grid, after.bands, after.acquired, after.meta)
            valid = before.valid & after.valid & inside
    watch.lap("coregister")
    return before, after, valid, shift


def fit_pair(before: np.ndarray, after: np.ndarray, bands: tuple[str, ...]) -> tuple[Normalisation, object]:
    """Stage 4's fit on sampled pixels (bands, n) of both dates: the normalisation and the IR-MAD fit (None
    for a single band)."""
    mad = fit_irmad(before, after) if before.shape[0] > 1 else None
    return fit_normalisation(before, after, bands, mad=mad), mad


#: A smaller co-registration shift (pixels) is not applied.
MIN_SHIFT_PX = 0.05


@dataclass
class Found:
    """Stages 5-7 on prepared pixels: what is not analysed, the change, its objects (labels and types)."""

    analysed: np.ndarray
    hidden: object
    result: ChangeResult
    labels: np.ndarray
    types: dict


def find_changes(prep: Prepared, params: AnalysisParams, stats: SceneStats, sample: np.ndarray | None, *,
                 report: Progress, watch: Stopwatch) -> Found:
    """Stages 5-7: clouds and shadows, change, objects (labelled, not yet measured).

    ``stats`` holds the scene-wide statistics: measured here on a whole grid or the statistics sample, frozen
    for a block. ``sample`` (flat indexes of valid pixels) is what sample-based statistics are measured on;
    None for a block, whose statistics are all given.
    """
    from imagery.segment import label_objects

    bands = prep.before.bands
    report("masking clouds", 0.5)
    hidden = None
    analysed = prep.valid.copy()
    if params.mask_clouds:
        hidden = not_analysed(prep.before.data, prep.after_norm, bands, prep.valid, prep.pixel_size_m,
                              raw_after=prep.after.data, stats=stats.scope("clouds"))
        analysed &= ~hidden.any
    watch.lap("clouds")
    if sample is not None:
        sample = sample[analysed.ravel()[sample]]
        if sample.size < 64:
            raise AnalysisError("clouds or nodata cover the whole area: nothing left to compare")

    report("detecting change", 0.55)
    inputs = ChangeInputs(before=prep.before, after=prep.after.with_data(prep.after_norm), analysed=analysed,
                          pixel_size_m=prep.pixel_size_m, mad=prep.mad,
                          sample=np.empty(0, np.int64) if sample is None else sample,
                          raw_after=prep.after, stats=stats.scope("change"))
    result = METHODS[params.method](inputs)
    watch.lap("change")

    report("objects", 0.75)
    labels, types = label_objects(result, prep.before.data, prep.after_norm, analysed, pixel_size_m=prep.pixel_size_m,
                                  stats=stats.scope("objects"))
    watch.lap("objects")
    return Found(analysed=analysed, hidden=hidden, result=result, labels=labels, types=types)


def scene_sources(before_info: SceneInfo, after_info: SceneInfo) -> dict:
    """``summary["sources"]`` of the two scenes (file, date, bands, type, pixel size, CRS)."""
    return {side: {"file": Path(info.path).name, "date": iso(info.acquired), "bands": list(info.bands),
                   "dtype": info.dtype, "pixel_size_m": round(info.pixel_size_m, 4), "crs": str(info.grid.crs)}
            for side, info in (("before", before_info), ("after", after_info))}


def analyze(
    before_info: SceneInfo,
    after_info: SceneInfo,
    aoi_lonlat: BaseGeometry | None = None,
    params: AnalysisParams = AnalysisParams(),
    *,
    progress: Progress | None = None,
    executor=None,
    scratch: str | Path | None = None,
) -> Analysis:
    """Find what changed between two scenes.

    Parameters
    ----------
    before_info, after_info : SceneInfo
        Validated scenes (:func:`imagery.scenes.inspect_scene`).
    aoi_lonlat : shapely geometry, optional
        Area of interest in EPSG:4326; default the overlap of the scenes.
    params : AnalysisParams
    progress : callable, optional
        Called as ``progress(stage, fraction_done)``.
    executor : concurrent.futures.Executor, optional
        Where the blocks of a block-wise analysis run (e.g. a Dask client's
        ``get_executor()``); default local processes
        (:func:`imagery.blockwise.local_executor`).
    scratch : path, optional
        Folder for a block-wise analysis's raster products while they are
        written block by block (default a temporary folder); see
        :func:`imagery.products.scratch_folder`. With a Dask cluster on other
        machines, a folder they reach at the same path: they make the COGs from it.

    Returns
    -------
    Analysis
        In memory for a grid analysed whole (``params.blockwise``);
        for a larger grid, with its rasters in tiled GeoTIFFs
        (``Analysis.rasters``) and an overview for the report.
    """
    report = progress or (lambda stage, fraction: None)
    if params.method not in METHODS:
        raise ValueError(f"unknown method {params.method!r}; choose one of {', '.join(METHODS)}")
    plan = plan_analysis(before_info, after_info, aoi_lonlat, params)
    if params.blockwise(plan.grid.shape, len(plan.bands)):
        from imagery.blockwise import analyze_blockwise

        return analyze_blockwise(before_info, after_info, plan, params, progress=report, executor=executor,
                                 scratch=scratch)
    watch = Stopwatch()
    prep = prepare(before_info, after_info, aoi_lonlat, params, report=report, watch=watch)
    found = find_changes(prep, params, SceneStats(), prep.sample, report=report, watch=watch)
    from imagery.segment import finish_objects

    objects, mask = finish_objects(found.labels, found.types, found.result, prep.before.data, prep.after_norm,
                                   grid=prep.grid, pixel_size_m=prep.pixel_size_m)
    analysed = found.analysed
    mask[~analysed] = MASK_VALUES["not_analysed"]
    watch.lap("objects")
    report("done", 1.0)

    after_out = Raster(prep.after_norm, prep.after.valid, prep.grid, prep.before.bands, prep.after.acquired, prep.after.meta)
    sources = {
        **scene_sources(before_info, after_info),
        "aoi_pixels": int(prep.inside.sum()),
        "not_analysed": found.hidden.fractions(prep.inside) if found.hidden is not None else {},
    }
    return Analysis(grid=prep.grid, before=prep.before, after=after_out, analysed=analysed, score=found.result.score,
                    mask=mask, objects=objects, shift=prep.shift, normalisation=prep.normalisation, change=found.result,
                    params=params, area_lonlat=prep.area_lonlat, timings=watch.times, sources=sources)
