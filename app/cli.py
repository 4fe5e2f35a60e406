"""The ``basewatch`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aoi import InvalidAOIError, read_aoi_file
from imagery.errors import ImageryError, first_line

app = typer.Typer(add_completion=False, no_args_is_help=True, help="basewatch: what changed between two satellite images of an area of interest.")
console = Console(stderr=True)
out = Console()


@app.callback()
def root() -> None:
    """basewatch: what changed between two satellite images of an area of interest."""


def fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def split_bands(text: Optional[str]) -> Optional[list[str]]:
    return [b.strip() for b in text.split(",")] if text else None


@app.command()
def methods():
    """List the change methods (name and what it does)."""
    from imagery.change import METHODS

    table = Table("method", "what it does", box=None)
    for name, method in METHODS.items():
        table.add_row(name, method.summary)
    console.print(table)


@app.command()
def detect(
    before: Path = typer.Argument(..., help="Older scene (GeoTIFF/COG)."),
    after: Path = typer.Argument(..., help="Newer scene (GeoTIFF/COG)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Product folder to create."),
    aoi: Optional[Path] = typer.Option(None, "--aoi", help="Area of interest GeoJSON (lon/lat). Default: the scenes' overlap."),
    method: str = typer.Option("default", "--method", "-m", help="Change method: default (auto) or one listed by `basewatch methods`."),
    before_bands: Optional[str] = typer.Option(None, help="Band roles of BEFORE in file order, e.g. blue,green,red,nir."),
    after_bands: Optional[str] = typer.Option(None, help="Band roles of AFTER in file order."),
    before_date: Optional[str] = typer.Option(None, help="Acquisition date of BEFORE (ISO 8601) if not tagged."),
    after_date: Optional[str] = typer.Option(None, help="Acquisition date of AFTER (ISO 8601) if not tagged."),
    pixel_size: Optional[float] = typer.Option(None, help="Analysis pixel size in metres (default: the coarser scene's)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Find what changed between BEFORE and AFTER and write the product folder."""
    from imagery.pipeline import DEFAULT_METHOD, AnalysisParams, analyze
    from imagery.products import write_products
    from imagery.scenes import inspect_scene

    chosen = DEFAULT_METHOD if method == "default" else method
    from imagery.change import METHODS

    if chosen not in METHODS:
        fail(f"unknown method {method!r}; choose default, {', '.join(METHODS)}", 2)
    if out_dir.exists() and not overwrite:
        fail(f"{out_dir} already exists; choose another folder or pass --overwrite")
    try:
        aoi_read = read_aoi_file(aoi) if aoi else None
        aoi_geom = aoi_read.geometry if aoi_read else None
        before_info = inspect_scene(before, bands=split_bands(before_bands), acquired=before_date)
        after_info = inspect_scene(after, bands=split_bands(after_bands), acquired=after_date)
        params = AnalysisParams(method=chosen, pixel_size_m=pixel_size)
        with Progress(TextColumn("{task.description:<18}"), BarColumn(), TimeElapsedColumn(), console=console,
                      disable=quiet, transient=True) as bar:
            task = bar.add_task("starting", total=1.0)
            analysis = analyze(before_info, after_info, aoi_geom, params,
                               progress=lambda stage, f: bar.update(task, description=stage, completed=f))
            bar.update(task, description="writing products", completed=0.9)
            write_products(analysis, out_dir, overwrite=overwrite,
                           aoi={"name": aoi_read.name, "area_m2": round(aoi_read.area_m2, 1)} if aoi_read else None)
    except (ImageryError, InvalidAOIError, ValueError, OSError) as exc:
        fail(first_line(exc))
    print_summary(analysis, out_dir)


@app.command()
def export(
    product_dir: Path = typer.Argument(..., help="A product folder written by `detect` or the service."),
    formats: list[str] = typer.Option(["kml", "gpkg", "csv"], "--format", "-f", help="kml, gpkg or csv (repeat for several)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write to (default: the product folder)."),
):
    """Write the change objects as KML (Google Earth), GeoPackage (QGIS/ArcGIS) and CSV, with their provenance."""
    from imagery.exports import EXPORTS, write_exports
    from imagery.products import read_changes, read_summary

    unknown = [f for f in formats if f not in EXPORTS]
    if unknown:
        fail(f"unknown format {unknown[0]!r}; choose {', '.join(EXPORTS)}", 2)
    try:
        fc, summary = read_changes(product_dir), read_summary(product_dir)
    except (OSError, ValueError) as exc:
        fail(f"{product_dir} is not a product folder ({type(exc).__name__}: {first_line(exc)})")
    target = out_dir or product_dir
    target.mkdir(parents=True, exist_ok=True)
    for path in write_exports(fc, summary, target, formats=tuple(dict.fromkeys(formats))):
        out.print(str(path), highlight=False)


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create: before.tif, after.tif, aoi.geojson, truth.geojson, truth_mask.tif, truth.json."),
    preset_name: str = typer.Option("default", "--preset", "-p", help="Scenario: default, clean, nuisance_only, webmercator, lonlat, rgb8, coarse3m, sentinel10m, south."),
    seed: int = typer.Option(0, help="Random seed (each seed is a different base and different nuisances)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT_DIR if it exists."),
):
    """Write a realistic synthetic before/after pair of a base, with its ground truth."""
    import shutil

    from synth import PRESETS, make_pair, preset, write_pair

    if preset_name not in PRESETS:
        fail(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}", 2)
    if out_dir.exists():
        if not overwrite:
            fail(f"{out_dir} already exists; choose another folder or pass --overwrite")
        shutil.rmtree(out_dir)
    with console.status(f"synthesising {preset_name} (seed {seed})"):
        pair = make_pair(preset(preset_name, seed=seed))
        paths = write_pair(pair, out_dir)
    counts = pair.info.get("counts", {})
    out.print(f"wrote {out_dir}: {', '.join(p.name for p in paths.values())}", highlight=False)
    out.print("truth: " + (", ".join(f"{cls} {change} {n}" for cls, d in counts.items() for change, n in d.items()) or "no change"),
              highlight=False)


def read_zones(path: Path, aoi_geometry) -> dict:
    """Zones from a GeoJSON FeatureCollection (each feature's ``properties.name``), validated as the service does."""
    import json

    from app.errors import InvalidRequest
    from app.zones import zone_geometry

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{path}: not a GeoJSON file ({type(exc).__name__})")
    features = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else None
    if not isinstance(features, list) or not features:
        fail(f"{path}: zones must be a GeoJSON FeatureCollection of named polygons")
    zones = {}
    for k, feature in enumerate(features, start=1):
        name = ((feature or {}).get("properties") or {}).get("name") if isinstance(feature, dict) else None
        if not isinstance(name, str) or not name.strip() or name in zones:
            fail(f"{path}: feature {k} needs a unique properties.name")
        try:
            zones[name] = zone_geometry(feature.get("geometry"), aoi_geometry, zones)
        except InvalidRequest as exc:
            fail(f"{path}: zone {name!r}: {exc}")
    return zones


@app.command()
def watch(
    aoi: Path = typer.Argument(..., help="Area of interest GeoJSON (lon/lat)."),
    scenes: list[Path] = typer.Argument(..., help="Scenes (GeoTIFF/COG with a date tag), in any order."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to create: timeline.json, timeline.png, analyses/."),
    zones_file: Optional[Path] = typer.Option(None, "--zones", help="Zones: a GeoJSON FeatureCollection of polygons within "
                                                                   "the AOI, each with properties.name."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Watch a base locally: analyse each scene against the one before it by date (as a watched AOI of the service
    does), counting per zone, and write the timeline (timeline.json, timeline.png) and every analysis's products."""
    import json
    import shutil

    from app.timeline import make_item, render
    from imagery.pipeline import DEFAULT_METHOD, AnalysisParams, analyze
    from imagery.products import read_summary, write_products
    from imagery.scenes import inspect_scene

    if len(scenes) < 2:
        fail("give at least two scenes", 2)
    if out_dir.exists() and not overwrite:
        fail(f"{out_dir} already exists; choose another folder or pass --overwrite")
    try:
        aoi_read = read_aoi_file(aoi)
        infos = [(inspect_scene(p), p) for p in scenes]
    except (ImageryError, InvalidAOIError, ValueError, OSError) as exc:
        fail(first_line(exc))
    undated = [p.name for info, p in infos if info.acquired is None]
    if undated:
        fail(f"{', '.join(undated)}: no acquisition date tag (ACQUISITION_DATE or TIFFTAG_DATETIME); the chain is by date")
    zones = read_zones(zones_file, aoi_read.geometry) if zones_file else {}
    chain = sorted(infos, key=lambda ip: (ip[0].acquired, ip[1].name))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "analyses").mkdir(parents=True)
    aoi_meta = {"name": aoi_read.name, "area_m2": round(aoi_read.area_m2, 1)}
    items = [make_item(chain[0][0].acquired, chain[0][1].name, aoi_read.area_m2, first=True, analysis_id=None, status=None,
                       summary=None)]
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), TimeElapsedColumn(), console=console, disable=quiet,
                  transient=True) as bar:
        task = bar.add_task("starting", total=len(chain) - 1)
        for k, ((before, before_path), (after, after_path)) in enumerate(zip(chain, chain[1:])):
            name = f"{k + 1:03d}_{before.acquired}_{after.acquired}"
            bar.update(task, description=f"{before.acquired} → {after.acquired}", completed=k)
            try:
                result = analyze(before, after, aoi_read.geometry, AnalysisParams(method=DEFAULT_METHOD))
                write_products(result, out_dir / "analyses" / name, aoi=aoi_meta, zones=zones)
                summary, status = read_summary(out_dir / "analyses" / name), "succeeded"
            except (ImageryError, ValueError) as exc:
                console.print(f"[yellow]note:[/yellow] {before_path.name} → {after_path.name} not analysed: "
                              f"{first_line(exc)}", highlight=False)
                summary, status = None, "failed"
            items.append(make_item(after.acquired, after_path.name, aoi_read.area_m2, first=False,
                                   analysis_id=f"analyses/{name}" if summary else None, status=status, summary=summary))
    doc = {"aoi": aoi_meta, "zones": list(zones), "items": [i.model_dump(mode="json") for i in items]}
    (out_dir / "timeline.json").write_text(json.dumps(doc, indent=2))
    (out_dir / "timeline.png").write_bytes(render(aoi_read.name or "AOI", items, list(zones)))
    print_timeline(items, list(zones), out_dir)


def print_timeline(items, zones: list[str], out_dir: Path) -> None:
    """Vehicles arrived and left per date (overall and per zone), gaps marked."""
    def vehicles(counts) -> str:
        v = counts["vehicles_estimated"]
        return f"+{v['appeared']} / -{v['disappeared']}"

    table = Table("date", "scene", "vehicles", *zones, "objects", show_edge=False, title="Timeline")
    for i, item in enumerate(items):
        if i == 0:
            table.add_row(str(item.date), item.scene_id, "first date", *[""] * len(zones), "")
        elif item.gap:
            why = "no analysis" if item.counts is None else f"gap: {100 * (1 - item.analysed_fraction):.0f} % not seen"
            table.add_row(str(item.date), item.scene_id, why, *[""] * len(zones), "")
        else:
            table.add_row(str(item.date), item.scene_id, vehicles(item.counts), *[vehicles(item.zones[z]) for z in zones],
                          str(item.counts["total"]))
    out.print(table)
    out.print(f"timeline: {out_dir / 'timeline.json'}, {out_dir / 'timeline.png'}", highlight=False, soft_wrap=True)


def print_summary(analysis, out_dir: Path) -> None:
    s = analysis.summary()
    counts = s["counts"]["objects"]
    table = Table(title=f"Changes {s['before_date'] or '?'} → {s['after_date'] or '?'}", show_edge=False)
    table.add_column("class")
    for c in ("appeared", "disappeared", "changed"):
        table.add_column(c, justify="right")
    for cls in ("vehicle", "vehicle_group", "tent", "structure", "other"):
        row = [counts[c][cls] for c in ("appeared", "disappeared", "changed")]
        if any(row):
            table.add_row(cls, *map(str, row))
    out.print(table)
    shift = s["shift"]
    out.print(
        f"objects {s['counts']['total']}  changed {s['changed_area_m2']:,.0f} m²  "
        f"not analysed {100 * s['not_analysed_fraction']:.1f} %  shift {shift['east_m']:+.2f} m E {shift['north_m']:+.2f} m N  "
        f"method {s['method']}",
        highlight=False,
    )
    for caveat in s["caveats"]:
        out.print(f"[yellow]note:[/yellow] {caveat}", highlight=False)
    out.print(f"products: {out_dir}", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)




# --- service commands ----------------------------------------------------------------------

keys_app = typer.Typer(help="API keys (auth is on once a key has been created, even after it is revoked).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def open_store(settings):
    from app.db import make_engine, migrate, session_factory

    settings.ensure_dirs()
    migrate(settings.db_url)
    return session_factory(make_engine(settings.db_url))


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., help="Who or what uses the key."),
    team: str = typer.Option(..., help="Team that owns what the key creates and may see."),
    role: str = typer.Option("analyst", help="analyst (read and create) or viewer (read only)."),
):
    """Create a key and print it alone on stdout (it is shown once and stored hashed)."""
    from app import store
    from app.settings import Settings

    if role not in ("analyst", "viewer"):
        fail("role must be analyst or viewer", 2)
    from app.auth import keys_changed

    settings = Settings()
    sessions = open_store(settings)
    with sessions() as session:
        row, key = store.create_key(session, name=name, team=team, role=role)
    keys_changed(settings)
    console.print(f"created key {row.prefix}… for {name} (team {team}, role {role})", highlight=False)
    print(key)


@keys_app.command("list")
def keys_list():
    """List keys (prefix, name, team, role; never the key)."""
    from app import store
    from app.settings import Settings

    sessions = open_store(Settings())
    table = Table("id", "prefix", "name", "team", "role", "created", "revoked")
    with sessions() as session:
        for k in store.list_keys(session):
            table.add_row(k.id, k.prefix, k.name, k.team, k.role, str(k.created_at)[:19], str(k.revoked_at or "")[:19])
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key: str = typer.Argument(..., help="Key id or prefix.")):
    """Revoke a key: refused by running servers from their next request; auth stays on."""
    from app import store
    from app.settings import Settings

    from app.auth import keys_changed

    settings = Settings()
    sessions = open_store(settings)
    with sessions() as session:
        n = store.revoke_key(session, key)
    keys_changed(settings)
    if not n:
        fail(f"no active key {key!r}")
    console.print(f"revoked {n} key(s)")


@app.command()
def config():
    """Print every setting with its current value (BASEWATCH_* environment variables)."""
    from app.settings import Settings

    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError: say which variable is wrong
        fail(f"invalid configuration: {exc}")
    table = Table("variable", "value", "meaning", show_lines=False)
    for var, value, desc in settings.described():
        table.add_row(var, value, desc)
    out.print(table)


@app.command()
def serve(
    demo: bool = typer.Option(False, "--demo", help="On an empty data folder: synthesise a base, ingest it and run an analysis first."),
    host: Optional[str] = typer.Option(None, help="Bind address (default BASEWATCH_HOST)."),
    port: Optional[int] = typer.Option(None, help="Port (default BASEWATCH_PORT)."),
):
    """Run the HTTP service (and its analysis workers); BASEWATCH_HTTP_WORKERS processes serve HTTP."""
    import logging

    from app import store
    from app.server import serve as run_server
    from app.settings import Settings

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = Settings(**overrides)
    sessions = open_store(settings)
    with sessions() as session:
        secured = settings.auth == "on" or (settings.auth == "auto" and store.any_key(session))
    if not secured and not settings.binds_loopback_only():
        fail(f"no API key exists (or BASEWATCH_AUTH=off), so the service would be open: it only binds to loopback "
             f"(not {settings.host}). Create a key with `basewatch keys create` first, or bind 127.0.0.1.")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if demo:
        from app.demo import ensure_demo

        analysis_id = ensure_demo(settings, sessions, console=console)
        if analysis_id:
            console.print(f"[bold green]demo ready[/]: http://{settings.host}:{settings.port}/v1/analyses/{analysis_id}/viewer", highlight=False)
    console.print(f"basewatch serving on http://{settings.host}:{settings.port}  (API docs: /docs)", highlight=False)
    run_server(settings)


if __name__ == "__main__":
    main()
