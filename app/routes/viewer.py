"""The analysis viewer page (before/after swipe, changes overlay, object list) and its static assets.

The page is ``app/static/viewer/index.html`` filled with the analysis id; everything it loads
(Leaflet, its own JS/CSS) comes from ``/v1/viewer-assets/`` on the same server, so it works
offline. The page reads the analysis, TileJSON and GeoJSON through the public API.
"""

from __future__ import annotations

import hashlib
import html
import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from app import store
from app.deps import MapPrincipalDep, SessionDep, SettingsDep
from app.errors import NotFound
from app.routes.tiles import lookup
from imagery import contract

router = APIRouter(prefix="/v1", tags=["viewer"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
TEMPLATE = STATIC_DIR / "viewer" / "index.html"
ASSET_MAX_AGE_S = 31_536_000


@lru_cache(maxsize=1)
def asset_version() -> str:
    """A short hash of the viewer's own files, appended to asset URLs so long caching is safe across releases."""
    digest = hashlib.sha1()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=1)
def template() -> str:
    """The page with the product contract (change types, colours, classes) filled in as JSON."""
    contract_json = json.dumps(contract.as_json(), separators=(",", ":")).replace("<", "\\u003c")
    return TEMPLATE.read_text(encoding="utf-8").replace("{{contract_json}}", contract_json)


def content_security_policy(public_url: str | None) -> str:
    """Only this server (and the configured public URL, which TileJSON tile URLs use) may be contacted."""
    extra = ""
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme and parts.netloc:
            extra = f" {parts.scheme}://{parts.netloc}"
    return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{extra}; "
            f"connect-src 'self'{extra}; base-uri 'none'; form-action 'none'; frame-ancestors 'self'")


@router.get("/analyses/{analysis_id}/viewer", responses={200: {"content": {"text/html": {}}}})
def viewer(request: Request, analysis_id: str, principal: MapPrincipalDep, session: SessionDep,
           settings: SettingsDep) -> HTMLResponse:
    """The interactive viewer of an analysis. Pass ``?token=KEY`` when opening it in a browser;
    an analysis that is still running shows its progress and loads when it has finished."""
    try:
        lookup(request, principal, analysis_id)
    except NotFound:
        store.get_analysis(session, principal.team, analysis_id)  # queued/running/failed: the page says so; else 404
    page = (template().replace("{{analysis_id}}", html.escape(analysis_id, quote=True))
            .replace("{{asset_version}}", asset_version()))
    return HTMLResponse(page, headers={
        "Cache-Control": "no-cache",
        "Content-Security-Policy": content_security_policy(settings.public_url),
        "Referrer-Policy": "no-referrer",  # the page URL may carry ?token=
        "X-Content-Type-Options": "nosniff",
    })


@router.api_route("/viewer-assets/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
def viewer_asset(path: str) -> FileResponse:
    """Static files of the viewer (Leaflet, JS, CSS, icons); immutable, versioned by ``?v=`` in the page."""
    target = (STATIC_DIR / path).resolve()
    if not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise NotFound()
    return FileResponse(target, headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}, immutable",
                                         "X-Content-Type-Options": "nosniff"})
