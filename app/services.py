"""Use cases of the service, the same for HTTP routes, the demo, the CLI and the job workers: each checks its rules
and writes its rows through :mod:`app.store`, and keeps files and rows together (no file without its row, no row
pointing at a removed file). Routes only translate HTTP (status, headers, links, caches) around them."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from aoi import parse_aoi
from app import store, watch
from app.errors import InvalidRequest, NotFound
from app.models import Analysis, Aoi, Scene
from app.pairs import check_pair
from imagery.change import METHODS

log = logging.getLogger("basewatch")


class AnalysisOptions(BaseModel):
    """Optional analysis parameters accepted from clients."""

    model_config = ConfigDict(extra="forbid")

    pixel_size_m: float | None = Field(None, gt=0.05, le=1000)
    margin_m: float = Field(0.0, ge=0, le=5000)
    coregister: bool = True
    mask_clouds: bool = True


def register_scene(sessions, data_dir: Path, scene: Scene) -> bool:
    """Record a converted scene, then queue the analyses it means for the watched AOIs it covers.

    ``sessions`` makes database sessions; ``scene.path`` is relative to ``data_dir``. The scene's COG is removed
    when its row cannot be written (no file without a row). Returns whether analyses were queued; a failure to
    queue them is logged, not raised (the scene is registered: the next registration or the next start
    completes the chains).
    """
    try:
        with sessions() as session:
            store.add_scene(session, scene)
    except BaseException:
        (data_dir / scene.path).unlink(missing_ok=True)
        raise
    try:
        with sessions() as session:
            return bool(watch.scene_registered(session, scene))
    except Exception:
        log.exception("scene %s: queueing the analyses of watched AOIs failed", scene.id)
        return False


def create_aoi(session: Session, team: str, geometry: dict, name: str, description: str | None = None) -> Aoi:
    """Register an AOI from GeoJSON (validated by :func:`aoi.parse_aoi`: a valid polygon in lon/lat, within the
    size limits, not across the antimeridian), with its bounds and geodesic area."""
    area = parse_aoi(geometry, name=name)
    west, south, east, north = area.bounds
    return store.add_aoi(session, Aoi(team=team, name=name, description=description, geometry=area.to_geojson(),
                                      west=west, south=south, east=east, north=north, area_m2=area.area_m2))


def queue_analysis(session: Session, team: str, aoi_id: str, before_scene_id: str, after_scene_id: str,
                   method: str | None = None, params: dict | None = None) -> Analysis:
    """Queue an analysis of two of the team's scenes over one of its AOIs.

    Raises NotFound (the AOI or either scene is not the team's) or InvalidRequest (an unknown method, bad
    params, or a pair that cannot be analysed: see :func:`app.pairs.check_pair`).
    """
    from imagery.pipeline import DEFAULT_METHOD

    aoi = store.get_aoi(session, team, aoi_id)
    try:
        before = store.get_scene(session, team, before_scene_id)
    except NotFound:
        raise NotFound("before scene not found") from None
    try:
        after = store.get_scene(session, team, after_scene_id)
    except NotFound:
        raise NotFound("after scene not found") from None
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise InvalidRequest(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    try:
        options = AnalysisOptions(**(params or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(f"params.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    check_pair(aoi, before, after)
    return store.add_analysis(session, Analysis(team=team, aoi_id=aoi.id, before_scene_id=before.id,
                                                after_scene_id=after.id, method=method,
                                                params=options.model_dump(exclude_defaults=True)))


def delete_scene(session: Session, data_dir: Path, team: str, scene_id: str) -> Scene:
    """Remove one of the team's scenes, row then file. Raises NotFound, or Conflict while an analysis uses it or
    it is a watched AOI's baseline (nothing removed then)."""
    scene = store.delete_scene(session, team, scene_id)
    (data_dir / scene.path).unlink(missing_ok=True)
    return scene


def delete_analysis(session: Session, data_dir: Path, team: str, analysis_id: str,
                    release: Callable[[str], None] | None = None) -> Analysis:
    """Remove one of the team's analyses, row then product folder. Raises NotFound, or Conflict while it runs
    (its worker owns the folder then). ``release(analysis_id)`` is called between the two for an analysis with
    products (a tile cache closes its readers of the files and drops its tiles)."""
    row = store.delete_analysis(session, team, analysis_id)
    if row.product_dir:
        if release is not None:
            release(row.id)
        shutil.rmtree(data_dir / row.product_dir, ignore_errors=True)
    return row


def finish_analysis(session: Session, settings, analysis_id: str, worker: str, summary: dict, product_dir: str) -> bool:
    """Mark a running analysis succeeded with its summary (``summary.json`` as written, read back: one summary
    for the file and the API) and product folder (relative to the data folder), and queue its alert events, in
    one transaction. False when the analysis is no longer this worker's (deleted or taken over)."""
    from app.alerts import events_for

    return store.finish(session, analysis_id, worker, summary=summary, product_dir=product_dir,
                        outbox=events_for(session, settings, analysis_id, summary))
