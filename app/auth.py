"""API keys held in memory: a request is authenticated without a database query.

The key table is loaded once and reloaded when ``<data_dir>/keys.stamp`` changes (``basewatch keys
create/revoke`` rewrite it, so a revoked key is refused by the next request of every API process
sharing the data folder) and at least every ``reload_s`` seconds (keys edited in the database directly).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from app import store
from app.settings import Settings
from app.stamps import Stamp


@dataclass(frozen=True)
class KeyEntry:
    team: str
    role: str
    name: str
    revoked: bool


def keys_changed(settings: Settings) -> None:
    """Tell every API process on this data folder to reload its keys (atomic rewrite of the stamp)."""
    Stamp(settings.keys_stamp).touch()


class KeyRing:
    """Every key (revoked ones included) by hash."""

    def __init__(self, settings: Settings, sessions, *, reload_s: float = 60.0):
        self.settings, self.sessions, self.reload_s = settings, sessions, reload_s
        self._stamp_file = Stamp(settings.keys_stamp)
        self._keys: dict[str, KeyEntry] = {}
        self._stamp: tuple | None = ("never loaded",)
        self._loaded_at = -math.inf
        self._lock = threading.Lock()

    def stale(self) -> bool:
        """One ``stat``: whether :meth:`reload` must run before the next lookup."""
        return self._stamp_file.read() != self._stamp or time.monotonic() - self._loaded_at > self.reload_s

    def reload(self) -> None:
        with self._lock:
            stamp = self._stamp_file.read()  # read first: a change during the query triggers another reload
            with self.sessions() as session:
                rows = store.list_keys(session)
            self._keys = {r.key_hash: KeyEntry(r.team, r.role, r.name, r.revoked_at is not None) for r in rows}
            self._stamp, self._loaded_at = stamp, time.monotonic()

    def enabled(self) -> bool:
        """Auth is on when configured so, or (``auto``) once any key has ever been created."""
        mode = self.settings.auth
        return mode == "on" or (mode == "auto" and bool(self._keys))

    def lookup(self, key: str) -> KeyEntry | None:
        entry = self._keys.get(store.hash_key(key))
        return entry if entry is not None and not entry.revoked else None


class FailureLimiter:
    """Failed key attempts per client address over the last minute (bounded memory)."""

    def __init__(self, per_minute: int, *, max_clients: int = 10_000):
        self.per_minute, self.max_clients = per_minute, max_clients
        self._hits: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Seconds this client must wait before its keys are checked again (0: go ahead)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(client)
            while hits and now - hits[0] > 60:
                hits.popleft()
            if not hits or len(hits) < self.per_minute:
                return 0
            return max(1, math.ceil(60 - (now - hits[0])))

    def record(self, client: str) -> None:
        with self._lock:
            hits = self._hits.setdefault(client, deque())
            self._hits.move_to_end(client)
            hits.append(time.monotonic())
            while len(self._hits) > self.max_clients:
                self._hits.popitem(last=False)
