"""Change objects: connected components of changed pixels, measured and classified in metres.

Everything is expressed in metres so the same rules work at 0.3 m and 10 m
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rasterio import features
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from imagery.contract import CHANGE_TYPES, CLASSES, MASK_VALUES
from imagery.grid import Grid


@dataclass(frozen=True)
class SizeRules:
    """Physical sizes (metres) that separate the classes.

    A typical military vehicle is ~7 x 3.5 m (~25 m²); a tent 4-12 m a side;
    anything solid above ~150 m² is a structure.
    """

    vehicle_length_m: tuple[float, float] = (3.5, 11.0)
    vehicle_width_m: tuple[float, float] = (1.6, 4.6)
    vehicle_area_m2: tuple[float, float] = (7.0, 45.0)
    tent_area_m2: tuple[float, float] = (15.0, 220.0)
    tent_min_width_m: float = 3.8
    #: Narrowest object of interest (a small vehicle seen end-on is wider).
    min_width_m: float = 1.5
    structure_min_area_m2: float = 150.0
    group_max_area_m2: float = 5000.0
    #: Pixel size above which single vehicles are not resolved (report groups).
    vehicle_resolvable_px_m: float = 1.5
    #: Vehicle footprint used to estimate counts in groups, m².
    vehicle_footprint_m2: float = 25.0
    #: Above this pixel size not even groups of vehicles are reported as such.
    group_max_px_m: float = 10.0


@dataclass(frozen=True)
class ChangeObject:
    """One change object.

    Attributes
    ----------
    geometry : Polygon or MultiPolygon
        Outline in the analysis grid CRS (metres).
    area_m2, length_m, width_m : float
        Area; long and short side of the minimum rotated rectangle.
    orientation_deg : float
        Azimuth of the long side, degrees clockwise from grid north, 0-180.
    score : float
        Mean change score (0-1) inside the object.
    brightness_before, brightness_after : float
        Mean brightness inside the object in each date (BEFORE's radiometric unit).
    vehicles : int
        Estimated number of vehicles (vehicle: 1; vehicle_group: area / 25 m²; else 0).
    """

    id: int
    change: str
    cls: str
    label: int  # the component in the label image it was measured from
    geometry: BaseGeometry
    area_m2: float
    length_m: float
    width_m: float
    orientation_deg: float
    score: float
    brightness_before: float
    brightness_after: float
    vehicles: int = 0
    extra: dict = field(default_factory=dict)


def min_rect_dims(geometry: BaseGeometry) -> tuple[float, float, float]:
    """Long side, short side (CRS units) and azimuth (deg from north, 0-180) of the minimum rotated rectangle."""
    rect = geometry.minimum_rotated_rectangle
    if not isinstance(rect, Polygon):
        return 0.0, 0.0, 0.0
    xs, ys = rect.exterior.coords.xy
    e1 = (xs[1] - xs[0], ys[1] - ys[0])
    e2 = (xs[2] - xs[1], ys[2] - ys[1])
    l1, l2 = np.hypot(*e1), np.hypot(*e2)
    long_edge = e1 if l1 >= l2 else e2
    azimuth = float(np.degrees(np.arctan2(long_edge[0], long_edge[1])) % 180.0)
    return float(max(l1, l2)), float(min(l1, l2)), azimuth


def classify(area_m2: float, length_m: float, width_m: float, solidity: float, pixel_size_m: float,
             rules: SizeRules = SizeRules(), outline_px_m: float | None = None, *, area_change: bool = False,
             building: bool = False) -> str:
    """Class from size and shape in metres.

    Parameters
    ----------
    area_m2, length_m, width_m : float
        Object area and minimum-rectangle sides.
    solidity : float
        Area / convex hull area (0-1); irregular blobs are ``other``.
    pixel_size_m : float
        Ground pixel size: above ``rules.vehicle_resolvable_px_m`` single
        vehicles are not resolved and vehicle-sized change is a group.
    outline_px_m : float, optional
        Pixel size the outline was drawn at (default ``pixel_size_m``). A
        pixelated outline is up to one such pixel longer and wider than the
        object, so the vehicle's upper length and width bounds allow it.
    area_change : bool
        The object is a changed area (a building with its plot, earthworks),
        not a delineated thing: it is a ``structure`` or ``other``, never a
        vehicle, group or tent by its size alone.
    building : bool
        The object was found as a building (a roof, :mod:`imagery.structures`): a ``structure`` whatever its
        size.
    """
    if building:
        return "structure"
    structure = area_m2 >= rules.structure_min_area_m2 and solidity >= 0.6 and width_m >= 8.0
    if area_change:
        return "structure" if structure else "other"
    resolvable = pixel_size_m <= rules.vehicle_resolvable_px_m
    slack = pixel_size_m if outline_px_m is None else outline_px_m
    if resolvable:
        if (rules.vehicle_area_m2[0] <= area_m2 <= rules.vehicle_area_m2[1]
                and rules.vehicle_length_m[0] <= length_m <= rules.vehicle_length_m[1] + slack
                and rules.vehicle_width_m[0] <= width_m <= rules.vehicle_width_m[1] + slack
                and length_m / max(width_m, 1e-6) >= 1.4):
            return "vehicle"
        if (rules.tent_area_m2[0] <= area_m2 <= rules.tent_area_m2[1]
                and width_m >= rules.tent_min_width_m and solidity >= 0.75):
            return "tent"
    if structure:
        return "structure"
    if not resolvable and pixel_size_m <= rules.group_max_px_m and 2 * rules.vehicle_footprint_m2 <= area_m2 <= rules.group_max_area_m2:
        return "vehicle_group"
    if resolvable and rules.vehicle_area_m2[1] < area_m2 <= rules.group_max_area_m2:
        return "vehicle_group"
    return "other"


def vehicle_count(cls: str, area_m2: float, pixel_size_m: float, rules: SizeRules = SizeRules()) -> int:
    """Vehicles an object stands for: 1 for a vehicle; for a group resolved at <= 1.5 m, area / 25 m²;
    0 otherwise (at coarser pixels groups are reported as areas, not counts)."""
    if cls == "vehicle":
        return 1
    if cls == "vehicle_group" and pixel_size_m <= rules.vehicle_resolvable_px_m:
        return max(2, int(round(area_m2 / rules.vehicle_footprint_m2)))
    return 0


def component_geometry(labels: np.ndarray, label: int, grid: Grid, bbox: tuple[slice, slice]) -> BaseGeometry:
    """Polygon(s) of one labelled component, in grid CRS, traced from its bounding box."""
    rs, cs = bbox
    sub = (labels[rs, cs] == label).astype(np.uint8)
    transform = grid.transform @ grid.transform.translation(cs.start, rs.start)
    polys = [shape(g) for g, v in features.shapes(sub, mask=sub.astype(bool), transform=transform, connectivity=8) if v == 1]
    if not polys:
        return Polygon()
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def objects_from_labels(
    labels: np.ndarray,
    change_types: dict[int, str],
    *,
    grid: Grid,
    score: np.ndarray,
    brightness_before: np.ndarray,
    brightness_after: np.ndarray,
    pixel_size_m: float,
    rules: SizeRules = SizeRules(),
    outline_px_m: float | None = None,
    min_width_m: float = 0.0,
    area_labels: frozenset = frozenset(),
    building_labels: frozenset = frozenset(),
) -> list[ChangeObject]:
    """Measure and classify each labelled component.

    Parameters
    ----------
    labels : ndarray (rows, cols) int
        Components, 0 = background.
    change_types : dict
        Label -> ``appeared`` | ``disappeared`` | ``changed``.
    score, brightness_before, brightness_after : ndarray (rows, cols)
        Per-pixel values averaged inside each object.
    pixel_size_m : float
        Square pixel size of ``grid``, metres.
    outline_px_m : float, optional
        Pixel size the labels were delineated at (coarser when a method works on block means).
    min_width_m : float
        Components narrower than this (minimum rotated rectangle) are left out: slivers.
    area_labels : frozenset
        Labels that are changed areas rather than delineated things (see :func:`classify`).
    building_labels : frozenset
        Labels found as buildings (see :func:`classify`).

    Returns
    -------
    list of ChangeObject
        Sorted by descending area, ids from 1; ``label`` says which component each is.
    """
    slices = ndimage.find_objects(labels)
    out = []
    for label_minus_one, bbox in enumerate(slices):
        if bbox is None:
            continue
        label = label_minus_one + 1
        sub = labels[bbox] == label
        obj = measure_object(label, change_types.get(label, "changed"), component_geometry(labels, label, grid, bbox),
                             int(sub.sum()), float(score[bbox][sub].mean()), float(brightness_before[bbox][sub].mean()),
                             float(brightness_after[bbox][sub].mean()), pixel_size_m=pixel_size_m, rules=rules,
                             outline_px_m=outline_px_m, min_width_m=min_width_m, area_change=label in area_labels,
                             building=label in building_labels)
        if obj is not None:
            out.append(obj)
    out.sort(key=lambda o: -o.area_m2)
    return [ChangeObject(**{**o.__dict__, "id": i}) for i, o in enumerate(out, start=1)]


def measure_object(label: int, change: str, geometry: BaseGeometry, pixels: int, score: float, brightness_before: float,
                   brightness_after: float, *, pixel_size_m: float, rules: SizeRules = SizeRules(),
                   outline_px_m: float | None = None, min_width_m: float = 0.0,
                   area_change: bool = False, building: bool = False) -> ChangeObject | None:
    """One object measured and classified from its outline (grid CRS, metres), its pixel count and its mean
    score and brightness; None when it is empty or narrower than ``min_width_m`` (a sliver). ``id`` is 0."""
    if geometry.is_empty:
        return None
    length, width, azimuth = min_rect_dims(geometry)
    if width < min_width_m:
        return None
    area = pixels * pixel_size_m**2
    hull = geometry.convex_hull.area
    solidity = float(geometry.area / hull) if hull > 0 else 0.0
    cls = classify(area, length, width, solidity, pixel_size_m, rules, outline_px_m, area_change=area_change,
                   building=building)
    return ChangeObject(id=0, label=label, change=change, cls=cls, geometry=geometry, area_m2=float(area), length_m=length,
                        width_m=width, orientation_deg=azimuth, score=score, brightness_before=brightness_before,
                        brightness_after=brightness_after, vehicles=vehicle_count(cls, area, pixel_size_m, rules))


def counts_by(objects: list[ChangeObject]) -> dict:
    """Nested counts ``{change: {class: n}}`` plus vehicle estimates and totals."""
    table = {c: {k: 0 for k in CLASSES} for c in CHANGE_TYPES}
    vehicles = {c: 0 for c in CHANGE_TYPES}
    for o in objects:
        table[o.change][o.cls] += 1
        vehicles[o.change] += o.vehicles
    return {"objects": table, "vehicles_estimated": vehicles, "total": len(objects)}


def rasterize_objects(objects: list[ChangeObject], grid: Grid) -> np.ndarray:
    """uint8 mask of object pixels by change type (1 appeared, 2 disappeared, 3 changed, 0 elsewhere)."""
    shapes = [(o.geometry, MASK_VALUES[o.change]) for o in objects if not o.geometry.is_empty]
    if not shapes:
        return np.zeros(grid.shape, dtype=np.uint8)
    return features.rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8")
