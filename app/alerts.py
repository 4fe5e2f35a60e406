"""Alerts: a webhook POSTed when a finished analysis of an AOI meets a rule, through a durable outbox.

When an analysis succeeds, the events of the rules it meets are written to the outbox (table
``alert_deliveries``) in the same transaction that marks it succeeded (:func:`events_for`), so an event
is never lost: the :class:`Outbox` thread of the process that runs analyses sends what is due, leases
each delivery while it sends it (a process killed meanwhile leaves it to be sent again when the lease
ends), records every attempt, and retries failures with exponential backoff until
``alert_max_attempts``. Delivery is at least once: the ``X-Basewatch-Delivery`` header (also in the
body) lets a receiver drop a repeat. The body is signed: ``X-Basewatch-Signature: sha256=HEX``, the
HMAC-SHA256 of the exact body bytes under the alert's secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time

import httpx
from sqlalchemy.orm import Session

from app import outbound, store
from app.errors import HostNotAllowed, InvalidRequest
from app.models import Alert, Delivery, new_id, utcnow
from app.schemas import AlertCreate
from app.settings import Settings
from imagery.objects import CHANGE_TYPES, CLASSES

log = logging.getLogger("basewatch.alerts")

SETTING = "BASEWATCH_ALERT_HOSTS"
SIGNATURE_HEADER = "X-Basewatch-Signature"
DELIVERY_HEADER = "X-Basewatch-Delivery"
MAX_BACKOFF_S = 3600.0


def create_alert(session: Session, settings: Settings, team: str, aoi_id: str, body: AlertCreate) -> Alert:
    aoi = store.get_aoi(session, team, aoi_id)
    outbound.allowed_url(body.url, settings.alert_hosts, setting=SETTING, what="alert url")
    zone = body.rule.zone
    if zone is not None and zone not in {z.name for z in store.zones_of(session, aoi.id)}:
        raise InvalidRequest(f"this AOI has no zone named {zone!r}")
    return store.add_alert(session, Alert(team=team, aoi_id=aoi.id, url=body.url, secret=body.secret,
                                          rule=body.rule.model_dump(by_alias=True)))


def matched(rule: dict, counts: dict) -> int:
    """Objects of the rule's class and change (``any``: all) in a ``counts`` table (summary ``counts`` or a zone's)."""
    table = counts.get("objects", {})
    changes = CHANGE_TYPES if rule["change"] == "any" else (rule["change"],)
    classes = CLASSES if rule["class"] == "any" else (rule["class"],)
    return sum(int(table.get(c, {}).get(k, 0)) for c in changes for k in classes)


def events_for(session: Session, settings: Settings, analysis_id: str, summary: dict) -> list[Delivery]:
    """The outbox rows of a succeeded analysis: one event per alert of its AOI whose rule it meets."""
    analysis = store.load_analysis(session, analysis_id)
    if analysis is None:
        return []
    aoi = store.get_aoi(session, analysis.team, analysis.aoi_id)
    root = f"{settings.base_url()}/v1/analyses/{analysis.id}"
    out = []
    for alert in store.alerts_of(session, aoi.id):
        rule, zone = alert.rule, alert.rule.get("zone")
        counts = summary.get("zones", {}).get(zone) if zone else summary.get("counts")
        if counts is None:  # the zone did not exist yet when the analysis ran
            continue
        count = matched(rule, counts)
        if count < rule["min"]:
            continue
        delivery_id = new_id()
        event = {
            "type": "basewatch.alert", "delivery_id": delivery_id, "alert_id": alert.id, "rule": rule,
            "aoi": {"id": aoi.id, "name": aoi.name}, "zone": zone, "count": count, "counts": counts,
            "dates": {"before": summary.get("before_date"), "after": summary.get("after_date")},
            "analysis_id": analysis.id,
            "links": {"analysis": root, "viewer": f"{root}/viewer", "report": f"{root}/report.pdf",
                      "report_png": f"{root}/report.png", "changes": f"{root}/changes.geojson"},
            "created": utcnow().isoformat(timespec="seconds"),
        }
        out.append(Delivery(id=delivery_id, alert_id=alert.id, analysis_id=analysis.id, body=json.dumps(event),
                            next_attempt_at=utcnow()))
    return out


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(settings: Settings, failures: int) -> float:
    """Wait after the ``failures``-th failed attempt: alert_retry_s, doubled each time, at most an hour."""
    return min(settings.alert_retry_s * 2 ** (failures - 1), MAX_BACKOFF_S)


def attempt(http: httpx.Client, settings: Settings, delivery: Delivery, alert: Alert) -> dict:
    """POST the event once; the attempt as recorded (``status_code`` None when the receiver was not reached)."""
    body = delivery.body.encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(alert.secret, body),
               DELIVERY_HEADER: delivery.id, "X-Basewatch-Event": "alert"}
    started = time.monotonic()
    status, error = None, None
    try:
        status = outbound.post(http, alert.url, body, headers, hosts=settings.alert_hosts, setting=SETTING, what="alert url")
        if not 200 <= status < 300:
            error = f"the receiver answered HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    except HostNotAllowed as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"the receiver could not be reached ({type(exc).__name__})"
    return {"at": utcnow().isoformat(), "status_code": status, "error": error,
            "seconds": round(time.monotonic() - started, 3)}


class Outbox(threading.Thread):
    """Sends due deliveries, one at a time, until stopped (a thread of the process that runs analyses)."""

    #: Deliveries claimed per round.
    BATCH = 10

    def __init__(self, settings: Settings, sessions, *, poll_s: float = 1.0):
        super().__init__(daemon=True, name="basewatch-outbox")
        self.settings, self.sessions, self.poll_s = settings, sessions, poll_s
        self.lease_s = 2 * settings.alert_timeout_s + 10
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=self.settings.alert_timeout_s + 5)

    def run(self) -> None:
        with outbound.client(self.settings.alert_timeout_s) as http:
            while not self._stopping.wait(self.poll_s):
                try:
                    while self.send_due(http) and not self._stopping.is_set():
                        pass
                except Exception:  # the loop must survive a database hiccup
                    log.exception("outbox round failed")

    def send_due(self, http: httpx.Client) -> int:
        """One round: claim due deliveries, send each, record the attempt; returns how many were sent."""
        with self.sessions() as session:
            claimed = store.claim_deliveries(session, lease_s=self.lease_s, limit=self.BATCH)
        for delivery, alert in claimed:
            result = attempt(http, self.settings, delivery, alert)
            failures = len(delivery.attempts) + 1
            retry_at = None
            if result["error"] and failures < self.settings.alert_max_attempts:
                retry_at = utcnow() + dt.timedelta(seconds=backoff_s(self.settings, failures))
            with self.sessions() as session:
                store.record_attempt(session, delivery.id, result, delivered=result["error"] is None, retry_at=retry_at)
            if result["error"]:
                log.warning("alert %s, delivery %s: attempt %d failed: %s", alert.id, delivery.id, failures, result["error"])
        return len(claimed)
