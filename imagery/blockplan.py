"""Planning a block-wise analysis (see :mod:`imagery.blockwise`): blocks with halos on the stages' common
lattice, and the statistics sample (a mosaic of windows spread over the grid). Windows and blocks are in
pixels of the analysis grid (its UTM CRS, ``pixel_size_m`` metres); sizes of objects and context in metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from imagery import clouds, objectchange, regionchange, structures
from imagery.grid import Grid
from imagery.raster import Raster
from imagery.scenes import SceneInfo, read_onto_grid

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
                              regionchange.lattice_px(pixel_size_m), structures.lattice_px(pixel_size_m)]))


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
