"""Block-wise analysis (issue 9): the same objects as the whole grid, on local processes and on a Dask
cluster, products written block by block, the service running a large analysis's blocks on its cluster,
and the disk limit refused before any pixel is read."""

from __future__ import annotations

import gc
import math
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from imagery.blockplan import halo_px, lattice_px, plan_blocks
from imagery.pipeline import AnalysisParams, analyze, plan_analysis
from imagery.scenes import inspect_scene

#: Block side of the tests: two blocks a side on the test grid, each with a full halo.
BLOCK_PX = 480
#: The test AOI's side, metres (800 px at 0.5 m).
AOI_M = 400.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 512 m synthetic base at 0.5 m (vehicles, tents, structures, sun, season, lean, haze, shift) and an AOI
    placed so that the block edges cross as many objects of a whole-grid run as possible, large ones first."""
    from synth import make_pair, preset, write_pair

    folder = tmp_path_factory.mktemp("blockwise") / "pair"
    write_pair(make_pair(replace(preset("default", seed=0), extent_m=512.0, pixel_size_m=0.5, after_pixel_size_m=0.5)),
               folder)
    before, after = inspect_scene(folder / "before.tif"), inspect_scene(folder / "after.tif")
    scene = analyze(before, after, None, AnalysisParams(block_px=10**6, method="objects"))  # vehicles and tents
    return before, after, aoi_across_edges(before, after, scene.objects)


def test_grids_within_the_whole_budget_are_analysed_whole():
    """Block-wise only when a side exceeds block_px and pixels x bands exceed the whole-grid budget."""
    params = AnalysisParams()
    assert not params.blockwise((4096, 4096), 4)  # the default budget: 4096² x 4 bands, faster whole
    assert params.blockwise((4096, 4097), 4) and params.blockwise((4096, 4096), 5)
    assert not params.blockwise((params.block_px, params.block_px), 100)  # one block: whole whatever the bands
    forced = AnalysisParams(block_px=BLOCK_PX, whole_band_pixels=0)
    assert forced.blockwise((BLOCK_PX + 1, 10), 1) and not forced.blockwise((BLOCK_PX, BLOCK_PX), 4)


def aoi_across_edges(before, after, objects) -> dict:
    """The AOI (lon/lat box of :data:`AOI_M`) inside the scene whose block edges (:data:`BLOCK_PX`) cross the
    largest total area of ``objects`` (grid CRS outlines), on a 8 m lattice of positions."""
    crs = before.grid.crs
    x0, y0, x1, y1 = before.grid.bounds
    best, best_score = None, -1.0
    for cx in np.arange(x0 + AOI_M / 2 + 4, x1 - AOI_M / 2 - 4, 8.0):
        for cy in np.arange(y0 + AOI_M / 2 + 4, y1 - AOI_M / 2 - 4, 8.0):
            aoi = transform_geom(crs, "EPSG:4326", mapping(box(cx - AOI_M / 2, cy - AOI_M / 2, cx + AOI_M / 2, cy + AOI_M / 2)))
            plan = plan_analysis(before, after, shape(aoi), AnalysisParams(block_px=BLOCK_PX, whole_band_pixels=0))
            score = sum(math.sqrt(o.area_m2) for o in straddling(objects, plan.grid))
            if score > best_score:
                best, best_score = aoi, score
    return best


def block_edges(grid) -> list:
    """The block edges of a grid as lines in its CRS."""
    from shapely.geometry import LineString

    px = abs(grid.transform.a)
    blocks = plan_blocks(grid.shape, BLOCK_PX, halo_px(px), lattice_px(px))
    rows = sorted({int(b.core.row_off) for b in blocks} - {0})
    cols = sorted({int(b.core.col_off) for b in blocks} - {0})
    t = grid.transform
    return ([LineString([t * (0, r), t * (grid.cols, r)]) for r in rows]
            + [LineString([t * (c, 0), t * (c, grid.rows)]) for c in cols])


def straddling(objects, grid) -> list:
    edges = block_edges(grid)
    return [o for o in objects if any(o.geometry.intersects(e) for e in edges)]


def assert_same_objects(whole, blocks, pixel_size_m: float):
    """Same count; each whole-grid object has a block-wise one of the same change and class overlapping it most,
    its area within one pixel of outline (perimeter x pixel size)."""
    assert len(blocks.objects) == len(whole.objects)
    used = set()
    for o in whole.objects:
        overlaps = [(m.geometry.intersection(o.geometry).area, i) for i, m in enumerate(blocks.objects)]
        area, i = max(overlaps)
        assert area > 0, f"no block-wise object where the whole grid has {o.change} {o.cls} of {o.area_m2:.0f} m²"
        m = blocks.objects[i]
        assert i not in used
        used.add(i)
        assert (m.change, m.cls) == (o.change, o.cls)
        assert abs(m.area_m2 - o.area_m2) <= o.geometry.length * pixel_size_m, (m.area_m2, o.area_m2)


@pytest.fixture(scope="module")
def runs(pair):
    """The AOI analysed whole, then block-wise in local processes (progress recorded)."""
    before, after, aoi = pair
    whole = analyze(before, after, shape(aoi), AnalysisParams(block_px=10**6))
    stages = []
    blocks = analyze(before, after, shape(aoi), AnalysisParams(block_px=BLOCK_PX, whole_band_pixels=0),
                     progress=lambda stage, fraction: stages.append((stage, fraction)))
    return whole, blocks, stages


def test_blockwise_gives_the_objects_of_the_whole_grid_including_across_block_edges(runs):
    whole, blocks, stages = runs
    assert whole.rasters is None and blocks.rasters is not None
    n = blocks.change.details["blockwise"]["blocks"]
    assert n == 4
    across = straddling(whole.objects, whole.grid)
    assert len(across) >= 3, "the AOI was chosen so that block edges cut objects"
    assert any(max(o.length_m, o.width_m) > 64.0 for o in across), "and a large one, merged from parts"
    assert_same_objects(whole, blocks, 0.5)
    assert blocks.counts() == pytest.approx(whole.counts(), rel=0.002)
    assert f"blocks {n}/{n}" in [s for s, _ in stages]
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions)


def test_products_written_block_by_block_are_valid_cogs_matching_the_whole_grid(runs, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    from imagery.products import is_complete, read_summary, write_products

    whole, blocks, _ = runs
    out_whole, out_blocks = write_products(whole, tmp_path / "whole"), write_products(blocks, tmp_path / "blocks")
    assert is_complete(out_blocks)
    for name in ("change_mask.tif", "change_score.tif", "before.tif", "after.tif"):
        valid, errors, _ = cog_validate(str(out_blocks / name), quiet=True)
        assert valid, (name, errors)
        with rasterio.open(out_whole / name) as a, rasterio.open(out_blocks / name) as b:
            assert (a.profile["width"], a.profile["height"], a.count, a.dtypes, a.crs, a.transform) == \
                   (b.profile["width"], b.profile["height"], b.count, b.dtypes, b.crs, b.transform)
            assert b.overviews(1), name
            same = np.isclose(a.read(), b.read(), atol=1e-4).mean()
            assert same > 0.995, (name, same)
    summary = read_summary(out_blocks)
    assert summary["counts"] == read_summary(out_whole)["counts"]
    assert summary["change_details"]["blockwise"]["blocks"] == 4


def test_blockwise_on_a_dask_cluster_gives_the_same_objects(pair, runs):
    from distributed import Client, LocalCluster

    before, after, aoi = pair
    whole, local, _ = runs
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        on_dask = analyze(before, after, shape(aoi), AnalysisParams(block_px=BLOCK_PX, whole_band_pixels=0),
                          executor=client.get_executor(pure=False))
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert "run_block" in prefixes
    assert_same_objects(whole, on_dask, 0.5)
    assert [(o.change, o.cls, o.area_m2) for o in on_dask.objects] == [(o.change, o.cls, o.area_m2) for o in local.objects]
    folder = on_dask.rasters.folder
    assert folder.is_dir()
    del on_dask
    gc.collect()
    assert not folder.exists()  # the block rasters' temporary folder goes with the analysis


def test_statistics_from_a_mosaic_of_windows_match_the_whole_grid(pair, runs, monkeypatch):
    """A grid larger than the statistics budget: shift, normalisation and objects measured on a mosaic of
    windows spread over it are those of the whole grid, within what a sample can tell."""
    import functools

    import imagery.blockwise

    before, after, aoi = pair
    whole, _, _ = runs
    budget = whole.grid.rows * whole.grid.cols * 9 // 10
    monkeypatch.setattr(imagery.blockwise, "sample_mosaic",
                        functools.partial(imagery.blockwise.sample_mosaic, budget_px=budget))
    sampled = analyze(before, after, shape(aoi), AnalysisParams(block_px=BLOCK_PX, whole_band_pixels=0))
    details = sampled.change.details["blockwise"]
    assert details["statistics_windows"] > 1 and details["statistics_sample_pixels"] <= budget
    assert abs(sampled.shift.rows - whole.shift.rows) <= 0.25 and abs(sampled.shift.cols - whole.shift.cols) <= 0.25
    for k, (fit, ref) in enumerate(zip(sampled.normalisation.fits, whole.normalisation.fits)):
        low, high = np.percentile(whole.before.data[k][whole.analysed], [10, 90])
        tolerance = 0.1 * (high - low)  # what a mosaic of a few windows (4 here) can tell
        off = lambda slope, intercept, level: abs((slope - ref.slope) * level + intercept - ref.intercept)  # noqa: E731
        assert max(off(fit.slope, fit.intercept, level) for level in (low, high)) <= tolerance, k
        # and no normalisation at all would not pass: the dates differ in radiometry
        assert max(off(1.0, 0.0, level) for level in (low, high)) > tolerance, k
    assert len(sampled.objects) == pytest.approx(len(whole.objects), rel=0.25)


def test_disk_limit_refused_before_any_pixel_is_read(pair, monkeypatch):
    import imagery.blockplan
    import imagery.blockwise
    import imagery.pipeline
    from imagery.errors import GridTooLargeError

    before, after, aoi = pair

    def no_read(*args, **kwargs):
        raise AssertionError("a pixel was read")

    monkeypatch.setattr(imagery.pipeline, "read_onto_grid", no_read)
    monkeypatch.setattr(imagery.blockwise, "read_onto_grid", no_read)
    monkeypatch.setattr(imagery.blockplan, "read_onto_grid", no_read)  # the statistics sample
    with pytest.raises(GridTooLargeError, match=r"could take 0\.\d GB of disk, 0\.0 GB are available"):
        analyze(before, after, shape(aoi), AnalysisParams(block_px=BLOCK_PX, whole_band_pixels=0, max_disk_bytes=10_000_000))


def test_service_runs_the_blocks_of_one_analysis_on_its_dask_cluster(tmp_path):
    """BASEWATCH_DASK_ADDRESS: the analysis is a task on the cluster, its blocks are tasks there too; the
    product of a block-wise analysis serves its report, files and tiles."""
    from distributed import Client, LocalCluster

    from tests.live import LiveServer
    from tests.live import run_one_analysis

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        srv = LiveServer(tmp_path / "data", env={"BASEWATCH_DASK_ADDRESS": cluster.scheduler_address,
                                                  "BASEWATCH_BLOCK_PX": "256", "BASEWATCH_WHOLE_BAND_PIXELS": "0"}).start()
        try:
            body = run_one_analysis(srv, tmp_path / "pair")
            assert body["status"] == "succeeded", body["error"]
            assert body["summary"]["change_details"]["blockwise"]["blocks"] == 4
            assert body["summary"]["counts"]["total"] >= 1
            with Client(cluster) as client:
                prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
            assert {"analysis", "run_block"} <= set(prefixes)
            client = srv.client()
            aid = body["id"]
            assert client.get(f"/v1/analyses/{aid}/report.png").status_code == 200
            assert client.get(f"/v1/analyses/{aid}/files/change_score.tif").status_code == 200
            (lon, lat) = body["summary"]["aoi"]["centre_lonlat"]
            z = 18
            x = int((lon + 180) / 360 * 2**z)
            y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
            tile = client.get(f"/v1/analyses/{aid}/tiles/{z}/{x}/{y}.png")
            assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
            leftovers = [p.name for p in (srv.data_dir / "analyses").iterdir() if p.name.startswith(".")]
            assert leftovers == []  # the block rasters' scratch folder is gone
        finally:
            srv.stop()
