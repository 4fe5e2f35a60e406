"""Every database query of the service. Functions take a Session and the caller's team."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidRequest, NotFound
from app.models import Alert, Analysis, ApiKey, Aoi, Delivery, Scene, Zone, utcnow

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


# --- keys -------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    """API keys are 256-bit random strings: a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, name: str, team: str, role: str) -> tuple[ApiKey, str]:
    """A new key row and the key itself (shown once, never stored)."""
    if role not in ("analyst", "viewer"):
        raise InvalidRequest("role must be analyst or viewer")
    key = "bw_" + secrets.token_urlsafe(32)
    row = ApiKey(name=name, team=team, role=role, prefix=key[:10], key_hash=hash_key(key))
    session.add(row)
    session.commit()
    return row, key


def any_key(session: Session) -> bool:
    """Whether a key was ever created (revoked ones count: revoking the last key does not open the service)."""
    return session.scalar(select(func.count()).select_from(ApiKey)) > 0


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id_or_prefix: str) -> int:
    rows = session.execute(
        update(ApiKey).where(or_(ApiKey.id == key_id_or_prefix, ApiKey.prefix == key_id_or_prefix), ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount
    session.commit()
    return rows


# --- pagination --------------------------------------------------------------------------


def encode_cursor(created_at: dt.datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        return dt.datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid cursor") from None


def paginate(session: Session, query, model, cursor: str | None, limit: int | None):
    """Newest first; returns (rows, next_cursor)."""
    limit = min(max(1, limit or DEFAULT_LIMIT), MAX_LIMIT)
    if cursor:
        created, row_id = decode_cursor(cursor)
        if created.tzinfo is not None and session.bind.dialect.name == "sqlite":
            created = created.replace(tzinfo=None)
        query = query.where(or_(model.created_at < created, and_(model.created_at == created, model.id < row_id)))
    rows = list(session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)))
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt


# --- scenes ------------------------------------------------------------------------------


def add_scene(session: Session, scene: Scene) -> Scene:
    session.add(scene)
    session.commit()
    return scene


def get_scene(session: Session, team: str, scene_id: str) -> Scene:
    row = session.scalar(select(Scene).where(Scene.id == scene_id, Scene.team == team))
    if row is None:
        raise NotFound()
    return row


def list_scenes(session: Session, team: str, *, aoi: Aoi | None = None, acquired_from: dt.date | None = None,
                acquired_to: dt.date | None = None, cursor: str | None = None, limit: int | None = None):
    q = select(Scene).where(Scene.team == team)
    if aoi is not None:
        q = q.where(Scene.west <= aoi.east, Scene.east >= aoi.west, Scene.south <= aoi.north, Scene.north >= aoi.south)
    if acquired_from:
        q = q.where(Scene.acquired_at >= acquired_from)
    if acquired_to:
        q = q.where(Scene.acquired_at <= acquired_to)
    return paginate(session, q, Scene, cursor, limit)


def scenes_overlapping(session: Session, team: str, aoi: Aoi) -> list[Scene]:
    """Scenes whose bounding box intersects the AOI's, by date (the caller refines by geometry)."""
    q = select(Scene).where(Scene.team == team, Scene.west <= aoi.east, Scene.east >= aoi.west,
                            Scene.south <= aoi.north, Scene.north >= aoi.south).order_by(Scene.acquired_at, Scene.id)
    return list(session.scalars(q))


def delete_scene(session: Session, team: str, scene_id: str) -> Scene:
    scene = get_scene(session, team, scene_id)
    users = session.scalars(select(Analysis.id).where(or_(Analysis.before_scene_id == scene_id,
                                                          Analysis.after_scene_id == scene_id))).all()
    if users:
        raise Conflict(f"the scene is used by {len(users)} analysis(es); delete them first")
    if session.scalar(select(Aoi.id).where(Aoi.baseline_scene_id == scene_id).limit(1)):
        raise Conflict("the scene is the baseline of a watched AOI; set another baseline first")
    session.delete(scene)
    session.commit()
    return scene


# --- AOIs --------------------------------------------------------------------------------


def add_aoi(session: Session, aoi: Aoi) -> Aoi:
    session.add(aoi)
    session.commit()
    return aoi


def get_aoi(session: Session, team: str, aoi_id: str) -> Aoi:
    row = session.scalar(select(Aoi).where(Aoi.id == aoi_id, Aoi.team == team))
    if row is None:
        raise NotFound()
    return row


def list_aois(session: Session, team: str, *, cursor: str | None = None, limit: int | None = None):
    return paginate(session, select(Aoi).where(Aoi.team == team), Aoi, cursor, limit)


def save(session: Session, row):
    """Commit the changes made to a row read in this session."""
    session.commit()
    return row


def watched_aois(session: Session, *, over: Scene | None = None) -> list[Aoi]:
    """Watched AOIs (of the scene's team and whose bounding box meets its footprint's, when ``over`` is given)."""
    q = select(Aoi).where(Aoi.watch.is_(True))
    if over is not None:
        q = q.where(Aoi.team == over.team, Aoi.west <= over.east, Aoi.east >= over.west, Aoi.south <= over.north,
                    Aoi.north >= over.south)
    return list(session.scalars(q.order_by(Aoi.created_at)))


# --- zones -------------------------------------------------------------------------------


def add_zone(session: Session, zone: Zone) -> Zone:
    session.add(zone)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"this AOI already has a zone named {zone.name!r}") from None
    return zone


def zones_of(session: Session, aoi_id: str) -> list[Zone]:
    """Every zone of an AOI, oldest first (few: their number is limited)."""
    return list(session.scalars(select(Zone).where(Zone.aoi_id == aoi_id).order_by(Zone.created_at, Zone.id)))


def list_zones(session: Session, aoi: Aoi, *, cursor: str | None = None, limit: int | None = None):
    return paginate(session, select(Zone).where(Zone.aoi_id == aoi.id), Zone, cursor, limit)


def delete_zone(session: Session, aoi: Aoi, zone_id: str) -> Zone:
    zone = session.scalar(select(Zone).where(Zone.id == zone_id, Zone.aoi_id == aoi.id))
    if zone is None:
        raise NotFound()
    if any(a.rule.get("zone") == zone.name for a in alerts_of(session, aoi.id)):
        raise Conflict(f"an alert of this AOI watches zone {zone.name!r}; delete the alert first")
    session.delete(zone)
    session.commit()
    return zone


# --- alerts and their outbox ------------------------------------------------------------------


def add_alert(session: Session, alert: Alert) -> Alert:
    session.add(alert)
    session.commit()
    return alert


def get_alert(session: Session, aoi: Aoi, alert_id: str) -> Alert:
    row = session.scalar(select(Alert).where(Alert.id == alert_id, Alert.aoi_id == aoi.id))
    if row is None:
        raise NotFound()
    return row


def alerts_of(session: Session, aoi_id: str) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.aoi_id == aoi_id).order_by(Alert.created_at)))


def list_alerts(session: Session, aoi: Aoi, *, cursor: str | None = None, limit: int | None = None):
    return paginate(session, select(Alert).where(Alert.aoi_id == aoi.id), Alert, cursor, limit)


def delete_alert(session: Session, aoi: Aoi, alert_id: str) -> None:
    """The alert and its deliveries, pending ones included."""
    alert = get_alert(session, aoi, alert_id)
    session.execute(delete(Delivery).where(Delivery.alert_id == alert.id))
    session.delete(alert)
    session.commit()


def list_deliveries(session: Session, alert: Alert, *, cursor: str | None = None, limit: int | None = None):
    return paginate(session, select(Delivery).where(Delivery.alert_id == alert.id), Delivery, cursor, limit)


def _db_time(session: Session, value: dt.datetime) -> dt.datetime:
    """A UTC time as the database compares it (SQLite stores naive UTC)."""
    return value.replace(tzinfo=None) if session.bind.dialect.name == "sqlite" else value


def claim_deliveries(session: Session, *, lease_s: float, limit: int) -> list[tuple[Delivery, Alert]]:
    """Due pending deliveries with their alert, leased for ``lease_s`` (a process that dies while sending
    leaves them to be sent again then). Safe across processes."""
    now = utcnow()
    q = (select(Delivery.id).where(Delivery.status == "pending", Delivery.next_attempt_at <= _db_time(session, now))
         .order_by(Delivery.next_attempt_at).limit(limit))
    if session.bind.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    claimed = []
    for delivery_id in session.scalars(q).all():
        n = session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "pending",
                                                   Delivery.next_attempt_at <= _db_time(session, now))
                            .values(next_attempt_at=now + dt.timedelta(seconds=lease_s))).rowcount
        if n:
            claimed.append(delivery_id)
    session.commit()
    if not claimed:
        return []
    rows = session.execute(select(Delivery, Alert).join(Alert, Alert.id == Delivery.alert_id).where(Delivery.id.in_(claimed)))
    return [(d, a) for d, a in rows]


def record_attempt(session: Session, delivery_id: str, attempt: dict, *, delivered: bool,
                   retry_at: dt.datetime | None) -> None:
    """Append an attempt; the delivery is then delivered, pending until ``retry_at``, or failed (no ``retry_at``)."""
    row = session.get(Delivery, delivery_id)
    if row is None:  # its alert was deleted meanwhile
        return
    row.attempts = [*row.attempts, attempt]
    if delivered:
        row.status, row.delivered_at = "delivered", utcnow()
    elif retry_at is None:
        row.status = "failed"
    else:
        row.next_attempt_at = retry_at
    session.commit()


# --- analyses ----------------------------------------------------------------------------


def add_analysis(session: Session, analysis: Analysis) -> Analysis:
    session.add(analysis)
    session.commit()
    return analysis


def watched_pairs(session: Session, aoi_id: str) -> set[tuple[str, str]]:
    """(before, after) scene ids of the analyses an AOI's watch queued."""
    q = select(Analysis.before_scene_id, Analysis.after_scene_id).where(Analysis.aoi_id == aoi_id, Analysis.watched.is_(True))
    return set(session.execute(q).all())


def add_watched_analyses(session: Session, rows: list[Analysis]) -> list[Analysis]:
    """Add the watch's analyses; a pair another process queued meanwhile is skipped. Returns those added."""
    added = []
    for row in rows:
        try:
            with session.begin_nested():
                session.add(row)
            added.append(row)
        except IntegrityError:
            pass
    session.commit()
    return added


def analyses_after(session: Session, aoi_id: str, after_scene_ids: list[str]) -> list[Analysis]:
    """The analyses of an AOI whose after scene is one of these."""
    if not after_scene_ids:
        return []
    q = select(Analysis).where(Analysis.aoi_id == aoi_id, Analysis.after_scene_id.in_(after_scene_ids))
    return list(session.scalars(q))


def get_analysis(session: Session, team: str, analysis_id: str) -> Analysis:
    row = session.scalar(select(Analysis).where(Analysis.id == analysis_id, Analysis.team == team))
    if row is None:
        raise NotFound()
    return row


def load_analysis(session: Session, analysis_id: str) -> Analysis | None:
    """An analysis by id regardless of team (workers only)."""
    return session.get(Analysis, analysis_id)


def analysis_inputs(session: Session, analysis_id: str) -> tuple[Analysis, Aoi, Scene, Scene, list[Zone]]:
    """What a worker needs to run an analysis (any team's): its row, AOI, BEFORE and AFTER scenes, the AOI's zones."""
    row = session.get(Analysis, analysis_id)
    if row is None:
        raise NotFound("the analysis was deleted")
    return (row, session.get(Aoi, row.aoi_id), session.get(Scene, row.before_scene_id),
            session.get(Scene, row.after_scene_id), zones_of(session, row.aoi_id))


def list_analyses(session: Session, team: str, *, aoi_id: str | None = None, status: str | None = None,
                  cursor: str | None = None, limit: int | None = None):
    q = select(Analysis).where(Analysis.team == team)
    if aoi_id:
        q = q.where(Analysis.aoi_id == aoi_id)
    if status:
        q = q.where(Analysis.status == status)
    return paginate(session, q, Analysis, cursor, limit)


def delete_analysis(session: Session, team: str, analysis_id: str) -> Analysis:
    row = get_analysis(session, team, analysis_id)
    if row.status == "running":
        raise Conflict("the analysis is running; wait until it ends")
    session.delete(row)
    session.commit()
    return row


def claim_queued(session: Session, worker: str, limit: int) -> list[str]:
    """Move up to ``limit`` queued analyses to running for ``worker``; oldest first. Safe across processes."""
    claimed = []
    q = select(Analysis.id).where(Analysis.status == "queued").order_by(Analysis.created_at).limit(limit)
    if session.bind.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    for analysis_id in session.scalars(q).all():
        now = utcnow()
        n = session.execute(
            update(Analysis).where(Analysis.id == analysis_id, Analysis.status == "queued")
            .values(status="running", worker=worker, heartbeat_at=now, started_at=now, progress=0.0,
                    stage="starting", attempts=Analysis.attempts + 1)
        ).rowcount
        if n:
            claimed.append(analysis_id)
    session.commit()
    return claimed


def heartbeat(session: Session, analysis_id: str, worker: str, *, stage: str | None = None, progress: float | None = None) -> bool:
    """Record progress; False if the analysis is no longer this worker's (taken over or deleted)."""
    values = {"heartbeat_at": utcnow()}
    if stage is not None:
        values["stage"] = stage
    if progress is not None:
        values["progress"] = round(float(progress), 4)
    n = session.execute(update(Analysis).where(Analysis.id == analysis_id, Analysis.worker == worker,
                                               Analysis.status == "running").values(**values)).rowcount
    session.commit()
    return bool(n)


def finish(session: Session, analysis_id: str, worker: str, *, summary: dict, product_dir: str,
           outbox: list[Delivery] = ()) -> bool:
    """Mark the analysis succeeded and put its alert events in the outbox, in one transaction."""
    n = session.execute(update(Analysis).where(Analysis.id == analysis_id, Analysis.worker == worker, Analysis.status == "running")
                        .values(status="succeeded", progress=1.0, stage="done", summary=summary, product_dir=product_dir,
                                finished_at=utcnow(), error=None)).rowcount
    if n:
        session.add_all(outbox)
    session.commit()
    return bool(n)


def fail(session: Session, analysis_id: str, worker: str | None, error: str) -> bool:
    q = update(Analysis).where(Analysis.id == analysis_id, Analysis.status.in_(("running", "queued")))
    if worker is not None:
        q = q.where(Analysis.worker == worker)
    n = session.execute(q.values(status="failed", stage="failed", error=error[:2000], finished_at=utcnow())).rowcount
    session.commit()
    return bool(n)


def recover_interrupted(session: Session, *, older_than_s: float, max_attempts: int) -> tuple[int, int]:
    """Requeue running analyses whose worker stopped reporting; fail those out of attempts. Returns (requeued, failed)."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    if session.bind.dialect.name == "sqlite":
        cutoff = cutoff.replace(tzinfo=None)
    stale = and_(Analysis.status == "running", or_(Analysis.heartbeat_at.is_(None), Analysis.heartbeat_at <= cutoff))
    # "fetch": rows already loaded in this session are refreshed from the database, not compared in Python
    # (SQLite stores naive times, loaded rows hold aware ones)
    fetch = {"synchronize_session": "fetch"}
    failed = session.execute(update(Analysis).where(stale, Analysis.attempts >= max_attempts).values(
        status="failed", stage="failed", finished_at=utcnow(),
        error=f"the analysis was interrupted {max_attempts} times (worker crash or restart); it will not be retried",
    ).execution_options(**fetch)).rowcount
    requeued = session.execute(update(Analysis).where(stale).values(status="queued", worker=None, stage="requeued after interruption")
                               .execution_options(**fetch)).rowcount
    session.commit()
    return requeued, failed


def requeue(session: Session, analysis_id: str, worker: str, *, max_attempts: int) -> str:
    """Give one interrupted analysis back to the queue (or fail it when out of attempts); returns its new status."""
    row = session.get(Analysis, analysis_id)
    if row is None or row.status != "running" or row.worker != worker:
        return row.status if row else "deleted"
    if row.attempts >= max_attempts:
        row.status, row.stage, row.finished_at = "failed", "failed", utcnow()
        row.error = f"the analysis was interrupted {max_attempts} times (worker crash or restart); it will not be retried"
    else:
        row.status, row.worker, row.stage = "queued", None, "requeued after interruption"
    session.commit()
    return row.status


def count_by_status(session: Session, team: str) -> dict[str, int]:
    q = select(Analysis.status, func.count()).where(Analysis.team == team).group_by(Analysis.status)
    return dict(session.execute(q).all())


def purge_all(session: Session) -> None:
    """Delete every row (tests only)."""
    for model in (Delivery, Alert, Zone, Analysis, Aoi, Scene, ApiKey):
        session.execute(delete(model))
    session.commit()
