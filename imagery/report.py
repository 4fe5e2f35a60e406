"""report.png: the annotated figure an analyst pastes into a brief.

Before and after side by side on the analysis grid, numbered outlines on
each change object coloured by change type, a count table, both dates, a
scale bar, a north arrow and a source line.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrow, Rectangle  # noqa: E402
from pyproj import Transformer  # noqa: E402

from imagery.objects import CHANGE_TYPES, CLASSES, counts_by  # noqa: E402

CHANGE_COLOURS = {"appeared": "#ff2a2a", "disappeared": "#19d3ff", "changed": "#ffd21a"}
NOT_ANALYSED_RGBA = (0.55, 0.55, 0.55, 0.75)
MAX_PANEL_PX = 1400
MAX_LABELS = 80


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


def draw_scale_and_north(ax, grid, extent):
    left, right, bottom, top = extent
    width = right - left
    length = nice_length(width / 4)
    x0 = left + width * 0.04
    y0 = bottom + (top - bottom) * 0.04
    h = (top - bottom) * 0.012
    ax.add_patch(Rectangle((x0 - width * 0.01, y0 - h * 1.5), length + width * 0.02, h * 5.5, color="white", alpha=0.75, lw=0))
    ax.add_patch(Rectangle((x0, y0), length / 2, h, color="black", lw=0))
    ax.add_patch(Rectangle((x0 + length / 2, y0), length / 2, h, facecolor="white", edgecolor="black", lw=0.8))
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(x0 + length / 2, y0 + h * 1.6, label, ha="center", va="bottom", fontsize=8)
    angle = math.radians(grid_north_offset_deg(grid))
    cx = right - width * 0.06
    cy = top - (top - bottom) * 0.14
    size = (top - bottom) * 0.07
    dx, dy = size * math.sin(angle), size * math.cos(angle)
    ax.add_patch(FancyArrow(cx - dx / 2, cy - dy / 2, dx, dy, width=size * 0.12, head_width=size * 0.35,
                            head_length=size * 0.35, length_includes_head=True, color="white", ec="black", lw=0.8))
    ax.text(cx + dx * 0.75, cy + dy * 0.75, "N", ha="center", va="center", fontsize=10, fontweight="bold",
            color="black", bbox=dict(boxstyle="circle,pad=0.15", fc="white", ec="none", alpha=0.8))


def draw_objects(ax, objects, labelled_ids):
    from matplotlib.collections import LineCollection

    for change, colour in CHANGE_COLOURS.items():
        rings = []
        for o in objects:
            if o.change != change:
                continue
            for g in (o.geometry.geoms if hasattr(o.geometry, "geoms") else [o.geometry]):
                rings.append(np.asarray(g.exterior.coords))
        if rings:
            ax.add_collection(LineCollection(rings, colors=colour, linewidths=1.2))
    for o in objects:
        colour = CHANGE_COLOURS[o.change]
        if o.id in labelled_ids:
            minx, miny, maxx, maxy = o.geometry.bounds
            ax.text(maxx, maxy, str(o.id), color="black", fontsize=6.5, ha="left", va="bottom",
                    bbox=dict(boxstyle="round,pad=0.1", fc=colour, ec="none", alpha=0.9))


def count_table_rows(objects):
    counts = counts_by(objects)["objects"]
    rows = []
    for cls in CLASSES:
        row = [counts[c][cls] for c in CHANGE_TYPES]
        if any(row):
            rows.append([cls.replace("_", " ")] + [str(v) for v in row])
    if not rows:
        rows.append(["(no change objects)", "0", "0", "0"])
    totals = [sum(counts[c].values()) for c in CHANGE_TYPES]
    rows.append(["total"] + [str(v) for v in totals])
    return rows


def render_report(analysis, path: Path, *, title: str | None = None, attribution: str | None = None) -> None:
    """Draw report.png for an analysis.

    Parameters
    ----------
    analysis : imagery.pipeline.Analysis
    path : Path
        PNG to write.
    title : str, optional
        Headline (default "Change report" and the dates).
    attribution : str, optional
        Source line; default names the input files, the software and method.
    """
    grid = analysis.grid
    step = max(1, int(math.ceil(max(grid.shape) / MAX_PANEL_PX)))
    before, after = analysis.before, analysis.after
    shown = analysis.analysed[::step, ::step]
    b_img, stretch = display_rgb(before.data[:, ::step, ::step], before.bands, before.valid[::step, ::step])
    a_img, _ = display_rgb(after.data[:, ::step, ::step], after.bands, after.valid[::step, ::step], stretch)
    left, bottom, right, top = grid.bounds
    extent = (left, right, bottom, top)
    summary = analysis.summary()
    objects = analysis.objects
    labelled = {o.id for o in sorted(objects, key=lambda o: -o.area_m2)[:MAX_LABELS]}

    aspect = grid.rows / grid.cols
    fig_w = 15.0
    panel_h = min(9.0, fig_w / 2 * aspect)
    fig = plt.figure(figsize=(fig_w, panel_h + 3.2), dpi=110)
    gs = fig.add_gridspec(2, 2, height_ratios=[panel_h, 2.2], hspace=0.12, wspace=0.04, left=0.02, right=0.98, top=0.9, bottom=0.06)
    not_analysed = np.zeros((*shown.shape, 4), dtype=np.float32)
    not_analysed[~shown] = NOT_ANALYSED_RGBA
    for col, (img, label, date) in enumerate(((b_img, "Before", summary["before_date"]), (a_img, "After", summary["after_date"]))):
        ax = fig.add_subplot(gs[0, col])
        ax.imshow(img, extent=extent, interpolation="nearest")
        ax.imshow(not_analysed, extent=extent, interpolation="nearest")
        draw_objects(ax, objects, labelled)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{label}: {date or 'date unknown'}", fontsize=12, loc="left")
        draw_scale_and_north(ax, grid, extent)
    heading = title or "basewatch change report"
    fig.suptitle(f"{heading} — {summary['before_date'] or '?'} → {summary['after_date'] or '?'}", fontsize=14, x=0.02, ha="left")

    tax = fig.add_subplot(gs[1, 0])
    tax.axis("off")
    rows = count_table_rows(objects)
    table = tax.table(cellText=rows, colLabels=["class", "appeared", "disappeared", "changed"], loc="upper left",
                      cellLoc="center", colLoc="center", bbox=[0.0, 0.0, 0.9, 1.0])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (r, c), cell in table.get_celld().items():
        if r == 0 and c > 0:
            cell.set_facecolor(CHANGE_COLOURS[CHANGE_TYPES[c - 1]])
        if r == 0:
            cell.set_text_props(fontweight="bold")

    iax = fig.add_subplot(gs[1, 1])
    iax.axis("off")
    vehicles = summary["counts"]["vehicles_estimated"]
    shift = summary["shift"]
    lines = [
        f"Objects: {len(objects)}   vehicles (est.): +{vehicles['appeared']} / -{vehicles['disappeared']}",
        f"Changed area: {summary['changed_area_m2']:,.0f} m²   analysed: {summary['analysed_area_m2'] / 1e6:.3f} km²"
        f"   not analysed: {100 * summary['not_analysed_fraction']:.1f} % (grey)",
        f"Grid: {summary['grid']['crs']}, {summary['grid']['pixel_size_m'][0]:.2f} m pixels, {grid.cols} x {grid.rows}",
        f"Co-registration shift: {shift['east_m']:+.2f} m E, {shift['north_m']:+.2f} m N ({shift['magnitude_px']:.2f} px)",
        f"Method: {summary['method']}; threshold: {summary['threshold']['rule']}",
        "Outlines: red appeared, cyan disappeared, yellow changed; numbers = object ids in changes.geojson",
    ]
    if len(objects) > len(labelled):
        lines.append(f"({len(objects) - len(labelled)} smaller objects outlined but not numbered)")
    lines += [textwrap.fill(f"Note: {caveat}", 95, subsequent_indent="      ") for caveat in summary.get("caveats", [])]
    iax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace", transform=iax.transAxes)

    src = summary["sources"]
    attribution = attribution or (
        f"Source: before {Path(src['before']['file']).name} ({src['before']['date'] or 'date unknown'}), "
        f"after {Path(src['after']['file']).name} ({src['after']['date'] or 'date unknown'}). "
        f"Analysis: basewatch {summary['software']['version']}, {summary['created']}."
    )
    fig.text(0.02, 0.015, attribution, fontsize=8, ha="left", va="bottom", color="#333333")
    fig.savefig(path, dpi=110)
    plt.close(fig)
