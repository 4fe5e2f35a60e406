"""Named dependencies: routes read like their signature (SessionDep, SettingsDep, PrincipalDep, AnalystDep)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Iterator
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.errors import Forbidden, TooManyRequests, Unauthorized
from app.settings import Settings, is_loopback

#: Team that owns everything while the service runs open (no key exists yet).
OPEN_TEAM = "default"


@dataclass(frozen=True)
class Principal:
    """Who is calling: team and role (``analyst`` may create, ``viewer`` may only read).

    ``token`` is the key only when the client sent it as ``?token=`` (so it may be embedded in URLs
    handed back to that client); a key sent in the ``Authorization`` header is never echoed.
    """

    team: str
    role: str
    key_name: str | None = None
    token: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role == "analyst"


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def parse_bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header value, else None."""
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def bearer(request: Request) -> str | None:
    return parse_bearer(request.headers.get("authorization"))


def map_credentials(header_key: str | None, token: str | None) -> tuple[str | None, bool]:
    """The key of a map request (the header's, else ``?token=``) and whether the client sent it as ``?token=``."""
    return header_key or token, token is not None and header_key in (None, token)


def check_loopback(settings: Settings, client: str, host_header: str | None) -> None:
    """An open service answers loopback clients addressing it by a loopback name only (no DNS rebinding)."""
    host = urlsplit("//" + (host_header or "")).hostname
    public = urlsplit(settings.public_url).hostname if settings.public_url else None
    if not is_loopback(client) or not (is_loopback(host) or (host and host == public)):
        raise Forbidden("the service is open (no API key exists): it answers loopback clients only; "
                        "create a key with `basewatch keys create`")


def identify(state, key: str | None, *, from_query: bool, client: str, host_header: str | None) -> Principal:
    """The caller from its key and the key table as loaded, without side effects: no reload, no database
    query, no failure recorded. Raises Forbidden, Unauthorized or TooManyRequests."""
    ring = state.keys
    if not ring.enabled():
        check_loopback(state.settings, client, host_header)
        return Principal(team=OPEN_TEAM, role="analyst")
    if not key:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY'")
    wait = state.failures.retry_after(client)
    if wait:
        raise TooManyRequests(f"too many invalid API keys from this address; retry in {wait} s", retry_after=wait)
    entry = ring.lookup(key)
    if entry is None:
        raise Unauthorized("invalid or revoked API key")
    return Principal(team=entry.team, role=entry.role, key_name=entry.name, token=key if from_query else None)


async def authenticate(request: Request, key: str | None, *, from_query: bool = False) -> Principal:
    """The caller from its key: no database query unless the key table changed; an invalid key is recorded
    against the client's address."""
    state = request.app.state
    if state.keys.stale():
        await run_in_threadpool(state.keys.reload)
    client = request.client.host if request.client else ""
    try:
        return identify(state, key, from_query=from_query, client=client, host_header=request.headers.get("host"))
    except Unauthorized:
        if key:
            state.failures.record(client)
        raise


async def get_principal(request: Request) -> Principal:
    """From the Authorization header only."""
    return await authenticate(request, bearer(request))


async def get_map_principal(
    request: Request,
    token: Annotated[str | None, Query(description="API key, for map clients and links that cannot send headers.")] = None,
) -> Principal:
    """From the Authorization header or ``?token=`` (tiles, TileJSON, WMTS, viewer, product downloads)."""
    key, from_query = map_credentials(bearer(request), token)
    return await authenticate(request, key, from_query=from_query)


async def get_analyst(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.can_write:
        raise Forbidden("this key may read but not create or delete (role viewer)")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
MapPrincipalDep = Annotated[Principal, Depends(get_map_principal)]
AnalystDep = Annotated[Principal, Depends(get_analyst)]
