"""Watched AOIs: each scene registered over a watched AOI is analysed against its neighbours by date.

The chain of an AOI is the scenes covering it in date order (ties by id). Once the AOI is watched, every
scene registered from then on is analysed against the scene before it and the scene after it becomes
analysed against it: a scene that arrives late splits a link of the chain into two new analyses (the
analysis it split stays, off the chain). With a baseline, each such scene is also analysed against the
baseline.

What the watch wants is a function of the rows (:func:`wanted_pairs`), and :func:`sync` queues what is
missing, each pair once (a unique index): scenes registered at the same moment by two requests or two
processes still end in the right chain, because whichever sync runs last sees both, and a sync at start-up
(:func:`sync_all`) completes what a crash interrupted.
"""

from __future__ import annotations

import logging

from shapely.geometry import shape
from sqlalchemy.orm import Session

from app import store
from app.errors import InvalidRequest, NotFound
from app.models import Analysis, Aoi, Scene, utcnow
from app.pairs import pair_problem
from app.schemas import AoiUpdate
from app.views import as_utc
from imagery.pipeline import DEFAULT_METHOD

log = logging.getLogger("basewatch.watch")


def covering(session: Session, team: str, aoi: Aoi) -> list[Scene]:
    """The team's scenes whose footprint intersects the AOI, in chain order (date, then id)."""
    geom = shape(aoi.geometry)
    return [s for s in store.scenes_overlapping(session, team, aoi) if shape(s.footprint).intersects(geom)]


def wanted_pairs(aoi: Aoi, scenes: list[Scene]) -> list[tuple[Scene, Scene]]:
    """(before, after) pairs the watch of ``aoi`` wants analysed, given its covering scenes in chain order."""
    if not aoi.watch or aoi.watched_since is None:
        return []
    since = as_utc(aoi.watched_since)
    new = {s.id for s in scenes if as_utc(s.created_at) >= since}
    pairs = [(a, b) for a, b in zip(scenes, scenes[1:]) if a.id in new or b.id in new]
    ids = [s.id for s in scenes]
    if aoi.baseline_scene_id in ids:
        baseline = scenes[ids.index(aoi.baseline_scene_id)]
        pairs += [(baseline, s) for s in scenes[ids.index(baseline.id) + 1:] if s.id in new]
    return list({(a.id, b.id): (a, b) for a, b in pairs}.values())


def sync(session: Session, aoi: Aoi) -> list[Analysis]:
    """Queue the analyses the AOI's watch wants and does not have; returns those queued."""
    have = store.watched_pairs(session, aoi.id)
    rows = []
    for before, after in wanted_pairs(aoi, covering(session, aoi.team, aoi)):
        if (before.id, after.id) in have:
            continue
        problem = pair_problem(aoi, before, after)
        if problem:
            log.info("watch of AOI %s: %s and %s not analysed: %s", aoi.id, before.id, after.id, problem)
            continue
        rows.append(Analysis(team=aoi.team, aoi_id=aoi.id, before_scene_id=before.id, after_scene_id=after.id,
                             method=DEFAULT_METHOD, params={}, watched=True))
    return store.add_watched_analyses(session, rows)


def scene_registered(session: Session, scene: Scene) -> list[Analysis]:
    """Queue what a new scene means for every watched AOI of its team that it covers."""
    footprint = shape(scene.footprint)
    queued = []
    for aoi in store.watched_aois(session, over=scene):
        if footprint.intersects(shape(aoi.geometry)):
            queued += sync(session, aoi)
    return queued


def sync_all(session: Session) -> int:
    """Bring every watched AOI's chain up to date (at start-up: what a crash may have left undone)."""
    return sum(len(sync(session, aoi)) for aoi in store.watched_aois(session))


def update_watch(session: Session, team: str, aoi_id: str, update: AoiUpdate) -> Aoi:
    """Start or stop watching an AOI, set or clear its baseline; queues what the watch then wants."""
    aoi = store.get_aoi(session, team, aoi_id)
    if "baseline_scene_id" in update.model_fields_set:
        if update.baseline_scene_id is not None:
            try:
                scene = store.get_scene(session, team, update.baseline_scene_id)
            except NotFound:
                raise NotFound("baseline scene not found") from None
            if not shape(scene.footprint).intersects(shape(aoi.geometry)):
                raise InvalidRequest("the baseline scene does not cover the AOI")
        aoi.baseline_scene_id = update.baseline_scene_id
    if update.watch is not None:
        if update.watch and not aoi.watch:
            aoi.watched_since = utcnow()
        aoi.watch = update.watch
    store.save(session, aoi)
    sync(session, aoi)
    return aoi
