"""Rendering a world into a date's image: noise, grids, lighting and shadows, clouds, sensor, truth rasters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import Geod, Proj, Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.polygon import orient

from imagery.grid import LONLAT, Grid, transform_bounds_densified, utm_crs_for
from synth.presets import NOT_ASSESSABLE, SynthParams, TruthObject, _CHANGE_CODE, _DIFFUSE_55
from synth.world import _Obj, _Wall, _World, _azimuth_of, _dir, _facet_factor, _lean

# Noise
# ---------------------------------------------------------------------------------------------


def _fractal(rng: np.random.Generator, shape: tuple[int, int], beta: float, fmin: float = 0.0) -> np.ndarray:
    """Zero-mean, unit-std fractal noise with power spectrum ~ f^-beta, float32.

    ``fmin`` (cycles per pixel) suppresses scales larger than ``1 / fmin`` pixels.
    """
    h, w = shape
    white = rng.standard_normal((h, w), dtype=np.float32)
    spec = np.fft.rfft2(white)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2)
    if fmin > 0:
        amp *= np.minimum(1.0, (f / fmin) ** 2)
    spec *= amp.astype(np.float32)
    spec[0, 0] = 0
    out = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    out -= out.mean()
    out /= out.std() + 1e-12
    return out


def _upsample(a: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor, cell-centred, cropped to ``shape``, float32.

    Fine pixel ``i`` samples the coarse array at ``(i + 0.5) / factor - 0.5`` (edges clamped).
    ``a`` must have at least ``ceil(shape / factor)`` rows and columns. Columns are
    interpolated on the small array first, then rows are written as contiguous blocks.
    """
    k = int(factor)
    if k == 1:
        return np.ascontiguousarray(a[: shape[0], : shape[1]], dtype=np.float32)
    a = np.pad(np.asarray(a, np.float32), 1, mode="edge")
    nm, nn = -(-shape[0] // k), -(-shape[1] // k)
    if a.shape[0] < nm + 2 or a.shape[1] < nn + 2:
        raise ValueError("coarse array too small for the requested shape")
    weights = [((0, (r + 0.5) / k + 0.5) if (r + 0.5) / k < 0.5 else (1, (r + 0.5) / k - 0.5)) for r in range(k)]
    cols = np.empty((a.shape[0], nn, k), np.float32)
    for r, (lo, w) in enumerate(weights):
        np.multiply(a[:, lo: lo + nn], np.float32(1.0 - w), out=cols[:, :, r])
        cols[:, :, r] += np.float32(w) * a[:, lo + 1: lo + 1 + nn]
    cols = np.ascontiguousarray(cols.reshape(a.shape[0], nn * k)[:, : shape[1]])
    out = np.empty((nm, k, shape[1]), np.float32)
    for r, (lo, w) in enumerate(weights):
        np.multiply(cols[lo: lo + nm], np.float32(1.0 - w), out=out[:, r, :])
        out[:, r, :] += np.float32(w) * cols[lo + 1: lo + 1 + nm]
    return out.reshape(nm * k, shape[1])[: shape[0]]


def _sample_coarse(a: np.ndarray, k: int, cv_rows: np.ndarray, cv_cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of a ``k``-times-coarser canvas array at canvas pixel coordinates.

    ``cv_rows`` and ``cv_cols`` (1-D) are fractional canvas pixel indices (centre = i + 0.5);
    returns the (len(rows), len(cols)) grid of samples, consistent with :func:`_upsample`.
    """
    def axis(pos, n):
        c = np.clip(pos / k - 0.5, 0, n - 1)
        i0 = np.floor(c).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        return i0, i1, (c - i0).astype(np.float32)

    r0, r1, wr = axis(cv_rows, a.shape[0])
    c0, c1, wc = axis(cv_cols, a.shape[1])
    rows = a[r0] * (1 - wr)[:, None] + a[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc)[None, :] + rows[:, c1] * wc[None, :]


def _noise_field(rng, shape, factor, beta) -> np.ndarray:
    """Fractal noise made on a grid ``factor`` times coarser than ``shape`` and upsampled to it."""
    small = (shape[0] // factor + 2, shape[1] // factor + 2)
    return _upsample(_fractal(rng, small, beta), factor, shape)


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------


@dataclass
class _Canvas:
    transform: Affine
    shape: tuple[int, int]
    res: float
    ss: int
    off: tuple[int, int]  # (row, col) of the before grid's origin on the canvas

    @property
    def bounds(self):
        t = self.transform
        return (t.c, t.f - self.res * self.shape[0], t.c + self.res * self.shape[1], t.f)


def _world_bounds(p: SynthParams, before: Grid, cv: _Canvas) -> tuple[float, float, float, float]:
    """Where the world is laid out: the before scene plus a margin that does not depend on the
    after grid or the nuisances (so the same seed gives the same world), grown only if the
    canvas needs more."""
    b, c = before.bounds, cv.bounds
    m = max(0.1 * p.extent_m, 60.0, b[0] - c[0], b[1] - c[1], c[2] - b[2], c[3] - b[3])
    return (b[0] - m, b[1] - m, b[2] + m, b[3] + m)


def _before_grid(p: SynthParams) -> Grid:
    crs = utm_crs_for(p.lon, p.lat)
    tr = Transformer.from_crs(LONLAT, crs, always_xy=True)
    x, y = tr.transform(p.lon, p.lat)
    n = max(16, int(round(p.extent_m / p.pixel_size_m)))
    side = n * p.pixel_size_m
    x0 = math.floor((x - side / 2) / p.pixel_size_m) * p.pixel_size_m
    y1 = math.ceil((y + side / 2) / p.pixel_size_m) * p.pixel_size_m
    return Grid(crs, Affine(p.pixel_size_m, 0, x0, 0, -p.pixel_size_m, y1), (n, n))


def _after_grid(p: SynthParams, before: Grid, shift_m: tuple[float, float]) -> Grid:
    """The after grid: its own CRS and pixel size, covering the before scene plus the shift."""
    px = p.after_pixel_size_m or p.pixel_size_m
    pad_m = math.hypot(*shift_m) + 3 * max(px, p.pixel_size_m)
    b = before.bounds
    padded = (b[0] - pad_m, b[1] - pad_m, b[2] + pad_m, b[3] + pad_m)
    if p.after_crs == "utm":
        return Grid.from_bounds(padded, before.crs, px)
    if p.after_crs == "webmercator":
        crs = CRS.from_epsg(3857)
        k = Proj("EPSG:3857").get_factors(p.lon, p.lat).meridional_scale
        res = px * k
    else:
        crs = LONLAT
        geod = Geod(ellps="WGS84")
        _, _, d = geod.inv(p.lon, p.lat - 0.005, p.lon, p.lat + 0.005)
        res = px / (d / 0.01)
    bounds = transform_bounds_densified(padded, before.crs, crs)
    left, bottom, right, top = bounds
    cols = max(1, math.ceil((right - left) / res))
    rows = max(1, math.ceil((top - bottom) / res))
    return Grid(crs, Affine(res, 0, left, 0, -res, top), (rows, cols))


def _canvas(p: SynthParams, before: Grid, after: Grid, shift_m) -> _Canvas:
    """Supersampled UTM canvas aligned with the before grid, covering both scenes' content."""
    n = max(before.shape)
    ss = p.supersample or int(np.clip(3500 // n, 2, 4))
    res = p.pixel_size_m / ss
    ab = transform_bounds_densified(after.bounds, after.crs, before.crs)
    ab = (ab[0] - shift_m[0], ab[1] - shift_m[1], ab[2] - shift_m[0], ab[3] - shift_m[1])
    bb = before.bounds
    margin = 4 * max(p.pixel_size_m, p.after_pixel_size_m or 0) + 2.0
    left = min(bb[0], ab[0]) - margin
    top = max(bb[3], ab[3]) + margin
    right = max(bb[2], ab[2]) + margin
    bottom = min(bb[1], ab[1]) - margin
    off_c = math.ceil((bb[0] - left) / res)
    off_r = math.ceil((top - bb[3]) / res)
    x0 = bb[0] - off_c * res
    y0 = bb[3] + off_r * res
    cols = math.ceil((right - x0) / res)
    rows = math.ceil((y0 - bottom) / res)
    return _Canvas(Affine(res, 0, x0, 0, -res, y0), (rows, cols), res, ss, (off_r, off_c))


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@dataclass
class _Shared:
    """Date-independent canvas arrays (world-anchored textures)."""

    fid: np.ndarray  # field id per canvas pixel (uint16, 1-based)
    fine: np.ndarray  # fine texture noise (float16 to save memory, unit std)
    season_coarse: np.ndarray  # smooth noise for the spatially varying seasonal change, coarse
    season_k: int  # canvas pixels per coarse season pixel
    cover: np.ndarray  # cover offset (texture + crop rows), add the field's cover per date
    soil: np.ndarray  # soil brightness factor (with texture and furrows)


def _shared_arrays(rng, world: _World, cv: _Canvas) -> _Shared:
    H, W = cv.shape
    fid = _burn([f.geom for f in world.fields], range(1, len(world.fields) + 1), cv, "uint16")
    fid[fid == 0] = 1  # (none expected: the fields tile the canvas)
    k_fine = cv.ss
    k_coarse = max(1, int(round(max(2.0, cv.res * 12) / cv.res)))
    k_season = max(1, int(round(max(6.0, cv.res * 24) / cv.res)))
    fine = _noise_field(rng, (H, W), k_fine, 1.3)
    coarse = _noise_field(rng, (H, W), k_coarse, 2.6)
    season = _fractal(rng, (H // k_season + 2, W // k_season + 2), 3.0)
    n = len(world.fields) + 1
    lut = lambda attr: np.array([0.0] + [attr(f) for f in world.fields], np.float32)[:n]
    cover = lut(lambda f: f.a_coarse)[fid]
    cover *= coarse
    del coarse
    tmp = lut(lambda f: f.a_fine)[fid]
    tmp *= fine
    cover += tmp
    soil = lut(lambda f: f.soil)[fid]
    tmp = fine * np.float32(0.12)
    tmp += 1.0
    soil *= tmp
    del tmp
    ra, rs = lut(lambda f: f.rows_amp), lut(lambda f: f.rows_soil)
    rows_ids = np.flatnonzero((ra > 0) | (rs > 0))
    if rows_ids.size:
        _add_rows(world, cv, fid, rows_ids, ra, rs, cover, soil)
    return _Shared(fid=fid, fine=fine.astype(np.float16), season_coarse=season, season_k=k_season, cover=cover, soil=soil)


def _add_rows(world, cv, fid, ids, ra, rs, cover, soil):
    """Crop rows / furrows: a cosine pattern per field, added within each field's bounding window."""
    t = cv.transform
    for i in ids:
        f = world.fields[i - 1]
        x0, y0, x1, y1 = f.geom.bounds
        c0 = max(0, int((x0 - t.c) / cv.res))
        c1 = min(cv.shape[1], int(math.ceil((x1 - t.c) / cv.res)))
        r0 = max(0, int((t.f - y1) / cv.res))
        r1 = min(cv.shape[0], int(math.ceil((t.f - y0) / cv.res)))
        if c1 <= c0 or r1 <= r0:
            continue
        xs = ((np.arange(c0, c1) + 0.5) * cv.res).astype(np.float32)
        ys = (-(np.arange(r0, r1) + 0.5) * cv.res).astype(np.float32)
        kx, ky = f.rows_k
        pat = np.cos(kx * xs[None, :] + ky * ys[:, None])
        pat = np.sign(pat) * np.abs(pat) ** 0.5  # sharper rows
        m = fid[r0:r1, c0:c1] == i
        if ra[i] > 0:
            cover[r0:r1, c0:c1] += np.where(m, ra[i] * pat, 0)
        if rs[i] > 0:
            soil[r0:r1, c0:c1] *= np.where(m, 1 + rs[i] * pat, 1)


@dataclass
class _DateCtx:
    name: str  # before | after
    sun: tuple[float, float]
    view: tuple[float, float]
    diffuse: np.ndarray  # per band
    cloud: tuple | None = None  # (opacity, shadow strength, factor): coarse arrays, canvas pixels per cell
    cloud_spec: np.ndarray | None = None


def _diffuse(sun_el: float) -> np.ndarray:
    """Sky fraction of irradiance per band; grows as the sun gets lower."""
    return np.clip(_DIFFUSE_55 * math.sqrt(math.sin(math.radians(55)) / math.sin(math.radians(sun_el))), 0, 0.7).astype(np.float32)


def _visible_objs(world: _World, date: str) -> list[_Obj]:
    objs = [o for o in world.objs if o.when in ("both", date)]
    ground = [o for o in objs if o.top <= 0.0]
    tall = sorted((o for o in objs if o.top > 0.0), key=lambda o: o.top)
    return ground + tall


def _translate_many(geoms: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Translate each geometry of an array by its own (dx, dy), vectorised."""
    if len(geoms) == 0:
        return geoms
    n = shapely.get_num_coordinates(geoms)
    off = np.column_stack([np.repeat(dx, n), np.repeat(dy, n)])
    return shapely.transform(geoms, lambda c: c + off)


def _surface_table(world: _World, ctx: _DateCtx):
    """Per-date surfaces in painter's order: geometry (leaned), reflectance, height, lighting.

    Returns
    -------
    geoms : ndarray of shapely geometries (UTM m)
    specs : (n, 4) reflectance; zs : (n,) height for the shadow test (m);
    facets : (n,) direct-light factor; svfs : (n,) sky-view factor; texs : (n,) texture amplitude.
    """
    dx, dy = _lean(ctx.view)
    leaning = ctx.view[1] > 0
    sun_dir = _dir(ctx.sun[0])
    lens_shift = 0.9 * math.cos(math.radians(ctx.sun[1]))
    recs = []  # (geom, spec, z_shadow, facet, svf, tex, lean_z, crown_radius)
    for o in _visible_objs(world, ctx.name):
        top = o.shadow_top
        if leaning:
            for w in o.walls:
                for quad, aspect in _wall_quads(w, dx, dy, ctx.view[0]):
                    recs.append((quad, w.spec, top, _facet_factor(90.0, aspect, ctx.sun), 0.5, 0.03, 0.0, 0.0))
        for sf in o.surfs:
            spec = sf.spec_after if (ctx.name == "after" and sf.spec_after is not None) else sf.spec
            zt = top if sf.zshadow is None else sf.zshadow
            if sf.crown > 0:
                recs.append((sf.geom, spec, zt, 0.3, 0.8, sf.tex, sf.z, 0.0))
                recs.append((sf.geom, spec, zt, 1.2, 1.0, sf.tex, sf.z, sf.crown))
            else:
                recs.append((sf.geom, spec, zt, _facet_factor(sf.slope, sf.aspect, ctx.sun),
                             (1 + math.cos(math.radians(sf.slope))) / 2, sf.tex, sf.z, 0.0))
    if not recs:
        e = np.zeros(0, np.float32)
        return np.array([], object), np.zeros((0, 4), np.float32), e, e, e, e
    geoms = np.empty(len(recs), object)
    geoms[:] = [r[0] for r in recs]
    lean_z = np.array([r[6] for r in recs])
    if leaning:
        geoms = _translate_many(geoms, dx * lean_z, dy * lean_z)
    crown_r = np.array([r[7] for r in recs])
    ic = np.flatnonzero(crown_r > 0)
    keep = np.ones(len(recs), bool)
    if ic.size:
        shift = crown_r[ic] * lens_shift
        moved = _translate_many(geoms[ic], sun_dir[0] * shift, sun_dir[1] * shift)
        lens = shapely.intersection(geoms[ic], moved)
        geoms[ic] = lens
        keep[ic] = ~shapely.is_empty(lens) & (shapely.area(lens) > 0)
    specs = np.array([r[1] for r in recs], np.float32).reshape(-1, 4)
    cols = [np.array([r[i] for r in recs], np.float32) for i in (2, 3, 4, 5)]
    return (geoms[keep], specs[keep], *(c[keep] for c in cols))


def _polygonal(g):
    """The polygonal part of a geometry (Polygon or MultiPolygon), or None when empty."""
    if g.is_empty:
        return None
    if isinstance(g, (Polygon, MultiPolygon)):
        return g
    parts = [q for q in shapely.get_parts(g) if isinstance(q, Polygon) and not q.is_empty]
    return MultiPolygon(parts) if parts else None


def _wall_quads(w: _Wall, dx: float, dy: float, view_az: float):
    """Wall faces of a prism that face the sensor, as image-plane quads with their aspect."""
    coords = np.asarray(orient(w.geom, 1.0).exterior.coords)
    vx, vy = _dir(view_az)
    out = []
    for a, b in zip(coords[:-1], coords[1:]):
        ex, ey = b - a
        nx, ny = ey, -ex  # outward normal of a counter-clockwise ring
        if nx * vx + ny * vy <= 1e-9:
            continue
        quad = Polygon([(a[0] + dx * w.z0, a[1] + dy * w.z0), (b[0] + dx * w.z0, b[1] + dy * w.z0),
                        (b[0] + dx * w.z1, b[1] + dy * w.z1), (a[0] + dx * w.z1, a[1] + dy * w.z1)])
        if quad.area > 1e-4:
            out.append((quad, _azimuth_of(math.atan2(ny, nx))))
    return out


def _shadow_table(world: _World, ctx: _DateCtx):
    """Shadows of every caster for the date's sun, sorted by caster height (vectorised).

    The shadow of a prism between heights ``base`` and ``top`` on a plane at height ``recv``
    is the convex hull of its footprint moved ``(base - recv) / tan(el)`` and
    ``(top - recv) / tan(el)`` away from the sun.

    Returns
    -------
    geoms : ndarray of shapely polygons; tops : (n,) caster height (m); opacity : (n,)
    """
    az, el = ctx.sun
    ax, ay = _dir((az + 180.0) % 360.0)
    k = 1.0 / math.tan(math.radians(el))
    cs = [c for o in _visible_objs(world, ctx.name) for c in o.casters]
    if not cs:
        return np.array([], object), np.zeros(0, np.float32), np.zeros(0, np.float32)
    geoms = np.empty(len(cs), object)
    geoms[:] = [c.geom for c in cs]
    base = np.array([c.base - c.recv for c in cs]) * k
    top = np.array([c.top - c.recv for c in cs]) * k
    xy, idx = shapely.get_coordinates(geoms, return_index=True)
    pts = np.concatenate([xy + np.column_stack([ax * base[idx], ay * base[idx]]),
                          xy + np.column_stack([ax * top[idx], ay * top[idx]])])
    both = np.concatenate([idx, idx])
    order_pts = np.argsort(both, kind="stable")
    hulls = shapely.convex_hull(shapely.linestrings(pts[order_pts], indices=both[order_pts]))
    clip_i = [i for i, c in enumerate(cs) if c.clip is not None]
    if clip_i:
        clips = np.empty(len(clip_i), object)
        clips[:] = [cs[i].clip for i in clip_i]
        hulls[clip_i] = shapely.intersection(hulls[clip_i], clips)
    ok = shapely.area(hulls) > 0
    tops = np.array([c.top for c in cs], np.float32)
    opac = np.array([c.opacity for c in cs], np.float32)
    order = np.argsort(tops, kind="stable")
    order = order[ok[order]]
    return hulls[order], tops[order], opac[order]


def _geojson_many(geoms) -> list:
    """GeoJSON-like dicts for rasterio, built from coordinate arrays (fast for simple polygons)."""
    geoms = np.asarray(geoms, object)
    out = [None] * len(geoms)
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    si = np.flatnonzero(simple)
    if si.size:
        xy, idx = shapely.get_coordinates(shapely.get_exterior_ring(geoms[si]), return_index=True)
        cuts = np.flatnonzero(np.diff(idx)) + 1
        for i, ring in zip(si, np.split(xy, cuts)):
            out[i] = {"type": "Polygon", "coordinates": [ring]}
    for i in np.flatnonzero(~simple):
        g = _polygonal(geoms[i])
        out[i] = mapping(g) if g is not None else None
    return out


def _burn(geoms, values, cv: _Canvas, dtype: str) -> np.ndarray:
    """Rasterise geometries (painter's order, later wins) with their values on the canvas."""
    shapes = [(g, v) for g, v in zip(_geojson_many(geoms), values) if g is not None]
    if not shapes:
        return np.zeros(cv.shape, dtype)
    return rasterize(shapes, out_shape=cv.shape, transform=cv.transform, dtype=dtype, fill=0)


def _render(world: _World, cv: _Canvas, sh: _Shared, ctx: _DateCtx):
    """Yield the at-sensor reflectance of each band (blue, green, red, nir) on the canvas.

    The world is lit by the date's sun (direct light times facet factor and shadows, plus
    skylight), seen from the date's view (tall objects lean) and, for the after date,
    covered by clouds and their shadows. One buffer is reused: consume each band first.
    """
    H, W = cv.shape
    nf = len(world.fields) + 1
    di = 0 if ctx.name == "before" else 1
    cov_lut = np.array([0.0] + [f.cover[di] for f in world.fields], np.float32)[:nf]
    gr_lut = np.array([0.0] + [f.green[di] for f in world.fields], np.float32)[:nf]
    as_lut = np.array([0.0] + [f.a_season[di] for f in world.fields], np.float32)[:nf]
    cover = cov_lut[sh.fid]
    cover += sh.cover
    np.clip(cover, 0.0, 1.0, out=cover)
    season = _upsample(sh.season_coarse, sh.season_k, (H, W))
    green = as_lut[sh.fid]
    green *= season
    green += gr_lut[sh.fid]
    np.clip(green, 0.0, 1.0, out=green)
    cloud = cloud_tex = None
    if ctx.cloud is not None:
        cloud = _upsample(ctx.cloud[0], ctx.cloud[2], (H, W))
        cloud_tex = np.clip(season, -2.0, 2.0, out=season)
        cloud_tex *= 0.12
        cloud_tex += 0.86
        cloud_tex *= cloud
    del season

    geoms, specs, zs, facets, svfs, texs = _surface_table(world, ctx)
    n = len(geoms)
    oid = _burn(geoms, range(1, n + 1), cv, "uint16" if n < 65535 else "int32")
    io = np.flatnonzero(oid)
    ido = oid.ravel()[io].astype(np.int64) - 1
    del oid

    sgeoms, ctop, cop = _shadow_table(world, ctx)
    M = np.ones((H, W), np.float32)  # direct-light factor
    sky = np.ones((H, W), np.float32)  # sky-light factor
    M.ravel()[io] = facets[ido]
    sky.ravel()[io] = svfs[ido]
    if len(sgeoms):
        cid = _burn(sgeoms, range(1, len(sgeoms) + 1), cv, "uint16" if len(sgeoms) < 65535 else "int32")
        isd = np.flatnonzero(cid)
        ci = cid.ravel()[isd].astype(np.int64) - 1
        del cid
        zfull = np.zeros(H * W, np.float32)
        zfull[io] = zs[ido]
        zr = zfull[isd]
        del zfull
        amount = np.where(ctop[ci] > zr + 0.25, cop[ci], 0.0).astype(np.float32)
        M.ravel()[isd] *= 1.0 - amount
        sky.ravel()[isd] *= 1.0 - 0.25 * amount
    if ctx.cloud is not None:
        cshadow = _upsample(ctx.cloud[1], ctx.cloud[2], (H, W))
        cshadow *= -0.75
        cshadow += 1.0
        M *= cshadow
        cshadow -= 1.0
        cshadow *= 0.4
        cshadow += 1.0
        sky *= cshadow  # 1 - 0.3 * shadow
        del cshadow
    fine_o = sh.fine.ravel()[io].astype(np.float32)
    tex_o = 1.0 + texs[ido] * fine_o
    del fine_o
    G, D, S = world.greens["grass"], world.greens["dry"], world.greens["soil"]
    rho = np.empty((H, W), np.float32)
    tmp = np.empty((H, W), np.float32)
    for b in range(4):
        # terrain: green veg, dry veg and soil fractions of each pixel
        # rho = soil*S + cover * (D + green*(G - D) - soil*S)
        np.multiply(green, np.float32(G[b] - D[b]), out=rho)
        rho += np.float32(D[b])
        np.multiply(sh.soil, np.float32(S[b]), out=tmp)
        rho -= tmp
        rho *= cover
        rho += tmp
        rho.ravel()[io] = specs[ido, b] * tex_o
        # light = (1 - d) * direct + d * sky
        d = float(ctx.diffuse[b])
        np.multiply(sky, np.float32(d / (1.0 - d)), out=tmp)
        tmp += M
        tmp *= np.float32(1.0 - d)
        rho *= tmp
        if cloud_tex is not None:
            np.subtract(np.float32(1.0), cloud, out=tmp)
            rho *= tmp
            np.multiply(cloud_tex, np.float32(ctx.cloud_spec[b]), out=tmp)
            rho += tmp
        yield rho  # the same buffer every band: consume it before asking for the next


def _reduce_before(band: np.ndarray, cv: _Canvas, grid: Grid) -> np.ndarray:
    """Average a canvas band over each before pixel (the canvas is aligned, ``ss`` times finer)."""
    r0, c0 = cv.off
    k = cv.ss
    R, C = grid.shape
    a = band[r0: r0 + R * k, c0: c0 + C * k]
    out = np.zeros((R, C), np.float32)
    for i in range(k):
        for j in range(k):
            out += a[i::k, j::k]
    out /= k * k
    return out


def _reduce_after(band: np.ndarray, cv: _Canvas, grid: Grid, src_crs: CRS, shift_m) -> np.ndarray:
    """Average a canvas band onto the after grid, the world displaced by ``shift_m`` (x, y metres)."""
    src_t = cv.transform * Affine.identity()
    src_t = Affine(src_t.a, 0, src_t.c + shift_m[0], 0, src_t.e, src_t.f + shift_m[1])
    out = np.zeros(grid.shape, np.float32)
    reproject(band, out, src_transform=src_t, src_crs=src_crs, dst_transform=grid.transform, dst_crs=grid.crs,
              resampling=Resampling.average, num_threads=2, src_nodata=None, dst_nodata=None)
    return out


# ---------------------------------------------------------------------------------------------
# Clouds
# ---------------------------------------------------------------------------------------------


def _clouds(rng, p: SynthParams, cv: _Canvas, scene_bounds, sun, targets: np.ndarray,
            max_hidden: float = 0.35, attempts: int = 8) -> tuple[tuple, dict]:
    """Thick cumulus opacity and its cast-shadow strength (world coordinates).

    Clouds float ``height`` metres up; the shadow at a ground point comes from the cloud at
    that point + ``height / tan(elevation)`` towards the sun. Blobs are placed so that some
    clouds are in the scene and some shadows fall in it; the threshold is tuned so that the
    cloud cover of the scene equals ``p.cloud_fraction``. Up to ``attempts`` placements are
    drawn and the first that hides at most ``max_hidden`` of the ``targets`` (change
    centroids, (n, 2) UTM m) is kept (else the one hiding fewest), so that a pair keeps
    most of its changes assessable while some remain under cloud.

    Returns
    -------
    ((opacity, shadow, k), info)
        Two arrays on a grid ``k`` times coarser than, and aligned with, the canvas (use
        :func:`_upsample`), and a record of the cloud geometry.
    """
    H, W = cv.shape
    left, bottom, right, top = scene_bounds
    E = right - left
    rng_noise = np.random.default_rng(rng.integers(2**63))
    height = rng.uniform(600, 1800)
    L = height / math.tan(math.radians(sun[1]))
    ux, uy = _dir(sun[0])
    Dx, Dy = ux * L, uy * L
    k = max(1, int(round(max(E / 400.0, cv.res) / cv.res)))
    cres = cv.res * k
    ch, cw = H // k + 2, W // k + 2
    cb = cv.bounds
    xs = cb[0] + (np.arange(cw) + 0.5) * cres
    ys = cb[3] - (np.arange(ch) + 0.5) * cres
    n_vis = int(np.clip(round(rng.uniform(1, 3) * E / 600), 1, 10))
    r_mean = E * math.sqrt(p.cloud_fraction / (n_vis * math.pi)) * 1.05
    # ragged edges: noise (on a grid covering canvas and canvas + D) without scales larger
    # than a cloud, so that it does not bias any region
    ext = (min(cb[0], cb[0] + Dx) - 50, min(cb[1], cb[1] + Dy) - 50, max(cb[2], cb[2] + Dx) + 50, max(cb[3], cb[3] + Dy) + 50)
    nres = max(cres, (ext[2] - ext[0]) / 1024, (ext[3] - ext[1]) / 1024)
    nh, nw = int((ext[3] - ext[1]) / nres) + 2, int((ext[2] - ext[0]) / nres) + 2
    noise = _fractal(rng_noise, (nh, nw), 3.0, fmin=nres / max(r_mean, nres))

    def draw_blobs():
        out = []
        for dx, dy in ((0.0, 0.0), (Dx, Dy)):  # clouds in the scene, clouds shading the scene
            for _ in range(n_vis):
                out.append((rng.uniform(left + 0.1 * E, right - 0.1 * E) + dx, rng.uniform(bottom + 0.1 * E, top - 0.1 * E) + dy,
                            r_mean * rng.uniform(0.7, 1.3), rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)))
        return out

    def field_at(blobs, X, Y):
        env = np.full(X.shape, -4.0, np.float32)
        for bx, by, r, ecc, ang in blobs:
            c, s = math.cos(ang), math.sin(ang)
            u = ((X - bx) * c + (Y - by) * s) / r
            v = (-(X - bx) * s + (Y - by) * c) / (r * ecc)
            env = np.maximum(env, 1.0 - (u * u + v * v))
        ci = (ext[3] - Y) / nres - 0.5
        cj = (X - ext[0]) / nres - 0.5
        nz = ndimage.map_coordinates(noise, [np.ravel(ci), np.ravel(cj)], order=1, mode="nearest").reshape(X.shape)
        return env + 0.3 * nz

    edge = 0.14

    def alpha(Fv, thr):
        a = np.clip((Fv - thr) / edge + 0.5, 0.0, 1.0)
        return (a * a * (3 - 2 * a)).astype(np.float32)

    Xg, Yg = np.meshgrid(xs, ys)
    inscene = (Xg > left) & (Xg < right) & (Yg > bottom) & (Yg < top)
    best = None
    for attempt in range(attempts):
        blobs = draw_blobs()
        F = field_at(blobs, Xg, Yg)
        vals = F[inscene]
        thr = float(np.quantile(vals, 1.0 - p.cloud_fraction)) if vals.size else 1.0
        hidden = 0.0
        if len(targets):
            tx, ty = targets[:, 0], targets[:, 1]
            under = (alpha(field_at(blobs, tx, ty), thr) > 0.05) | (alpha(field_at(blobs, tx + Dx, ty + Dy), thr) > 0.05)
            hidden = float(under.mean())
        if best is None or hidden < best[0]:
            best = (hidden, blobs, F, thr, attempt)
        if hidden <= max_hidden:
            break
    hidden, blobs, F, thr, attempt = best
    A = alpha(F, thr)
    S = alpha(field_at(blobs, Xg + Dx, Yg + Dy), thr)
    info = dict(height_m=round(height, 1), shadow_offset_m=[round(Dx, 1), round(Dy, 1)], blobs=len(blobs),
                placement_attempt=attempt, changes_under_cloud_fraction=round(hidden, 3))
    return (A, S, k), info


# ---------------------------------------------------------------------------------------------
# Radiometry and products
# ---------------------------------------------------------------------------------------------


def _radiometry(rng, p: SynthParams, strength_scale: float) -> dict:
    """Per-band gain and haze offset of one date (blue, green, red, nir)."""
    k = p.gain_offset * strength_scale
    common = rng.normal(0.0, 0.1 * k)
    gains = np.clip(np.exp(common + rng.normal(0.0, 0.06 * k, 4)), 0.75, 1.3)
    haze = rng.uniform(0.0, 0.03) * k
    offsets = haze * np.array([1.0, 0.7, 0.45, 0.2]) + rng.normal(0, 0.002 * k, 4)
    return dict(gain=[round(float(g), 4) for g in gains], offset=[round(float(o), 5) for o in offsets],
                haze_gradient=round(float(rng.uniform(0, 0.4) * min(k, 1.5)), 3),
                haze_angle_deg=round(float(rng.uniform(0, 360)), 1))


def _sensor(rng, rho: np.ndarray, rad: dict, p: SynthParams, psf: float) -> np.ndarray:
    """Apply PSF, gain/offset with a haze gradient, noise and column striping (in place)."""
    b, h, w = rho.shape
    if psf > 0:
        for i in range(b):
            rho[i] = ndimage.gaussian_filter(rho[i], psf, mode="nearest", truncate=3.0)
    ang = math.radians(rad["haze_angle_deg"])
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ramp = 1.0 + rad["haze_gradient"] * (xx * math.cos(ang) + yy * math.sin(ang)) * 2
    for i in range(b):
        rho[i] *= rad["gain"][i]
        rho[i] += rad["offset"][i] * ramp
        if p.noise > 0:
            sigma = p.noise * (0.0015 + 0.005 * np.sqrt(np.clip(rho[i], 0, None)))
            rho[i] += sigma * rng.standard_normal((h, w), dtype=np.float32)
            rho[i] += rng.normal(0, 0.0006 * p.noise, w).astype(np.float32)[None, :]
    return rho


def _to_ms16(rho: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.clip(np.rint(rho * 10000.0), 1, 65535).astype(np.uint16)
    out[:, ~valid] = 0
    return out


def _to_rgb8(rng, rho: np.ndarray, valid: np.ndarray, nominal: bool) -> tuple[np.ndarray, dict]:
    """Display product: R, G, B with a per-date percentile stretch and gamma."""
    rgb = rho[[2, 1, 0]]
    sample = rgb[:, valid][:, :: max(1, valid.sum() // 200000)]
    lo_p, hi_p = (1.0, 99.0) if nominal else (rng.uniform(0.2, 2.5), rng.uniform(97.5, 99.8))
    gamma = rng.uniform(1.6, 2.4)
    per_band = rng.random() < 0.5
    if per_band:
        lo = np.percentile(sample, lo_p, axis=1)
        hi = np.percentile(sample, hi_p, axis=1)
    else:
        lo = np.full(3, np.percentile(sample, lo_p))
        hi = np.full(3, np.percentile(sample, hi_p))
    out = np.empty(rgb.shape, np.uint8)
    for i in range(3):
        x = np.clip((rgb[i] - lo[i]) / max(hi[i] - lo[i], 1e-6), 0, 1) ** (1.0 / gamma)
        out[i] = np.rint(x * 255)
    out[:, ~valid] = 0
    return out, dict(low_pct=round(float(lo_p), 3), high_pct=round(float(hi_p), 3), gamma=round(float(gamma), 3),
                     per_band=bool(per_band), low=[round(float(v), 5) for v in lo], high=[round(float(v), 5) for v in hi])


def _nodata_corner(rng, grid: Grid) -> Polygon:
    """A triangle cutting one corner of a grid (scene edge), in the grid's CRS."""
    left, bottom, right, top = grid.bounds
    w, h = right - left, top - bottom
    corner = int(rng.integers(4))
    a, b = rng.uniform(0.12, 0.35) * w, rng.uniform(0.12, 0.35) * h
    cx, cy = (left, right, right, left)[corner], (top, top, bottom, bottom)[corner]
    sx, sy = (1, -1, -1, 1)[corner], (-1, -1, 1, 1)[corner]
    pad_x, pad_y = 0.01 * w * -sx, 0.01 * h * -sy
    return Polygon([(cx + pad_x, cy + pad_y), (cx + sx * a, cy + pad_y), (cx + pad_x, cy + sy * b)])


# ---------------------------------------------------------------------------------------------
# Truth
# ---------------------------------------------------------------------------------------------


def _truth_objects(world: _World, utm: CRS, before: Grid) -> list[tuple[_Obj, TruthObject]]:
    tr = Transformer.from_crs(utm, LONLAT, always_xy=True)
    scene = before.footprint()
    out = []
    for o in world.objs:
        if o.truth is None or o.footprint is None:
            continue
        fp = o.footprint
        if not scene.contains(fp.centroid):
            continue
        mrr = fp.minimum_rotated_rectangle
        xy = np.asarray(mrr.exterior.coords)
        sides = np.hypot(*np.diff(xy[:3], axis=0).T)
        lonlat = shapely.transform(fp, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
        lonlat = orient(lonlat, 1.0) if isinstance(lonlat, Polygon) else lonlat
        t = TruthObject(id=len(out) + 1, change=o.truth[0], cls=o.truth[1], footprint_lonlat=lonlat,
                        area_m2=round(float(fp.area), 3), length_m=round(float(sides.max()), 3),
                        width_m=round(float(sides.min()), 3))
        out.append((o, t))
    return out


def _truth_mask(truth, before: Grid, invalid: np.ndarray) -> np.ndarray:
    shapes = [(o.footprint, _CHANGE_CODE[t.change]) for o, t in truth]
    mask = rasterize(shapes, out_shape=before.shape, transform=before.transform, dtype="uint8", fill=0) \
        if shapes else np.zeros(before.shape, np.uint8)
    mask[invalid] = NOT_ASSESSABLE
    return mask


def _aoi(rng, before: Grid) -> Polygon:
    """An irregular polygon covering most of the scene, EPSG:4326."""
    left, bottom, right, top = before.bounds
    cx, cy, hw = (left + right) / 2, (bottom + top) / 2, (right - left) / 2
    n = int(rng.integers(8, 14))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 0.3) + rng.normal(0, 0.12, n)
    ang = np.sort(ang)
    q = 6.0  # superellipse exponent: close to a square
    unit = 1.0 / (np.abs(np.cos(ang)) ** q + np.abs(np.sin(ang)) ** q) ** (1 / q)
    rad = hw * unit * rng.uniform(0.78, 0.96, n)
    poly = Polygon(np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)])).buffer(0)
    if isinstance(poly, MultiPolygon):
        poly = max(poly.geoms, key=lambda g: g.area)
    tr = Transformer.from_crs(before.crs, LONLAT, always_xy=True)
    return orient(shapely.transform(poly, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1]))), 1.0)


# ---------------------------------------------------------------------------------------------
