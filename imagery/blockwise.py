"""Whole scenes block by block: bounded memory, spread over local processes or a Dask cluster.

A grid with a side longer than ``AnalysisParams.block_px`` is analysed in four steps:

1. **Plan** (:func:`plan_blocks`): blocks of about ``block_px`` pixels whose origins lie on the stages'
   common lattice (:func:`lattice_px`: block means and block medians start where they would on the whole
   grid), each read with a halo of :data:`MAX_OBJECT_M` + :data:`CONTEXT_M` metres: room for the largest
   object, and around it the reach of every filter, background window, displacement search and
   co-registration tolerance of the stages.
2. **Statistics pass** (:func:`statistics_pass`): the stages run on a sample of the grid, a mosaic of
   windows spread over it (the whole grid when it has at most :data:`SAMPLE_PX` pixels). It measures the
   co-registration shift, fits the normalisation, and records every scene-wide number the stages ask for
   (:class:`imagery.scenestats.SceneStats`: noise, medians and MADs, thresholds, which explanations are
   specific to the pair, the lean direction).
3. **Blocks** (:func:`run_block`, one task each, on any :class:`concurrent.futures.Executor`: local
   processes, or a Dask client's executor): read the block with its halo, normalise, clouds, change and
   objects with the frozen statistics, so a block decides as the whole grid would. An object no wider or
   taller than :data:`MAX_OBJECT_M` lies whole in the halo of every block it touches; the block holding its
   first pixel (raster order) reports it, measured as on the whole grid. A larger object is reported in
   parts, one per block it covers.
4. **Merge** (:func:`merge_pieces`): the parts of a large object in neighbouring blocks are joined across
   block edges (8-connected, as objects are labelled) and measured as one: area, outline, sizes, mean score
   and brightness from all its pixels; its change type that of its largest part.

The parent keeps one block's rasters at a time: they are written into tiled GeoTIFFs
(:class:`imagery.products.TiledRasters`) as blocks finish, and an overview of every n-th pixel is kept
for the report. Peak memory depends on the block size, not on the grid's.

Known approximations (objects up to :data:`MAX_OBJECT_M` across are exact, given the same statistics):
statistics come from the sample when the grid is larger than :data:`SAMPLE_PX`; an object larger than
the halo, a cloud, or a region of coherent change larger than a block and its halo is judged on the part a
block sees (its change type and whether an explanation removes it), and the candidate region an object
stands in is seen up to the halo.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from rasterio import features
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from imagery import clouds, objectchange, regionchange
from imagery.change import ChangeResult
from imagery.coregister import ShiftEstimate
from imagery.grid import Grid
from imagery.normalize import Normalisation, apply_normalisation, sample_indexes
from imagery.objects import MASK_VALUES, ChangeObject, SizeRules, measure_object
from imagery.raster import Raster
from imagery.scenes import SceneInfo, read_onto_grid
from imagery.scenestats import SceneStats

#: The largest object (metres across, rows or columns) reported exactly as on the whole grid.
MAX_OBJECT_M = 64.0
#: How far around an object the stages look (metres): spectral maps (2 x 12.5 m), backgrounds (15 m),
#: lean (4 m), rings, cloud margins and growth.
CONTEXT_M = 64.0
#: The halo is at least this many pixels.
MIN_HALO_PX = 64
#: The statistics pass runs on the whole grid up to this many pixels, else on a mosaic of this many.
SAMPLE_PX = 2048 * 2048
#: Side of the mosaic's windows, pixels (rounded to the lattice).
SAMPLE_WINDOW_PX = 256
#: Margin read around each window of the mosaic, pixels: real surroundings for the filters, left out of
#: the statistics.
SAMPLE_MARGIN_PX = 48
#: GDAL's block cache in every process of a block-wise analysis, MB. GDAL's default (5 % of the RAM, 1.2 GB
#: on 24 GB) fills with the scenes' blocks as they are read and with the products' as they are written, so
#: each process's memory would grow with the scene.
GDAL_CACHE_MB = 128


def bounded_gdal_cache(fn):
    """Run ``fn`` with GDAL's block cache at :data:`GDAL_CACHE_MB` (in whatever process it runs)."""
    import functools

    import rasterio

    @functools.wraps(fn)
    def bounded(*args, **kwargs):
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            return fn(*args, **kwargs)

    return bounded


@dataclass(frozen=True)
class Block:
    """One block: its core (the pixels it reports) and the padded window it reads, in the analysis grid."""

    index: int
    row: int  # block row and column in the layout of blocks
    col: int
    core: Window
    padded: Window


def lattice_px(pixel_size_m: float) -> int:
    """Block origins must be multiples of this (pixels): every stage's block means and block medians then
    start where they would on the whole grid."""
    return int(np.lcm.reduce([clouds.lattice_px(pixel_size_m), objectchange.lattice_px(pixel_size_m),
                              regionchange.lattice_px(pixel_size_m)]))


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step)) * step


def halo_px(pixel_size_m: float) -> int:
    """The halo around each block, pixels on the lattice: :data:`MAX_OBJECT_M` + :data:`CONTEXT_M`, and at
    least :data:`MIN_HALO_PX` (at coarse pixels clouds, hectare-scale changes and structures span more
    metres). Half of it is room for an object (:func:`max_object_px`), the other half its context."""
    return round_up(max((MAX_OBJECT_M + CONTEXT_M) / pixel_size_m, MIN_HALO_PX), lattice_px(pixel_size_m))


def max_object_px(pixel_size_m: float) -> int:
    """The largest object (rows or columns, pixels) a block reports whole: half the halo."""
    return halo_px(pixel_size_m) // 2


def plan_blocks(shape: tuple[int, int], block_px: int, halo: int, lattice: int) -> list[Block]:
    """Blocks covering a grid of ``shape`` (rows, cols): cores of about ``block_px`` (a multiple of
    ``lattice``, as even as the lattice allows), padded by ``halo`` pixels and clipped to the grid."""
    rows, cols = shape
    blocks = []

    def cuts(n: int) -> list[int]:
        count = max(1, math.ceil(n / block_px))
        step = round_up(n / count, lattice)
        edges = list(range(0, n, step)) + [n]
        return edges

    row_edges, col_edges = cuts(rows), cuts(cols)
    for i, (r0, r1) in enumerate(zip(row_edges, row_edges[1:])):
        for j, (c0, c1) in enumerate(zip(col_edges, col_edges[1:])):
            pr0, pc0 = max(0, r0 - halo), max(0, c0 - halo)
            pr1, pc1 = min(rows, r1 + halo), min(cols, c1 + halo)
            blocks.append(Block(index=len(blocks), row=i, col=j, core=Window(c0, r0, c1 - c0, r1 - r0),
                                padded=Window(pc0, pr0, pc1 - pc0, pr1 - pr0)))
    return blocks


def window_grid(grid: Grid, window: Window) -> Grid:
    """The part of ``grid`` a window covers, as a grid of its own."""
    return Grid(grid.crs, grid.transform * Affine.translation(window.col_off, window.row_off),
                (int(window.height), int(window.width)))


def slices(window: Window, within: Window | None = None) -> tuple[slice, slice]:
    """Row and column slices of ``window``, relative to ``within`` (default the grid)."""
    r0 = window.row_off - (within.row_off if within else 0)
    c0 = window.col_off - (within.col_off if within else 0)
    return slice(r0, r0 + window.height), slice(c0, c0 + window.width)


# --- 2. the statistics pass -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mosaic:
    """Windows of the analysis grid laid side by side: the statistics sample. Only the pixels of each
    window's core count (they are ``inside``); its margin gives the filters real surroundings."""

    windows: tuple[Window, ...]
    origins: tuple[tuple[int, int], ...]  # (row, col) of each window in the mosaic
    shape: tuple[int, int]
    margin: int = 0

    @property
    def whole(self) -> bool:
        return len(self.windows) == 1 and self.origins == ((0, 0),)


def sample_mosaic(grid: Grid, area_lonlat: BaseGeometry, lattice: int, budget_px: int = SAMPLE_PX,
                  window_px: int = SAMPLE_WINDOW_PX, margin_px: int = SAMPLE_MARGIN_PX) -> Mosaic:
    """The whole grid when it has at most ``budget_px`` pixels. Else windows of ``window_px`` plus a margin
    of ``margin_px`` on each side (on the lattice), ``budget_px`` pixels in all, spread evenly in both
    directions (every n-th in Z order) over the cells of a ``window_px`` lattice that the area to analyse
    touches, laid out nearly square."""
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping

    rows, cols = grid.shape
    if rows * cols <= budget_px:
        return Mosaic((Window(0, 0, cols, rows),), ((0, 0),), (rows, cols))
    side = round_up(window_px, lattice)
    read = min(side + 2 * round_up(margin_px, lattice), rows // lattice * lattice, cols // lattice * lattice)
    margin = max(0, min(round_up(margin_px, lattice), (read - lattice) // 2 // lattice * lattice))
    cells = Grid(grid.crs, grid.transform * Affine.scale(side), (-(-rows // side), -(-cols // side)))
    touched = features.rasterize([(transform_geom("EPSG:4326", grid.crs, mapping(area_lonlat)), 1)], out_shape=cells.shape,
                                 transform=cells.transform, all_touched=True, dtype="uint8").astype(bool)
    candidates = np.argwhere(touched) if touched.any() else np.argwhere(np.ones(cells.shape, bool))
    candidates = candidates[np.argsort(z_order(candidates[:, 0], candidates[:, 1]), kind="stable")]
    count = min(len(candidates), max(1, budget_px // (read * read)))
    picked = candidates[np.unique(np.linspace(0, len(candidates) - 1, count).round().astype(int))]
    per_row = math.ceil(math.sqrt(len(picked)))
    windows, origins = [], []
    for k, (i, j) in enumerate(picked):
        r = min(max(int(i) * side - margin, 0), rows - read) // lattice * lattice
        c = min(max(int(j) * side - margin, 0), cols - read) // lattice * lattice
        windows.append(Window(c, r, read, read))
        origins.append(((k // per_row) * read, (k % per_row) * read))
    shape = (-(-len(picked) // per_row) * read, min(per_row, len(picked)) * read)
    return Mosaic(tuple(windows), tuple(origins), shape, margin)


def z_order(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Morton (Z-order) codes of cell indexes: taking every n-th cell in this order spreads picks over both
    directions."""
    code = np.zeros(rows.shape, np.int64)
    for bit in range(16):
        code |= ((rows >> bit) & 1).astype(np.int64) << (2 * bit + 1)
        code |= ((cols >> bit) & 1).astype(np.int64) << (2 * bit)
    return code


def read_mosaic(info: SceneInfo, grid: Grid, mosaic: Mosaic, bands: tuple[str, ...],
                offset: tuple[float, float] = (0.0, 0.0)) -> Raster:
    """A scene read onto every window of ``mosaic`` (moved by ``offset``, CRS units), pasted side by side.
    On a mosaic of the whole grid, exactly :func:`imagery.scenes.read_onto_grid`."""
    moved = grid.translated(*offset) if offset != (0.0, 0.0) else grid
    if mosaic.whole:
        return read_onto_grid(info, moved, roles=bands)
    data = np.zeros((len(bands), *mosaic.shape), np.float32)
    valid = np.zeros(mosaic.shape, bool)
    for window, (r, c) in zip(mosaic.windows, mosaic.origins):
        part = read_onto_grid(info, window_grid(moved, window), roles=bands)
        data[:, r:r + part.grid.rows, c:c + part.grid.cols] = part.data
        valid[r:r + part.grid.rows, c:c + part.grid.cols] = part.valid
    return Raster(data, valid, mosaic_grid(grid, mosaic), tuple(bands), info.acquired, {"path": info.path})


def mosaic_grid(grid: Grid, mosaic: Mosaic) -> Grid:
    """A grid of the mosaic's shape (its georeferencing is the analysis grid's origin: only its shape counts)."""
    return grid if mosaic.whole else Grid(grid.crs, grid.transform, mosaic.shape)


def mosaic_inside(area_lonlat: BaseGeometry, grid: Grid, mosaic: Mosaic) -> np.ndarray:
    """The pixels of the mosaic that count: inside the area to analyse and in a window's core."""
    from imagery.pipeline import rasterize_area

    if mosaic.whole:
        return rasterize_area(area_lonlat, grid)
    inside = np.zeros(mosaic.shape, bool)
    m = mosaic.margin
    for window, (r, c) in zip(mosaic.windows, mosaic.origins):
        part = rasterize_area(area_lonlat, window_grid(grid, window))
        inside[r + m:r + window.height - m, c + m:c + window.width - m] = part[m:window.height - m, m:window.width - m]
    return inside


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


def statistics_pass(before_info: SceneInfo, after_info: SceneInfo, plan, params, mosaic: Mosaic, blocks: list[Block], *,
                    executor: cf.Executor, report) -> Statistics:
    """The co-registration shift measured on the mosaic; the normalisation fitted on pixels sampled evenly over
    the whole grid (:func:`sample_block` on every block, in parallel; on a mosaic of the whole grid, its own
    sample as for a whole analysis); then stages 5-7 on the mosaic, recording every scene-wide statistic."""
    from imagery.pipeline import Prepared, Stopwatch, find_changes, fit_pair, read_registered

    watch = Stopwatch()
    inside = mosaic_inside(plan.area_lonlat, plan.grid, mosaic)
    if not inside.any():
        from imagery.errors import NoOverlapError

        raise NoOverlapError("the area to analyse is smaller than one pixel")

    def read(info: SceneInfo, offset: tuple[float, float]) -> Raster:
        return read_mosaic(info, plan.grid, mosaic, plan.bands, offset)

    silent = lambda stage, fraction: None  # noqa: E731
    before, after, valid, shift = read_registered(before_info, after_info, plan, mosaic_grid(plan.grid, mosaic), inside,
                                                  read, params, report=silent, watch=watch)
    mosaic_sample = sample_indexes(valid, params.sample_pixels)
    if mosaic.whole:
        picked_before = before.data.reshape(before.count, -1)[:, mosaic_sample]
        picked_after = after.data.reshape(after.count, -1)[:, mosaic_sample]
    else:
        report("sampling the grid", 0.05)
        rate = params.sample_pixels / float(plan.grid.rows * plan.grid.cols)
        tasks = [SampleTask(before_info, after_info, plan.grid, plan.bands, plan.area_lonlat, b, shift, rate)
                 for b in blocks]
        parts = list(executor.map(sample_block, tasks))
        picked_before = np.concatenate([p[0] for p in parts], axis=1)
        picked_after = np.concatenate([p[1] for p in parts], axis=1)
    if picked_before.shape[1] < 64 or mosaic_sample.size < 64:
        from imagery.errors import AnalysisError

        raise AnalysisError("too few valid pixels to compare the dates")
    norm, mad = fit_pair(picked_before, picked_after, plan.bands)
    watch.lap("normalise")
    report("statistics", 0.1)
    prep = Prepared(grid=before.grid, before=before, after=after, after_norm=apply_normalisation(after.data, norm),
                    inside=inside, valid=valid, shift=shift, normalisation=norm, mad=mad, sample=mosaic_sample,
                    pixel_size_m=plan.pixel_size_m, area_lonlat=plan.area_lonlat)
    stats = SceneStats()
    found = find_changes(prep, params, stats, prep.sample, report=silent, watch=watch)
    empty = np.zeros((0, 0), np.float32)
    change = replace(found.result, score=empty, changed=empty.astype(bool), objects=None)
    return Statistics(shift=shift, normalisation=norm, mad=mad, stats=stats.frozen(), change=change,
                      sample_pixels=int(valid.sum()), timings=dict(watch.times))


@dataclass(frozen=True)
class SampleTask:
    """One block's share of the normalisation sample (picklable)."""

    before: SceneInfo
    after: SceneInfo
    grid: Grid
    bands: tuple[str, ...]
    area_lonlat: BaseGeometry
    block: Block
    shift: ShiftEstimate
    rate: float


@bounded_gdal_cache
def sample_block(task: SampleTask) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the block's core (valid in both dates, inside the area), each kept with probability
    ``task.rate`` (seeded by the block): (BEFORE, AFTER as recorded), each (bands, n) float32."""
    from imagery.pipeline import MIN_SHIFT_PX, rasterize_area

    core_grid = window_grid(task.grid, task.block.core)
    moved = core_grid.translated(*task.shift.offset_m(task.grid)) if task.shift.magnitude_px >= MIN_SHIFT_PX else core_grid
    before = read_onto_grid(task.before, core_grid, roles=task.bands)
    after = read_onto_grid(task.after, moved, roles=task.bands)
    flat = np.flatnonzero(before.valid & after.valid & rasterize_area(task.area_lonlat, core_grid))
    rng = np.random.default_rng(task.block.index)
    flat = np.sort(flat[rng.random(flat.size) < task.rate])
    return (before.data.reshape(len(task.bands), -1)[:, flat].copy(), after.data.reshape(len(task.bands), -1)[:, flat].copy())


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
class Piece:
    """The part of an object larger than :data:`MAX_OBJECT_M` that lies in one block's core."""

    block: int
    label: int
    change: str
    area_change: bool
    pixels: int
    score_sum: float
    before_sum: float
    after_sum: float
    outline: BaseGeometry  # in pixel coordinates of the analysis grid (column, row)
    outline_px_m: float


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


@bounded_gdal_cache
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


def split_labels(labels: np.ndarray, block: Block, grid_shape: tuple[int, int],
                 max_object_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The objects touching the block's core, split into small ones (at most ``max_object_px`` rows and
    columns, whole in the padded window) and large ones (larger, or reaching an edge of the padded window that
    is not an edge of the grid); both as label images of the padded window (0 elsewhere)."""
    core = slices(block.core, block.padded)
    touching = np.zeros(int(labels.max()) + 1, bool)
    touching[np.unique(labels[core])] = True
    touching[0] = False
    big = np.zeros_like(touching)
    rows, cols = labels.shape
    open_top, open_left = block.padded.row_off > 0, block.padded.col_off > 0
    open_bottom = block.padded.row_off + rows < grid_shape[0]
    open_right = block.padded.col_off + cols < grid_shape[1]
    for i, bbox in enumerate(ndimage.find_objects(labels), start=1):
        if bbox is None or not touching[i]:
            continue
        r, c = bbox
        cut = ((r.start == 0 and open_top) or (c.start == 0 and open_left)
               or (r.stop == rows and open_bottom) or (c.stop == cols and open_right))
        big[i] = cut or max(r.stop - r.start, c.stop - c.start) > max_object_px
    small = touching & ~big
    return np.where(small[labels], labels, 0), np.where(big[labels], labels, 0)


def owners(labels: np.ndarray, block: Block) -> np.ndarray:
    """Per label (index 0 unused): whether its first pixel in raster order lies in the block's core."""
    n = int(labels.max())
    out = np.zeros(n + 1, bool)
    if n == 0:
        return out
    first = ndimage.minimum(np.arange(labels.size).reshape(labels.shape), labels, np.arange(1, n + 1))
    first = np.asarray(first, dtype=np.int64)
    present = first >= 0
    rows = block.padded.row_off + first // labels.shape[1]
    cols = block.padded.col_off + first % labels.shape[1]
    out[1:] = present & (rows >= block.core.row_off) & (rows < block.core.row_off + block.core.height) \
        & (cols >= block.core.col_off) & (cols < block.core.col_off + block.core.width)
    return out


def block_pieces(big: np.ndarray, types: dict, result: ChangeResult, before: np.ndarray, after: np.ndarray,
                 block: Block) -> tuple[list[Piece], dict]:
    """The parts of large objects in the block's core, and the piece labels along the core's four edges."""
    core = slices(block.core, block.padded)
    labels = big[core]
    edges = {"top": labels[0].copy(), "bottom": labels[-1].copy(), "left": labels[:, 0].copy(),
             "right": labels[:, -1].copy()}
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not ids.size:
        return [], edges
    index = ids.tolist()
    pixels = ndimage.sum_labels(np.ones(labels.shape, np.int64), labels, index)
    scores = ndimage.sum_labels(result.score[core].astype(np.float64), labels, index)
    b_sum = ndimage.sum_labels(before[:, core[0], core[1]].mean(axis=0, dtype=np.float64), labels, index)
    a_sum = ndimage.sum_labels(after[:, core[0], core[1]].mean(axis=0, dtype=np.float64), labels, index)
    to_grid = Affine.translation(block.core.col_off, block.core.row_off)
    outlines: dict[int, list] = {}
    for geom, value in features.shapes(labels.astype(np.int32), mask=labels > 0, transform=to_grid, connectivity=8):
        outlines.setdefault(int(value), []).append(shape(geom))
    work_px = float(result.details.get("work_pixel_m", 0.0))
    pieces = [Piece(block=block.index, label=label, change=types.get(label, "changed"),
                    area_change=label in result.area_labels, pixels=int(n), score_sum=float(sc), before_sum=float(b),
                    after_sum=float(a), outline=shapely.union_all(outlines[label]), outline_px_m=work_px)
              for label, n, sc, b, a in zip(index, pixels, scores, b_sum, a_sum)]
    return pieces, edges


def block_overview(overview: Overview, block: Block, core: tuple[slice, slice], before: Raster, after_norm: np.ndarray,
                   after_valid: np.ndarray, analysed: np.ndarray) -> dict:
    """The overview's pixels that fall in the block's core, and where they go in the overview."""
    (rs, r_to), (cs, c_to) = (overview.picks(block.core.row_off, block.core.row_off + block.core.height),
                              overview.picks(block.core.col_off, block.core.col_off + block.core.width))
    pick = lambda a: a[..., core[0], core[1]][..., rs, cs]  # noqa: E731
    return {"rows": r_to, "cols": c_to, "before": pick(before.data), "before_valid": pick(before.valid),
            "after": pick(after_norm), "after_valid": pick(after_valid), "analysed": pick(analysed)}


# --- 4. merging large objects -----------------------------------------------------------------------------


def join_pieces(results: list[BlockResult]) -> list[list[Piece]]:
    """Group the pieces of large objects that touch across block edges (8-connected): one list per object.
    ``results`` need only their block, pieces and edges."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a, b):
        parent[find(a)] = find(b)

    by_place = {(r.block.row, r.block.col): r for r in results}
    for r in results:
        for p in r.pieces:
            parent[(r.block.index, p.label)] = (r.block.index, p.label)

    def link(a: BlockResult, a_edge: np.ndarray, b: BlockResult, b_edge: np.ndarray, diagonal_only: bool = False):
        for shift in ((0,) if diagonal_only else (-1, 0, 1)):
            x = a_edge[max(0, -shift): len(a_edge) - max(0, shift)]
            y = b_edge[max(0, shift): len(b_edge) - max(0, -shift)]
            both = (x > 0) & (y > 0)
            for u, v in set(zip(x[both].tolist(), y[both].tolist())):
                union((a.block.index, u), (b.block.index, v))

    for (i, j), a in by_place.items():
        if not a.pieces:
            continue
        right, below = by_place.get((i, j + 1)), by_place.get((i + 1, j))
        if right is not None and right.pieces:
            link(a, a.edges["right"], right, right.edges["left"])
        if below is not None and below.pieces:
            link(a, a.edges["bottom"], below, below.edges["top"])
        for dj, mine, theirs in ((1, -1, 0), (-1, 0, -1)):  # corners: down-right, down-left
            other = by_place.get((i + 1, j + dj))
            if other is not None and other.pieces:
                link(a, a.edges["bottom"][[mine]], other, other.edges["top"][[theirs]], diagonal_only=True)
    groups: dict[tuple[int, int], list[Piece]] = {}
    for r in results:
        for p in r.pieces:
            groups.setdefault(find((r.block.index, p.label)), []).append(p)
    return list(groups.values())


def merge_pieces(groups: list[list[Piece]], grid: Grid, pixel_size_m: float,
                 rules: SizeRules = SizeRules()) -> tuple[list[ChangeObject], list[tuple[BaseGeometry, int]]]:
    """Each group of pieces measured as one object (see the module docstring). Also what the change mask
    must be repainted with: (outline in grid CRS, mask value) for the pieces of groups left out as slivers
    (0) and for pieces a block typed otherwise than the object (the object's type)."""
    objects, repaint = [], []
    to_crs = grid.transform.to_shapely()
    for group in groups:
        pixels = sum(p.pixels for p in group)
        outline = shapely.union_all([p.outline for p in group])
        geometry = shapely.affinity.affine_transform(outline, to_crs)
        largest = max(group, key=lambda p: p.pixels)
        outline_px = max(pixel_size_m, largest.outline_px_m)
        min_width = rules.min_width_m + outline_px if pixel_size_m <= rules.vehicle_resolvable_px_m else 0.0
        obj = measure_object(0, largest.change, geometry, pixels, sum(p.score_sum for p in group) / pixels,
                             sum(p.before_sum for p in group) / pixels, sum(p.after_sum for p in group) / pixels,
                             pixel_size_m=pixel_size_m, rules=rules, outline_px_m=outline_px, min_width_m=min_width,
                             area_change=any(p.area_change for p in group))
        value = 0 if obj is None else MASK_VALUES[obj.change]
        repaint += [(shapely.affinity.affine_transform(p.outline, to_crs), value) for p in group
                    if obj is None or p.change != obj.change]
        if obj is not None:
            objects.append(obj)
    return objects, repaint


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
    """Run :func:`run_block` on every task, at most ``parallel + 1`` in flight (their results are the parent's
    memory); each result is written into ``rasters`` and added to ``gathered`` as it finishes. On failure the
    blocks still pending are cancelled (a caller's executor, a Dask cluster, outlives this analysis)."""
    pending: set = set()
    try:
        queue = list(tasks)
        done = 0
        while queue or pending:
            while queue and len(pending) < parallel + 1:
                pending.add(executor.submit(run_block, queue.pop(0)))
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                rasters.write(result.block.core, result)
                gathered.add(result)
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
        Folder for the intermediate tiled GeoTIFFs; default a temporary folder removed with the rasters.

    Returns
    -------
    imagery.pipeline.Analysis
        With ``rasters`` (:class:`imagery.products.TiledRasters`) and an overview for the report.
    """
    from imagery.objects import SizeRules  # noqa: F401  (the rules every block applies)
    from imagery.pipeline import Analysis, Stopwatch, scene_sources
    from imagery.report import MAX_PANEL_PX

    watch = Stopwatch()
    grid, px = plan.grid, plan.pixel_size_m
    lattice = lattice_px(px)
    halo = halo_px(px)
    blocks = plan_blocks(grid.shape, params.block_px, halo, lattice)
    mosaic = sample_mosaic(grid, plan.area_lonlat, lattice)
    watch.lap("plan")

    own_executor = executor is None
    executor = executor or local_executor(parallel)
    parallel = parallel or executor_slots(executor)
    try:
        progress(f"statistics ({len(mosaic.windows)} sample windows)", 0.02)
        measured = statistics_pass(before_info, after_info, plan, params, mosaic, blocks, executor=executor,
                                   report=progress)
    except BaseException:
        if own_executor:
            executor.shutdown(wait=True, cancel_futures=True)
        raise
    watch.lap("statistics")
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
    finally:
        if own_executor:
            executor.shutdown(wait=True, cancel_futures=True)
    # largest first, ties north to south then west to east: the same order whatever order the blocks finished in
    objects = sorted(gathered.objects + merged, key=lambda o: (-o.area_m2, -o.geometry.centroid.y, o.geometry.centroid.x))
    objects = [replace(o, id=i) for i, o in enumerate(objects, start=1)]
    watch.lap("merge")
    progress("done", 1.0)

    view, counts = gathered.view, gathered.counts
    over_grid = overview.grid(grid)
    before, after = (Raster(view[side], view[f"{side}_valid"], over_grid, plan.bands, info.acquired)
                     for side, info in (("before", before_info), ("after", after_info)))
    inside = max(counts["inside"], 1)
    change = measured.change
    change.details["blockwise"] = {"blocks": len(blocks), "block_px": params.block_px, "halo_px": halo,
                                   "statistics_sample_pixels": measured.sample_pixels,
                                   "statistics_windows": len(mosaic.windows),
                                   "block_seconds": round(gathered.block_seconds, 1),
                                   "statistics_measured_per_block": sorted(gathered.local_stats)}
    sources = {**scene_sources(before_info, after_info), "aoi_pixels": counts["inside"],
               "not_analysed": {k: round(counts[k] / inside, 4) for k in ("cloud", "cloud_shadow", "coherent")}
               if params.mask_clouds else {}}
    return Analysis(grid=grid, before=before, after=after, analysed=view["analysed"], score=None, mask=None,
                    objects=objects, shift=measured.shift, normalisation=measured.normalisation, change=change,
                    params=params, area_lonlat=plan.area_lonlat, timings=watch.times, sources=sources, rasters=rasters,
                    overview_grid=over_grid, pixel_counts={"analysed": counts["analysed"], "changed": counts["changed"]})
