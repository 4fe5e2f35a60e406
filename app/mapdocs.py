"""Map documents of an analysis's tiles: TileJSON 3.0.0 for web maps and OGC WMTS 1.0.0 capabilities for
QGIS/ArcGIS (web protocol: URLs, and an access token only where the caller sent its key in the URL).

Bounds are WGS84 lon/lat (EPSG:4326) from :class:`imagery.tiles.TileInfo`; tile matrices are the
*WebMercatorQuad* set (EPSG:3857) of :data:`imagery.tiles.TMS`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, quote, urlsplit

from imagery.contract import LAYER_TITLES, LAYERS
from imagery.tiles import TMS, TileInfo


def _with_query(url: str, **params) -> str:
    """``url`` with ``params`` appended to its query, skipping None and keys already present.

    The URL is otherwise kept verbatim, so template placeholders such as ``{z}`` survive.
    """
    present = parse_qs(urlsplit(url).query, keep_blank_values=True)
    extra = [f"{k}={quote(str(v), safe='')}" for k, v in params.items() if v is not None and k not in present]
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(extra)


def tilejson(info: TileInfo, tiles_url_template: str, *, layer: str, attribution: str,
             token: str | None = None, name: str | None = None) -> dict:
    """TileJSON 3.0.0 of one layer.

    Parameters
    ----------
    info : TileInfo
        From :meth:`TileRenderer.info`.
    tiles_url_template : str
        Tile URL with ``{z}``, ``{x}`` and ``{y}`` placeholders, e.g.
        ``https://host/v1/analyses/42/tiles/{z}/{x}/{y}.png``. ``layer=`` and
        ``token=`` are added to its query unless already there.
    layer : str
        One of :data:`LAYERS`.
    attribution : str
        Shown by the map client (HTML allowed by the spec).
    token : str, optional
        Access token to embed in the tile URL.
    name : str, optional
        Default ``"basewatch <layer>"``.

    Returns
    -------
    dict
        ``tilejson``, ``name``, ``tiles``, ``scheme`` (xyz), ``bounds``
        (west, south, east, north in degrees), ``center`` (lon, lat, zoom),
        ``minzoom``, ``maxzoom``, ``attribution``.
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    return {
        "tilejson": "3.0.0",
        "name": name or f"basewatch {layer}",
        "tiles": [_with_query(tiles_url_template, layer=layer, token=token)],
        "scheme": "xyz",
        "bounds": list(info.bounds),
        "center": list(info.center),
        "minzoom": info.minzoom,
        "maxzoom": info.maxzoom,
        "attribution": attribution,
    }


_NS = {
    "": "http://www.opengis.net/wmts/1.0",
    "ows": "http://www.opengis.net/ows/1.1",
    "xlink": "http://www.w3.org/1999/xlink",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}


def _q(prefix: str, tag: str) -> str:
    # Names are written verbatim (prefix:tag) with the xmlns declarations on the root element: the WMTS
    # namespace must be the default one (no prefix), which QGIS's and GDAL's parsers expect.
    return f"{prefix}:{tag}" if prefix else tag


def _sub(parent, prefix: str, tag: str, text=None, **attrib):
    el = ET.SubElement(parent, _q(prefix, tag), {k.replace("__", ":"): str(v) for k, v in attrib.items()})
    if text is not None:
        el.text = str(text)
    return el


def _service_metadata(root: ET.Element, title: str, attribution: str | None, caps_href: str | None,
                      tile_href: str) -> None:
    """ServiceIdentification, ServiceProvider and (with a capabilities URL) OperationsMetadata, RESTful."""
    ident = _sub(root, "ows", "ServiceIdentification")
    _sub(ident, "ows", "Title", title)
    _sub(ident, "ows", "ServiceType", "OGC WMTS")
    _sub(ident, "ows", "ServiceTypeVersion", "1.0.0")
    if attribution:
        _sub(_sub(root, "ows", "ServiceProvider"), "ows", "ProviderName", attribution)
    if caps_href:
        ops = _sub(root, "ows", "OperationsMetadata")
        for op, href in (("GetCapabilities", caps_href), ("GetTile", tile_href)):
            get = _sub(_sub(_sub(_sub(ops, "ows", "Operation", name=op), "ows", "DCP"), "ows", "HTTP"), "ows", "Get",
                       xlink__href=href)
            allowed = _sub(_sub(get, "ows", "Constraint", name="GetEncoding"), "ows", "AllowedValues")
            _sub(allowed, "ows", "Value", "RESTful")


def _matrix_limits(info: TileInfo) -> list[tuple[int, int, int, int, int]]:
    """(zoom, min row, max row, min column, max column) of the tiles covering the product, minzoom to maxzoom."""
    west, south, east, north = info.bounds
    limits = []
    for z in range(info.minzoom, info.maxzoom + 1):
        ul = TMS.tile(west, north, z)
        lr = TMS.tile(east, south, z)
        n = (1 << z) - 1
        limits.append((z, max(min(ul.y, lr.y), 0), min(max(ul.y, lr.y), n), max(min(ul.x, lr.x), 0), min(max(ul.x, lr.x), n)))
    return limits


def _layer_element(contents: ET.Element, layer: str, bounds: tuple, limits: list, template: str) -> None:
    """One WMTS Layer: title, abstract, WGS84 bounds (lon/lat), style, format, matrix-set limits, tile URL template."""
    west, south, east, north = bounds
    el = _sub(contents, "", "Layer")
    t, abstract = LAYER_TITLES[layer]
    _sub(el, "ows", "Title", t)
    _sub(el, "ows", "Abstract", abstract)
    bbox = _sub(el, "ows", "WGS84BoundingBox", crs="urn:ogc:def:crs:OGC:2:84")
    _sub(bbox, "ows", "LowerCorner", f"{west} {south}")
    _sub(bbox, "ows", "UpperCorner", f"{east} {north}")
    _sub(el, "ows", "Identifier", layer)
    style = _sub(el, "", "Style", isDefault="true")
    _sub(style, "ows", "Identifier", "default")
    _sub(el, "", "Format", "image/png")
    link = _sub(el, "", "TileMatrixSetLink")
    _sub(link, "", "TileMatrixSet", TMS.id)
    lims = _sub(link, "", "TileMatrixSetLimits")
    for z, rmin, rmax, cmin, cmax in limits:
        lim = _sub(lims, "", "TileMatrixLimits")
        _sub(lim, "", "TileMatrix", TMS.matrix(z).id)
        _sub(lim, "", "MinTileRow", rmin)
        _sub(lim, "", "MaxTileRow", rmax)
        _sub(lim, "", "MinTileCol", cmin)
        _sub(lim, "", "MaxTileCol", cmax)
    _sub(el, "", "ResourceURL", format="image/png", resourceType="tile", template=template)


def _tile_matrix_set(contents: ET.Element, maxzoom: int) -> None:
    """The WebMercatorQuad TileMatrixSet (EPSG:3857, GoogleMapsCompatible), matrices 0 to ``maxzoom``."""
    tms_el = _sub(contents, "", "TileMatrixSet")
    _sub(tms_el, "ows", "Identifier", TMS.id)
    _sub(tms_el, "ows", "SupportedCRS", "urn:ogc:def:crs:EPSG::3857")
    _sub(tms_el, "", "WellKnownScaleSet", "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
    for z in range(0, maxzoom + 1):
        m = TMS.matrix(z)
        tm = _sub(tms_el, "", "TileMatrix")
        _sub(tm, "ows", "Identifier", m.id)
        _sub(tm, "", "ScaleDenominator", repr(float(m.scaleDenominator)))
        _sub(tm, "", "TopLeftCorner", f"{m.pointOfOrigin[0]!r} {m.pointOfOrigin[1]!r}")
        _sub(tm, "", "TileWidth", m.tileWidth)
        _sub(tm, "", "TileHeight", m.tileHeight)
        _sub(tm, "", "MatrixWidth", m.matrixWidth)
        _sub(tm, "", "MatrixHeight", m.matrixHeight)


def wmts_capabilities(info: TileInfo, base_url: str, *, layers: tuple[str, ...] = LAYERS, token: str | None = None,
                      title: str = "basewatch", attribution: str | None = None) -> str:
    """OGC WMTS 1.0.0 GetCapabilities document (RESTful) of a product's layers.

    Parameters
    ----------
    info : TileInfo
        From :meth:`TileRenderer.info`.
    base_url : str
        URL of the analysis; tiles are ``{base_url}/tiles/{TileMatrix}/{TileCol}/{TileRow}.png?layer=<layer>``.
        A template with ``{z}/{x}/{y}`` placeholders is accepted too.
    layers : tuple of str
        Layers to list (default all four).
    token : str, optional
        Added as ``&token=`` to every tile URL.
    title : str
        Service title.
    attribution : str, optional
        Service provider name.

    Returns
    -------
    str
        UTF-8 XML with one ``Layer`` per basewatch layer (image/png,
        WGS84BoundingBox, TileMatrixSetLimits for minzoom-maxzoom) and the
        ``WebMercatorQuad`` TileMatrixSet (EPSG:3857, GoogleMapsCompatible,
        matrices 0 to maxzoom from morecantile's definition).
    """
    if "{z}" in base_url:
        template = base_url.replace("{z}", "{TileMatrix}").replace("{x}", "{TileCol}").replace("{y}", "{TileRow}")
    else:
        template = base_url.rstrip("/") + "/tiles/{TileMatrix}/{TileCol}/{TileRow}.png"
    caps_url = base_url.rstrip("/") + "/WMTSCapabilities.xml" if "{" not in base_url else None

    root = ET.Element("Capabilities", {
        **{("xmlns:" + k if k else "xmlns"): v for k, v in _NS.items()},
        "version": "1.0.0",
        "xsi:schemaLocation": "http://www.opengis.net/wmts/1.0 http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd",
    })
    _service_metadata(root, title, attribution, caps_url and _with_query(caps_url, token=token),
                      base_url.rstrip("/") + "/tiles/")
    contents = _sub(root, "", "Contents")
    limits = _matrix_limits(info)
    for layer in layers:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}")
        _layer_element(contents, layer, info.bounds, limits, _with_query(template, layer=layer, token=token))
    _tile_matrix_set(contents, info.maxzoom)
    if caps_url:
        _sub(root, "", "ServiceMetadataURL", xlink__href=_with_query(caps_url, token=token))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
