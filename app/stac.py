"""Scenes registered from STAC items: the item is fetched, its GeoTIFF asset downloaded, and the file
goes through the same validation, limits and conversion as an upload (:func:`app.ingest.ingest`).

Only hosts of ``BASEWATCH_STAC_HOSTS`` are contacted (:mod:`app.outbound`), for the item and its asset
alike; the asset is streamed into a private folder of ``uploads/`` with the upload size limit, and
nothing else is read.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import httpx

from app.errors import InvalidRequest
from app.ingest import Upload, check_disk, ingest, safe_filename
from app.models import Scene
from app.outbound import client, fetch
from app.schemas import StacRegister
from app.settings import Settings
from imagery.raster import BAND_ROLES

SETTING = "BASEWATCH_STAC_HOSTS"
#: Asset keys tried first, in order (the STAC best-practice names), then any GeoTIFF asset with a data role.
ASSET_KEYS = ("analytic", "visual", "image", "data")
GEOTIFF_TYPES = ("image/tiff", "image/geotiff", "image/vnd.stac.geotiff")


def is_geotiff(asset, *, typed: bool) -> bool:
    """An asset with an href whose media type is GeoTIFF (or, unless ``typed``, not given)."""
    if not isinstance(asset, dict) or not isinstance(asset.get("href"), str):
        return False
    kind = str(asset.get("type") or "").lower()
    return kind.startswith(GEOTIFF_TYPES) if kind or typed else True


def pick_asset(item: dict) -> dict:
    """The item's GeoTIFF asset; InvalidRequest if it has none."""
    assets = item.get("assets")
    if not isinstance(assets, dict):
        raise InvalidRequest("the STAC item has no assets")
    for key in ASSET_KEYS:
        if is_geotiff(assets.get(key), typed=False):
            return assets[key]
    for asset in assets.values():
        if is_geotiff(asset, typed=True) and {"data", "visual"} & set(asset.get("roles") or []):
            return asset
    raise InvalidRequest(f"the STAC item has no GeoTIFF asset (looked for {', '.join(ASSET_KEYS)} or a GeoTIFF with role data)")


def asset_bands(item: dict, asset: dict) -> list[str] | None:
    """Band roles from the asset's (or item's) ``bands`` (STAC 1.1) or ``eo:bands`` (eo extension); ``-`` for
    a band basewatch has no role for; None when the item does not describe the bands."""
    for bands in (asset.get("bands"), asset.get("eo:bands"), (item.get("properties") or {}).get("eo:bands")):
        if isinstance(bands, list) and bands and all(isinstance(b, dict) for b in bands):
            names = [str(b.get("eo:common_name") or b.get("common_name") or b.get("name") or "").lower() for b in bands]
            return [n if n in BAND_ROLES else "-" for n in names]
    return None


def describe(item, body: StacRegister) -> tuple[dict[str, str], dict]:
    """The upload form fields the item stands for (what the request gives overrides the item) and its asset."""
    props = item.get("properties") if isinstance(item, dict) and item.get("type") == "Feature" else None
    if not isinstance(props, dict):
        raise InvalidRequest("the document is not a STAC item (a GeoJSON Feature with properties)")
    acquired = body.acquired_at.isoformat() if body.acquired_at else (props.get("datetime") or props.get("start_datetime"))
    if not isinstance(acquired, str):
        raise InvalidRequest("the STAC item has no datetime; give acquired_at")
    fields = {"acquired_at": acquired[:10]}
    sensor = body.sensor or props.get("platform") or props.get("constellation")
    if isinstance(sensor, str):
        fields["sensor"] = sensor[:200]
    asset = pick_asset(item)
    bands = body.bands or asset_bands(item, asset)
    if bands:
        fields["bands"] = ",".join(bands)
    return fields, asset


def register(body: StacRegister, settings: Settings, team: str, *, convert) -> Scene:
    """Fetch the item and its asset, validate and convert the asset like an upload; the (unsaved) Scene row."""
    deadline = time.monotonic() + settings.stac_timeout_s
    hosts, common = settings.stac_hosts, {"setting": SETTING, "deadline": deadline}
    with client(min(60.0, settings.stac_timeout_s)) as http:
        raw = bytearray()
        item_url = fetch(http, body.stac_item, raw.extend, hosts=hosts, what="STAC item",
                         max_bytes=settings.max_stac_item_kb * 1024, **common)
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise InvalidRequest("the STAC item is not JSON") from None
        fields, asset = describe(item, body)
        try:
            href = item_url.join(asset["href"])
        except httpx.InvalidURL:
            raise InvalidRequest("the STAC asset's href is not a valid URL") from None
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        check_disk(settings, 0, "download this asset")
        folder = settings.uploads_dir / uuid.uuid4().hex
        folder.mkdir()
        name = safe_filename(href.path.rsplit("/", 1)[-1])
        upload = Upload(fields=fields, path=folder / name, filename=name)
        digest = hashlib.sha256()
        try:
            with open(upload.path, "wb") as fh:
                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    fh.write(chunk)

                fetch(http, str(href), sink, hosts=hosts, what="STAC asset", max_bytes=settings.max_upload_mb * 1024 * 1024, **common)
        except BaseException:
            upload.discard()
            raise
    upload.size, upload.sha256 = upload.path.stat().st_size, digest.hexdigest()
    scene = ingest(upload, settings, team, convert=convert)
    scene.source_url = str(item_url)
    return scene
