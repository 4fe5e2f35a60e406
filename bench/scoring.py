"""Scoring change objects and masks against ground truth (used by bench/accuracy.py and the tests).

Objects are compared on the analysis grid (metres): a detection matches a truth
object when they overlap by at least 30 % of the smaller one (or IoU >= 0.1),
one-to-one, largest overlap first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rasterio import features
from rasterio.warp import reproject, transform_geom
from rasterio.enums import Resampling
from shapely.geometry import shape


@dataclass
class ObjectScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    typed_tp: int = 0  # matches whose change type (appeared/disappeared/changed) is right
    classed_tp: int = 0  # matches whose class (vehicle, tent, ...) is right
    details: dict = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __iadd__(self, other: "ObjectScore"):
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.typed_tp += other.typed_tp
        self.classed_tp += other.classed_tp
        return self

    @property
    def class_accuracy(self) -> float:
        """Share of matched truth objects whose detection carries the right class."""
        return self.classed_tp / self.tp if self.tp else 1.0


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def truth_on_grid(truth_fc: dict, grid):
    """Truth features as (shapely geometry in grid CRS, properties)."""
    out = []
    for f in truth_fc["features"]:
        geom = shape(transform_geom("EPSG:4326", grid.crs, f["geometry"]))
        out.append((geom, f["properties"]))
    return out


def assessable_fraction(geom, truth_mask_grid: np.ndarray, grid) -> float:
    """Fraction of a geometry's pixels that the truth mask marks assessable (not 255)."""
    m = features.rasterize([(geom, 1)], out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8", all_touched=True)
    inside = m.astype(bool)
    if not inside.any():
        return 0.0
    return float((truth_mask_grid[inside] != 255).mean())


def match(truth, detections, *, min_overlap=0.3, min_iou=0.1, many_to_one=False):
    """Pairs (truth index, detection index) matched by overlap; one-to-one unless many_to_one."""
    pairs = []
    for i, (tg, _) in enumerate(truth):
        for j, (dg, _) in enumerate(detections):
            if not tg.intersects(dg):
                continue
            inter = tg.intersection(dg).area
            smaller = min(tg.area, dg.area) or 1.0
            union = tg.union(dg).area or 1.0
            if inter / smaller >= min_overlap or inter / union >= min_iou:
                pairs.append((inter, i, j))
    pairs.sort(reverse=True)
    used_t, used_d, out = set(), set(), []
    for _, i, j in pairs:
        if i in used_t or (j in used_d and not many_to_one):
            continue
        used_t.add(i)
        used_d.add(j)
        out.append((i, j))
    return out


def truth_mask_on_grid(truth_mask_path, grid) -> np.ndarray:
    import rasterio

    out = np.full(grid.shape, 255, np.uint8)
    with rasterio.open(truth_mask_path) as ds:
        reproject(ds.read(1), out, src_transform=ds.transform, src_crs=ds.crs, dst_transform=grid.transform,
                  dst_crs=grid.crs, resampling=Resampling.nearest)
    return out


def score_objects(truth_fc: dict, objects, grid, truth_mask_grid: np.ndarray, *, classes=None, many_to_one=False) -> ObjectScore:
    """Object-level score.

    Parameters
    ----------
    truth_fc : dict
        Truth GeoJSON (EPSG:4326).
    objects : list of ChangeObject
        Detections (geometries in grid CRS).
    classes : set of str, optional
        Score only truth objects of these classes; detections count as false
        positives only if their class is in ``classes`` (e.g. {"vehicle"}).
    many_to_one : bool
        One detection may match several truth objects (groups at coarse resolution).
    """
    truth = [(g, p) for g, p in truth_on_grid(truth_fc, grid) if assessable_fraction(g, truth_mask_grid, grid) >= 0.5]
    dets = [(o.geometry, o) for o in objects if assessable_fraction(o.geometry, truth_mask_grid, grid) >= 0.5]
    if classes is not None:
        truth = [(g, p) for g, p in truth if p["class"] in classes]
    pairs = match(truth, dets, many_to_one=many_to_one)
    matched_t = {i for i, _ in pairs}
    matched_d = {j for _, j in pairs}
    if classes is not None:
        # detections that matched any truth object (of any class) are not false positives
        all_truth = [(g, p) for g, p in truth_on_grid(truth_fc, grid)]
        any_match = {j for _, j in match(all_truth, dets, many_to_one=True)}
        fp = sum(1 for j, (_, o) in enumerate(dets) if j not in matched_d and j not in any_match and o.cls in classes)
    else:
        fp = len(dets) - len(matched_d)
    typed = sum(1 for i, j in pairs if truth[i][1]["change"] == dets[j][1].change)
    classed = sum(1 for i, j in pairs if truth[i][1]["class"] == dets[j][1].cls)
    return ObjectScore(tp=len(matched_t), fp=fp, fn=len(truth) - len(matched_t), typed_tp=typed, classed_tp=classed,
                       details={"truth": len(truth), "detections": len(dets)})


def pixel_counts(mask_grid: np.ndarray, truth_grid: np.ndarray) -> tuple[int, int, int]:
    """(tp, fp, fn) of change pixels; truth 255 ignored; our 255 (not analysed) counts as no change."""
    ok = truth_grid != 255
    pred = np.isin(mask_grid, (1, 2, 3)) & ok
    true = np.isin(truth_grid, (1, 2, 3)) & ok
    return int((pred & true).sum()), int((pred & ~true).sum()), int((~pred & true).sum())
