"""Opening, validating and reading scenes: the only module that reads input rasters.

A scene is opened in two steps, planned on grids before any pixel is read:

1. :func:`inspect_scene` reads the header only: driver, size, band count,
   dtype, georeferencing, band roles, nodata, scale/offset and acquisition
   date, and refuses anything outside :class:`SceneLimits`.
2. :func:`read_onto_grid` reads the window that covers a target grid and warps
   it onto that grid.

Only the GeoTIFF driver is allowed (a COG is a GeoTIFF), and GDAL is told not
to look at sibling files (``.aux.xml``, ``.ovr``, ``.msk``, world files), so
opening a scene never reads any file other than the one given.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import reproject
from rasterio.windows import Window, from_bounds

from imagery.errors import BandError, InvalidSceneError, NoOverlapError, SceneTooLargeError, first_line
from imagery.grid import Grid, nominal_pixel_size_m, transform_bounds_densified
from imagery.raster import BAND_ROLES, Raster

#: The only GDAL driver a scene may be opened with.
ALLOWED_DRIVERS = ("GTiff",)

#: GDAL settings in force whenever a scene is opened: no sibling-file lookup,
#: no PAM sidecars, no network.
SAFE_GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "GDAL_HTTP_MAX_RETRY": "0",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".__none__",
    "GTIFF_IGNORE_READ_ERRORS": "NO",
    "GDAL_GEOREF_SOURCES": "INTERNAL",
}

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Threads GDAL's warper may use per reprojection.
WARP_THREADS = max(1, min(4, os.cpu_count() or 1))

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")

#: Names (lower case) that identify a band role in descriptions, BAND_NAMES or band tags.
BAND_ALIASES = {
    "blue": "blue", "b": "blue", "b02": "blue", "b2_blue": "blue",
    "green": "green", "g": "green", "b03": "green",
    "red": "red", "r": "red", "b04": "red",
    "nir": "nir", "nir1": "nir", "near-infrared": "nir", "near_infrared": "nir", "b08": "nir", "b8": "nir", "b8a": "nir",
    "pan": "pan", "panchromatic": "pan", "gray": "pan", "grey": "pan",
}

COLORINTERP_ROLES = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.gray: "pan",
}


@dataclass(frozen=True)
class SceneLimits:
    """What a scene may declare in its header before any pixel is read."""

    max_side_px: int = 50_000
    max_pixels: int = 400_000_000
    max_bands: int = 16


@dataclass(frozen=True)
class SceneInfo:
    """What the header of a validated scene says.

    Attributes
    ----------
    path : str
        The file.
    grid : Grid
        The scene's own grid.
    band_index : dict
        Role -> 1-based band index in the file, for the bands with a known role.
    nodata : float or None
        Nodata value (masks and alpha bands are also honoured).
    scales, offsets : tuple of float
        Per file band: value = DN * scale + offset (GDAL scale/offset, or
        Sentinel-2 ``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET`` and
        ``QUANTIFICATION_VALUE`` tags).
    acquired : datetime.date or None
        Acquisition date.
    dtype : str
        Pixel type in the file.
    """

    path: str
    grid: Grid
    count: int
    dtype: str
    band_index: dict
    nodata: float | None
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    acquired: dt.date | None
    pixel_size_m: float
    data_bands: tuple[int, ...] = ()

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.band_index)

    def footprint_lonlat(self):
        return self.grid.footprint_lonlat()


def gdal_env() -> rasterio.Env:
    """A rasterio environment with :data:`SAFE_GDAL_ENV` applied."""
    return rasterio.Env(**SAFE_GDAL_ENV)


def check_local_tiff(path: str | os.PathLike) -> str:
    """Refuse anything but an existing local regular file that starts like a TIFF."""
    text = os.fspath(path)
    if text.startswith("/vsi") or "://" in text:
        raise InvalidSceneError(f"{Path(text).name}: only local GeoTIFF files are accepted")
    p = Path(text)
    if not p.is_file():
        raise InvalidSceneError(f"{p.name}: no such file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head not in TIFF_MAGIC:
        raise InvalidSceneError(f"{p.name}: not a GeoTIFF (the file does not start with a TIFF header)")
    return str(p)


def open_scene(path: str) -> rasterio.io.DatasetReader:
    """Open a GeoTIFF with the driver allow-list; the caller must be inside :func:`gdal_env`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path, driver=ALLOWED_DRIVERS[0])
    except RasterioError as exc:
        raise InvalidSceneError(f"{Path(path).name}: not a readable GeoTIFF ({first_line(exc)})") from None


def inspect_scene(
    path: str | os.PathLike,
    *,
    bands: list[str] | tuple[str, ...] | None = None,
    acquired: dt.date | str | None = None,
    limits: SceneLimits = SceneLimits(),
) -> SceneInfo:
    """Validate a scene from its header alone.

    Parameters
    ----------
    path : path-like
        A local GeoTIFF or COG.
    bands : sequence of str, optional
        Band roles in file order (``blue``, ``green``, ``red``, ``nir``,
        ``pan``; ``-`` or ``skip`` for a band to ignore). Default: from band
        descriptions, ``BAND_NAMES``, band tags, colour interpretation, or the
        band count (3 = red, green, blue; 4 = blue, green, red, nir).
    acquired : date or ISO string, optional
        Acquisition date; default from the ``ACQUISITION_DATE``,
        ``ACQUISITION_DATETIME`` or ``TIFFTAG_DATETIME`` tags.
    limits : SceneLimits
        Size limits checked from the header.

    Raises
    ------
    InvalidSceneError, SceneTooLargeError, BandError
    """
    local = check_local_tiff(path)
    name = Path(local).name
    with gdal_env(), open_scene(local) as ds:
        if ds.driver not in ALLOWED_DRIVERS:
            raise InvalidSceneError(f"{name}: driver {ds.driver} is not allowed")
        if ds.width > limits.max_side_px or ds.height > limits.max_side_px or ds.width * ds.height > limits.max_pixels:
            raise SceneTooLargeError(
                f"{name}: {ds.width} x {ds.height} px exceeds the limit "
                f"({limits.max_side_px} px a side, {limits.max_pixels / 1e6:.0f} Mpx)"
            )
        if ds.count > limits.max_bands:
            raise SceneTooLargeError(f"{name}: {ds.count} bands exceeds the limit of {limits.max_bands}")
        dtype = ds.dtypes[0]
        if dtype not in SUPPORTED_DTYPES or len(set(ds.dtypes)) != 1:
            raise InvalidSceneError(f"{name}: pixel type {dtype} is not supported (use one of {', '.join(SUPPORTED_DTYPES)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            transform = ds.transform
        if ds.crs is None or transform.is_identity:
            raise InvalidSceneError(f"{name}: the file is not georeferenced (no CRS or geotransform)")
        if ds.transform.b != 0 or ds.transform.d != 0:
            raise InvalidSceneError(f"{name}: rotated geotransforms are not supported")
        grid = Grid(ds.crs, ds.transform, (ds.height, ds.width))
        data_bands = tuple(i for i in range(1, ds.count + 1) if ds.colorinterp[i - 1] != ColorInterp.alpha)
        band_index = band_roles(ds, bands, name)
        scales, offsets = radiometric_scaling(ds)
        date = parse_date(acquired) if acquired is not None else date_from_tags(ds)
        return SceneInfo(
            path=local,
            grid=grid,
            count=ds.count,
            dtype=dtype,
            band_index=band_index,
            nodata=ds.nodata,
            scales=scales,
            offsets=offsets,
            acquired=date,
            pixel_size_m=nominal_pixel_size_m(grid),
            data_bands=data_bands,
        )


def band_roles(ds, given: list[str] | tuple[str, ...] | None, name: str) -> dict:
    """Map band roles to 1-based indexes, from ``given`` or the file's own metadata."""
    data_bands = [i for i in range(1, ds.count + 1) if ds.colorinterp[i - 1] != ColorInterp.alpha]
    if given is not None:
        if len(given) != len(data_bands):
            raise BandError(f"{name}: {len(given)} band roles given for {len(data_bands)} bands")
        roles = [role_of(r, strict=True, name=name) for r in given]
    else:
        roles = roles_from_metadata(ds, data_bands) or default_roles(len(data_bands), name)
    index = {}
    for band, role in zip(data_bands, roles):
        if role is None:
            continue
        if role in index:
            raise BandError(f"{name}: two bands have the role {role!r}")
        index[role] = band
    if not index:
        raise BandError(f"{name}: no band with a known role (blue, green, red, nir, pan); pass the band roles")
    return dict(sorted(index.items(), key=lambda kv: BAND_ROLES.index(kv[0])))


def role_of(label: str, *, strict: bool = False, name: str = "") -> str | None:
    key = str(label).strip().lower()
    if key in ("-", "skip", "none", ""):
        return None
    if key in BAND_ALIASES:
        return BAND_ALIASES[key]
    if strict:
        raise BandError(f"{name}: unknown band role {label!r} (use blue, green, red, nir, pan or skip)")
    return None


def roles_from_metadata(ds, data_bands: list[int]) -> list[str | None] | None:
    """Roles from descriptions, the BAND_NAMES tag, per-band tags or colour interpretation, whichever is complete."""
    candidates = []
    candidates.append([ds.descriptions[i - 1] or "" for i in data_bands])
    names_tag = ds.tags().get("BAND_NAMES")
    if names_tag:
        parts = [p.strip() for p in names_tag.split(",")]
        if len(parts) == len(data_bands):
            candidates.append(parts)
    for key in ("SENTINEL2_BAND", "BAND_NAME", "NAME"):
        tags = [ds.tags(i).get(key, "") for i in data_bands]
        if all(tags):
            candidates.append(tags)
    for labels in candidates:
        roles = [role_of(label) for label in labels]
        if any(roles) and all(r is not None or not label for r, label in zip(roles, labels)) and all(labels):
            return roles
    interp = [COLORINTERP_ROLES.get(ds.colorinterp[i - 1]) for i in data_bands]
    if len(data_bands) >= 3 and {"red", "green", "blue"} <= set(interp):
        return interp
    return None


def default_roles(count: int, name: str) -> list[str | None]:
    """Roles by band count: 1 pan; 3 red, green, blue (display products); 4 blue, green, red, nir."""
    if count == 1:
        return ["pan"]
    if count == 3:
        return ["red", "green", "blue"]
    if count == 4:
        return ["blue", "green", "red", "nir"]
    raise BandError(f"{name}: cannot tell the role of {count} unnamed bands; pass the band roles (e.g. blue,green,red,nir)")


def radiometric_scaling(ds) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band (scales, offsets) so that value = DN * scale + offset.

    GDAL scale/offset is used when set. Sentinel-2 processing baseline 04.00+
    offsets are honoured from tags: per band ``BOA_ADD_OFFSET`` or
    ``RADIO_ADD_OFFSET``, or dataset tags ``BOA_ADD_OFFSET`` /
    ``BOA_ADD_OFFSET_<BAND>`` (e.g. ``BOA_ADD_OFFSET_B02``), with
    ``BOA_QUANTIFICATION_VALUE`` / ``QUANTIFICATION_VALUE`` as the divisor
    when present: reflectance = (DN + offset) / quantification.
    """
    tags = {k.upper(): v for k, v in ds.tags().items()}
    quant = to_float(tags.get("BOA_QUANTIFICATION_VALUE") or tags.get("QUANTIFICATION_VALUE"))
    scales, offsets = [], []
    for i in range(1, ds.count + 1):
        btags = {k.upper(): v for k, v in ds.tags(i).items()}
        s2_name = (btags.get("SENTINEL2_BAND") or ds.descriptions[i - 1] or "").upper()
        add = None
        for source in (btags.get("BOA_ADD_OFFSET"), btags.get("RADIO_ADD_OFFSET"),
                       tags.get(f"BOA_ADD_OFFSET_{s2_name}") if s2_name else None,
                       tags.get(f"RADIO_ADD_OFFSET_{s2_name}") if s2_name else None,
                       tags.get("BOA_ADD_OFFSET"), tags.get("RADIO_ADD_OFFSET")):
            add = to_float(source)
            if add is not None:
                break
        scale = float(ds.scales[i - 1] or 1.0)
        offset = float(ds.offsets[i - 1] or 0.0)
        if add is not None:
            divisor = quant or 1.0
            scale, offset = scale / divisor, (offset + add) / divisor
        elif quant:
            scale = scale / quant
        scales.append(scale)
        offsets.append(offset)
    return tuple(scales), tuple(offsets)


def to_float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


DATE_TAGS = ("ACQUISITION_DATE", "ACQUISITION_DATETIME", "TIFFTAG_DATETIME", "DATETIME")


def date_from_tags(ds) -> dt.date | None:
    tags = {k.upper(): v for k, v in ds.tags().items()}
    for key in DATE_TAGS:
        if tags.get(key):
            try:
                return parse_date(tags[key])
            except ValueError:
                continue
    return None


def parse_date(value: dt.date | str) -> dt.date:
    """An acquisition date from a date, an ISO 8601 string or a TIFF ``YYYY:MM:DD HH:MM:SS``."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    m = re.match(r"^(\d{4})[-:](\d{2})[-:](\d{2})", text)
    if not m:
        raise ValueError(f"not a date: {text!r}")
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def warp_resampling(source_px_m: float, target_px_m: float) -> Resampling:
    """Resampling for imagery onto the analysis grid.

    Average when the source is more than 1.5x finer than the target (it
    integrates the way a coarser sensor would and avoids aliasing), bilinear
    otherwise. Masks and classes are never resampled with this: see
    :func:`read_onto_grid`.
    """
    return Resampling.average if source_px_m * 1.5 < target_px_m else Resampling.bilinear


def source_window(ds, grid: Grid, pad_px: int = 3) -> Window:
    """The window of ``ds`` that covers ``grid``, padded, clipped to the dataset; raises if empty."""
    bounds = transform_bounds_densified(grid.bounds, grid.crs, ds.crs)
    win = from_bounds(*bounds, transform=ds.transform)
    col0 = max(0, math.floor(win.col_off) - pad_px)
    row0 = max(0, math.floor(win.row_off) - pad_px)
    col1 = min(ds.width, math.ceil(win.col_off + win.width) + pad_px)
    row1 = min(ds.height, math.ceil(win.row_off + win.height) + pad_px)
    if col1 <= col0 or row1 <= row0:
        raise NoOverlapError(f"{Path(ds.name).name} does not cover the analysis area")
    return Window(col0, row0, col1 - col0, row1 - row0)


def lattice_window(scene: Grid, grid: Grid) -> Window | None:
    """The window of ``scene`` that is exactly ``grid`` (same CRS, same pixel size, shared lattice), else None."""
    if scene.crs != grid.crs or scene.transform.b or scene.transform.d:
        return None
    st, gt = scene.transform, grid.transform
    if not (math.isclose(st.a, gt.a, rel_tol=1e-9) and math.isclose(st.e, gt.e, rel_tol=1e-9)):
        return None
    col = (gt.c - st.c) / st.a
    row = (gt.f - st.f) / st.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return Window(int(round(col)), int(round(row)), grid.cols, grid.rows)


def read_window(info: SceneInfo, grid: Grid, window: Window, roles: tuple[str, ...]) -> Raster:
    """Read a lattice-aligned window without resampling (outside the scene is invalid)."""
    name = Path(info.path).name
    out = np.zeros((len(roles), *grid.shape), dtype=np.float32)
    try:
        with gdal_env(), open_scene(info.path) as ds:
            masks = ds.read_masks([info.band_index[r] for r in roles], window=window, boundless=True) \
                if any(MaskFlags.nodata not in f and MaskFlags.all_valid not in f for f in ds.mask_flag_enums) else None
            for k, role in enumerate(roles):
                b = info.band_index[role]
                band = ds.read(b, window=window, boundless=True, fill_value=ds.nodata if ds.nodata is not None else 0,
                               out_dtype=np.float32)
                out[k] = band
            inside = np.zeros(grid.shape, bool)
            r0, c0 = -window.row_off, -window.col_off
            inside[max(0, r0):max(0, r0) + min(grid.rows, ds.height - max(0, window.row_off)),
                   max(0, c0):max(0, c0) + min(grid.cols, ds.width - max(0, window.col_off))] = True
    except RasterioError as exc:
        raise InvalidSceneError(f"{name}: the pixels cannot be read; the file is corrupt or truncated ({first_line(exc)})") from None
    valid = inside & np.isfinite(out).all(axis=0)
    if info.nodata is not None:
        valid &= ~(out == np.float32(info.nodata)).any(axis=0)
    if masks is not None:
        valid &= (masks > 0).all(axis=0)
    for k, role in enumerate(roles):
        b = info.band_index[role]
        out[k] *= info.scales[b - 1]
        out[k] += info.offsets[b - 1]
    out[:, ~valid] = 0.0
    return Raster(data=out, valid=valid, grid=grid, bands=tuple(roles), acquired=info.acquired,
                  meta={"path": info.path, "resampling": "none (shared pixel lattice)"})


def read_onto_grid(
    info: SceneInfo,
    grid: Grid,
    *,
    roles: tuple[str, ...] | None = None,
    resampling: Resampling | None = None,
) -> Raster:
    """Read the part of a scene that covers ``grid`` and warp it onto ``grid``.

    Parameters
    ----------
    info : SceneInfo
        From :func:`inspect_scene`.
    grid : Grid
        Target grid.
    roles : tuple of str, optional
        Bands to read, in this order (default all known roles).
    resampling : Resampling, optional
        For pixel values; default :func:`warp_resampling`. The validity mask
        is warped with the same kernel and a target pixel is valid only if
        every source pixel it draws on is valid (fraction >= 0.999).

    Returns
    -------
    Raster
        float32 values (DN * scale + offset) on ``grid``; ``valid`` False
        where the scene has no data (outside it, nodata, internal mask, alpha).
        Peak memory: one source window band plus the output.
    """
    roles = roles or info.bands
    name = Path(info.path).name
    aligned = lattice_window(info.grid, grid)
    if aligned is not None:
        return read_window(info, grid, aligned, roles)
    if resampling is None:
        resampling = warp_resampling(info.pixel_size_m, nominal_pixel_size_m(grid))
    out = np.empty((len(roles), *grid.shape), dtype=np.float32)
    coverage = np.zeros(grid.shape, dtype=np.float32)
    try:
        with gdal_env(), open_scene(info.path) as ds:
            window = source_window(ds, grid)
            win_transform = ds.window_transform(window)
            masks = ds.read_masks(window=window)
            src_valid = np.all(masks > 0, axis=0).astype(np.float32)
            del masks
            reproject(
                src_valid, coverage,
                src_transform=win_transform, src_crs=ds.crs,
                dst_transform=grid.transform, dst_crs=grid.crs,
                resampling=resampling, dst_nodata=0.0, init_dest_nodata=True, num_threads=WARP_THREADS,
            )
            valid_src = src_valid > 0
            for k, role in enumerate(roles):
                b = info.band_index[role]
                src = ds.read(b, window=window, out_dtype=np.float32)
                src *= info.scales[b - 1]
                src += info.offsets[b - 1]
                src[~valid_src] = np.nan
                dst = out[k]
                dst.fill(np.nan)
                reproject(
                    src, dst,
                    src_transform=win_transform, src_crs=ds.crs,
                    dst_transform=grid.transform, dst_crs=grid.crs,
                    resampling=resampling, src_nodata=np.nan, dst_nodata=np.nan, num_threads=WARP_THREADS,
                )
                del src
    except RasterioError as exc:
        raise InvalidSceneError(f"{name}: the pixels cannot be read; the file is corrupt or truncated ({first_line(exc)})") from None
    valid = coverage >= 0.999
    valid &= np.isfinite(out).all(axis=0)
    out[:, ~valid] = 0.0
    return Raster(data=out, valid=valid, grid=grid, bands=tuple(roles), acquired=info.acquired,
                  meta={"path": info.path, "resampling": resampling.name})
