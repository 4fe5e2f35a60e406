"""The timeline of an AOI: for each scene covering it, in date order, the counts of its analysis against
the previous scene (the chain the watch keeps), overall and per zone; as JSON pages and as timeline.png."""

from __future__ import annotations

import datetime as dt
import io
import math
from collections import defaultdict

from sqlalchemy.orm import Session

from app import store
from app.models import Analysis, Aoi, Scene
from app.schemas import TimelineItem
from app.views import as_utc
from app.watch import covering
from imagery.objects import CLASSES

#: Dates drawn in timeline.png (the latest ones).
MAX_PNG_DATES = 366
#: Zones drawn in timeline.png, one panel each after the whole AOI's.
MAX_PNG_ZONES = 8
#: A date whose analysis saw less of the AOI than this (clouds, nodata, a partial scene) is a gap: its counts
#: miss more than a fifth of the AOI, so read as a point of the trend they would mislead.
MIN_ANALYSED_FRACTION = 0.8
CLASS_COLOURS = {"vehicle": "#d62728", "vehicle_group": "#ff7f0e", "tent": "#2ca02c", "structure": "#1f77b4", "other": "#7f7f7f"}
CHANGE_STYLES = {"appeared": "-", "disappeared": "--"}


def chain_analysis(candidates: list[Analysis]) -> Analysis | None:
    """The analysis of a link of the chain: a succeeded one first, then the latest."""
    return max(candidates, key=lambda a: (a.status == "succeeded", as_utc(a.created_at)), default=None)


def items_of(session: Session, aoi: Aoi, scenes: list[Scene], start: int, stop: int) -> list[TimelineItem]:
    """Timeline items of ``scenes[start:stop]`` (``scenes`` being the AOI's whole chain)."""
    page = scenes[start:stop]
    by_pair = defaultdict(list)
    for a in store.analyses_after(session, aoi.id, [s.id for s in page]):
        by_pair[(a.before_scene_id, a.after_scene_id)].append(a)
    items = []
    for prev, scene in zip(([scenes[start - 1]] if start else [None]) + page[:-1], page):
        analysis = chain_analysis(by_pair[(prev.id, scene.id)]) if prev else None
        items.append(make_item(scene.acquired_at, scene.id, aoi.area_m2, first=prev is None,
                               analysis_id=analysis.id if analysis else None, status=analysis.status if analysis else None,
                               summary=analysis.summary if analysis is not None and analysis.status == "succeeded" else None))
    return items


def make_item(date: dt.date, scene_id: str, aoi_area_m2: float, *, first: bool, analysis_id: str | None,
              status: str | None, summary: dict | None) -> TimelineItem:
    """One date of a timeline: the scene, and the summary of its analysis against the previous date (None: no
    succeeded one); a gap unless it is the chain's ``first`` date or its analysis saw MIN_ANALYSED_FRACTION of the AOI."""
    fraction = round(min(1.0, summary["analysed_area_m2"] / aoi_area_m2), 4) if summary else None
    return TimelineItem(date=date, scene_id=scene_id, analysis_id=analysis_id, status=status,
                        counts=summary["counts"] if summary else None, zones=(summary or {}).get("zones", {}),
                        analysed_fraction=fraction,
                        gap=not first and (fraction is None or fraction < MIN_ANALYSED_FRACTION))


def page(session: Session, team: str, aoi_id: str, *, cursor: str | None, limit: int) -> tuple[list[TimelineItem], str | None]:
    """One page of the timeline, in date order; the cursor names the last scene of the previous page."""
    aoi = store.get_aoi(session, team, aoi_id)
    scenes = covering(session, team, aoi)
    start = 0
    if cursor:
        stamp, scene_id = store.decode_cursor(cursor)
        start = next((i for i, s in enumerate(scenes) if (s.acquired_at, s.id) > (stamp.date(), scene_id)), len(scenes))
    stop = start + limit
    nxt = None
    if stop < len(scenes):
        last = scenes[stop - 1]
        nxt = store.encode_cursor(dt.datetime.combine(last.acquired_at, dt.time()), last.id)
    return items_of(session, aoi, scenes, start, stop), nxt


def png(session: Session, team: str, aoi_id: str) -> bytes:
    """timeline.png: objects that appeared and disappeared per class against date, for the AOI and each zone."""
    aoi = store.get_aoi(session, team, aoi_id)
    scenes = covering(session, team, aoi)
    start = max(0, len(scenes) - MAX_PNG_DATES)
    items = items_of(session, aoi, scenes, start, len(scenes))
    zones = [z.name for z in store.zones_of(session, aoi.id)]
    return render(aoi.name, items, zones)


def count(item: TimelineItem, zone: str | None, change: str, cls: str) -> float:
    counts = item.zones.get(zone) if zone else item.counts
    return float(counts["objects"][change][cls]) if counts else math.nan


def render(title: str, items: list[TimelineItem], zones: list[str]) -> bytes:
    """Counts against date, one panel for the AOI and one per zone (at most MAX_PNG_ZONES); a date without a
    usable analysis (``item.gap``: none yet, failed, or less than MIN_ANALYSED_FRACTION of the AOI analysed) is a
    gap: the lines break there and a dotted line marks it. The chain's first date has nothing before it: not a gap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels = [(f"{title}: whole AOI", None)] + [(f"zone {z}", z) for z in zones[:MAX_PNG_ZONES]]
    fig = Figure(figsize=(10, 1.0 + 2.4 * len(panels)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    dates = [item.date for item in items]
    usable = [not i.gap and i.counts is not None for i in items]
    gaps = [i.date for i in items if i.gap]
    drawn = set()
    for ax, (name, zone) in zip(axes, panels):
        for cls in CLASSES:
            for change, style in CHANGE_STYLES.items():
                ys = [count(i, zone, change, cls) if ok else math.nan for i, ok in zip(items, usable)]
                if any(y > 0 for y in ys if not math.isnan(y)):
                    ax.plot(dates, ys, style, marker="o", markersize=4, color=CLASS_COLOURS[cls])
                    drawn.add(cls)
        for d in gaps:
            ax.axvline(d, color="#999999", linestyle=":", linewidth=1.5)
        ax.set_title(name, loc="left", fontsize=10)
        ax.set_ylabel("objects")
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if dates:
            pad = max(dt.timedelta(days=1), (max(dates) - min(dates)) / 40)
            ax.set_xlim(min(dates) - pad, max(dates) + pad)
        else:
            ax.text(0.5, 0.5, "no scene covers the AOI yet", transform=ax.transAxes, ha="center", va="center", color="#666")
    handles = [Line2D([], [], color=CLASS_COLOURS[c], marker="o", label=c.replace("_", " ")) for c in CLASSES if c in drawn]
    handles += [Line2D([], [], color="#333333", linestyle=s, label=change) for change, s in CHANGE_STYLES.items()]
    handles.append(Line2D([], [], color="#999999", linestyle=":", label="gap: no analysis, or cloudy / partial coverage"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    if len(zones) > MAX_PNG_ZONES:
        fig.suptitle(f"{len(zones) - MAX_PNG_ZONES} more zones in /timeline (JSON)", fontsize=8, x=0.99, ha="right")
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
