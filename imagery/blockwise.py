"""Whole scenes block by block: bounded memory, spread over local processes or a Dask cluster.

A grid with a side longer than ``AnalysisParams.block_px`` (and more pixels x bands than ``whole_band_pixels``) is analysed
in four steps:

1. **Plan** (:func:`imagery.blockplan.plan_blocks`): blocks of about ``block_px`` pixels whose origins lie on the stages'
   common lattice (:func:`~imagery.blockplan.lattice_px`: block means and block medians start where they would on the whole
   grid), each read with a halo of :data:`~imagery.blockplan.MAX_OBJECT_M` + :data:`~imagery.blockplan.CONTEXT_M` metres: room for the largest
   object, and around it the reach of every filter, background window, displacement search and
   co-registration tolerance of the stages.
2. **Statistics pass** (:func:`statistics_pass`): the stages run on a sample of the grid, a mosaic of
   windows spread over it (the whole grid when it has at most :data:`~imagery.blockplan.SAMPLE_PX` pixels). It measures the
   co-registration shift, fits the normalisation, and records every scene-wide number the stages ask for
   (:class:`imagery.scenestats.SceneStats`: noise, medians and MADs, thresholds, which explanations are
   specific to the pair, the lean direction).
3. **Blocks** (:func:`run_block`, one task each, on any :class:`concurrent.futures.Executor`: local
   processes, or a Dask client's executor): read the block with its halo, normalise, clouds, change and
   objects with the frozen statistics, so a block decides as the whole grid would. An object no wider or
   taller than :data:`~imagery.blockplan.MAX_OBJECT_M` lies whole in the halo of every block it touches; the block holding its
   first pixel (raster order) reports it, measured as on the whole grid. A larger object is reported in
   parts, one per block it covers.
4. **Merge** (:func:`imagery.blockedges.merge_pieces`): the parts of a large object in neighbouring blocks are joined across
   block edges (8-connected, as objects are labelled) and measured as one: area, outline, sizes, mean score
   and brightness from all its pixels; its change type that of its largest part.

The parent keeps one block's rasters at a time: they are written into tiled GeoTIFFs
(:class:`imagery.products.TiledRasters`) as blocks finish, and an overview of every n-th pixel is kept
for the report. Peak memory depends on the block size, not on the grid's.

Known approximations (objects up to :data:`~imagery.blockplan.MAX_OBJECT_M` across are exact, given the same statistics):
statistics come from the sample when the grid is larger than :data:`~imagery.blockplan.SAMPLE_PX`; an object larger than
the halo, a cloud, or a region of coherent change larger than a block and its halo is judged on the part a
block sees (its change type and whether an explanation removes it), and the candidate region an object
stands in is seen up to the halo.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from affine import Affine
from shapely.geometry.base import BaseGeometry

from imagery.blockedges import Piece, block_pieces, join_pieces, merge_pieces, owners, split_labels
from imagery.blockplan import (Block, Mosaic, halo_px, lattice_px, max_object_px, mosaic_grid, mosaic_inside,
                               plan_blocks, read_mosaic, sample_mosaic, slices, window_grid)
from imagery.change import ChangeResult
from imagery.coregister import ShiftEstimate
from imagery.grid import Grid
from imagery.normalize import Normalisation, apply_normalisation
from imagery.objects import MASK_VALUES, ChangeObject
from imagery.raster import Raster
from imagery.scenes import SceneInfo, read_onto_grid
from imagery.scenestats import SceneStats

#: GDAL's block cache in every process of a block-wise analysis, MB. GDAL's default (5 % of the RAM, 1.2 GB
#: on 24 GB) fills with the scenes' blocks as they are read and with the products' as they are written, so
#: each process's memory would grow with the scene.
GDAL_CACHE_MB = 128


def bounded_gdal_cache(fn):
    """Run ``fn`` with GDAL's block cache at :data:`GDAL_CACHE_MB` (in whatever process it runs)."""
    import rasterio

    @functools.wraps(fn)
    def bounded(*args, **kwargs):
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            return fn(*args, **kwargs)

    return bounded


#: glibc's allocator thresholds in a process running blocks, bytes: arrays up to 32 MB (two 2048² float32 bands)
#: come from the heap and are reused, and up to 64 MB of freed heap is kept rather than returned at once.
HEAP_MMAP_THRESHOLD, HEAP_TRIM_THRESHOLD = 32 * 2**20, 64 * 2**20


@functools.cache  # once per process
def reuse_heap() -> bool:
    """Set glibc's allocator thresholds (:data:`HEAP_MMAP_THRESHOLD`, :data:`HEAP_TRIM_THRESHOLD`) in this process;
    False where there is no glibc. A Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
    also fixes the mmap threshold at 128 kB: every temporary array of a block is then mapped fresh from the
    kernel and unmapped when freed (zeroed pages, page faults): 4096² whole analysis 36.0 s against 29.4 s with
    these thresholds, 32.5 s with glibc's defaults."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, HEAP_MMAP_THRESHOLD) and libc.mallopt(m_trim_threshold, HEAP_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def block_task(fn):
    """A task that runs in a block process or on a Dask worker: GDAL's cache bounded (:func:`bounded_gdal_cache`),
    the process's heap set for NumPy (:func:`reuse_heap`)."""
    bounded = bounded_gdal_cache(fn)

    @functools.wraps(fn)
    def task(*args, **kwargs):
        reuse_heap()
        return bounded(*args, **kwargs)

    return task


# --- 2. the statistics pass -----------------------------------------------------------------------------


@dataclass
class Statistics:
    """What the statistics pass measured: applied to every block."""

    shift: ShiftEstimate
    normalisation: Normalisation
    mad: object
    stats: SceneStats
    change: ChangeResult  # the method's rule, threshold and details on the sample (arrays dropped)
    sample_pixels: int
    timings: dict


def statistics_pass(before_info: SceneInfo, after_info: SceneInfo, plan, params, mosaic: Mosaic, *, report) -> Statistics:
    """Stages 2-4 on the mosaic as on a whole grid (:func:`imagery.pipeline.prepare_on`: the co-registration shift
    measured and the normalisation fitted on the mosaic's own pixels), then stages 5-7 on it, recording every
    scene-wide statistic."""
    from imagery.pipeline import Stopwatch, find_changes, prepare_on

    watch = Stopwatch()
    inside = mosaic_inside(plan.area_lonlat, plan.grid, mosaic)
    if not inside.any():
        from imagery.errors import NoOverlapError

        raise NoOverlapError("the area to analyse is smaller than one pixel")

    def read(info: SceneInfo, offset: tuple[float, float]) -> Raster:
        return read_mosaic(info, plan.grid, mosaic, plan.bands, offset)

    silent = lambda stage, fraction: None  # noqa: E731
    prep = prepare_on(before_info, after_info, plan, mosaic_grid(plan.grid, mosaic), inside, read, params,
                      report=silent, watch=watch)
    report("statistics", 0.1)
    stats = SceneStats()
    found = find_changes(prep, params, stats, prep.sample, report=silent, watch=watch)
    empty = np.zeros((0, 0), np.float32)
    change = replace(found.result, score=empty, changed=empty.astype(bool), objects=None)
    return Statistics(shift=prep.shift, normalisation=prep.normalisation, mad=prep.mad, stats=stats.frozen(),
                      change=change, sample_pixels=int(prep.valid.sum()), timings=dict(watch.times))


# --- 3. one block ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """Which pixels the report's overview keeps: every ``step``-th row and column from ``offset``."""

    step: int
    offset: int
    shape: tuple[int, int]

    @classmethod
    def of(cls, shape: tuple[int, int], max_side: int) -> Overview:
        step = max(1, math.ceil(max(shape) / max_side))
        offset = step // 2
        return cls(step, offset, (-(-(shape[0] - offset) // step), -(-(shape[1] - offset) // step)))

    def picks(self, start: int, stop: int) -> tuple[slice, slice]:
        """Of the grid rows (or columns) ``start:stop``: those kept (relative to ``start``) and where they go."""
        first = start + (self.offset - start) % self.step
        if first >= stop:
            return slice(0, 0), slice(0, 0)
        n = (stop - 1 - first) // self.step + 1
        at = (first - self.offset) // self.step
        return slice(first - start, first - start + n * self.step, self.step), slice(at, at + n)

    def grid(self, grid: Grid) -> Grid:
        """The overview's own grid: pixels ``step`` times larger, centred on the kept pixels."""
        t = grid.transform * Affine.translation(self.offset + 0.5 - self.step / 2, self.offset + 0.5 - self.step / 2)
        return Grid(grid.crs, t * Affine.scale(self.step), self.shape)


@dataclass(frozen=True)
class BlockTask:
    """Everything one block needs (picklable: it travels to a process or a Dask worker)."""

    before: SceneInfo
    after: SceneInfo
    grid: Grid
    bands: tuple[str, ...]
    area_lonlat: BaseGeometry
    pixel_size_m: float
    block: Block
    shift: ShiftEstimate
    normalisation: Normalisation
    mad: object
    stats: SceneStats
    params: object
    overview: Overview
    max_object_px: int


@dataclass
class BlockResult:
    """What a block reports: its objects, parts of large ones, its core's rasters, counts, an overview."""

    block: Block
    objects: list[ChangeObject]
    pieces: list[Piece]
    edges: dict  # piece labels along the core's top, bottom, left and right edges
    mask: np.ndarray  # (rows, cols) uint8, 255 not analysed
    score: np.ndarray  # (rows, cols) float32, -1 not analysed
    before: np.ndarray  # (bands, rows, cols) float32
    before_valid: np.ndarray
    after: np.ndarray  # normalised
    after_valid: np.ndarray
    overview: dict
    counts: dict
    seconds: float = 0.0
    local_stats: tuple = ()

    def parts(self) -> BlockResult:
        """What merging needs of it (block, pieces, edges): the rasters dropped."""
        return BlockResult(self.block, [], self.pieces, self.edges if self.pieces else {}, None, None, None, None, None,
                           None, {}, {})


@block_task
def run_block(task: BlockTask) -> BlockResult:
    """Analyse one block with its halo and the scene's statistics; report its core (see the module docstring)."""
    from imagery.pipeline import MIN_SHIFT_PX, Prepared, Stopwatch, find_changes, rasterize_area
    from imagery.segment import finish_objects

    t0 = time.perf_counter()
    block, grid = task.block, task.grid
    padded_grid = window_grid(grid, block.padded)
    core = slices(block.core, block.padded)
    before = read_onto_grid(task.before, padded_grid, roles=task.bands)
    moved = padded_grid.translated(*task.shift.offset_m(grid)) if task.shift.magnitude_px >= MIN_SHIFT_PX else padded_grid
    after = read_onto_grid(task.after, moved, roles=task.bands)
    inside = rasterize_area(task.area_lonlat, padded_grid)
    valid = before.valid & after.valid & inside
    after_norm = apply_normalisation(after.data, task.normalisation)
    rows, cols = int(block.core.height), int(block.core.width)
    counts = {"inside": int(inside[core].sum()), "analysed": 0, "changed": 0, "cloud": 0, "cloud_shadow": 0, "coherent": 0}
    objects, pieces, edges = [], [], {}
    mask = np.full((rows, cols), MASK_VALUES["not_analysed"], np.uint8)
    score = np.full((rows, cols), -1.0, np.float32)
    analysed = np.zeros(valid.shape, bool)
    local: set = set()
    if valid.any():
        prep = Prepared(grid=padded_grid, before=before, after=after, after_norm=after_norm, inside=inside, valid=valid,
                        shift=task.shift, normalisation=task.normalisation, mad=task.mad, sample=np.empty(0, np.int64),
                        pixel_size_m=task.pixel_size_m, area_lonlat=task.area_lonlat)
        quiet = lambda stage, fraction: None  # noqa: E731
        frozen = SceneStats(dict(task.stats.values), frozen=True)
        found = find_changes(prep, task.params, frozen, None, report=quiet, watch=Stopwatch())
        local = frozen.local
        analysed = found.analysed
        small, big = split_labels(found.labels, block, grid.shape, task.max_object_px)
        kept, small_mask = finish_objects(small, found.types, found.result, before.data, after_norm, grid=padded_grid,
                                          pixel_size_m=task.pixel_size_m)
        owned = owners(small, block)
        objects = [o for o in kept if owned[o.label]]
        pieces, edges = block_pieces(big, found.types, found.result, before.data, after_norm, block)
        lut = np.zeros(int(big.max()) + 1, np.uint8)
        for label in np.unique(big[core]):
            if label:
                lut[label] = MASK_VALUES[found.types.get(int(label), "changed")]
        mask = np.where(big[core] > 0, lut[big[core]], small_mask[core])
        mask[~analysed[core]] = MASK_VALUES["not_analysed"]
        score = np.where(analysed[core], found.result.score[core], -1.0).astype(np.float32)
        counts["analysed"] = int(analysed[core].sum())
        counts["changed"] = int(np.isin(mask, (1, 2, 3)).sum())
        if found.hidden is not None:
            for cause in ("cloud", "cloud_shadow", "coherent"):
                counts[cause] = int((getattr(found.hidden, cause)[core] & inside[core]).sum())
    overview = block_overview(task.overview, block, core, before, after_norm, after.valid, analysed)
    return BlockResult(block=block, objects=objects, pieces=pieces, edges=edges, mask=mask, score=score,
                       before=before.data[:, core[0], core[1]], before_valid=before.valid[core],
                       after=after_norm[:, core[0], core[1]], after_valid=after.valid[core], overview=overview,
                       counts=counts, seconds=time.perf_counter() - t0, local_stats=tuple(sorted(local)))


def block_overview(overview: Overview, block: Block, core: tuple[slice, slice], before: Raster, after_norm: np.ndarray,
                   after_valid: np.ndarray, analysed: np.ndarray) -> dict:
    """The overview's pixels that fall in the block's core, and where they go in the overview."""
    (rs, r_to), (cs, c_to) = (overview.picks(block.core.row_off, block.core.row_off + block.core.height),
                              overview.picks(block.core.col_off, block.core.col_off + block.core.width))
    pick = lambda a: a[..., core[0], core[1]][..., rs, cs]  # noqa: E731
    return {"rows": r_to, "cols": c_to, "before": pick(before.data), "before_valid": pick(before.valid),
            "after": pick(after_norm), "after_valid": pick(after_valid), "analysed": pick(analysed)}


# --- the whole analysis -------------------------------------------------------------------------------------


def local_executor(workers: int | None = None, initializer=None, initargs: tuple = ()) -> cf.ProcessPoolExecutor:
    """Local worker processes for blocks (spawned: they share nothing with the caller's threads); started as
    blocks are submitted. ``initializer(*initargs)`` runs in each, e.g. to die with the caller."""
    return cf.ProcessPoolExecutor(max_workers=workers or default_workers(), mp_context=multiprocessing.get_context("spawn"),
                                  initializer=initializer, initargs=initargs)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def executor_slots(executor: cf.Executor) -> int:
    """Tasks an executor runs at once: a process pool's workers, the threads of a Dask client's cluster."""
    client = getattr(executor, "_client", None)  # distributed's ClientExecutor
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    return getattr(executor, "_max_workers", None) or default_workers()


@dataclass
class Gathered:
    """What the parent keeps of the blocks as they finish: the overview for the report (float32 bands, bool
    masks), pixel counts, the objects, the parts of objects cut by block edges, timing and per-block statistics."""

    view: dict
    counts: dict = field(default_factory=lambda: dict.fromkeys(
        ("inside", "analysed", "changed", "cloud", "cloud_shadow", "coherent"), 0))
    objects: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    block_seconds: float = 0.0
    local_stats: set = field(default_factory=set)

    @classmethod
    def empty(cls, bands: int, shape: tuple[int, int]) -> Gathered:
        view = {name: np.zeros((bands, *shape), np.float32) for name in ("before", "after")}
        view.update({name: np.zeros(shape, bool) for name in ("before_valid", "after_valid", "analysed")})
        return cls(view)

    def add(self, result: BlockResult) -> None:
        for name, arr in self.view.items():
            arr[..., result.overview["rows"], result.overview["cols"]] = result.overview[name]
        for key in self.counts:
            self.counts[key] += result.counts[key]
        self.objects.extend(result.objects)
        self.block_seconds += result.seconds
        self.kept.append(result.parts())
        self.local_stats.update(result.local_stats)


def run_blocks(executor, tasks: list, parallel: int, rasters, gathered: Gathered, progress) -> None:
    """Run :func:`run_block` on every task, ``parallel`` in flight; each result is written into ``rasters`` and
    added to ``gathered`` as it finishes, the next blocks submitted first so that no worker waits while the
    parent writes. The parent holds at most ``2 * parallel`` results: those it is writing and those arriving
    meanwhile. No spare task is queued: a Dask scheduler binds a task to a worker when it is submitted (a
    worker of one thread takes two), so a spare would wait behind one busy worker while another idled (8192²
    on 2 workers: blocks 108.5 s with a spare, 87 s without). On failure the blocks still pending are
    cancelled (a caller's executor, a Dask cluster, outlives this analysis)."""
    pending: set = set()
    queue = list(tasks)

    def top_up() -> None:
        while queue and len(pending) < parallel:
            pending.add(executor.submit(run_block, queue.pop(0)))

    try:
        done = 0
        top_up()
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            pending -= finished
            top_up()
            while finished:
                result = finished.pop().result()
                rasters.write(result.block.core, result)
                gathered.add(result)
                del result  # written: not held while the next results arrive
                done += 1
                progress(f"blocks {done}/{len(tasks)}", 0.1 + 0.8 * done / len(tasks))
    except BaseException:
        for future in pending:
            future.cancel()
        raise


def scratch_rasters(scratch: str | os.PathLike | None, grid: Grid, bands: tuple[str, ...], dates: tuple):
    """The tiled GeoTIFFs the blocks write into (:class:`imagery.products.TiledRasters`), in ``scratch`` or in a
    temporary folder removed with them."""
    import tempfile

    from imagery.products import TiledRasters

    folder = Path(tempfile.mkdtemp(prefix="basewatch-blocks-") if scratch is None else scratch)
    folder.mkdir(parents=True, exist_ok=True)
    return TiledRasters(folder, grid, bands, dates=dates, remove_folder=scratch is None)


@bounded_gdal_cache
def analyze_blockwise(before_info: SceneInfo, after_info: SceneInfo, plan, params, *, progress, executor=None,
                      parallel: int | None = None, scratch: str | os.PathLike | None = None):
    """A block-wise :func:`imagery.pipeline.analyze` (see the module docstring).

    Parameters
    ----------
    plan : imagery.pipeline.Plan
    params : imagery.pipeline.AnalysisParams
    progress : callable
        ``progress(stage, fraction)``; the stage names the blocks done (``blocks 3/16``).
    executor : concurrent.futures.Executor, optional
        Runs :func:`run_block` tasks; default :func:`local_executor` (shut down at the end).
    parallel : int, optional
        Blocks in flight at once (their results are the parent's memory); default the executor's workers.
    scratch : path, optional
        Folder for the intermediate tiled GeoTIFFs; default a temporary folder removed with the rasters. With
        a Dask cluster on other machines, a folder they reach at the same path (they make the COGs from it).

    Returns
    -------
    imagery.pipeline.Analysis
        With ``rasters`` (:class:`imagery.products.TiledRasters`) and an overview for the report.
    """
    from imagery.pipeline import Stopwatch

    watch = Stopwatch()
    grid, px = plan.grid, plan.pixel_size_m
    lattice = lattice_px(px)
    blocks = plan_blocks(grid.shape, params.block_px, halo_px(px), lattice)
    mosaic = sample_mosaic(grid, plan.area_lonlat, lattice)
    watch.lap("plan")

    own_executor = executor is None
    executor = executor or local_executor(parallel)
    parallel = parallel or executor_slots(executor)
    try:
        progress(f"statistics ({len(mosaic.windows)} sample windows)", 0.02)
        measured = statistics_pass(before_info, after_info, plan, params, mosaic, report=progress)
        watch.lap("statistics")
        done = run_analysis_blocks(before_info, after_info, plan, params, blocks, measured, executor=executor,
                                   parallel=parallel, scratch=scratch, progress=progress, watch=watch)
    finally:
        if own_executor:
            executor.shutdown(wait=True, cancel_futures=True)
    progress("done", 1.0)
    return blockwise_analysis(before_info, after_info, plan, params, blocks, mosaic, measured, done, watch.times)


@dataclass
class BlocksDone:
    """The blocks of an analysis, done: its objects (numbered), rasters (closed), what the parent gathered and
    the overview it was gathered on."""

    objects: list[ChangeObject]
    rasters: object  # imagery.products.TiledRasters
    gathered: Gathered
    overview: Overview


def run_analysis_blocks(before_info: SceneInfo, after_info: SceneInfo, plan, params, blocks: list[Block],
                        measured: Statistics, *, executor, parallel: int, scratch, progress, watch) -> BlocksDone:
    """Every block of the analysis run with the measured statistics, its rasters written, large objects merged
    across block edges and all objects numbered. On failure the rasters are removed."""
    from imagery.report import MAX_PANEL_PX

    grid, px = plan.grid, plan.pixel_size_m
    overview = Overview.of(grid.shape, MAX_PANEL_PX)
    tasks = [BlockTask(before=before_info, after=after_info, grid=grid, bands=plan.bands, area_lonlat=plan.area_lonlat,
                       pixel_size_m=px, block=b, shift=measured.shift, normalisation=measured.normalisation,
                       mad=measured.mad, stats=measured.stats, params=params, overview=overview,
                       max_object_px=max_object_px(px)) for b in blocks]
    rasters = scratch_rasters(scratch, grid, plan.bands, (before_info.acquired, after_info.acquired))
    gathered = Gathered.empty(len(plan.bands), overview.shape)
    try:
        run_blocks(executor, tasks, parallel, rasters, gathered, progress)
        watch.lap("blocks")
        merged, repaint = merge_pieces(join_pieces(gathered.kept), grid, px)
        gathered.counts["changed"] += rasters.repaint(repaint)
        rasters.close()
    except BaseException:
        rasters.close()
        rasters.cleanup()
        raise
    # largest first, ties north to south then west to east: the same order whatever order the blocks finished in
    objects = sorted(gathered.objects + merged, key=lambda o: (-o.area_m2, -o.geometry.centroid.y, o.geometry.centroid.x))
    objects = [replace(o, id=i) for i, o in enumerate(objects, start=1)]
    watch.lap("merge")
    return BlocksDone(objects, rasters, gathered, overview)


def blockwise_analysis(before_info: SceneInfo, after_info: SceneInfo, plan, params, blocks: list[Block], mosaic: Mosaic,
                       measured: Statistics, done: BlocksDone, timings: dict):
    """The :class:`imagery.pipeline.Analysis` of a block-wise run: objects and rasters from the blocks, the
    report's overview, the statistics pass's shift, normalisation and change rule, pixel counts summed."""
    from imagery.pipeline import Analysis, scene_sources

    grid = plan.grid
    view, counts = done.gathered.view, done.gathered.counts
    over_grid = done.overview.grid(grid)
    before, after = (Raster(view[side], view[f"{side}_valid"], over_grid, plan.bands, info.acquired)
                     for side, info in (("before", before_info), ("after", after_info)))
    inside = max(counts["inside"], 1)
    blockwise = {"blocks": len(blocks), "block_px": params.block_px, "halo_px": halo_px(plan.pixel_size_m),
                 "statistics_sample_pixels": measured.sample_pixels, "statistics_windows": len(mosaic.windows),
                 "block_seconds": round(done.gathered.block_seconds, 1),
                 "statistics_measured_per_block": sorted(done.gathered.local_stats)}
    change = replace(measured.change, details={**measured.change.details, "blockwise": blockwise})
    sources = {**scene_sources(before_info, after_info), "aoi_pixels": counts["inside"],
               "not_analysed": {k: round(counts[k] / inside, 4) for k in ("cloud", "cloud_shadow", "coherent")}
               if params.mask_clouds else {}}
    return Analysis(grid=grid, before=before, after=after, analysed=view["analysed"], score=None, mask=None,
                    objects=done.objects, shift=measured.shift, normalisation=measured.normalisation, change=change,
                    params=params, area_lonlat=plan.area_lonlat, timings=timings, sources=sources,
                    rasters=done.rasters, overview_grid=over_grid,
                    pixel_counts={"analysed": counts["analysed"], "changed": counts["changed"]})
