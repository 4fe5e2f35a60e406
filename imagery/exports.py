"""Exports of the change objects for the tools analysts share them with.

``changes.kml`` (Google Earth), ``changes.gpkg`` (QGIS, ArcGIS) and ``changes.csv``
(spreadsheets) are written by GDAL's own drivers (through pyogrio) from the two
files every product folder has, ``changes.geojson`` and ``summary.json``, so
``basewatch export`` can write them again from any product folder. Each carries
its provenance (source files and sensors, dates, method, software version): the
KML document's description, the GeoPackage's metadata and layer description, and
columns of every CSV row.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from shapely.geometry import MultiPolygon, shape

from imagery.contract import CHANGE_COLOURS

#: Export format -> (file in the product folder, GDAL driver).
EXPORTS = {"kml": ("changes.kml", "LIBKML"), "gpkg": ("changes.gpkg", "GPKG"), "csv": ("changes.csv", "CSV")}

#: Attributes of every exported object, in column order, with their types.
OBJECT_FIELDS = {"id": "int64", "change": "object", "class": "object", "area_m2": "float64", "length_m": "float64",
                 "width_m": "float64", "orientation_deg": "float64", "score": "float64", "vehicles": "int64",
                 "centre_lon": "float64", "centre_lat": "float64", "mgrs": "object", "before_date": "object",
                 "after_date": "object"}
LAYER = "changes"


def provenance(summary: dict) -> dict[str, str]:
    """Where the objects come from: sources, dates, method and software, as flat text fields."""
    src = summary["sources"]
    out = {"aoi": (summary.get("aoi") or {}).get("name") or ""}
    for side in ("before", "after"):
        out[f"{side}_file"] = src[side].get("file") or ""
        out[f"{side}_sensor"] = src[side].get("sensor") or ""
        out[f"{side}_date"] = summary[f"{side}_date"] or ""
    out["method"] = summary["method"]
    out["threshold_rule"] = summary["threshold"]["rule"]
    out["software"] = f"{summary['software']['name']} {summary['software']['version']}"
    out["created"] = summary["created"]
    return out


def provenance_text(summary: dict) -> str:
    p = provenance(summary)

    def source(side: str) -> str:
        sensor = f", {p[f'{side}_sensor']}" if p[f"{side}_sensor"] else ""
        return f"{p[f'{side}_file']} ({p[f'{side}_date'] or 'date unknown'}{sensor})"

    return (f"Change objects{' of ' + p['aoi'] if p['aoi'] else ''}, before {source('before')}, after {source('after')}. "
            f"Method {p['method']}: {p['threshold_rule']}. {p['software']}, {p['created']}.")


def kml_style(change: str) -> str:
    """OGR feature style (outline and a translucent fill in the change colour); GDAL's KML drivers write it as <Style>."""
    rgb = CHANGE_COLOURS.get(change, "#ffffff").lstrip("#").upper()
    return f"PEN(c:#{rgb}FF,w:2px);BRUSH(fc:#{rgb}40)"


def kml_description(props: dict) -> str:
    rows = [("change", props["change"]), ("class", props["class"]), ("area", f"{props['area_m2']:,.1f} m²"),
            ("size", f"{props['length_m']:.1f} × {props['width_m']:.1f} m"), ("vehicles (est.)", props["vehicles"]),
            ("dates", f"{props['before_date'] or '?'} → {props['after_date'] or '?'}"),
            ("centre", f"{props['centre_lat']:.6f}, {props['centre_lon']:.6f}"), ("MGRS", props["mgrs"])]
    return "<table>" + "".join(f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def columns(features: list[dict]) -> list[np.ndarray]:
    """One typed array per attribute of OBJECT_FIELDS (numbers stay numbers in every format)."""
    return [np.array([f["properties"].get(n) for f in features], dtype=t) for n, t in OBJECT_FIELDS.items()]


def text_column(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


def multipolygon_wkb(features: list[dict]) -> np.ndarray:
    """Geometries as valid MultiPolygons (a pixel outline may touch itself at a corner, which KML refuses)."""
    geoms = shapely.make_valid([shape(f["geometry"]) for f in features], method="structure", keep_collapsed=False)
    multi = [g if isinstance(g, MultiPolygon) else MultiPolygon([g]) for g in geoms]
    return np.array(shapely.to_wkb(multi), dtype=object) if multi else np.array([], dtype=object)


def write_exports(fc: dict, summary: dict, outdir: str | Path, formats=tuple(EXPORTS)) -> list[Path]:
    """Write the chosen exports of a FeatureCollection (changes.geojson) into ``outdir``; returns their paths."""
    outdir = Path(outdir)
    features = fc["features"]
    prov = provenance(summary)
    about = provenance_text(summary)
    fields = list(OBJECT_FIELDS)
    written = []
    for fmt in formats:
        name, driver = EXPORTS[fmt]
        path = outdir / name
        path.unlink(missing_ok=True)
        common = {"driver": driver, "layer": LAYER, "crs": "EPSG:4326", "geometry_type": "MultiPolygon"}
        if fmt == "kml":
            extra = {
                "name": text_column(f"#{f['properties']['id']} {f['properties']['class']} {f['properties']['change']}" for f in features),
                "description": text_column(kml_description(f["properties"]) for f in features),
                "OGR_STYLE": text_column(kml_style(f["properties"]["change"]) for f in features),
            }
            pyogrio.raw.write(path, multipolygon_wkb(features), columns(features) + list(extra.values()), fields + list(extra),
                              **common, dataset_options={"NAME": f"basewatch: {prov['aoi'] or 'changes'}", "DESCRIPTION": about},
                              layer_options={"NAME": "change objects", "DESCRIPTION": about})
        elif fmt == "gpkg":
            pyogrio.raw.write(path, multipolygon_wkb(features), columns(features), fields, **common,
                              layer_options={"DESCRIPTION": about, "IDENTIFIER": f"basewatch {prov['aoi']}".strip()},
                              dataset_metadata={"PROVENANCE": about, **{k.upper(): v for k, v in prov.items()}},
                              layer_metadata={k.upper(): v for k, v in prov.items()})
        else:  # csv: no geometry column (a polygon as WKT is no use in a spreadsheet); the centre and MGRS locate it
            extra = {k: text_column([v] * len(features)) for k, v in prov.items() if k not in OBJECT_FIELDS}
            pyogrio.raw.write(path, None, columns(features) + list(extra.values()), fields + list(extra),
                              driver="CSV", layer=LAYER, geometry_type=None)
        written.append(path)
    return written
