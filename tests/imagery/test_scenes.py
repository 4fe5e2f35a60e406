"""Scene validation: what is accepted, what is refused, and from the header alone."""

import datetime as dt
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine

from imagery.errors import BandError, InvalidSceneError, SceneTooLargeError
from imagery.grid import Grid
from imagery.scenes import SceneLimits, inspect_scene, read_onto_grid
from tests.conftest import textured

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


def test_four_band_roles_date_and_grid(four_band):
    info = inspect_scene(four_band)
    assert info.bands == ("blue", "green", "red", "nir")
    assert info.acquired == dt.date(2024, 5, 1)
    assert info.grid.shape == (400, 400)
    assert info.pixel_size_m == pytest.approx(0.5, rel=1e-3)  # UTM scale factor near the central meridian


def test_rgb8_display_product_roles_from_colour_interpretation(tif_factory):
    data = (textured((64, 64))[None].repeat(3, 0) * 255).astype(np.uint8)
    path = tif_factory(data, photometric="RGB")
    info = inspect_scene(path)
    assert info.bands == ("blue", "green", "red")  # canonical order
    assert info.band_index == {"blue": 3, "green": 2, "red": 1}


def test_band_roles_parameter_and_unknown_role(tif_factory):
    path = tif_factory(np.ones((5, 32, 32), np.uint16))
    with pytest.raises(BandError, match="cannot tell"):
        inspect_scene(path)
    info = inspect_scene(path, bands=["skip", "blue", "green", "red", "nir"])
    assert info.band_index == {"blue": 2, "green": 3, "red": 4, "nir": 5}
    with pytest.raises(BandError, match="unknown band role"):
        inspect_scene(path, bands=["a", "b", "c", "d", "e"])


def test_date_from_tiff_datetime_and_parameter(tif_factory):
    path = tif_factory(np.ones((3, 16, 16), np.uint8), tags={"TIFFTAG_DATETIME": "2023:07:14 10:31:00"})
    assert inspect_scene(path).acquired == dt.date(2023, 7, 14)
    assert inspect_scene(path, acquired="2020-01-02").acquired == dt.date(2020, 1, 2)


def test_boa_add_offset_is_applied(tif_factory):
    data = np.full((4, 32, 32), 2000, np.uint16)
    path = tif_factory(data, nodata=0, tags={"BOA_ADD_OFFSET": "-1000", "BOA_QUANTIFICATION_VALUE": "10000"},
                       descriptions=("blue", "green", "red", "nir"))
    info = inspect_scene(path)
    raster = read_onto_grid(info, info.grid)
    assert np.allclose(raster.data[:, raster.valid], 0.1)


def test_nodata_and_internal_mask_are_honoured(tif_factory):
    data = np.full((4, 64, 64), 1000, np.uint16)
    data[:, :10] = 0
    path = tif_factory(data, nodata=0)
    raster = read_onto_grid(inspect_scene(path), inspect_scene(path).grid)
    assert not raster.valid[:10].any() and raster.valid[12:].all()
    mask = np.ones((64, 64), bool)
    mask[:, :20] = False
    path2 = tif_factory(np.full((3, 64, 64), 100, np.uint8), mask=mask, photometric="RGB")
    raster2 = read_onto_grid(inspect_scene(path2), inspect_scene(path2).grid)
    assert not raster2.valid[:, :20].any() and raster2.valid[:, 22:].all()


def test_warp_onto_a_grid_in_another_crs_keeps_values(four_band):
    info = inspect_scene(four_band)
    left, bottom, right, top = info.grid.bounds
    target = Grid.from_bounds((left + 20, bottom + 20, right - 20, top - 20), info.grid.crs, 1.0)
    raster = read_onto_grid(info, target)
    assert raster.grid == target and raster.valid.all()
    with rasterio.open(four_band) as ds:
        full = ds.read(4).astype(float)
    assert abs(raster.band("nir").mean() - full[40:-40, 40:-40].mean()) < 0.02 * full.mean()


# --- refused input -----------------------------------------------------------------


def test_non_raster_is_refused(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("this is not an image")
    with pytest.raises(InvalidSceneError, match="not a GeoTIFF"):
        inspect_scene(p)


def test_vrt_is_refused_even_renamed(tmp_path, four_band):
    vrt = f"""<VRTDataset rasterXSize="400" rasterYSize="400"><VRTRasterBand dataType="UInt16" band="1">
    <SimpleSource><SourceFilename relativeToVRT="0">{four_band}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>
    </VRTRasterBand></VRTDataset>"""
    for name in ("trick.vrt", "trick.tif"):
        p = tmp_path / name
        p.write_text(vrt)
        with pytest.raises(InvalidSceneError):
            inspect_scene(p)


def test_truncated_tiff_is_refused(tmp_path, four_band):
    data = four_band.read_bytes()
    p = tmp_path / "truncated.tif"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidSceneError):
        info = inspect_scene(p)
        read_onto_grid(info, info.grid)


def test_raster_bomb_refused_from_header(tmp_path):
    p = tmp_path / "bomb.tif"
    with rasterio.open(p, "w", driver="GTiff", width=200_000, height=200_000, count=1, dtype="uint8",
                       crs="EPSG:32635", transform=Affine(0.5, 0, 400000, 0, -0.5, 5370000),
                       tiled=True, sparse_ok=True, compress="deflate"):
        pass
    assert p.stat().st_size < 5_000_000
    with pytest.raises(SceneTooLargeError, match="200000 x 200000"):
        inspect_scene(p)


def test_band_limit(tif_factory):
    path = tif_factory(np.ones((20, 8, 8), np.uint8))
    with pytest.raises(SceneTooLargeError, match="bands"):
        inspect_scene(path, limits=SceneLimits(max_bands=16))


def test_unsupported_dtype(tif_factory):
    path = tif_factory(np.ones((1, 8, 8), np.complex64))
    with pytest.raises(InvalidSceneError, match="not supported"):
        inspect_scene(path)


def test_ungeoreferenced_and_sidecar_ignored(tmp_path):
    p = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(p, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint8") as ds:
            ds.write(np.ones((1, 16, 16), np.uint8))
    # A sidecar that would give the file a CRS and geotransform if GDAL read it.
    (tmp_path / "plain.tif.aux.xml").write_text(
        '<PAMDataset><SRS>EPSG:32635</SRS><GeoTransform>400000,1,0,5370000,0,-1</GeoTransform></PAMDataset>')
    (tmp_path / "plain.tfw").write_text("1\n0\n0\n-1\n400000\n5370000\n")
    with pytest.raises(InvalidSceneError, match="not georeferenced"):
        inspect_scene(p)


def test_remote_and_missing_paths_refused(tmp_path):
    for path in ("/vsicurl/http://example.com/a.tif", "http://example.com/a.tif", tmp_path / "missing.tif"):
        with pytest.raises(InvalidSceneError):
            inspect_scene(path)


def test_grid_on_the_scene_lattice_reads_exact_values(four_band):
    info = inspect_scene(four_band)
    t = info.grid.transform
    sub = Grid(info.grid.crs, Affine(t.a, 0, t.c + 10 * t.a, 0, t.e, t.f + 20 * t.e), (100, 150))
    raster = read_onto_grid(info, sub)
    assert raster.meta["resampling"].startswith("none")
    with rasterio.open(four_band) as ds:
        expected = ds.read(window=((20, 120), (10, 160))).astype(np.float32)
    assert np.array_equal(raster.data, expected) and raster.valid.all()
    # a grid hanging over the scene edge: the outside is invalid, not zero-valued data
    over = Grid(info.grid.crs, Affine(t.a, 0, t.c - 10 * t.a, 0, t.e, t.f), (50, 50))
    raster = read_onto_grid(info, over)
    assert not raster.valid[:, :10].any() and raster.valid[:, 10:].all()
