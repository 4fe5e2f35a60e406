"""The world of a synthetic scene: vector objects in metres (UTM of the scene centre) and their layout."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from synth.presets import SynthParams, _spec

# World model (internal)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Surf:
    """A visible top surface of an object: nadir footprint (UTM m), reflectance and geometry."""

    geom: Polygon
    spec: np.ndarray
    z: float  # height of the surface above ground, m (lean, shadow test)
    slope: float = 0.0  # degrees
    aspect: float = 0.0  # compass azimuth of the downslope direction, degrees
    tex: float = 0.03  # relative texture amplitude
    spec_after: np.ndarray | None = None
    crown: float = 0.0  # >0: tree crown of this radius (m), lit/shaded halves per date
    zshadow: float | None = None  # height used to test shadows of other casters (default: object top)


@dataclass
class _Wall:
    """Vertical walls of a prism, drawn (where they face the sensor) when seen off-nadir."""

    geom: Polygon
    z0: float
    z1: float
    spec: np.ndarray


@dataclass
class _Caster:
    """A shadow-casting prism between heights ``base`` and ``top`` (m)."""

    geom: Polygon
    base: float
    top: float
    opacity: float = 1.0
    recv: float = 0.0  # height of the surface the shadow falls on
    clip: Polygon | None = None


@dataclass
class _Obj:
    kind: str
    surfs: list
    casters: list = field(default_factory=list)
    walls: list = field(default_factory=list)
    when: str = "both"  # both | before | after
    truth: tuple[str, str] | None = None  # (change, cls)
    footprint: Polygon | None = None

    @functools.cached_property
    def top(self) -> float:
        return max([s.z for s in self.surfs] + [0.0])

    @functools.cached_property
    def shadow_top(self) -> float:
        """Highest point of the object; its own casters never shade it below this."""
        return max([self.top] + [c.top for c in self.casters])


@dataclass
class _Field:
    """A land parcel: vegetation cover and greenness per date, soil and texture."""

    geom: Polygon
    kind: str
    cover: tuple[float, float]  # before, after
    green: tuple[float, float]
    soil: float  # soil brightness factor
    a_coarse: float
    a_fine: float
    a_season: tuple[float, float]
    rows_amp: float = 0.0
    rows_soil: float = 0.0
    rows_k: tuple[float, float] = (0.0, 0.0)  # wave vector (rad/m) in canvas (x, y)


@dataclass
class _World:
    fields: list
    objs: list
    greens: dict  # endmember spectra: grass, dry, soil
    info: dict


# --- geometry helpers ------------------------------------------------------------------------


def _rect(cx: float, cy: float, length: float, width: float, angle: float) -> Polygon:
    """Rectangle centred on (cx, cy), ``length`` along ``angle`` (radians CCW from east)."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2.0, width / 2.0
    return Polygon([(cx + c * dx - s * dy, cy + s * dx + c * dy) for dx, dy in ((-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw))])


def _azimuth_of(angle: float) -> float:
    """Compass azimuth (deg) of a direction given as radians CCW from east."""
    return (90.0 - math.degrees(angle)) % 360.0


def _dir(azimuth_deg: float) -> tuple[float, float]:
    """Unit (east, north) vector of a compass azimuth."""
    a = math.radians(azimuth_deg)
    return math.sin(a), math.cos(a)


def _blob(cx: float, cy: float, r: float, rng: np.random.Generator, n: int = 18, rough: float = 0.12) -> Polygon:
    """An irregular round polygon (tree crown, tank) of mean radius ``r``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = r * (1 + rough * (rng.normal(0, 0.5, n) + 0.6 * np.sin(2 * t + rng.uniform(0, 6))))
    rad = np.clip(rad, 0.6 * r, 1.4 * r)
    return Polygon(np.column_stack([cx + rad * np.cos(t), cy + rad * np.sin(t)]))


def _facet_factor(slope: float, aspect: float, sun: tuple[float, float]) -> float:
    """Direct irradiance on a facet relative to flat ground (cos incidence / sin elevation)."""
    s, a = math.radians(slope), math.radians(aspect)
    az, el = math.radians(sun[0]), math.radians(sun[1])
    n = (math.sin(s) * math.sin(a), math.sin(s) * math.cos(a), math.cos(s))
    v = (math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el))
    return max(0.0, n[0] * v[0] + n[1] * v[1] + n[2] * v[2]) / math.sin(el)


def _lean(view: tuple[float, float]) -> tuple[float, float]:
    """Image displacement (east, north) per metre of height for a view (azimuth, off-nadir)."""
    k = math.tan(math.radians(view[1]))
    ex, ny = _dir(view[0])
    return -k * ex, -k * ny


# --- objects -------------------------------------------------------------------------------


def _vehicle(rng, cx, cy, angle, length, width, paint: np.ndarray, kind: str) -> _Obj:
    """A military vehicle seen from above: truck (cab + tarp), AFV (hull, turret, gun) or van."""
    fwd = (math.cos(angle), math.sin(angle))
    body = _rect(cx, cy, length, width, angle)
    surfs, casters, walls = [], [], []
    dark = paint * 0.8
    if kind == "truck":
        h_cab, h_cargo = rng.uniform(2.6, 3.0), rng.uniform(2.9, 3.4)
        cab_l = min(2.4, length * 0.32)
        tarp = _spec("canvas_olive" if paint[3] > 0.2 else "canvas_tan", rng, 0.1) if rng.random() < 0.7 else paint * 0.95
        cargo_l = length - cab_l - 0.3
        ccx, ccy = cx - fwd[0] * (length - cargo_l) / 2, cy - fwd[1] * (length - cargo_l) / 2
        kcx, kcy = cx + fwd[0] * (length - cab_l) / 2, cy + fwd[1] * (length - cab_l) / 2
        cargo = _rect(ccx, ccy, cargo_l, width, angle)
        cab = _rect(kcx, kcy, cab_l, width * 0.92, angle)
        walls += [_Wall(cargo, 0.0, h_cargo, dark), _Wall(cab, 0.0, h_cab, dark)]
        surfs += [_Surf(cab, paint, h_cab, tex=0.05), _Surf(cargo, tarp, h_cargo, tex=0.06)]
        glass = _rect(kcx + fwd[0] * cab_l * 0.3, kcy + fwd[1] * cab_l * 0.3, cab_l * 0.3, width * 0.8, angle)
        surfs.append(_Surf(glass, _spec("glass", rng), h_cab, tex=0.02))
        casters += [_Caster(cargo, 0.0, h_cargo), _Caster(cab, 0.0, h_cab)]
    elif kind == "afv":
        h_hull = rng.uniform(1.9, 2.4)
        h_tur = h_hull + rng.uniform(0.6, 0.9)
        surfs.append(_Surf(body, paint, h_hull, tex=0.05))
        walls.append(_Wall(body, 0.0, h_hull, dark))
        tcx, tcy = cx - fwd[0] * length * 0.05, cy - fwd[1] * length * 0.05
        tur = _rect(tcx, tcy, length * 0.42, width * 0.72, angle + rng.normal(0, 0.05))
        gun_l = length * rng.uniform(0.5, 0.75)
        gun = _rect(tcx + fwd[0] * gun_l / 2, tcy + fwd[1] * gun_l / 2, gun_l, 0.25, angle)
        surfs += [_Surf(tur, paint * 0.93, h_tur, tex=0.05), _Surf(gun, dark, h_tur - 0.2, tex=0.0)]
        walls.append(_Wall(tur, h_hull, h_tur, dark))
        casters += [_Caster(body, 0.0, h_hull), _Caster(tur, h_hull, h_tur), _Caster(gun, h_tur - 0.3, h_tur - 0.1)]
    else:  # van / box truck
        h = rng.uniform(2.3, 3.2)
        surfs.append(_Surf(body, paint, h, tex=0.04))
        walls.append(_Wall(body, 0.0, h, dark))
        casters.append(_Caster(body, 0.0, h))
    return _Obj("vehicle", surfs, casters, walls, footprint=body)


def _vehicle_paint(rng, civil: float = 0.08) -> tuple[np.ndarray, str]:
    r = rng.random()
    kind = "truck" if r < 0.5 else ("afv" if r < 0.85 else "van")
    if rng.random() < civil:
        return _spec(str(rng.choice(["paint_white", "paint_grey"])), rng, 0.08), "van"
    return _spec(str(rng.choice(["paint_olive", "paint_olive", "paint_tan", "paint_dark"])), rng, 0.12), kind


def _tent(rng, cx, cy, angle, length, width, canvas: np.ndarray) -> _Obj:
    """A gable-roofed military tent (two sloped canvas facets along the long axis)."""
    eave, ridge = rng.uniform(1.5, 1.9), rng.uniform(2.6, 3.8)
    slope = math.degrees(math.atan2(ridge - eave, width / 2))
    n = (-math.sin(angle), math.cos(angle))
    surfs = []
    for side in (1, -1):
        hc = _rect(cx + side * n[0] * width / 4, cy + side * n[1] * width / 4, length, width / 2, angle)
        aspect = _azimuth_of(math.atan2(side * n[1], side * n[0]))
        surfs.append(_Surf(hc, canvas, (eave + ridge) / 2, slope=slope, aspect=aspect, tex=0.04))
    fp = _rect(cx, cy, length, width, angle)
    walls = [_Wall(fp, 0.0, eave, canvas * 0.85)]
    return _Obj("tent", surfs, [_Caster(fp, 0.0, ridge * 0.85)], walls, footprint=fp)


def _building(rng, cx, cy, length, width, angle, kind: str, roof: np.ndarray, height: float) -> _Obj:
    """A building: ``gable`` (two facets), ``flat`` (with rooftop units), ``hangar`` (arched)."""
    fp = _rect(cx, cy, length, width, angle)
    n = (-math.sin(angle), math.cos(angle))
    wall = _spec("wall", rng, 0.15)
    surfs, casters = [], []
    if kind in ("gable", "hangar"):
        nstrip = 2 if kind == "gable" else 8
        rise = width / 2 * math.tan(math.radians(rng.uniform(12, 30))) if kind == "gable" else width * rng.uniform(0.22, 0.32)
        edges = np.linspace(-width / 2, width / 2, nstrip + 1)
        # roof profile: gable (straight) or arch (half-ellipse)
        prof = (1 - np.abs(edges) / (width / 2)) if kind == "gable" else np.sqrt(np.clip(1 - (edges / (width / 2)) ** 2, 0, 1))
        zs = height + rise * prof
        for i in range(nstrip):
            w0, w1 = edges[i], edges[i + 1]
            mid = (w0 + w1) / 2
            strip = _rect(cx + n[0] * mid, cy + n[1] * mid, length, w1 - w0, angle)
            dz = zs[i + 1] - zs[i]
            slope = math.degrees(math.atan2(abs(dz), w1 - w0))
            down = -1 if dz > 0 else 1  # downslope towards -n when the roof rises along +n
            aspect = _azimuth_of(math.atan2(down * n[1], down * n[0]))
            surfs.append(_Surf(strip, roof, float((zs[i] + zs[i + 1]) / 2), slope=slope, aspect=aspect, tex=0.03))
        casters.append(_Caster(fp, 0.0, height + rise * 0.8))
        top_z = height
    else:
        surfs.append(_Surf(fp, roof, height, tex=0.035, zshadow=height))
        casters.append(_Caster(fp, 0.0, height))
        top_z = height
        # parapet-free flat roof with a few rooftop units (HVAC boxes)
        for _ in range(int(rng.integers(0, 4)) if min(length, width) > 9 else 0):
            ux = rng.uniform(-0.35, 0.35) * length
            uy = rng.uniform(-0.3, 0.3) * width
            hx, hy = cx + math.cos(angle) * ux + n[0] * uy, cy + math.sin(angle) * ux + n[1] * uy
            unit = _rect(hx, hy, rng.uniform(1.5, 3.5), rng.uniform(1.2, 2.5), angle)
            h_u = height + rng.uniform(0.9, 1.6)
            surfs.append(_Surf(unit, _spec("metal_galv", rng, 0.2), h_u, tex=0.02))
            casters.append(_Caster(unit, height, h_u, recv=height, clip=fp))
    walls = [_Wall(fp, 0.0, top_z, wall)]
    return _Obj("building", surfs, casters, walls, footprint=fp)


def _l_building(rng, cx, cy, length, width, angle, roof, height) -> _Obj:
    """An L-shaped flat-roofed building made of two wings."""
    wing = width * rng.uniform(0.35, 0.5)
    c, s = math.cos(angle), math.sin(angle)
    n = (-s, c)
    a = _rect(cx, cy - 0, length, wing, angle)
    a = affinity.translate(a, n[0] * (width - wing) / 2, n[1] * (width - wing) / 2)
    bx = cx - c * (length - wing) / 2
    by = cy - s * (length - wing) / 2
    b = _rect(bx, by, wing, width, angle)
    wall = _spec("wall", rng, 0.15)
    surfs = [_Surf(a, roof, height, tex=0.035), _Surf(b, roof, height, tex=0.035)]
    casters = [_Caster(a, 0, height), _Caster(b, 0, height)]
    walls = [_Wall(a, 0, height, wall), _Wall(b, 0, height, wall)]
    return _Obj("building", surfs, casters, walls, footprint=shapely.union(a, b))


def _crowns(rng, x: np.ndarray, y: np.ndarray, r: np.ndarray, n: int = 14, rough: float = 0.12) -> np.ndarray:
    """Irregular round polygons (tree crowns) of mean radii ``r`` centred on (x, y), vectorised."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[None, :]
    k = len(x)
    wob = rng.normal(0, 0.5, (k, n)) + 0.6 * np.sin(2 * t + rng.uniform(0, 6, (k, 1)))
    rad = np.clip(r[:, None] * (1 + rough * wob), 0.6 * r[:, None], 1.4 * r[:, None])
    xy = np.stack([x[:, None] + rad * np.cos(t), y[:, None] + rad * np.sin(t)], axis=-1)
    xy = np.concatenate([xy, xy[:, :1]], axis=1)
    return shapely.polygons(xy)


def _tree(rng, crown: Polygon, trunk: Polygon, r: float, h: float, kind: str) -> _Obj:
    """A tree: crown polygon of radius ``r`` with top height ``h`` (m), and its trunk's shadow."""
    spec = _spec("tree_conifer" if kind == "conifer" else "tree_decid", rng, 0.15)
    base = max(1.5, h - 2.2 * r) if kind != "conifer" else max(0.5, h * 0.15)
    surf = _Surf(crown, spec, h - 0.25 * (h - base), tex=0.25, crown=r)
    casters = [_Caster(crown, base, h, opacity=0.85), _Caster(trunk, 0.0, base, opacity=1.0)]
    return _Obj("tree", [surf], casters, [], footprint=crown)


def _ground(geom, spec, tex=0.05) -> _Obj:
    """A flat surface on the ground (road, hard standing, track, marking)."""
    return _Obj("ground", [_Surf(geom, spec, 0.0, tex=tex)])


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


class _Frame:
    """A rotated local frame (u, v) in metres placed at (x0, y0) in UTM."""

    def __init__(self, x0: float, y0: float, theta: float):
        self.x0, self.y0, self.theta = x0, y0, theta
        self.c, self.s = math.cos(theta), math.sin(theta)

    def pt(self, u: float, v: float) -> tuple[float, float]:
        return self.x0 + self.c * u - self.s * v, self.y0 + self.s * u + self.c * v

    def geom(self, g):
        return affinity.affine_transform(g, [self.c, -self.s, self.s, self.c, self.x0, self.y0])


def _lattice_groups(rng, free: np.ndarray, taken: np.ndarray, n: int, group: tuple[int, int],
                    adjacent: bool = True) -> list[tuple[int, int]]:
    """Choose ``n`` cells of a slot lattice in compact groups.

    Groups grow from a seed cell (next to ``taken`` cells when ``adjacent``), preferring
    neighbours in the same row (side by side) and then the rows next to it.

    Parameters
    ----------
    free : ndarray of bool (rows, cols)
        Cells that may be chosen; updated in place.
    taken : ndarray of bool (rows, cols)
        Cells already occupied (seeds of adjacency); updated in place with the choice.
    """
    chosen: list[tuple[int, int]] = []
    rows, cols = free.shape
    while len(chosen) < n and free.any():
        size = min(n - len(chosen), int(rng.integers(group[0], group[1] + 1)))
        cand = np.argwhere(free)
        if adjacent and taken.any():
            near = np.zeros_like(free)
            near[:, 1:] |= taken[:, :-1]
            near[:, :-1] |= taken[:, 1:]
            near[1:, :] |= taken[:-1, :]
            near[:-1, :] |= taken[1:, :]
            near &= free
            if near.any():
                cand = np.argwhere(near)
        r, c = map(int, cand[rng.integers(len(cand))])
        grp = [(r, c)]
        free[r, c] = False
        taken[r, c] = True
        while len(grp) < size:
            opts = []
            for gr, gc in grp:
                for dr, dc, w in ((0, 1, 6.0), (0, -1, 6.0), (1, 0, 1.0), (-1, 0, 1.0)):
                    rr, cc = gr + dr, gc + dc
                    if 0 <= rr < rows and 0 <= cc < cols and free[rr, cc]:
                        opts.append((rr, cc, w))
            if not opts:
                break
            w = np.array([o[2] for o in opts])
            k = int(rng.choice(len(opts), p=w / w.sum()))
            rr, cc = opts[k][0], opts[k][1]
            free[rr, cc] = False
            taken[rr, cc] = True
            grp.append((rr, cc))
        chosen += grp
    return chosen[:n]


def _pack(items: list[dict], width: float, road: float, rng) -> tuple[float, list[float]]:
    """Shelf-pack lots (dicts with ``w``, ``d``) left to right into a compound ``width`` wide.

    Each shelf is preceded by a road strip ``road`` wide; sets ``u``, ``v`` (lower-left corner)
    on every item and returns the compound depth and the v of each shelf road.
    """
    items.sort(key=lambda it: -it["d"])
    u, v, shelf_d, roads = road, road, 0.0, [0.0]
    for it in items:
        gap = rng.uniform(4, 12)
        if u + it["w"] > width and u > road:
            v += shelf_d + road
            roads.append(v - road)
            u, shelf_d = road, 0.0
        it["u"], it["v"] = u, v
        u += it["w"] + gap
        shelf_d = max(shelf_d, it["d"])
    return v + shelf_d + 4.0, roads


def _pool_lots(rng, n_static: int, n_left: int, n_new: int) -> list[dict]:
    """Motor-pool lots sized for the vehicles they will hold (before and after)."""
    total = n_static + n_left + n_new
    npools = max(1, math.ceil(total / 90))
    lots = []
    for k in range(npools):
        share = (total // npools) + (1 if k < total % npools else 0)
        fill = rng.uniform(0.62, 0.8)
        slots = max(4, math.ceil(share / fill))
        pitch = 3.5 + rng.uniform(1.0, 2.5)  # vehicle width + 1-3 m gap side by side
        row_sp = rng.uniform(10.0, 15.0)  # rows 10-15 m apart
        cols = max(2, math.ceil(math.sqrt(slots * row_sp / pitch) * rng.uniform(1.0, 1.6)))
        rows = max(1, math.ceil(slots / cols))
        margin = rng.uniform(4.0, 9.0)
        lots.append(dict(kind="pool", rows=rows, cols=cols, pitch=pitch, row_sp=row_sp, margin=margin,
                         w=cols * pitch + 2 * margin, d=rows * row_sp + 2 * margin))
    return lots


def _distribute(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _build_world(p: SynthParams, rng: np.random.Generator, canvas_bounds, scene_bounds,
                 season_ctx: tuple[float, float]) -> _World:
    """Lay out the world (fields, trees, roads, compound and its contents) in UTM metres.

    ``canvas_bounds`` is the area to fill with fields and trees (the world bounds, which
    contain the rendering canvas); the compound and every change lie inside ``scene_bounds``.
    """
    E = p.extent_m
    left, bottom, right, top = scene_bounds
    cx0, cy0 = (left + right) / 2, (bottom + top) / 2
    objs: list[_Obj] = []
    info: dict = {}
    big = E >= 1200

    # --- compound contents (lots in the compound's local frame) ---
    small_scale = (E / 512.0)
    lots: list[dict] = []
    n_left = p.vehicles_left
    n_static_pool = int(rng.integers(10, 22) * min(small_scale, 3.0) ** 0.8)  # parked in both dates
    lots += _pool_lots(rng, n_static_pool, n_left, p.vehicles_arrived)
    n_tents_b = int(rng.integers(5, 14) * (small_scale ** 0.7))
    tent_L, tent_W = rng.choice([(5.0, 5.0), (6.0, 6.0), (10.0, 6.0), (12.0, 6.0), (8.0, 5.0)], 2)
    tL, tW = max(tent_L[0], tent_W[0]), max(tent_L[1], tent_W[1])
    tgap = rng.uniform(2.5, 6.0)
    t_slots = math.ceil((n_tents_b + p.tents_new) / rng.uniform(0.55, 0.75)) + 2
    t_cols = max(2, math.ceil(math.sqrt(t_slots * 1.3)))
    t_rows = math.ceil(t_slots / t_cols)
    lots.append(dict(kind="tents", rows=t_rows, cols=t_cols, pitch=tW + tgap, row_sp=tL + tgap + 2,
                     margin=4.0, w=t_cols * (tW + tgap) + 8, d=t_rows * (tL + tgap + 2) + 8,
                     sizes=(tuple(tent_L), tuple(tent_W))))
    n_bld = int(np.clip(rng.integers(7, 14) * small_scale ** 1.25, 4, 160))
    for _ in range(n_bld):
        r = rng.random()
        if r < 0.4:
            kind, L, W, H = "gable", rng.uniform(20, 45), rng.uniform(9, 15), rng.uniform(3.5, 7)
        elif r < 0.7:
            kind, L, W, H = "flat", rng.uniform(12, 40), rng.uniform(10, 25), rng.uniform(4, 12)
        elif r < 0.85:
            kind, L, W, H = "L", rng.uniform(20, 40), rng.uniform(15, 30), rng.uniform(4, 9)
        else:
            kind, L, W, H = "hangar", rng.uniform(30, 55), rng.uniform(20, 35), rng.uniform(6, 9)
        sb = rng.uniform(4, 10)
        lots.append(dict(kind="bld", bkind=kind, L=L, W=W, H=H, sb=sb, w=L + 2 * sb, d=W + 2 * sb))
    n_new = p.structures_new
    for _ in range(n_new):
        if p.pixel_size_m >= 5:
            L, W = rng.uniform(50, 140), rng.uniform(30, 70)
        else:
            L, W = rng.uniform(12, 40), rng.uniform(8, 20)
        pad = rng.uniform(4, 10)
        lots.append(dict(kind="pad", L=L, W=W, H=rng.uniform(4, 12), pad=pad, w=L + 2 * pad + 4, d=W + 2 * pad + 4))
    n_yard = int(rng.integers(0, 3) * small_scale ** 0.5)
    for _ in range(n_yard):
        lots.append(dict(kind="containers", rows=int(rng.integers(2, 5)), cols=int(rng.integers(3, 9)),
                         w=0.0, d=0.0))
        lots[-1]["w"] = lots[-1]["cols"] * 2.9 + 8
        lots[-1]["d"] = lots[-1]["rows"] * 7.0 + 8

    road_w = rng.uniform(6.0, 9.0) if not big else rng.uniform(8.0, 12.0)
    area = sum(it["w"] * it["d"] for it in lots) * 1.6
    width = max(math.sqrt(area * rng.uniform(1.2, 1.7)), max(it["w"] for it in lots) + 2 * road_w)
    limit = 0.86 * E
    width = min(width, limit)
    while True:  # widen the compound, then drop optional buildings until everything fits
        for _ in range(40):
            depth, shelf_roads = _pack(lots, width, road_w, rng)
            if depth <= limit or width >= limit:
                break
            width = min(limit, width * 1.08)
        fits = depth <= limit and max(it["w"] for it in lots) + road_w <= width
        if fits:
            break
        optional = [i for i, it in enumerate(lots) if it["kind"] in ("bld", "containers")]
        if not optional:
            raise ValueError(f"the requested objects do not fit in a {E:.0f} m scene; use a larger extent_m")
        lots.pop(optional[int(rng.integers(len(optional)))])
    diag_ok = False
    for _ in range(60):
        theta = rng.uniform(0, 2 * math.pi)
        c, s = abs(math.cos(theta)), abs(math.sin(theta))
        bw, bh = width * c + depth * s, width * s + depth * c
        if bw < 0.92 * E and bh < 0.92 * E:
            diag_ok = True
            break
    if not diag_ok:
        theta = rng.choice([0.0, math.pi / 2, math.pi, 1.5 * math.pi])
        c, s = abs(math.cos(theta)), abs(math.sin(theta))
        bw, bh = width * c + depth * s, width * s + depth * c
    ccx = cx0 + rng.uniform(-1, 1) * max(0.0, (0.94 * E - bw) / 2)
    ccy = cy0 + rng.uniform(-1, 1) * max(0.0, (0.94 * E - bh) / 2)
    fr = _Frame(0, 0, theta)
    ox, oy = fr.pt(width / 2, depth / 2)
    fr = _Frame(ccx - ox, ccy - oy, theta)
    compound_local = box(0, 0, width, depth)
    compound = fr.geom(compound_local)
    info.update(compound_m=[round(width, 1), round(depth, 1)], compound_angle_deg=round(math.degrees(theta) % 360, 2))

    # --- fields (outside) and compound ground ---
    fields = _make_fields(rng, p, canvas_bounds, theta + rng.normal(0, 0.15), season_ctx)
    fields.append(_compound_field(rng, p, compound.buffer(14.0, join_style="mitre"), season_ctx[0]))
    # --- roads ---
    asphalt = _spec("asphalt" if rng.random() < 0.6 else "asphalt_old", rng, 0.08)
    internal = _spec(str(rng.choice(["asphalt_old", "gravel", "concrete"])), rng, 0.08)
    dirt = _spec("dirt", rng, 0.1)
    objs.append(_ground(compound.buffer(12.0, join_style="mitre").difference(compound.buffer(5.0, join_style="mitre")),
                        _spec("dry_veg", rng, 0.1), tex=0.15))
    objs.append(_ground(compound.buffer(9.0, join_style="mitre").difference(compound.buffer(5.5, join_style="mitre")), dirt, tex=0.12))
    main_off = rng.uniform(35, 110)
    span = 3 * E
    main_local = LineString([(-main_off, -span), (-main_off, span)])
    main_w = rng.uniform(7.0, 10.0)
    main = fr.geom(main_local.buffer(main_w / 2, cap_style=2))
    objs.append(_ground(main, asphalt, tex=0.05))
    for k in range(int(span * 2 / 9)):
        dash = box(-main_off - 0.08, -span + k * 9.0, -main_off + 0.08, -span + k * 9.0 + 3.0)
        objs.append(_ground(fr.geom(dash), _spec("marking", rng, 0.1), tex=0.02))
    gate_v = shelf_roads[len(shelf_roads) // 2] + road_w / 2
    access = fr.geom(LineString([(-main_off, gate_v), (road_w / 2, gate_v)]).buffer(road_w / 2, cap_style=2))
    objs.append(_ground(access, asphalt, tex=0.05))
    roads_local = [box(0, 0, road_w, depth)] + [box(0, v, width, v + road_w) for v in shelf_roads]
    road_union = shapely.union_all([fr.geom(g) for g in roads_local])
    objs.append(_ground(road_union, internal, tex=0.06))
    tracks = _tracks(rng, fr, width, depth, lots, road_w, dirt)
    objs[:0] = tracks  # under everything else: pads and roads are drawn over their ends
    keepout = [compound.buffer(16.0), main.buffer(4.0), access.buffer(4.0)]

    # --- airfield (large scenes) ---
    if big:
        keepout += _airfield(rng, p, fr, width, depth, main_off, objs, E, scene_bounds)

    # --- contents of lots ---
    counts = dict(pool_static=0, pool_left=0, pool_new=0, tents_static=0, tents_new=0)
    pools = [it for it in lots if it["kind"] == "pool"]
    statics = _distribute(n_static_pool, len(pools))
    lefts = _distribute(n_left, len(pools))
    arrivals = _distribute(p.vehicles_arrived, len(pools))
    for it, ns, nl, na in zip(pools, statics, lefts, arrivals):
        _fill_pool(rng, p, fr, it, ns, nl, na, objs, counts)
    for it in lots:
        if it["kind"] == "tents":
            _fill_tents(rng, p, fr, it, n_tents_b, p.tents_new, objs, counts)
    blds = []
    for it in lots:
        if it["kind"] == "bld":
            blds.append(_place_building(rng, fr, it, objs))
        elif it["kind"] == "pad":
            _place_pad(rng, fr, it, objs)
        elif it["kind"] == "containers":
            _place_containers(rng, fr, it, objs)
    _change_roofs(rng, p, blds)
    _roadside_vehicles(rng, fr, width, depth, shelf_roads, road_w, objs, int(rng.integers(3, 9) * small_scale ** 0.5))
    _clearings(rng, p, objs, scene_bounds, keepout)
    _trees(rng, p, fields, objs, keepout, canvas_bounds, fr, width, depth)
    info["counts_layout"] = counts
    info["buildings"] = len(blds)
    return _World(fields, objs, {}, info)


def _tracks(rng, fr: _Frame, width: float, depth: float, lots: list, road_w: float, dirt: np.ndarray) -> list:
    """Worn vehicle tracks across the compound ground, from motor pools and the tent area (static)."""
    out = []
    for it in lots:
        if it["kind"] not in ("pool", "tents"):
            continue
        for _ in range(int(rng.integers(1, 4))):
            u0 = it["u"] + rng.uniform(0, it["w"])
            v0 = it["v"] + rng.choice([0.0, it["d"]])
            u1 = np.clip(u0 + rng.uniform(-60, 60), road_w, width)
            v1 = np.clip(v0 + rng.uniform(-40, 40), road_w, depth)
            um, vm = (u0 + u1) / 2 + rng.uniform(-20, 20), (v0 + v1) / 2 + rng.uniform(-20, 20)
            t = np.linspace(0, 1, 24)[:, None]
            pts = (1 - t) ** 2 * np.array([u0, v0]) + 2 * t * (1 - t) * np.array([um, vm]) + t ** 2 * np.array([u1, v1])
            line = LineString(pts)
            g = line.buffer(rng.uniform(1.2, 1.8), cap_style="flat")
            spec = dirt * np.float32(rng.uniform(0.85, 1.1))
            out.append(_ground(fr.geom(g), spec, tex=0.2))
    return out


def _fill_pool(rng, p, fr: _Frame, it: dict, n_static: int, n_left: int, n_new: int, objs, counts):
    """Hard standing with vehicles parked side by side in rows; departures and arrivals in groups."""
    u0, v0 = it["u"], it["v"]
    pad = box(u0, v0, u0 + it["w"], v0 + it["d"])
    objs.append(_ground(fr.geom(pad), _spec(str(rng.choice(["concrete", "gravel", "gravel"])), rng, 0.08), tex=0.08))
    rows, cols = it["rows"], it["cols"]
    free = np.ones((rows, cols), bool)
    taken = np.zeros((rows, cols), bool)
    before = _lattice_groups(rng, free, taken, n_static + n_left, (4, 12), adjacent=True)
    occ = np.zeros((rows, cols), bool)
    for rc in before:
        occ[rc] = True
    left_free, left_taken = occ.copy(), np.zeros_like(occ)
    left = set(_lattice_groups(rng, left_free, left_taken, n_left, p.arrival_group, adjacent=False))
    arrive = _lattice_groups(rng, free, taken, n_new, p.arrival_group, adjacent=True)
    if len(arrive) < n_new:
        raise ValueError("motor pool too small for the arrivals")
    facing = rng.random() < 0.5
    group_paint: dict = {}
    unit_paint = _vehicle_paint(rng, civil=0.0)  # most of a pool is one unit's vehicles
    for rc in before + arrive:
        r, c = rc
        when = "after" if rc in arrive else ("before" if rc in left else "both")
        key = (r, c // 4, when)
        if key not in group_paint:
            group_paint[key] = unit_paint if rng.random() < 0.6 else _vehicle_paint(rng)
        paint, kind = group_paint[key]
        if rng.random() < 0.25:
            kind = str(rng.choice(["truck", "afv", "van"]))
        paint = paint * rng.normal(1.0, 0.03, 4).astype(np.float32)
        L, W = rng.uniform(6.0, 8.0), rng.uniform(2.5, 3.5)
        if kind == "van":
            L = rng.uniform(6.0, 6.8)
        u = u0 + it["margin"] + (c + 0.5) * it["pitch"] + rng.normal(0, 0.2)
        v = v0 + it["margin"] + (r + 0.5) * it["row_sp"] + rng.normal(0, 0.3)
        head = math.pi / 2 if (facing or r % 2 == 0) else -math.pi / 2
        x, y = fr.pt(u, v)
        o = _vehicle(rng, x, y, fr.theta + head + rng.normal(0, 0.03), L, W, paint, kind)
        o.when = when
        if when != "both":
            o.truth = ("appeared" if when == "after" else "disappeared", "vehicle")
        objs.append(o)
        counts["pool_new" if when == "after" else ("pool_left" if when == "before" else "pool_static")] += 1


def _fill_tents(rng, p, fr, it, n_before, n_new, objs, counts):
    """Tents on a lattice; new tents fill empty slots next to the existing ones."""
    rows, cols = it["rows"], it["cols"]
    free = np.ones((rows, cols), bool)
    taken = np.zeros((rows, cols), bool)
    before = _lattice_groups(rng, free, taken, n_before, (3, 8), adjacent=True)
    new = _lattice_groups(rng, free, taken, n_new, (1, 4), adjacent=True)
    canvas = _spec(str(rng.choice(["canvas_olive", "canvas_olive", "canvas_tan", "canvas_white"], p=[0.4, 0.3, 0.25, 0.05])), rng, 0.08)
    sizes = it["sizes"]
    for rc in before + new:
        r, c = rc
        L, W = sizes[int(rng.integers(0, 2))]
        L, W = max(L, W), min(L, W)
        u = it["u"] + 4 + (c + 0.5) * it["pitch"] + rng.normal(0, 0.3)
        v = it["v"] + 4 + (r + 0.5) * it["row_sp"] + rng.normal(0, 0.3)
        x, y = fr.pt(u, v)
        o = _tent(rng, x, y, fr.theta + math.pi / 2 + rng.normal(0, 0.03), L * rng.uniform(0.97, 1.03), W,
                  canvas * rng.normal(1.0, 0.04, 4).astype(np.float32))
        if rc in new:
            o.when, o.truth = "after", ("appeared", "tent")
            counts["tents_new"] += 1
        else:
            counts["tents_static"] += 1
        objs.append(o)


_ROOFS = ["metal_galv", "concrete", "roof_dark", "roof_gravel", "metal_white", "metal_rust", "metal_green", "tile_red",
          "metal_blue"]
_ROOF_P = np.array([0.3, 0.12, 0.15, 0.1, 0.08, 0.08, 0.08, 0.05, 0.04])


def _roof_name(rng) -> str:
    """A roof material, common ones (grey metal, concrete, bitumen) most often."""
    return str(rng.choice(_ROOFS, p=_ROOF_P / _ROOF_P.sum()))


def _place_building(rng, fr, it, objs) -> _Obj:
    u = it["u"] + it["w"] / 2 + rng.uniform(-1, 1) * 0.3 * it["sb"]
    v = it["v"] + it["d"] / 2 + rng.uniform(-1, 1) * 0.3 * it["sb"]
    x, y = fr.pt(u, v)
    roof_name = _roof_name(rng)
    if it["bkind"] == "hangar":
        roof_name = str(rng.choice(["metal_galv", "metal_green", "metal_white", "concrete"]))
    roof = _spec(roof_name, rng, 0.1)
    if rng.random() < 0.5:  # concrete apron in front
        ap = box(it["u"] + 1, it["v"], it["u"] + it["w"] - 1, it["v"] + it["sb"] + 1)
        objs.append(_ground(fr.geom(ap), _spec("concrete", rng, 0.1), tex=0.06))
    if it["bkind"] == "L":
        o = _l_building(rng, x, y, it["L"], it["W"], fr.theta, roof, it["H"])
    else:
        o = _building(rng, x, y, it["L"], it["W"], fr.theta, it["bkind"], roof, it["H"])
    objs.append(o)
    return o


def _place_pad(rng, fr, it, objs):
    """A construction pad (bare soil / gravel); the new structure stands on it in the after scene."""
    u = it["u"] + it["w"] / 2
    v = it["v"] + it["d"] / 2
    pad = box(u - it["L"] / 2 - it["pad"], v - it["W"] / 2 - it["pad"], u + it["L"] / 2 + it["pad"], v + it["W"] / 2 + it["pad"])
    objs.append(_ground(fr.geom(pad), _spec(str(rng.choice(["gravel", "soil_light", "dirt"])), rng, 0.1), tex=0.12))
    x, y = fr.pt(u, v)
    kind = str(rng.choice(["flat", "gable", "flat"]))
    o = _building(rng, x, y, it["L"], it["W"], fr.theta, kind, _spec(_roof_name(rng), rng, 0.1), it["H"])
    o.when, o.truth = "after", ("appeared", "structure")
    objs.append(o)


def _place_containers(rng, fr, it, objs):
    """A container yard: ISO containers in rows (static)."""
    colours = ["metal_rust", "metal_green", "metal_blue", "metal_white", "paint_olive", "metal_galv"]
    for r in range(it["rows"]):
        for c in range(it["cols"]):
            if rng.random() < 0.2:
                continue
            u = it["u"] + 4 + (c + 0.5) * 2.9
            v = it["v"] + 4 + (r + 0.5) * 7.0
            x, y = fr.pt(u, v)
            fp = _rect(x, y, 2.44, 6.06, fr.theta)
            spec = _spec(str(rng.choice(colours)), rng, 0.1)
            objs.append(_Obj("container", [_Surf(fp, spec, 2.6, tex=0.03)], [_Caster(fp, 0, 2.6)],
                             [_Wall(fp, 0, 2.6, spec * 0.85)], footprint=fp))


def _change_roofs(rng, p, blds: list):
    """Give ``roofs_changed`` buildings a different roof material after (change "changed")."""
    cands = [o for o in blds if o.truth is None]
    for o in [cands[i] for i in rng.permutation(len(cands))[: p.roofs_changed]]:
        new_name = str(rng.choice(["metal_white", "metal_green", "metal_rust", "roof_dark", "tile_red", "metal_blue"]))
        new = _spec(new_name, rng, 0.08)
        if np.abs(new - o.surfs[0].spec).sum() < 0.15:
            new = _spec("metal_white" if o.surfs[0].spec.mean() < 0.25 else "roof_dark", rng, 0.05)
        roof_surfs = [s for s in o.surfs if abs(s.z - o.surfs[0].z) < 6 and s.geom.area > 20]
        for s in roof_surfs:
            s.spec_after = new
        o.truth = ("changed", "structure")
        o.footprint = shapely.union_all([s.geom for s in roof_surfs])


def _roadside_vehicles(rng, fr, width, depth, shelf_roads, road_w, objs, n):
    """Vehicles parked on road shoulders with random orientation (static), clear of other objects."""
    tree = shapely.STRtree([o.footprint.buffer(1.0) for o in objs if o.footprint is not None and o.top > 0])
    placed = 0
    for _ in range(n * 20):
        if placed >= n:
            break
        v_road = shelf_roads[int(rng.integers(len(shelf_roads)))]
        u = rng.uniform(road_w + 10, max(road_w + 11, width - 10))
        side = rng.choice([-1.0, 1.0])
        v = v_road + road_w / 2 + side * (road_w / 2 - rng.uniform(1.0, 2.0))
        x, y = fr.pt(u, v)
        paint, kind = _vehicle_paint(rng, civil=0.25)
        ang = fr.theta + rng.choice([0, math.pi]) + rng.normal(0, 0.25)
        o = _vehicle(rng, x, y, ang, rng.uniform(6, 8), rng.uniform(2.5, 3.3), paint, kind)
        if len(tree.query(o.footprint, predicate="intersects")):
            continue
        objs.append(o)
        placed += 1


def _clearings(rng, p, objs, scene_bounds, keepout):
    """Large areas cleared or paved between the dates (class structure, change appeared)."""
    left, bottom, right, top = scene_bounds
    E = right - left
    blocked = shapely.union_all(keepout)
    placed = 0
    for _ in range(200):
        if placed >= p.clearings_new:
            break
        size = rng.uniform(0.04, 0.1) * E
        cx, cy = rng.uniform(left + size, right - size), rng.uniform(bottom + size, top - size)
        g = _blob(cx, cy, size / 2, rng, n=9, rough=0.25).envelope if rng.random() < 0.6 else _blob(cx, cy, size / 2, rng, n=8, rough=0.2)
        g = affinity.rotate(g, rng.uniform(0, 90), origin="centroid")
        if g.intersects(blocked):
            continue
        o = _ground(g, _spec(str(rng.choice(["soil_light", "gravel", "dirt", "concrete"])), rng, 0.1), tex=0.12)
        o.when, o.truth, o.footprint = "after", ("appeared", "structure"), g
        objs.append(o)
        blocked = blocked.union(g.buffer(20))
        keepout.append(g.buffer(10))
        placed += 1
    if placed < p.clearings_new:
        raise ValueError("no room for the requested clearings; use a larger extent_m")


def _airfield(rng, p, fr: _Frame, width, depth, main_off, objs, E, scene_bounds) -> list:
    """Runway, parallel taxiway, apron with aircraft and hardened shelters beside the compound."""
    rw_w = rng.uniform(40, 60)
    off = depth + rng.uniform(170, 280)
    length = min(3000.0, 2.2 * E)
    u_c = width / 2
    rw = box(u_c - length / 2, off, u_c + length / 2, off + rw_w)
    conc = _spec("concrete", rng, 0.08)
    objs.append(_ground(fr.geom(rw), conc, tex=0.05))
    mk = _spec("marking", rng, 0.05)
    for k in range(int(length / 60)):
        u = u_c - length / 2 + 60 * k + 20
        objs.append(_ground(fr.geom(box(u, off + rw_w / 2 - 0.45, u + 30, off + rw_w / 2 + 0.45)), mk, tex=0.02))
    for end in (-1, 1):
        ue = u_c + end * (length / 2 - 10)
        for j in range(8):
            vv = off + 3 + j * (rw_w - 6) / 8
            objs.append(_ground(fr.geom(box(ue - 15, vv, ue + 15, vv + 1.8)), mk, tex=0.02))
    tw_v = off - rng.uniform(60, 100)
    tw_w = rng.uniform(18, 25)
    asph = _spec("asphalt_old", rng, 0.08)
    objs.append(_ground(fr.geom(box(u_c - length / 2 + 60, tw_v, u_c + length / 2 - 60, tw_v + tw_w)), asph, tex=0.05))
    for k in range(4):
        u = u_c - length / 2 + 80 + k * (length - 160) / 3
        objs.append(_ground(fr.geom(box(u - tw_w / 2, tw_v, u + tw_w / 2, off + 1)), asph, tex=0.05))
    apron = box(u_c - 250, depth + 20, u_c + 250, tw_v)
    objs.append(_ground(fr.geom(apron), conc * 0.95, tex=0.05))
    grey = _spec("paint_grey", rng, 0.1)
    for k in range(int(rng.integers(4, 10))):
        u, v = u_c - 220 + k * 45, depth + 20 + (tw_v - depth - 20) * 0.5
        objs.append(_aircraft(rng, fr, u, v, grey))
    for k in range(int(rng.integers(3, 8))):  # hardened aircraft shelters, arched concrete
        u = u_c + 280 + k * 55
        x, y = fr.pt(u, depth + 45)
        objs.append(_building(rng, x, y, rng.uniform(30, 36), rng.uniform(22, 26), fr.theta + math.pi / 2, "hangar",
                              _spec("concrete", rng, 0.1), rng.uniform(1.0, 2.0)))
    return [fr.geom(box(u_c - length / 2 - 20, tw_v - 20, u_c + length / 2 + 20, off + rw_w + 60)),
            fr.geom(box(u_c - 270, depth, u_c + 650, tw_v)).buffer(10)]


def _aircraft(rng, fr, u, v, paint) -> _Obj:
    """A parked aircraft: fuselage, swept wings and tailplane (static)."""
    L = rng.uniform(15, 22)
    span = L * rng.uniform(0.6, 0.8)
    fus = box(-L / 2, -0.9, L / 2, 0.9)
    wing = Polygon([(1.0, 0.9), (-3.5, span / 2), (-5.5, span / 2), (-3.0, 0.9), (-3.0, -0.9), (-5.5, -span / 2), (-3.5, -span / 2), (1.0, -0.9)])
    tail = Polygon([(-L / 2 + 3.5, 0.5), (-L / 2 + 0.8, span / 4), (-L / 2, span / 4), (-L / 2 + 0.5, -span / 4), (-L / 2 + 0.8, -span / 4), (-L / 2 + 3.5, -0.5)])
    shape = shapely.union_all([fus, wing, tail]).buffer(0)
    shape = affinity.rotate(shape, 90, origin=(0, 0))
    shape = affinity.translate(shape, u, v)
    g = fr.geom(shape)
    if isinstance(g, MultiPolygon):
        g = max(g.geoms, key=lambda q: q.area)
    return _Obj("aircraft", [_Surf(g, paint, 3.0, tex=0.02)], [_Caster(g.convex_hull, 1.5, 3.5, opacity=0.9)], [], footprint=g)


def _trees(rng, p, fields, objs, keepout, canvas_bounds, fr, width, depth):
    """Tree lines along some field edges, woods (large scenes), single trees and compound trees."""
    blocked = shapely.union_all(keepout)
    shapely.prepare(blocked)
    canvas_edge = box(*canvas_bounds).exterior
    pts: list[tuple[float, float, float, float, str]] = []
    conifer_share = rng.uniform(0, 0.4)
    for f in fields[:-1]:
        if rng.random() > 0.3:
            continue
        ring = np.asarray(f.geom.exterior.coords)
        k = int(rng.integers(len(ring) - 1))
        a, b = ring[k], ring[k + 1]
        seg = float(np.hypot(*(b - a)))
        if seg < 20 or canvas_edge.distance(Point((a + b) / 2)) < 5.0:
            continue
        spacing = rng.uniform(3.5, 7.0)
        t = np.arange(rng.uniform(0, spacing), seg, spacing) / seg
        gaps = rng.random(len(t)) > rng.uniform(0.0, 0.3)
        for tt in t[gaps]:
            q = a + (b - a) * tt + rng.normal(0, 0.6, 2)
            pts.append((q[0], q[1], rng.uniform(2.0, 4.0), rng.uniform(7, 15), "conifer" if rng.random() < conifer_share else "decid"))
    left, bottom, right, top = canvas_bounds
    E = right - left
    n_single = int(rng.integers(10, 30) * (E / 512) ** 2)
    for _ in range(n_single):
        pts.append((rng.uniform(left, right), rng.uniform(bottom, top), rng.uniform(1.5, 4.0), rng.uniform(5, 14), "decid"))
    if E >= 1000:
        for _ in range(int(rng.integers(1, 4) * (E / 1500) ** 2)):
            wc = (rng.uniform(left, right), rng.uniform(bottom, top))
            wood = _blob(wc[0], wc[1], rng.uniform(80, 220), rng, n=14, rough=0.3)
            wb = wood.bounds
            # at coarse pixels a wood is drawn as fewer, larger crown clusters
            grow = max(1.0, p.pixel_size_m / 2.5)
            sp = rng.uniform(4.5, 6.5) * grow
            xs, ys = np.meshgrid(np.arange(wb[0], wb[2], sp), np.arange(wb[1], wb[3], sp))
            cand = np.column_stack([xs.ravel(), ys.ravel()]) + rng.normal(0, sp * 0.25, (xs.size, 2))
            inside = shapely.contains_xy(wood, cand[:, 0], cand[:, 1])
            for q in cand[inside]:
                pts.append((q[0], q[1], rng.uniform(2.0, 4.0) * grow, rng.uniform(10, 18), "conifer" if rng.random() < conifer_share + 0.2 else "decid"))
    # a few trees inside the compound along its edge
    for _ in range(int(rng.integers(3, 10))):
        u, v = rng.uniform(0, width), rng.choice([-2.5, depth + 2.5])
        x, y = fr.pt(u, v)
        pts.append((x, y, rng.uniform(2.0, 3.5), rng.uniform(6, 12), "decid_in"))
    if not pts:
        return
    arr = np.array([(q[0], q[1], q[2], q[3]) for q in pts])
    kinds = [q[4] for q in pts]
    inside_canvas = (arr[:, 0] > left) & (arr[:, 0] < right) & (arr[:, 1] > bottom) & (arr[:, 1] < top)
    circles = shapely.buffer(shapely.points(arr[:, :2]), arr[:, 2] + 1.0, quad_segs=2)
    hit = shapely.intersects(blocked, circles)
    keep = inside_canvas & (~hit | np.array([k == "decid_in" for k in kinds]))
    sel = np.flatnonzero(keep)
    crowns = _crowns(rng, arr[sel, 0], arr[sel, 1], arr[sel, 2])
    trunks = shapely.box(arr[sel, 0] - 0.25, arr[sel, 1] - 0.25, arr[sel, 0] + 0.25, arr[sel, 1] + 0.25)
    for j, i in enumerate(sel):
        objs.append(_tree(rng, crowns[j], trunks[j], arr[i, 2], arr[i, 3], "conifer" if kinds[i] == "conifer" else "decid"))


def _make_fields(rng, p, canvas_bounds, angle, season_ctx) -> list[_Field]:
    """Partition the canvas into agricultural parcels (recursive oblique splits) with land cover."""
    left, bottom, right, top = canvas_bounds
    cx, cy = (left + right) / 2, (bottom + top) / 2
    R = math.hypot(right - left, top - bottom)
    fr = _Frame(cx, cy, angle)
    root = box(-R / 2, -R / 2, R / 2, R / 2)
    big = 1.0 if p.extent_m < 1500 else 1.6
    out: list[Polygon] = []

    def split(poly: Polygon, depth: int):
        x0, y0, x1, y1 = poly.bounds
        w, h = x1 - x0, y1 - y0
        if max(w, h) < rng.uniform(140, 380) * big or depth > 14:
            out.append(poly)
            return
        f = rng.uniform(0.3, 0.7)
        tilt = rng.normal(0, 0.05)
        if w >= h:
            xc = x0 + f * w
            line = [(xc - tilt * h, y0 - 1), (xc + tilt * h, y1 + 1)]
            side_a = Polygon([(x0 - 1, y0 - 1), line[0], line[1], (x0 - 1, y1 + 1)])
        else:
            yc = y0 + f * h
            line = [(x0 - 1, yc - tilt * w), (x1 + 1, yc + tilt * w)]
            side_a = Polygon([(x0 - 1, y0 - 1), (x1 + 1, y0 - 1), line[1], line[0]])
        a = poly.intersection(side_a)
        b = poly.difference(side_a)
        for part in (a, b):
            if part.is_empty:
                continue
            if isinstance(part, MultiPolygon):
                for g in part.geoms:
                    split(g, depth + 1)
            else:
                split(part, depth + 1)

    split(root, 0)
    canvas_box = box(*canvas_bounds)
    fields = []
    for poly in out:
        g = fr.geom(poly).intersection(canvas_box)
        if g.is_empty or g.area < 1.0:
            continue
        if isinstance(g, MultiPolygon):
            g = max(g.geoms, key=lambda q: q.area)
        fields.append(_field_cover(rng, p, g, season_ctx, angle))
    return fields


def _field_cover(rng, p, geom, season_ctx, angle) -> _Field:
    """Land cover of a parcel before and after, including seasonal change (by ``p.season``).

    ``season_ctx`` is (mean greenness change between the dates, greenness of the before date).
    """
    season_shift, g_b = season_ctx
    w = np.array([0.38, 0.34, 0.1 + 0.1 * (1 - g_b), 0.06 + 0.3 * (1 - g_b)])
    kind = str(rng.choice(["crop", "grass", "bare", "dry"], p=w / w.sum()))
    s = p.season
    row_ang = angle + rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.02)
    lam = rng.uniform(2.5, 8.0)
    k = (2 * math.pi / lam * math.cos(row_ang + math.pi / 2), 2 * math.pi / lam * math.sin(row_ang + math.pi / 2))
    if kind == "crop":
        cov, gr, ra, rs = rng.uniform(0.5, 0.95), rng.uniform(0.6, 0.95), rng.uniform(0.03, 0.12), 0.0
    elif kind == "grass":
        cov, gr, ra, rs = rng.uniform(0.75, 1.0), rng.uniform(0.55, 0.9), 0.0, 0.0
    elif kind == "bare":
        cov, gr, ra, rs = rng.uniform(0.0, 0.12), rng.uniform(0.2, 0.8), 0.0, rng.uniform(0.03, 0.12)
    else:
        cov, gr, ra, rs = rng.uniform(0.5, 0.9), rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.1), 0.0
    d_gr = s * (season_shift + rng.normal(0, 0.15))
    d_cov = s * rng.normal(0, 0.08)
    cov_a, gr_a = cov + d_cov, gr + d_gr
    ev, e1, e2, e3 = rng.random(4)  # always drawn, so that the layout does not depend on p.season
    if kind == "crop" and ev < 0.3 * min(s, 1.0):  # harvested: stubble
        cov_a, gr_a = 0.3 + 0.3 * e1, 0.02 + 0.13 * e2
    elif kind in ("dry", "grass") and ev < 0.1 * min(s, 1.0):  # ploughed
        cov_a, gr_a, rs = 0.08 * e1, gr, max(rs, 0.1)
    elif kind == "bare" and ev < 0.4 * min(s, 1.0):  # sown and emerging
        cov_a, gr_a, ra = 0.15 + 0.35 * e1, 0.7 + 0.25 * e2, 0.1 + 0.15 * e3
    clip = lambda x: float(np.clip(x, 0.0, 1.0))
    return _Field(
        geom=geom, kind=kind, cover=(clip(cov), clip(cov_a)), green=(clip(gr), clip(gr_a)),
        soil=rng.uniform(0.75, 1.25), a_coarse=rng.uniform(0.04, 0.14), a_fine=rng.uniform(0.06, 0.15),
        a_season=(0.03, 0.03 + 0.15 * s), rows_amp=ra, rows_soil=rs, rows_k=k,
    )


def _compound_field(rng, p, geom, season_shift) -> _Field:
    """Ground inside the compound: mown, worn grass with bare patches."""
    cov, gr = rng.uniform(0.35, 0.75), rng.uniform(0.45, 0.8)
    s = p.season
    return _Field(geom=geom, kind="base", cover=(cov, float(np.clip(cov + s * rng.normal(0, 0.05), 0, 1))),
                  green=(gr, float(np.clip(gr + s * (season_shift + rng.normal(0, 0.1)), 0, 1))),
                  soil=rng.uniform(0.9, 1.3), a_coarse=rng.uniform(0.12, 0.22), a_fine=rng.uniform(0.08, 0.16),
                  a_season=(0.03, 0.03 + 0.12 * s))


# ---------------------------------------------------------------------------------------------
