"""Writing and reading the product folder: the only module that writes analysis outputs.

Everything is written into a temporary sibling folder and renamed into place,
so a reader sees either no product folder or a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.io import MemoryFile
from rasterio.warp import transform_geom
from rasterio.shutil import copy as rio_copy
from shapely.geometry import mapping
from shapely.geometry.polygon import orient

from imagery.errors import ProductError
from imagery.grid import Grid
from imagery.objects import ChangeObject

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

#: Files of a complete product folder, with the media type each is served as.
PRODUCT_MEDIA_TYPES = {
    "changes.geojson": "application/geo+json",
    "changes.kml": "application/vnd.google-earth.kml+xml",
    "changes.gpkg": "application/geopackage+sqlite3",
    "changes.csv": "text/csv; charset=utf-8",
    "change_mask.tif": COG_MEDIA_TYPE,
    "change_score.tif": COG_MEDIA_TYPE,
    "before.tif": COG_MEDIA_TYPE,
    "after.tif": COG_MEDIA_TYPE,
    "summary.json": "application/json",
    "report.png": "image/png",
    "report.pdf": "application/pdf",
}
PRODUCT_FILES = tuple(PRODUCT_MEDIA_TYPES)

#: Outline and label colour of each change type (report, exports; the viewer's CSS uses the same).
CHANGE_COLOURS = {"appeared": "#ff2a2a", "disappeared": "#19d3ff", "changed": "#ffd21a"}

SCORE_NODATA = -1.0
#: Lossless compression of product COGs (ZSTD needs GDAL >= 2.3, which every current QGIS/GDAL has).
COMPRESSION, COMPRESSION_LEVEL = "ZSTD", 1
MASK_NOT_ANALYSED = 255


def write_cog(
    path: Path,
    data: np.ndarray,
    grid: Grid,
    *,
    nodata: float | None = None,
    mask: np.ndarray | None = None,
    overview_resampling: str = "nearest",
    descriptions: tuple[str, ...] | None = None,
    tags: dict | None = None,
) -> None:
    """Write a (bands, rows, cols) or (rows, cols) array as a Cloud Optimized GeoTIFF (GDAL's COG driver).

    Parameters
    ----------
    mask : ndarray (rows, cols) bool, optional
        Written as an internal (lossless) mask: True = data.
    overview_resampling : str
        ``nearest`` for classes and masks, ``average`` for imagery and scores.
    """
    arr = data[None] if data.ndim == 2 else data
    count, rows, cols = arr.shape
    src_profile = {
        "driver": "GTiff", "dtype": str(arr.dtype), "count": count, "width": cols, "height": rows,
        "crs": grid.crs, "transform": grid.transform, "nodata": nodata,
    }
    predictor = "FLOATING_POINT" if arr.dtype.kind == "f" else "STANDARD"
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK="YES"), MemoryFile() as memfile:
        with memfile.open(**src_profile) as mem:
            mem.write(arr)
            if mask is not None:
                mem.write_mask(mask.astype(np.uint8) * 255)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    mem.set_band_description(i, d)
            if tags:
                mem.update_tags(**{k: str(v) for k, v in tags.items()})
        with memfile.open() as src:
            rio_copy(src, str(path), driver="COG", compress=COMPRESSION, level=COMPRESSION_LEVEL, predictor=predictor,
                     blocksize=256, overview_resampling=overview_resampling.upper(), resampling=overview_resampling.upper(),
                     num_threads="ALL_CPUS", bigtiff="IF_SAFER")


def geometry_lonlat(geometry, grid: Grid) -> dict:
    """A grid-CRS shapely geometry as an RFC 7946 GeoJSON geometry (lon/lat, CCW exteriors, 7 decimals)."""
    if geometry.geom_type == "Polygon":
        geometry = orient(geometry, 1.0)
    elif geometry.geom_type == "MultiPolygon":
        from shapely.geometry import MultiPolygon

        geometry = MultiPolygon([orient(p, 1.0) for p in geometry.geoms])
    return transform_geom(grid.crs, "EPSG:4326", mapping(geometry), precision=7)


def mgrs_reference(lon: float, lat: float, digits: int = 5) -> str:
    """The MGRS reference of a point, spaced as analysts write it: ``34T GT 00596 34130`` (1 m with 5 digits)."""
    import mgrs

    ref = mgrs.MGRS().toMGRS(lat, lon, MGRSPrecision=digits)
    head, east, north = ref[: -2 * digits], ref[-2 * digits: -digits], ref[-digits:]
    return f"{head[:-2]} {head[-2:]} {east} {north}"


def centres_lonlat(geometries, crs) -> list[tuple[float, float]]:
    """Centroids of geometries in ``crs`` as (lon, lat), 7 decimals (~1 cm)."""
    from pyproj import Transformer

    if not len(geometries):
        return []
    xy = shapely.get_coordinates(shapely.centroid(list(geometries)))
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xy[:, 0], xy[:, 1])
    return [(round(float(x), 7), round(float(y), 7)) for x, y in zip(lon, lat)]


def aoi_summary(area_lonlat, aoi: dict | None) -> dict:
    """``summary["aoi"]``: what the caller knows of the AOI (id, name, area) plus its centre and MGRS reference."""
    [(lon, lat)] = centres_lonlat([area_lonlat], "EPSG:4326")
    return {"name": None, **(aoi or {}), "centre_lonlat": [lon, lat], "mgrs": mgrs_reference(lon, lat)}


def changes_feature_collection(objects: list[ChangeObject], grid: Grid, before_date: str | None, after_date: str | None) -> dict:
    """The change objects as a GeoJSON FeatureCollection in EPSG:4326 (changes.geojson)."""
    feats = []
    for o, (lon, lat) in zip(objects, centres_lonlat([o.geometry for o in objects], grid.crs)):
        feats.append({
            "type": "Feature",
            "id": o.id,
            "geometry": geometry_lonlat(o.geometry, grid),
            "properties": {
                "id": o.id,
                "change": o.change,
                "class": o.cls,
                "area_m2": round(o.area_m2, 1),
                "length_m": round(o.length_m, 2),
                "width_m": round(o.width_m, 2),
                "orientation_deg": round(o.orientation_deg, 1),
                "score": round(o.score, 4),
                "brightness_before": round(o.brightness_before, 5),
                "brightness_after": round(o.brightness_after, 5),
                "vehicles": o.vehicles,
                "centre_lon": lon,
                "centre_lat": lat,
                "mgrs": mgrs_reference(lon, lat),
                "before_date": before_date,
                "after_date": after_date,
            },
        })
    return {"type": "FeatureCollection", "features": feats}


def write_products(analysis, outdir: str | os.PathLike, *, overwrite: bool = False, aoi: dict | None = None) -> Path:
    """Write the product folder of an :class:`imagery.pipeline.Analysis` atomically.

    Parameters
    ----------
    analysis : Analysis
    outdir : path-like
        The folder to create. It must not exist unless ``overwrite``.
    aoi : dict, optional
        What is known of the AOI (``name``, ``id``, ``area_m2``); the summary adds its centre and MGRS reference.

    Returns
    -------
    Path
        ``outdir``, complete.
    """
    from imagery.exports import write_exports
    from imagery.report import render_report

    outdir = Path(outdir)
    if outdir.exists() and not overwrite:
        raise ProductError(f"{outdir} already exists; choose another folder or allow overwriting")
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = outdir.parent / f".{outdir.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        summary = analysis.summary()
        summary["aoi"] = aoi_summary(analysis.area_lonlat, aoi)
        grid = analysis.grid
        before_date, after_date = summary["before_date"], summary["after_date"]
        fc = changes_feature_collection(analysis.objects, grid, before_date, after_date)
        (tmp / "changes.geojson").write_text(json.dumps(fc))
        write_exports(fc, summary, tmp)
        write_cog(tmp / "change_mask.tif", analysis.mask.astype(np.uint8), grid, nodata=MASK_NOT_ANALYSED,
                  overview_resampling="nearest", descriptions=("change",),
                  tags={"VALUES": "0 no change, 1 appeared, 2 disappeared, 3 changed, 255 not analysed"})
        score = np.where(analysis.analysed, analysis.score, SCORE_NODATA).astype(np.float32)
        write_cog(tmp / "change_score.tif", score, grid, nodata=SCORE_NODATA, overview_resampling="average",
                  descriptions=("change_score",))
        del score
        for name, raster in (("before", analysis.before), ("after", analysis.after)):
            write_cog(tmp / f"{name}.tif", raster.data.astype(np.float32), grid, mask=raster.valid,
                      overview_resampling="average", descriptions=raster.bands,
                      tags={"ACQUISITION_DATE": summary[f"{name}_date"] or "", "BAND_NAMES": ",".join(raster.bands)})
        render_report(analysis, summary, tmp)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        if outdir.exists():
            old = outdir.parent / f".{outdir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(outdir, old)
            os.rename(tmp, outdir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return outdir


def read_changes(outdir: str | os.PathLike) -> dict:
    return json.loads((Path(outdir) / "changes.geojson").read_text())


def read_summary(outdir: str | os.PathLike) -> dict:
    return json.loads((Path(outdir) / "summary.json").read_text())


def is_complete(outdir: str | os.PathLike) -> bool:
    p = Path(outdir)
    return p.is_dir() and all((p / f).is_file() for f in PRODUCT_FILES)
