"""Writing and reading the product folder: the only module that writes analysis outputs.

Everything is written into a temporary sibling folder and renamed into place,
so a reader sees either no product folder or a complete one.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import math
import os
import shutil
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from imagery.contract import MASK_NOT_ANALYSED, MASK_VALUES_TAG
from imagery.errors import ProductError
from imagery.grid import Grid
from imagery.objects import ChangeObject, counts_by

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

SCORE_NODATA = -1.0
#: Lossless compression of product COGs (ZSTD needs GDAL >= 2.3, which every current QGIS/GDAL has).
COMPRESSION, COMPRESSION_LEVEL = "ZSTD", 1


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
            copy_cog(src, path, overview_resampling)


#: Tile side of the product COGs, pixels.
COG_BLOCK_PX = 256


def copy_cog(src, path: Path, overview_resampling: str) -> None:
    """Copy an open raster into a COG at ``path`` (GDAL's COG driver: overviews, tiles, ZSTD), streaming it
    block by block; ``overview_resampling`` ``nearest`` for classes and masks, ``average`` for imagery and scores.
    Overviews the source already has are used as they are (the COG driver's ``OVERVIEWS=AUTO``)."""
    predictor = "FLOATING_POINT" if np.dtype(src.dtypes[0]).kind == "f" else "STANDARD"
    rio_copy(src, str(path), driver="COG", compress=COMPRESSION, level=COMPRESSION_LEVEL, predictor=predictor,
             blocksize=COG_BLOCK_PX, overview_resampling=overview_resampling.upper(), resampling=overview_resampling.upper(),
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


def zone_counts(objects: list[ChangeObject], zones_lonlat: dict[str, BaseGeometry], crs) -> tuple[list[str | None], dict, dict]:
    """Which zone each object is in, and the counts per zone.

    Parameters
    ----------
    objects : list of ChangeObject
        Outlines in ``crs``.
    zones_lonlat : dict
        Zone name -> lon/lat (EPSG:4326) polygon.

    Returns
    -------
    zones : list of str or None
        Per object, the zone its outline overlaps most (None: outside every zone).
    counts : dict
        Zone name -> :func:`imagery.objects.counts_by` of its objects (every zone, empty ones too).
    outside : dict
        The counts of the objects outside every zone; with ``counts`` they add up to the whole AOI's.
    """
    names = list(zones_lonlat)
    assigned: list[str | None] = [None] * len(objects)
    if names and objects:
        zone_geoms = np.array([shape(transform_geom("EPSG:4326", crs, mapping(g))) for g in zones_lonlat.values()])
        object_geoms = np.array([o.geometry for o in objects])
        obj_idx, zone_idx = shapely.STRtree(zone_geoms).query(object_geoms, predicate="intersects")
        overlap = shapely.area(shapely.intersection(object_geoms[obj_idx], zone_geoms[zone_idx]))
        best: dict[int, float] = {}
        for i, z, area in zip(obj_idx.tolist(), zone_idx.tolist(), overlap.tolist()):
            if area > best.get(i, 0.0):
                best[i], assigned[i] = area, names[z]
    counts = {name: counts_by([o for o, z in zip(objects, assigned) if z == name]) for name in names}
    outside = counts_by([o for o, z in zip(objects, assigned) if z is None])
    return assigned, counts, outside


def changes_feature_collection(objects: list[ChangeObject], grid: Grid, before_date: str | None, after_date: str | None,
                               zones: list[str | None] | None = None) -> dict:
    """The change objects as a GeoJSON FeatureCollection in EPSG:4326 (changes.geojson); ``zones`` gives each
    object's zone (property ``zone``, null outside every zone)."""
    feats = []
    zones = zones or [None] * len(objects)
    for o, zone, (lon, lat) in zip(objects, zones, centres_lonlat([o.geometry for o in objects], grid.crs)):
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
                "zone": zone,
            },
        })
    return {"type": "FeatureCollection", "features": feats}


def write_products(analysis, outdir: str | os.PathLike, *, overwrite: bool = False, aoi: dict | None = None,
                   zones: dict[str, BaseGeometry] | None = None, executor=None) -> Path:
    """Write the product folder of an :class:`imagery.pipeline.Analysis` atomically.

    Parameters
    ----------
    analysis : Analysis
    outdir : path-like
        The folder to create. It must not exist unless ``overwrite``.
    aoi : dict, optional
        What is known of the AOI (``name``, ``id``, ``area_m2``); the summary adds its centre and MGRS reference.
    zones : dict, optional
        Named parts of the AOI (name -> lon/lat polygon): the summary counts per zone (``zones``, and
        ``outside_zones`` for the rest) and each object of changes.geojson names its ``zone``.
    executor : concurrent.futures.Executor, optional
        A block-wise analysis's COGs are made there, the files shared out among its processes (the analysis's
        block processes or Dask cluster, which must reach ``outdir``'s parent and the analysis's intermediate
        rasters at the same paths); default local processes.

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
        # block-wise: the rasters are on disk already, block by block; their COGs are made in other processes
        # while this one writes the vectors and the report
        with (analysis.rasters.cogs_written(tmp, executor) if analysis.rasters is not None else contextlib.nullcontext()):
            object_zones, summary["zones"], summary["outside_zones"] = zone_counts(analysis.objects, zones or {}, grid.crs)
            fc = changes_feature_collection(analysis.objects, grid, before_date, after_date, object_zones)
            (tmp / "changes.geojson").write_text(json.dumps(fc))
            write_exports(fc, summary, tmp)
            if analysis.rasters is None:
                write_whole_cogs(analysis, summary, tmp)
            render_report(analysis.report_view(), summary, tmp)
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


def write_whole_cogs(analysis, summary: dict, folder: Path) -> None:
    """The raster products of an analysis held in memory (not block-wise) into ``folder``."""
    grid = analysis.grid
    write_cog(folder / "change_mask.tif", analysis.mask.astype(np.uint8), grid, nodata=MASK_NOT_ANALYSED,
              overview_resampling="nearest", descriptions=("change",), tags={"VALUES": MASK_VALUES_TAG})
    score = np.where(analysis.analysed, analysis.score, SCORE_NODATA).astype(np.float32)
    write_cog(folder / "change_score.tif", score, grid, nodata=SCORE_NODATA, overview_resampling="average",
              descriptions=("change_score",))
    del score
    for name, raster in (("before", analysis.before), ("after", analysis.after)):
        write_cog(folder / f"{name}.tif", raster.data.astype(np.float32), grid, mask=raster.valid,
                  overview_resampling="average", descriptions=raster.bands,
                  tags={"ACQUISITION_DATE": summary[f"{name}_date"] or "", "BAND_NAMES": ",".join(raster.bands)})


def read_changes(outdir: str | os.PathLike) -> dict:
    return json.loads((Path(outdir) / "changes.geojson").read_text())


def read_summary(outdir: str | os.PathLike) -> dict:
    return json.loads((Path(outdir) / "summary.json").read_text())


def is_complete(outdir: str | os.PathLike) -> bool:
    p = Path(outdir)
    return p.is_dir() and all((p / f).is_file() for f in PRODUCT_FILES)


# --- block-wise analyses -------------------------------------------------------------------------------------

#: Tile side of the intermediate GeoTIFFs a block-wise analysis writes its rasters into.
TILE_PX = 512
#: GDAL's block cache of each process turning those into COGs, MB (GDAL's default, 5 % of the RAM, would fill
#: with the whole grid's tiles; a larger cache is no faster: 8192² 4-band overviews 14.4 s at 128 MB, 13.5 s at 512).
TILED_CACHE_MB = 256


def product_bytes(pixels: int, bands: int, *, blockwise: bool) -> int:
    """Disk a product folder can take at most, bytes (uncompressed: compression only ever saves): the before
    and after COGs (float32 per band), the score (float32) and mask (uint8), a third more for overviews; a
    block-wise analysis also holds its intermediate tiled GeoTIFFs with their overviews (:class:`TiledRasters`)
    until then."""
    per_pixel = 2 * bands * 4 + 4 + 1
    return int(pixels * per_pixel * (4 / 3 + (4 / 3 if blockwise else 0)))


def overview_factors(rows: int, cols: int, block_px: int = COG_BLOCK_PX) -> list[int]:
    """The decimation factors of the overviews GDAL's COG driver makes for a ``rows`` x ``cols`` raster:
    halving (rounding up) until both sides fit in one tile."""
    factors = [1]
    while max(math.ceil(rows / factors[-1]), math.ceil(cols / factors[-1])) > block_px:
        factors.append(factors[-1] * 2)
    return factors[1:]


@contextlib.contextmanager
def scratch_folder(outdir: str | os.PathLike):
    """A hidden sibling of ``outdir`` (``.NAME.blocks-XXXXXXXX``) for a block-wise analysis's intermediate
    rasters, removed on exit (and by the service's start-up sweep after a crash)."""
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    folder = outdir.parent / f".{outdir.name}.blocks-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class CogJob:
    """One product COG to make from an intermediate tiled GeoTIFF (picklable: it may run in another process)."""

    tiled: Path
    dest: Path
    resampling: str  # of the overviews: ``nearest`` or ``average``
    factors: tuple[int, ...]  # overview decimation factors (:func:`overview_factors`)


def share_out(items: list, weights: list[float], shares: int) -> list[list]:
    """``items`` in at most ``shares`` lists of nearly equal total weight (the heaviest first, each to the
    lightest list so far), none empty."""
    lists: list[list] = [[] for _ in range(max(1, min(shares, len(items))))]
    totals = [0.0] * len(lists)
    for k in sorted(range(len(items)), key=lambda i: -weights[i]):
        lightest = totals.index(min(totals))
        lists[lightest].append(items[k])
        totals[lightest] += weights[k]
    return lists


def tiled_to_cogs(jobs: list[CogJob]) -> None:
    """:func:`tiled_to_cog` for each job in turn; every job is tried, and the first error raised at the end."""
    errors = []
    for job in jobs:
        try:
            tiled_to_cog(job)
        except ProductError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def tiled_to_cog(job: CogJob) -> None:
    """Build the overviews into the intermediate file (GDAL's overview builder: the COG driver's levels and
    resampling, so the same pixels as a COG written whole) and copy it into the COG. On a scene of 8192² px
    this takes half the time of the COG driver computing them itself, and the gap grows with the scene; the
    overviews of a 4-band file with a mask take about 14 s there, single-threaded, hence the files are made in several processes."""
    from imagery.blockwise import reuse_heap

    reuse_heap()  # GDAL's tiles too would each be mapped fresh on a Dask worker
    if not job.tiled.is_file():  # (rasterio says so with a TypeError when opening to update)
        raise ProductError(f"could not write {job.dest.name}: {job.tiled} is missing")
    try:
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK="YES", GDAL_CACHEMAX=TILED_CACHE_MB):
            if job.factors:
                with rasterio.open(job.tiled, "r+") as ds:
                    ds.build_overviews(list(job.factors), Resampling[job.resampling])
            with rasterio.open(job.tiled) as src:
                copy_cog(src, job.dest, job.resampling)
    except Exception as exc:  # GDAL's errors (a full disk) do not all survive the trip back from another process
        raise ProductError(f"could not write {job.dest.name}: {exc}") from None


class TiledRasters:
    """The raster products of a block-wise analysis, written block by block (rasterio windows) into tiled,
    uncompressed GeoTIFFs (the parent writes each block as it comes without compressing it; the disk they
    take is counted in :func:`product_bytes`); :meth:`write_cogs` streams them into the compressed product
    COGs. Holds no pixels itself.

    Parameters
    ----------
    folder : path
        Where the intermediate files go (see :func:`scratch_folder`).
    grid : Grid
        The analysis grid.
    bands : tuple of str
    dates : (date or None, date or None)
        Acquisition dates of BEFORE and AFTER, tagged on their COGs.
    remove_folder : bool
        :meth:`cleanup` removes ``folder`` itself (it was made for these files alone); so does garbage
        collection of this object, so a temporary folder does not outlive the analysis holding it.
    """

    def __init__(self, folder: str | os.PathLike, grid: Grid, bands: tuple[str, ...], dates=(None, None),
                 remove_folder: bool = False):
        self.folder, self.grid, self.bands, self.remove_folder = Path(folder), grid, tuple(bands), remove_folder
        self._remove = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True) if remove_folder else None
        self.paths = {name: self.folder / f"{name}.tif" for name in ("change_mask", "change_score", "before", "after")}
        common = {"driver": "GTiff", "width": grid.cols, "height": grid.rows, "crs": grid.crs, "transform": grid.transform,
                  "tiled": True, "blockxsize": TILE_PX, "blockysize": TILE_PX, "bigtiff": "IF_SAFER"}
        self._env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES")
        with self._env:
            self._files = {
                "change_mask": rasterio.open(self.paths["change_mask"], "w+", count=1, dtype="uint8", nodata=MASK_NOT_ANALYSED,
                                             **common),
                "change_score": rasterio.open(self.paths["change_score"], "w+", count=1, dtype="float32",
                                              nodata=SCORE_NODATA, **common),
                "before": rasterio.open(self.paths["before"], "w+", count=len(bands), dtype="float32", **common),
                "after": rasterio.open(self.paths["after"], "w+", count=len(bands), dtype="float32", **common),
            }
        self._files["change_mask"].set_band_description(1, "change")
        self._files["change_mask"].update_tags(VALUES=MASK_VALUES_TAG)
        self._files["change_score"].set_band_description(1, "change_score")
        for name, date in zip(("before", "after"), dates):
            ds = self._files[name]
            for i, band in enumerate(self.bands, start=1):
                ds.set_band_description(i, band)
            ds.update_tags(ACQUISITION_DATE=date.isoformat() if date is not None else "", BAND_NAMES=",".join(self.bands))

    def write(self, window, block) -> None:
        """Write one block's core: ``block`` has ``mask``, ``score``, ``before``, ``before_valid``, ``after`` and
        ``after_valid`` arrays of the window's size (see :class:`imagery.blockwise.BlockResult`)."""
        with self._env:
            self._files["change_mask"].write(block.mask, 1, window=window)
            self._files["change_score"].write(block.score, 1, window=window)
            for name in ("before", "after"):
                ds = self._files[name]
                ds.write(getattr(block, name), window=window)
                ds.write_mask(getattr(block, f"{name}_valid").astype(np.uint8) * 255, window=window)

    def repaint(self, shapes: list) -> int:
        """Change the mask's changed pixels (1-3) inside outlines (grid CRS) to a value, ``(geometry, value)``
        pairs (0: an object dropped after merging); returns the change in changed pixels (<= 0)."""
        from rasterio.windows import Window, from_bounds

        ds, delta = self._files["change_mask"], 0
        for geom, value in shapes:
            win = from_bounds(*geom.bounds, transform=self.grid.transform).round_offsets().round_lengths()
            win = win.intersection(Window(0, 0, self.grid.cols, self.grid.rows))
            mask = ds.read(1, window=win)
            hit = np.isin(mask, (1, 2, 3)) & features.geometry_mask(
                [geom], out_shape=mask.shape, transform=ds.window_transform(win), invert=True)
            mask[hit] = value
            delta -= int(hit.sum()) if value == 0 else 0
            ds.write(mask, 1, window=win)
        return delta

    def close(self) -> None:
        """Finish the intermediate files (idempotent)."""
        with self._env:
            for ds in self._files.values():
                if not ds.closed:
                    ds.close()

    def cog_jobs(self, folder: Path) -> list[CogJob]:
        """The product COGs to make from the intermediate files."""
        resampling = {"change_mask": "nearest", "change_score": "average", "before": "average", "after": "average"}
        factors = tuple(overview_factors(self.grid.rows, self.grid.cols))
        return [CogJob(path.absolute(), (Path(folder) / f"{name}.tif").absolute(), resampling[name], factors)
                for name, path in self.paths.items()]

    def write_cogs(self, folder: Path, executor=None) -> None:
        """The product COGs (``change_mask.tif``, ``change_score.tif``, ``before.tif``, ``after.tif``) into
        ``folder``, streamed from the intermediate files by :func:`tiled_to_cog` in other processes (see
        :meth:`cogs_written`)."""
        with self.cogs_written(folder, executor):
            pass

    @contextlib.contextmanager
    def cogs_written(self, folder: Path, executor=None):
        """Make the product COGs (see :meth:`write_cogs`) while the body runs, in one task per process or Dask
        worker of ``executor`` (the analysis's block processes or Dask cluster, which must reach ``folder`` and
        these intermediate files at the same paths), or of local processes, up to one per file and CPU, when
        it is None: the files shared out by size (:func:`share_out`), so that the two 4-band files go to two
        tasks. On exit every task has finished or was cancelled (when the body failed), and the first error
        is raised."""
        from imagery.blockwise import default_workers, executor_slots, local_executor

        self.close()
        jobs = self.cog_jobs(folder)
        bytes_per_pixel = {"before": 4 * len(self.bands), "after": 4 * len(self.bands), "change_score": 4, "change_mask": 1}
        own = executor is None
        executor = local_executor(min(len(jobs), default_workers())) if own else executor
        futures: list = []
        try:
            try:
                for share in share_out(jobs, [bytes_per_pixel[j.tiled.stem] for j in jobs], executor_slots(executor)):
                    futures.append(executor.submit(tiled_to_cogs, share))
                yield
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            finally:
                cf.wait(futures)  # no task still writing when the caller removes the folder
            for future in futures:
                future.result()
        finally:
            if own:
                executor.shutdown(wait=True, cancel_futures=True)

    def cleanup(self) -> None:
        """Remove the intermediate files (and the folder when it was made for them)."""
        self.close()
        if self._remove is not None:
            self._remove()
        else:
            for path in self.paths.values():
                path.unlink(missing_ok=True)
