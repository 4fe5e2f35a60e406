"""The product folder (imagery.products) on its own: what write_products writes, that it writes it whole or not
at all, and that the files say what the contract says (mask codes, nodata, CRS, dates)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from imagery import contract
from imagery.grid import nominal_pixel_size_m
from imagery.pipeline import AnalysisParams, analyze
from imagery.products import PRODUCT_FILES, ProductError, is_complete, read_changes, read_summary, write_products
from imagery.scenes import inspect_scene
from tests.pairs import small_pair

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    before, after, _ = small_pair(tmp_path_factory.mktemp("pair"))
    return analyze(inspect_scene(before), inspect_scene(after), None, AnalysisParams())


def test_the_folder_holds_every_product_and_they_agree(analysis, tmp_path):
    out = write_products(analysis, tmp_path / "result", aoi={"name": "motor pool"})
    assert is_complete(out) and sorted(p.name for p in out.iterdir()) == sorted(PRODUCT_FILES)
    summary, changes = read_summary(out), read_changes(out)
    assert summary["aoi"]["name"] == "motor pool"
    assert summary["counts"]["total"] == len(changes["features"]) == len(analysis.objects) > 0
    with rasterio.open(out / "change_mask.tif") as ds:
        mask = ds.read(1)
        assert ds.nodata == contract.MASK_NOT_ANALYSED and ds.crs == analysis.grid.crs
        assert ds.transform == analysis.grid.transform and ds.overviews(1)  # a COG with overviews
        assert ds.tags()["VALUES"] == contract.MASK_VALUES_TAG
    assert np.array_equal(mask, analysis.mask)
    assert set(np.unique(mask)) <= set(contract.MASK_VALUES.values())
    changed_px = int(np.isin(mask, contract.MASK_CHANGED).sum())
    assert changed_px * nominal_pixel_size_m(analysis.grid) ** 2 == pytest.approx(summary["changed_area_m2"], abs=0.05)
    with rasterio.open(out / "change_score.tif") as ds:
        score = ds.read(1, masked=True)
        assert float(score.min()) >= 0.0 and float(score.max()) <= 1.0
        assert np.array_equal(np.ma.getmaskarray(score), ~analysis.analysed)  # not analysed is nodata
    for side in ("before", "after"):
        with rasterio.open(out / f"{side}.tif") as ds:
            assert ds.tags()["ACQUISITION_DATE"] == summary[f"{side}_date"]
            assert ds.descriptions == tuple(analysis.before.bands)
    kinds = {f["properties"]["change"] for f in changes["features"]}
    assert kinds <= set(contract.CHANGE_TYPES)
    assert json.loads((out / "summary.json").read_text()) == summary


def test_an_existing_folder_is_kept_unless_overwriting(analysis, tmp_path):
    out = write_products(analysis, tmp_path / "result")
    (out / "note.txt").write_text("the analyst's own file")
    with pytest.raises(ProductError, match="already exists"):
        write_products(analysis, out)
    assert (out / "note.txt").exists()
    write_products(analysis, out, overwrite=True)
    assert is_complete(out) and not (out / "note.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["result"]  # no partial or old folder left beside it


def test_a_failure_midway_leaves_no_folder(analysis, tmp_path, monkeypatch):
    import imagery.report

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(imagery.report, "render_report", broken)
    with pytest.raises(OSError, match="disk full"):
        write_products(analysis, tmp_path / "result")
    assert list(tmp_path.iterdir()) == []


def test_block_by_block_cogs_have_the_same_pixels_and_overviews_as_whole_ones(tmp_path):
    """A block-wise analysis writes its rasters block by block and builds the overviews itself before the COG copy
    (faster on large scenes); every level must hold what the COG driver makes from the whole array, masks too."""
    from types import SimpleNamespace

    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.windows import Window

    from imagery.grid import Grid
    from imagery.products import SCORE_NODATA, TiledRasters, overview_factors, write_cog

    rows, cols, bands = 600, 700, ("red", "green", "blue")
    grid = Grid(CRS.from_epsg(32635), Affine(0.5, 0, 400000, 0, -0.5, 5370000), (rows, cols))
    rng = np.random.default_rng(3)
    before = rng.normal(100, 20, (3, rows, cols)).astype(np.float32)
    valid = np.ones((rows, cols), bool)
    valid[:, :37] = False  # nodata along the west edge
    valid[300:333, 400:480] = False
    mask = rng.choice(np.array([0, 1, 2, 3, contract.MASK_NOT_ANALYSED], np.uint8), (rows, cols), p=[.9, .03, .03, .02, .02])
    score = rng.random((rows, cols), np.float32)
    (tmp_path / "scratch").mkdir()
    tiled = TiledRasters(tmp_path / "scratch", grid, bands, remove_folder=True)
    for r0, c0, h, w in ((0, 0, 600, 384), (0, 384, 600, 316)):  # two blocks, a border inside a COG tile
        core = (slice(r0, r0 + h), slice(c0, c0 + w))
        tiled.write(Window(c0, r0, w, h), SimpleNamespace(mask=mask[core], score=score[core], before=before[:, core[0], core[1]],
                                                            before_valid=valid[core], after=before[:, core[0], core[1]],
                                                            after_valid=valid[core]))
    (tmp_path / "blockwise").mkdir()
    tiled.write_cogs(tmp_path / "blockwise")
    for path in tiled.paths.values():  # the overviews were built into the intermediate files, then copied
        with rasterio.open(path) as ds:
            assert ds.overviews(1) == [2, 4], path.name
    tiled.cleanup()
    whole = tmp_path / "whole"
    whole.mkdir()
    write_cog(whole / "before.tif", before, grid, mask=valid, overview_resampling="average")
    write_cog(whole / "after.tif", before, grid, mask=valid, overview_resampling="average")
    write_cog(whole / "change_score.tif", score, grid, nodata=SCORE_NODATA, overview_resampling="average")
    write_cog(whole / "change_mask.tif", mask, grid, nodata=contract.MASK_NOT_ANALYSED, overview_resampling="nearest")
    assert overview_factors(rows, cols) == [2, 4]  # 700 -> 350 -> 175 px: the last level fits one 256 px tile
    for name in ("before.tif", "after.tif", "change_score.tif", "change_mask.tif"):
        with rasterio.open(tmp_path / "blockwise" / name) as a, rasterio.open(whole / name) as b:
            assert a.overviews(1) == b.overviews(1) == [2, 4]
            assert (a.profile["blockxsize"], a.compression) == (b.profile["blockxsize"], b.compression)
        for level in (None, 0, 1):
            with rasterio.open(tmp_path / "blockwise" / name, overview_level=level) as a, \
                    rasterio.open(whole / name, overview_level=level) as b:
                assert np.array_equal(a.read(), b.read()), (name, level)
                assert np.array_equal(a.read_masks(1), b.read_masks(1)), (name, level)


def test_a_failed_cog_task_raises_after_every_other_has_finished(tmp_path):
    """The COGs of a block-wise analysis are made in other processes, one task per file: when one fails, the
    error comes back only once the others are done, so the caller can remove the folder without a process
    still writing into it."""
    from affine import Affine
    from rasterio.crs import CRS
    from imagery.blockwise import local_executor
    from imagery.grid import Grid
    from imagery.products import TiledRasters

    grid = Grid(CRS.from_epsg(32635), Affine(0.5, 0, 400000, 0, -0.5, 5370000), (300, 400))
    (tmp_path / "scratch").mkdir()
    tiled = TiledRasters(tmp_path / "scratch", grid, ("red", "green", "blue"), remove_folder=True)
    tiled.close()
    tiled.paths["before"].unlink()  # its task fails; the other three are made
    (tmp_path / "out").mkdir()
    with local_executor(2) as pool, pytest.raises(ProductError, match="before.tif"):
        tiled.write_cogs(tmp_path / "out", executor=pool)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["after.tif", "change_mask.tif", "change_score.tif"]
    for name in ("after.tif", "change_mask.tif", "change_score.tif"):
        with rasterio.open(tmp_path / "out" / name) as ds:  # whole, readable COGs, not half-written files
            assert ds.overviews(1) == [2] and ds.read(1).shape == (300, 400)
    tiled.cleanup()


def test_block_processes_keep_numpy_arrays_on_the_heap():
    """A Dask nanny's MALLOC_TRIM_THRESHOLD_ would map every array fresh; block tasks set glibc's thresholds back."""
    from imagery.blockwise import reuse_heap

    assert reuse_heap() is True  # glibc took both values (it refuses an mmap threshold over 32 MB)


def test_cog_files_are_shared_out_so_no_worker_gets_both_large_ones():
    from imagery.products import share_out

    files, weights = ["before", "after", "change_score", "change_mask"], [16, 16, 4, 1]
    assert share_out(files, weights, 2) == [["before", "change_score"], ["after", "change_mask"]]
    assert share_out(files, weights, 1) == [["before", "after", "change_score", "change_mask"]]
    assert share_out(files, weights, 8) == [["before"], ["after"], ["change_score"], ["change_mask"]]
