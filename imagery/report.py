"""report.png and report.pdf: the one-page figure an analyst pastes into a brief.

One figure, saved twice: a header (AOI name, centre in lon/lat and MGRS, dates),
before and after side by side on the analysis grid with numbered outlines per
object (labels placed so that none overlaps another, with a leader line where a
label had to move away from its object), the AOI outline, scale bar and north
arrow; below, counts by class and change with the vehicle estimate, key facts,
the caveats, and the sources (files, sensors) and method on lines that fit the page.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import shapely  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import FancyArrow, Rectangle  # noqa: E402
from pyproj import Transformer  # noqa: E402
from rasterio.warp import transform_geom  # noqa: E402
from shapely.geometry import mapping, shape  # noqa: E402

from imagery.contract import CHANGE_COLOURS, CHANGE_TYPES, CLASSES  # noqa: E402
from imagery.objects import counts_by  # noqa: E402

NOT_ANALYSED_RGBA = (0.45, 0.45, 0.45, 0.7)
OUTSIDE_AOI_RGBA = (1.0, 1.0, 1.0, 0.55)
PAGE_WIDTH_IN = 11.69          # A4 landscape
MAX_PANEL_HEIGHT_IN = 6.3
MARGIN_IN, GAP_IN = 0.22, 0.08
HEADER_IN, BAND_IN, FOOTER_IN = 0.62, 1.6, 0.34
DPI = 200
MAX_PANEL_PX = 1400            # image pixels drawn per panel side (the page shows ~1100)
MAX_LABELS = 150               # numbered objects (vehicles first, then the largest)
LABEL_FONT = FontProperties(family="DejaVu Sans", size=6.5, weight="bold")
LABEL_PAD_PT = 1.2
TEXT_FONT = "DejaVu Sans"
#: Labels are tried at the object's corners and sides, then on rings further out (with a leader line).
LABEL_RINGS = 9


def display_rgb(data: np.ndarray, bands: tuple[str, ...], valid: np.ndarray, stretch: tuple[np.ndarray, np.ndarray] | None = None):
    """True colour (or grey) float image in 0-1 with a 2-98 % stretch per band; returns the image and the stretch used."""
    if all(b in bands for b in ("red", "green", "blue")):
        idx = [bands.index(b) for b in ("red", "green", "blue")]
    else:
        idx = [0, 0, 0]
    rgb = np.moveaxis(data[idx], 0, -1).astype(np.float32)
    if stretch is None:
        pix = rgb[valid] if valid.any() else rgb.reshape(-1, 3)
        lo = np.percentile(pix, 2, axis=0)
        hi = np.percentile(pix, 98, axis=0)
        stretch = (lo, np.where(hi > lo, hi, lo + 1))
    lo, hi = stretch
    out = np.clip((rgb - lo) / (hi - lo), 0, 1) ** (1 / 1.2)
    out[~valid] = 1.0
    return out, stretch


def nice_length(max_m: float) -> float:
    """The largest 1/2/5 x 10^k metres not above ``max_m``."""
    exp = math.floor(math.log10(max_m))
    for m in (5, 2, 1):
        if m * 10**exp <= max_m:
            return m * 10**exp
    return 10**exp


def grid_north_offset_deg(grid) -> float:
    """Angle from grid north to true north at the grid centre, degrees clockwise."""
    left, bottom, right, top = grid.bounds
    cx, cy = (left + right) / 2, (bottom + top) / 2
    to_ll = Transformer.from_crs(grid.crs.to_wkt(), "EPSG:4326", always_xy=True)
    from_ll = Transformer.from_crs("EPSG:4326", grid.crs.to_wkt(), always_xy=True)
    lon, lat = to_ll.transform(cx, cy)
    nx, ny = from_ll.transform(lon, lat + 0.01)
    return math.degrees(math.atan2(nx - cx, ny - cy))


def draw_scale_and_north(ax, grid, extent) -> list:
    """Scale bar (bottom left) and north arrow (top right); returns their areas (data coordinates) for label placement."""
    left, right, bottom, top = extent
    width, height = right - left, top - bottom
    length = nice_length(width / 4)
    x0, y0, h = left + width * 0.04, bottom + height * 0.04, height * 0.012
    backdrop = (x0 - width * 0.015, y0 - h * 1.5, length + width * 0.03, h * 5.5)
    ax.add_patch(Rectangle(backdrop[:2], *backdrop[2:], color="white", alpha=0.8, lw=0))
    ax.add_patch(Rectangle((x0, y0), length / 2, h, color="black", lw=0))
    ax.add_patch(Rectangle((x0 + length / 2, y0), length / 2, h, facecolor="white", edgecolor="black", lw=0.8))
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(x0 + length / 2, y0 + h * 1.6, label, ha="center", va="bottom", fontsize=7, family=TEXT_FONT)
    angle = math.radians(grid_north_offset_deg(grid))
    size = height * 0.07
    cx, cy = right - width * 0.05, top - height * 0.12
    dx, dy = size * math.sin(angle), size * math.cos(angle)
    ax.add_patch(FancyArrow(cx - dx / 2, cy - dy / 2, dx, dy, width=size * 0.12, head_width=size * 0.35,
                            head_length=size * 0.35, length_includes_head=True, color="white", ec="black", lw=0.8))
    ax.text(cx + dx * 0.8, cy + dy * 0.8, "N", ha="center", va="center", fontsize=9, fontweight="bold", family=TEXT_FONT,
            bbox=dict(boxstyle="circle,pad=0.15", fc="white", ec="none", alpha=0.85))
    north = (cx - size * 0.45, cy - size * 0.6, size * 0.9, size * 1.55)
    return [(b[0], b[1], b[0] + b[2], b[1] + b[3]) for b in (backdrop, north)]


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


@dataclass
class Label:
    """A number placed for an object: its box (centre, data coordinates) and, if moved away, a leader line."""

    object_id: int
    change: str
    x: float
    y: float
    leader: tuple[tuple[float, float], tuple[float, float]] | None


def label_size_px(text: str, renderer) -> tuple[float, float]:
    """Width and height of a label's box in display pixels (text plus its padding)."""
    w, _, _ = renderer.get_text_width_height_descent(text, LABEL_FONT, ismath=False)
    _, h, _ = renderer.get_text_width_height_descent("lp", LABEL_FONT, ismath=False)  # matplotlib's line height
    pad = 2 * LABEL_PAD_PT * renderer.points_to_pixels(1.0)
    return w + pad, h + pad


def boxes_overlap(boxes: np.ndarray, others: np.ndarray, gap: float = 0.0) -> np.ndarray:
    """(n, m) True where box i of ``boxes`` and box j of ``others`` (x0, y0, x1, y1) overlap or come closer than ``gap``."""
    if not len(others):
        return np.zeros((len(boxes), 0), bool)
    b, o = boxes[:, None, :], others[None, :, :]
    return (b[..., 0] < o[..., 2] + gap) & (o[..., 0] < b[..., 2] + gap) & (b[..., 1] < o[..., 3] + gap) & (o[..., 1] < b[..., 3] + gap)


def hidden_objects(boxes: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """(n,) how much of other objects box i would hide: the covered share of each object's box, summed (a
    label over a corner of a large building hides little, one over a parked vehicle hides it)."""
    if not len(objects):
        return np.zeros(len(boxes))
    b, o = boxes[:, None, :], objects[None, :, :]
    w = np.clip(np.minimum(b[..., 2], o[..., 2]) - np.maximum(b[..., 0], o[..., 0]), 0, None)
    h = np.clip(np.minimum(b[..., 3], o[..., 3]) - np.maximum(b[..., 1], o[..., 1]), 0, None)
    area = np.maximum((o[..., 2] - o[..., 0]) * (o[..., 3] - o[..., 1]), 1.0)
    return (w * h / area).sum(axis=1)


def segment_points(starts: np.ndarray, ends: np.ndarray, samples: int = 12) -> np.ndarray:
    """(n, samples, 2) points along each segment, ends included."""
    t = np.linspace(0.0, 1.0, samples)[None, :, None]
    return starts[:, None, :] + t * (ends - starts)[:, None, :]


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(m, n) True where point i lies strictly inside box j."""
    x, y = points[:, 0, None], points[:, 1, None]
    return (x > boxes[:, 0]) & (x < boxes[:, 2]) & (y > boxes[:, 1]) & (y < boxes[:, 3])


def segments_hit_boxes(starts: np.ndarray, ends: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n,) True where segment i passes through any of ``boxes`` (sampled along its length)."""
    if not len(boxes):
        return np.zeros(len(starts), bool)
    pts = segment_points(starts, ends)
    return points_in_boxes(pts.reshape(-1, 2), boxes).reshape(len(starts), -1).any(axis=1)


def segments_cross(starts: np.ndarray, ends: np.ndarray, others_a: np.ndarray, others_b: np.ndarray) -> np.ndarray:
    """(n,) number of segments (others_a[j], others_b[j]) that segment i properly crosses."""
    if not len(others_a):
        return np.zeros(len(starts))

    def orient(p, q, r):
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))

    p, q = starts[:, None, :], ends[:, None, :]
    r, t = others_a[None, :, :], others_b[None, :, :]
    return ((orient(p, q, r) * orient(p, q, t) < 0) & (orient(r, t, p) * orient(r, t, q) < 0)).sum(axis=1)


def label_order(objects) -> list:
    """Which objects get a number, most important first: vehicles (counts matter most), then by area."""
    rank = {"vehicle": 0, "vehicle_group": 1}
    return sorted(objects, key=lambda o: (rank.get(o.cls, 2), -o.area_m2, o.id))[:MAX_LABELS]


def place_labels(ax, objects, keep_clear: list, renderer) -> tuple[list[Label], list[int]]:
    """Place one number per object so that no two numbers, and no number and a leader line, overlap.

    Works in display pixels of ``ax``: each label is tried beside its object (corners, then sides), then
    on rings further out joined by a leader line, preferring spots that hide no other object; inside
    the axes and off ``keep_clear`` (scale bar, north arrow). Returns the labels and the ids that found
    no room (listed under the figure instead).
    """
    to_px, to_data = ax.transData, ax.transData.inverted()
    x0a, y0a, x1a, y1a = ax.get_window_extent(renderer).extents
    inset = 2.0
    gap = 1.5
    chosen = label_order(objects)
    obj_boxes = {o.id: to_px.transform(np.reshape(o.geometry.bounds, (2, 2))).ravel() for o in objects}
    all_obj = np.array(list(obj_boxes.values())) if obj_boxes else np.zeros((0, 4))
    ids = np.array(list(obj_boxes))
    clear = np.array([to_px.transform(np.reshape(b, (2, 2))).ravel() for b in keep_clear]) if keep_clear else np.zeros((0, 4))
    # the most crowded objects first, while the room around them is free
    centres = (all_obj[:, :2] + all_obj[:, 2:]) / 2 if len(all_obj) else np.zeros((0, 2))
    crowd = {i: int((np.hypot(*(centres - centres[k]).T) < 60).sum()) for k, i in enumerate(ids)}
    chosen.sort(key=lambda o: -crowd[o.id])

    placed_boxes = np.zeros((0, 4))
    leader_starts, leader_ends = np.zeros((0, 2)), np.zeros((0, 2))
    labels, unplaced = [], []
    for o in chosen:
        bx0, by0, bx1, by1 = obj_boxes[o.id]
        cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
        w, h = label_size_px(str(o.id), renderer)
        # candidate centres: ring 0 touches the object's box; ring k > 0 lies k label heights further out
        cands, rings = [], []
        for fx, fy in ((1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)):
            px = {1: bx1 + w / 2, -1: bx0 - w / 2, 0: cx}[fx]
            py = {1: by1 + h / 2, -1: by0 - h / 2, 0: cy}[fy]
            cands.append((px, py))
            rings.append(0)
        if bx1 - bx0 > 2.5 * w and by1 - by0 > 2.5 * h:  # a large object carries its number inside
            inner = o.geometry.representative_point()
            cands.insert(0, tuple(to_px.transform((inner.x, inner.y))))
            rings.insert(0, -1)
        radius0 = math.hypot(bx1 - bx0, by1 - by0) / 2
        for k in range(1, LABEL_RINGS + 1):
            r = radius0 + (0.6 + 0.9 * k) * max(w, h)
            n = 12 + 4 * k
            for a in np.linspace(0, 2 * np.pi, n, endpoint=False) + np.pi / 4:
                cands.append((cx + r * np.cos(a), cy + r * np.sin(a)))
                rings.append(k)
        c = np.array(cands)
        rings = np.array(rings, float)
        boxes = np.column_stack([c[:, 0] - w / 2, c[:, 1] - h / 2, c[:, 0] + w / 2, c[:, 1] + h / 2])
        # leader: from the point of the object's outline nearest the label to the label box's edge
        ends = np.column_stack([np.clip(cx, boxes[:, 0], boxes[:, 2]), np.clip(cy, boxes[:, 1], boxes[:, 3])])
        nearest = shapely.shortest_line(o.geometry, shapely.points(to_data.transform(ends)))
        starts = to_px.transform(shapely.get_coordinates(shapely.get_point(nearest, 0)))
        ok = (boxes[:, 0] >= x0a + inset) & (boxes[:, 2] <= x1a - inset) & (boxes[:, 1] >= y0a + inset) & (boxes[:, 3] <= y1a - inset)
        ok &= ~boxes_overlap(boxes, placed_boxes, gap).any(axis=1)
        ok &= ~boxes_overlap(boxes, clear).any(axis=1)
        ok &= ~segments_hit_boxes(starts, ends, placed_boxes) | (rings <= 0)
        if len(leader_starts):  # nor may a label sit on an earlier leader line
            ok &= ~points_in_boxes(segment_points(leader_starts, leader_ends).reshape(-1, 2), boxes).any(axis=0)
        if not ok.any():
            unplaced.append(o.id)
            continue
        hidden = hidden_objects(boxes, all_obj[ids != o.id])
        crossings = np.where(rings > 0, segments_cross(starts, ends, leader_starts, leader_ends), 0)
        cost = rings + 8.0 * hidden * (rings >= 0) + 1.5 * crossings + 0.001 * np.arange(len(boxes))
        cost[~ok] = np.inf
        best = int(np.argmin(cost))
        placed_boxes = np.vstack([placed_boxes, boxes[best]])
        leader = None
        if rings[best] > 0:
            leader_starts = np.vstack([leader_starts, starts[best]])
            leader_ends = np.vstack([leader_ends, ends[best]])
            leader = (tuple(to_data.transform(starts[best])), tuple(to_data.transform(ends[best])))
        lx, ly = to_data.transform(c[best])
        labels.append(Label(o.id, o.change, float(lx), float(ly), leader))
    return labels, unplaced


def draw_labels(ax, labels: list[Label]) -> None:
    halo = [patheffects.withStroke(linewidth=1.6, foreground="black")]
    leaders = [lab.leader for lab in labels if lab.leader]
    if leaders:
        ax.add_collection(LineCollection(leaders, colors="white", linewidths=0.6, path_effects=halo, zorder=4))
    for lab in labels:
        ax.text(lab.x, lab.y, str(lab.object_id), ha="center", va="center", fontproperties=LABEL_FONT, color="black",
                zorder=5, gid="object-label",
                bbox=dict(boxstyle=f"square,pad={LABEL_PAD_PT / LABEL_FONT.get_size()}", fc=CHANGE_COLOURS[lab.change],
                          ec="black", lw=0.4))


def draw_outlines(ax, objects) -> None:
    for change, colour in CHANGE_COLOURS.items():
        rings = [np.asarray(g.exterior.coords) for o in objects if o.change == change
                 for g in (o.geometry.geoms if hasattr(o.geometry, "geoms") else [o.geometry])]
        if rings:
            ax.add_collection(LineCollection(rings, colors=colour, linewidths=1.0, zorder=3))


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def wrap(text: str, width_px: float, fontsize: float, renderer, weight: str = "normal") -> list[str]:
    """Greedy word wrap measured with the renderer, so each line fits ``width_px``."""
    prop = FontProperties(family=TEXT_FONT, size=fontsize, weight=weight)
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and renderer.get_text_width_height_descent(trial, prop, ismath=False)[0] > width_px:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def count_table_rows(objects) -> list[list[str]]:
    counts = counts_by(objects)
    rows = [[cls.replace("_", " ")] + [str(counts["objects"][c][cls]) for c in CHANGE_TYPES]
            for cls in CLASSES if any(counts["objects"][c][cls] for c in CHANGE_TYPES)]
    if not rows:
        rows.append(["(no change objects)", "0", "0", "0"])
    rows.append(["total"] + [str(sum(counts["objects"][c].values())) for c in CHANGE_TYPES])
    rows.append(["vehicles (est.)"] + [str(counts["vehicles_estimated"][c]) for c in CHANGE_TYPES])
    return rows


def source_text(side: str, summary: dict) -> str:
    s = summary["sources"][side]
    details = [d for d in (s.get("sensor"), f"{s['pixel_size_m']:.2f} m" if s.get("pixel_size_m") else None,
                           "/".join(s.get("bands") or []) or None) if d]
    return f"{side} {s.get('file') or '?'} ({', '.join(details)})" if details else f"{side} {s.get('file') or '?'}"


def location_text(summary: dict) -> str:
    aoi = summary.get("aoi") or {}
    lon, lat = aoi.get("centre_lonlat") or (None, None)
    parts = []
    if lon is not None:
        parts.append(f"centre {abs(lat):.5f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.5f}° {'E' if lon >= 0 else 'W'}")
    if aoi.get("mgrs"):
        parts.append(f"MGRS {aoi['mgrs']}")
    if aoi.get("area_m2"):
        parts.append(f"AOI {aoi['area_m2'] / 1e6:.3f} km²")
    return " · ".join(parts)


def dates_text(summary: dict) -> str:
    b, a = summary["before_date"], summary["after_date"]
    text = f"{b or 'date unknown'} → {a or 'date unknown'}"
    try:
        days = (dt.date.fromisoformat(a[:10]) - dt.date.fromisoformat(b[:10])).days
        text += f" ({days} days)"
    except (TypeError, ValueError):
        pass
    return text


# ---------------------------------------------------------------------------------------------
# The figure
# ---------------------------------------------------------------------------------------------


def report_figure(analysis, summary: dict):
    """The report as a matplotlib Figure (also returns the labels placed and the ids left unnumbered)."""
    grid = analysis.grid
    step = max(1, int(math.ceil(max(grid.shape) / MAX_PANEL_PX)))
    before, after = analysis.before, analysis.after
    b_img, stretch = display_rgb(before.data[:, ::step, ::step], before.bands, before.valid[::step, ::step])
    a_img, _ = display_rgb(after.data[:, ::step, ::step], after.bands, after.valid[::step, ::step], stretch)
    left, bottom, right, top = grid.bounds
    extent = (left, right, bottom, top)
    objects = analysis.objects

    # page geometry (inches): header, two panels, a band of tables and text, a footer
    aspect = grid.rows / grid.cols
    panel_w = (PAGE_WIDTH_IN - 2 * MARGIN_IN - GAP_IN) / 2
    panel_h = min(panel_w * aspect, MAX_PANEL_HEIGHT_IN)
    panel_w = panel_h / aspect
    fig_h = 2 * MARGIN_IN + HEADER_IN + panel_h + GAP_IN + BAND_IN + FOOTER_IN
    fig = plt.figure(figsize=(PAGE_WIDTH_IN, fig_h), dpi=DPI)
    renderer = fig.canvas.get_renderer()

    def axes(x_in, y_in, w_in, h_in):
        return fig.add_axes((x_in / PAGE_WIDTH_IN, y_in / fig_h, w_in / PAGE_WIDTH_IN, h_in / fig_h))

    # header
    aoi = summary.get("aoi") or {}
    y = fig_h - MARGIN_IN
    fig.text(MARGIN_IN / PAGE_WIDTH_IN, y / fig_h, f"Change report: {aoi.get('name') or 'area of the scenes'}",
             fontsize=14, fontweight="bold", family=TEXT_FONT, va="top")
    fig.text(MARGIN_IN / PAGE_WIDTH_IN, (y - 0.3) / fig_h, f"{dates_text(summary)}   ·   {location_text(summary)}",
             fontsize=9, family=TEXT_FONT, va="top")

    # panels
    panel_y = fig_h - MARGIN_IN - HEADER_IN - panel_h
    x_first = (PAGE_WIDTH_IN - 2 * panel_w - GAP_IN) / 2
    inside_aoi = aoi_mask(analysis, step)
    shown = analysis.analysed[::step, ::step]
    veil = np.zeros((*shown.shape, 4), dtype=np.float32)
    veil[inside_aoi & ~shown] = NOT_ANALYSED_RGBA
    veil[~inside_aoi] = OUTSIDE_AOI_RGBA
    panels = []
    for k, (img, side) in enumerate(((b_img, "before"), (a_img, "after"))):
        ax = axes(x_first + k * (panel_w + GAP_IN), panel_y, panel_w, panel_h)
        panels.append((ax, draw_scene_panel(ax, img, veil, extent, analysis, f"{side.upper()}  "
                                            f"{summary[f'{side}_date'] or 'date unknown'}", renderer)))
    labels, unplaced = place_labels(panels[1][0], objects, panels[1][1], renderer)
    for ax, _ in panels:
        draw_labels(ax, labels)

    # band: counts | facts and legend | caveats
    band_y = panel_y - GAP_IN - BAND_IN
    usable = PAGE_WIDTH_IN - 2 * MARGIN_IN
    widths = (3.3, 4.1, usable - 3.3 - 4.1 - 0.3)
    tax = axes(MARGIN_IN, band_y + 0.08, widths[0], BAND_IN - 0.12)
    tax.axis("off")
    draw_counts_table(tax, objects)

    fx = MARGIN_IN + widths[0] + 0.15
    fax = axes(fx, band_y + 0.08, widths[1], BAND_IN - 0.12)
    fax.axis("off")
    facts_text(fax, summary, objects, unplaced, widths[1] * DPI, renderer)

    cx = fx + widths[1] + 0.15
    cax = axes(cx, band_y + 0.08, widths[2], BAND_IN - 0.12)
    cax.axis("off")
    draw_caveats(cax, summary.get("caveats") or [], widths[2] * DPI, renderer)

    # footer: sources, method and software, wrapped to the page
    fig.text(MARGIN_IN / PAGE_WIDTH_IN, (MARGIN_IN + FOOTER_IN) / fig_h,
             "\n".join(wrap(footer_text(summary), usable * DPI, 6.5, renderer)), fontsize=6.5, family=TEXT_FONT, va="top",
             color="#333333", linespacing=1.25)
    return fig, labels, unplaced


def draw_scene_panel(ax, img: np.ndarray, veil: np.ndarray, extent: tuple, analysis, tag: str, renderer) -> list:
    """One date's panel: the image, the not-analysed/outside-AOI veil, the AOI, the outlines, the date tag, scale
    bar and north arrow. Returns the boxes (data coordinates) that labels must keep clear of."""
    left, right, bottom, top = extent
    ax.imshow(img, extent=extent, interpolation="nearest")
    ax.imshow(veil, extent=extent, interpolation="nearest")
    draw_aoi(ax, analysis, analysis.grid)
    draw_outlines(ax, analysis.objects)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.012, 0.985, tag, transform=ax.transAxes, ha="left", va="top", fontsize=9, fontweight="bold",
            family=TEXT_FONT, bbox=dict(boxstyle="square,pad=0.3", fc="white", ec="none", alpha=0.9))
    keep_clear = draw_scale_and_north(ax, analysis.grid, extent)
    box = ax.texts[0].get_window_extent(renderer).transformed(ax.transData.inverted()).extents
    return keep_clear + [tuple(box)]


def draw_counts_table(ax, objects) -> None:
    """Objects by class (rows) and change type (columns, headed in the change colours), totals in bold."""
    rows = count_table_rows(objects)
    table = ax.table(cellText=rows, colLabels=["class", *CHANGE_TYPES], loc="upper left", cellLoc="center",
                     colWidths=[0.31, 0.23, 0.23, 0.23], bbox=[0.0, 0.0, 1.0, 1.0])
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    for (r, c), cell in table.get_celld().items():
        cell.set_linewidth(0.4)
        if r == 0:
            cell.set_text_props(fontweight="bold")
            if c > 0:
                cell.set_facecolor(CHANGE_COLOURS[CHANGE_TYPES[c - 1]])
        if r >= len(rows) - 1:
            cell.set_text_props(fontweight="bold")


def draw_caveats(ax, caveats: list[str], width_px: float, renderer) -> None:
    """The caveats as wrapped bullets under a heading (or a line saying none apply)."""
    lines = ["Caveats"] + (
        [ln for c in caveats for ln in wrap_bullet(c, width_px, renderer)] if caveats else ["none apply to this analysis"])
    ax.text(0, 1, lines[0], transform=ax.transAxes, va="top", fontsize=8, fontweight="bold", family=TEXT_FONT)
    ax.text(0, 1 - 0.11, "\n".join(lines[1:]), transform=ax.transAxes, va="top", fontsize=7.2, family=TEXT_FONT,
            color="#7a4a00" if caveats else "#333333", linespacing=1.3)


def footer_text(summary: dict) -> str:
    """Sources, method and software of the analysis, one paragraph."""
    return (f"Sources: {source_text('before', summary)}; {source_text('after', summary)}.   "
            f"Method: {summary['method']} ({summary['threshold']['rule']}).   "
            f"{summary['software']['name']} {summary['software']['version']}, {summary['created']}.")


def wrap_bullet(text: str, width_px: float, renderer) -> list[str]:
    lines = wrap(text, width_px - 12, 7.2, renderer)
    return ["• " + lines[0]] + ["   " + ln for ln in lines[1:]]


def facts_text(ax, summary: dict, objects, unplaced: list[int], width_px: float, renderer) -> None:
    shift = summary["shift"]
    px = summary["grid"]["pixel_size_m"][0]
    facts = [
        f"{len(objects)} change objects, {summary['changed_area_m2']:,.0f} m² changed",
        f"Analysed {summary['analysed_area_m2'] / 1e6:.3f} km²; not analysed {100 * summary['not_analysed_fraction']:.1f} % "
        "(dark grey: cloud, shadow, nodata; pale: outside the AOI)",
        f"Co-registration shift removed: {shift['east_m']:+.2f} m E, {shift['north_m']:+.2f} m N ({shift['magnitude_px']:.2f} px)",
        f"Analysis grid {summary['grid']['crs']}, {px:.2f} m pixels",
        "Numbers are object ids in changes.geojson and the KML, GeoPackage and CSV exports",
    ]
    if unplaced:
        facts.append(f"Outlined, no room for a number: {', '.join(map(str, sorted(unplaced)))}")
    more = len(objects) - MAX_LABELS
    if more > 0:
        facts.append(f"{more} smaller objects outlined but not numbered")
    lines = [ln for f in facts for ln in wrap_bullet(f, width_px, renderer)]
    ax.text(0, 1, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=7.2, family=TEXT_FONT, linespacing=1.3)
    handles = [Line2D([], [], color=CHANGE_COLOURS[c], lw=2.5, label=c) for c in CHANGE_TYPES]
    ax.legend(handles=handles, loc="lower left", ncol=3, frameon=False, fontsize=7.5, handlelength=1.6,
              borderaxespad=0.0, columnspacing=1.2, prop={"family": TEXT_FONT, "size": 7.5})


def aoi_mask(analysis, step: int) -> np.ndarray:
    from imagery.pipeline import rasterize_area

    return rasterize_area(analysis.area_lonlat, analysis.grid)[::step, ::step]


def draw_aoi(ax, analysis, grid) -> None:
    geom = shape(transform_geom("EPSG:4326", grid.crs, mapping(analysis.area_lonlat)))
    rings = [np.asarray(p.exterior.coords) for p in (geom.geoms if hasattr(geom, "geoms") else [geom])]
    ax.add_collection(LineCollection(rings, colors="white", linewidths=0.9, linestyles=(0, (4, 3)), zorder=2,
                                     path_effects=[patheffects.withStroke(linewidth=1.8, foreground="black")]))


def render_report(analysis, summary: dict, outdir: str | Path) -> tuple[Path, Path]:
    """Write ``report.png`` and ``report.pdf`` (the same page) into ``outdir``."""
    outdir = Path(outdir)
    fig, _, _ = report_figure(analysis, summary)
    try:
        png, pdf = outdir / "report.png", outdir / "report.pdf"
        fig.savefig(png, dpi=DPI)
        aoi = (summary.get("aoi") or {}).get("name") or "change report"
        with plt.rc_context({"pdf.fonttype": 42}):  # TrueType: text in the PDF stays text (search, copy)
            fig.savefig(pdf, metadata={"Title": f"basewatch change report: {aoi}",
                                       "Creator": f"basewatch {summary['software']['version']}",
                                       "Subject": dates_text(summary)})
    finally:
        plt.close(fig)
    return png, pdf
