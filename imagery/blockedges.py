"""Objects at block edges (see :mod:`imagery.blockwise`): which objects a block reports, the parts of objects
larger than :data:`imagery.blockplan.MAX_OBJECT_M` cut by its core's edges, and those parts joined across
block edges (8-connected) and measured as one object. Outlines of parts are in analysis-grid pixel
coordinates (column, row); merged objects in the grid's CRS (UTM metres).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from rasterio import features
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from imagery.blockplan import Block, slices
from imagery.change import ChangeResult
from imagery.grid import Grid
from imagery.objects import MASK_VALUES, ChangeObject, SizeRules, measure_object

if TYPE_CHECKING:
    from imagery.blockwise import BlockResult


@dataclass
class Piece:
    """The part of an object larger than :data:`imagery.blockplan.MAX_OBJECT_M` that lies in one block's core."""

    block: int
    label: int
    change: str
    area_change: bool
    building: bool
    pixels: int
    score_sum: float
    before_sum: float
    after_sum: float
    outline: BaseGeometry  # in pixel coordinates of the analysis grid (column, row)
    outline_px_m: float


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
                    area_change=label in result.area_labels, building=label in result.building_labels,
                    pixels=int(n), score_sum=float(sc), before_sum=float(b),
                    after_sum=float(a), outline=shapely.union_all(outlines[label]), outline_px_m=work_px)
              for label, n, sc, b, a in zip(index, pixels, scores, b_sum, a_sum)]
    return pieces, edges


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
                             area_change=any(p.area_change for p in group), building=any(p.building for p in group))
        value = 0 if obj is None else MASK_VALUES[obj.change]
        repaint += [(shapely.affinity.affine_transform(p.outline, to_crs), value) for p in group
                    if obj is None or p.change != obj.change]
        if obj is not None:
            objects.append(obj)
    return objects, repaint
