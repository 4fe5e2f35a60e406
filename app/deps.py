"""Named dependencies: routes read like their signature (SessionDep, SettingsDep, PrincipalDep, AnalystDep)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Iterator

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from app import store
from app.errors import Forbidden, Unauthorized
from app.settings import Settings

#: Team that owns everything while the service runs open (no key exists yet).
OPEN_TEAM = "default"


@dataclass(frozen=True)
class Principal:
    """Who is calling: team and role (``analyst`` may create, ``viewer`` may only read)."""

    team: str
    role: str
    key_name: str | None = None
    token: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role == "analyst"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


class AuthState:
    """Whether any key exists, cached for a second so every request does not count keys."""

    def __init__(self, sessions):
        self.sessions = sessions
        self._checked = 0.0
        self._enabled = False

    def enabled(self) -> bool:
        now = time.monotonic()
        if now - self._checked > 1.0:
            with self.sessions() as session:
                self._enabled = store.any_active_key(session)
            self._checked = now
        return self._enabled

    def invalidate(self) -> None:
        self._checked = 0.0


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def resolve_principal(request: Request, session: Session, token: str | None) -> Principal:
    auth: AuthState = request.app.state.auth
    if not auth.enabled():
        return Principal(team=OPEN_TEAM, role="analyst")
    if not token:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY'")
    row = store.find_key(session, token)
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    return Principal(team=row.team, role=row.role, key_name=row.name, token=token)


def get_principal(request: Request, session: SessionDep) -> Principal:
    """From the Authorization header only."""
    return resolve_principal(request, session, bearer(request))


def get_map_principal(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Query(description="API key, for map clients that cannot send headers.")] = None,
) -> Principal:
    """From the Authorization header or ``?token=`` (tiles, TileJSON, WMTS, viewer)."""
    return resolve_principal(request, session, bearer(request) or token)


def get_analyst(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.can_write:
        raise Forbidden("this key may read but not create or delete (role viewer)")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
MapPrincipalDep = Annotated[Principal, Depends(get_map_principal)]
AnalystDep = Annotated[Principal, Depends(get_analyst)]
