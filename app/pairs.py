"""The rules a pair of scenes must meet to be analysed over an AOI (for analysts' requests and the watch alike)."""

from __future__ import annotations

from shapely.geometry import shape

from app.errors import InvalidRequest
from app.models import Aoi, Scene


def pair_problem(aoi: Aoi, before: Scene, after: Scene) -> str | None:
    """Why BEFORE and AFTER cannot be analysed over the AOI, or None."""
    if before.id == after.id:
        return "before and after must be two different scenes"
    if before.acquired_at > after.acquired_at:
        return f"the before scene ({before.acquired_at}) is newer than the after scene ({after.acquired_at})"
    geom = shape(aoi.geometry)
    for label, scene in (("before", before), ("after", after)):
        if not shape(scene.footprint).intersects(geom):
            return f"the {label} scene does not cover the AOI"
    if not {b for b in before.bands if b != "-"} & {b for b in after.bands if b != "-"}:
        return f"the scenes share no band: before has {before.bands}, after has {after.bands}"
    return None


def check_pair(aoi: Aoi, before: Scene, after: Scene) -> None:
    """InvalidRequest (422) unless the pair can be analysed."""
    problem = pair_problem(aoi, before, after)
    if problem:
        raise InvalidRequest(problem)
