"""Outbound HTTP (alert receivers, STAC items and assets): allow-listed hosts only, bounded in time and size.

A URL is fetched only when its host (and port) is on the allow-list given by a setting, compared
exactly after normalisation: ``host`` allows ports 80 and 443, ``host:port`` that port. No user info,
http/https only, no proxy from the environment, no decompression (``Accept-Encoding: identity``), and a
redirect is followed only to an allowed host again, at most :data:`MAX_REDIRECTS` times. Names are
compared, not addresses, so a name that is not on the list is refused whatever it resolves to, and a
number standing for an address (``2130706433``) is not the address either.
"""

from __future__ import annotations

import time
from typing import Callable
from urllib.parse import urlsplit

import httpx

from app import __version__
from app.errors import HostNotAllowed, UpstreamError

MAX_REDIRECTS = 3
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = f"basewatch/{__version__}"
CHUNK = 64 * 1024


def client(timeout_s: float) -> httpx.Client:
    """An HTTP client for allow-listed requests (redirects are followed by :func:`fetch`, checked, or not at all)."""
    return httpx.Client(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s),
                        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})


def host_port(host: str, port: int | None, scheme: str) -> tuple[str, int]:
    return host.lower().rstrip("."), port or DEFAULT_PORTS.get(scheme, 0)


def is_allowed(url: httpx.URL, hosts: list[str]) -> bool:
    host, port = host_port(url.host, url.port, url.scheme)
    for entry in hosts:
        try:
            parts = urlsplit("//" + entry.strip())
            entry_host, entry_port = httpx.URL(f"http://{parts.netloc}").host, parts.port
        except (ValueError, httpx.InvalidURL):
            continue  # a malformed entry allows nothing
        if entry_host.lower().rstrip(".") == host and (port == entry_port if entry_port else port in (80, 443)):
            return True
    return False


def allowed_url(url: str, hosts: list[str], *, setting: str, what: str) -> httpx.URL:
    """The parsed URL if it may be fetched; HostNotAllowed (422) otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise HostNotAllowed(f"{what}: not a valid URL") from None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
        raise HostNotAllowed(f"{what}: only http and https URLs are accepted")
    if parsed.userinfo:
        raise HostNotAllowed(f"{what}: URLs with a user name or password are not accepted")
    if not is_allowed(parsed, hosts):
        host, port = host_port(parsed.host, parsed.port, parsed.scheme)
        raise HostNotAllowed(f"{what}: host {host}:{port} is not allowed ({setting})")
    return parsed


def fetch(http: httpx.Client, url: str, sink: Callable[[bytes], None], *, hosts: list[str], setting: str, what: str,
          max_bytes: int, deadline: float) -> httpx.URL:
    """GET ``url`` into ``sink``, following redirects to allowed hosts only; at most ``max_bytes``, finished
    before ``deadline`` (time.monotonic()). Returns the URL finally read. Raises HostNotAllowed or UpstreamError."""
    current = allowed_url(url, hosts, setting=setting, what=what)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            with http.stream("GET", current) as r:
                if r.is_redirect:
                    target = current.join(r.headers.get("location", ""))
                    current = allowed_url(str(target), hosts, setting=setting, what=f"{what} (redirected)")
                    continue
                if r.status_code != 200:
                    raise UpstreamError(f"{what}: {current.host} answered HTTP {r.status_code}")
                if r.headers.get("content-encoding", "identity").lower() != "identity":
                    raise UpstreamError(f"{what}: {current.host} sent a compressed body; basewatch accepts identity only")
                declared = r.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise UpstreamError(f"{what}: {int(declared):,} bytes is more than the limit of {max_bytes:,}")
                size = 0
                for chunk in r.iter_raw(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise UpstreamError(f"{what}: more than the limit of {max_bytes:,} bytes")
                    if time.monotonic() > deadline:
                        raise UpstreamError(f"{what}: {current.host} took too long")
                    sink(chunk)
                return current
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{what}: {current.host} could not be read ({type(exc).__name__})") from None
    raise UpstreamError(f"{what}: more than {MAX_REDIRECTS} redirects")


def post(http: httpx.Client, url: str, body: bytes, headers: dict[str, str], *, hosts: list[str], setting: str,
         what: str) -> int:
    """POST ``body`` to an allowed URL without following redirects; returns the status (the answer's body is
    not read beyond its first chunk). Raises HostNotAllowed, or httpx.HTTPError when the receiver is not reached."""
    target = allowed_url(url, hosts, setting=setting, what=what)
    with http.stream("POST", target, content=body, headers=headers) as r:
        next(r.iter_raw(CHUNK), None)
        return r.status_code
