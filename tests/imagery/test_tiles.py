"""Map tiles of a product folder (imagery.tiles): a tiny hand-made product with one 'appeared' square."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.warp import transform, transform_bounds, transform_geom
from rasterio.shutil import copy as gdal_copy
from shapely.geometry import box, mapping

from app.mapdocs import tilejson, wmts_capabilities
from imagery.tiles import LAYERS, TMS, TileOutOfRange, TileRenderer, TileTooCostly

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

CRS = "EPSG:32635"
RES = 0.5
ORIGIN = (400000.0, 5370000.0)  # upper-left corner, UTM 35N (about 25.6 E, 48.5 N)
SIZE = 200                      # 200 x 200 px = 100 m x 100 m
OBJ = (80, 120, 80, 120)        # rows/cols [80, 120): a 20 m x 20 m 'appeared' square
BAD_COLS = 10                   # the first 10 columns have no data (not analysed)

WMTS = "{http://www.opengis.net/wmts/1.0}"
OWS = "{http://www.opengis.net/ows/1.1}"


def _write_cog(path, data, *, nodata=None, mask=None, descriptions=None):
    arr = data[None] if data.ndim == 2 else data
    tmp = path.with_suffix(".src.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=SIZE, height=SIZE, count=arr.shape[0], dtype=arr.dtype,
                       crs=CRS, transform=Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1]), nodata=nodata) as ds:
        ds.write(arr)
        for i, d in enumerate(descriptions or (), start=1):
            ds.set_band_description(i, d)
        if mask is not None:
            ds.write_mask(mask.astype(np.uint8) * 255)
    # GDAL's COG driver keeps the internal mask (rio-cogeo 7 + GDAL 3.10's cog_translate drops it)
    gdal_copy(str(tmp), str(path), driver="COG", compress="deflate", blocksize=256)
    tmp.unlink()


def _obj_polygon_utm():
    r0, r1, c0, c1 = OBJ
    return box(ORIGIN[0] + c0 * RES, ORIGIN[1] - r1 * RES, ORIGIN[0] + c1 * RES, ORIGIN[1] - r0 * RES)


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    d = tmp_path_factory.mktemp("product")
    r0, r1, c0, c1 = OBJ
    valid = np.ones((SIZE, SIZE), bool)
    valid[:, :BAD_COLS] = False
    rng = np.random.default_rng(0)
    base = (0.05 + 0.1 * rng.random((SIZE, SIZE))).astype(np.float32)
    before = np.stack([base * 1.0, base * 0.9, base * 0.8])
    after = before.copy()
    after[:, r0:r1, c0:c1] = 0.4  # a bright new object
    _write_cog(d / "before.tif", before, mask=valid, descriptions=("red", "green", "blue"))
    _write_cog(d / "after.tif", after, mask=valid, descriptions=("red", "green", "blue"))
    score = np.full((SIZE, SIZE), 0.05, np.float32)
    score[r0:r1, c0:c1] = 0.95
    score[~valid] = -1
    _write_cog(d / "change_score.tif", score, nodata=-1)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[r0:r1, c0:c1] = 1
    mask[~valid] = 255
    _write_cog(d / "change_mask.tif", mask, nodata=255)
    geom = transform_geom(CRS, "EPSG:4326", mapping(_obj_polygon_utm()), precision=7)
    fc = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "id": 1, "geometry": geom,
        "properties": {"id": 1, "change": "appeared", "class": "structure", "area_m2": 400.0}}]}
    (d / "changes.geojson").write_text(json.dumps(fc))
    return d


@pytest.fixture(scope="module")
def renderer(product):
    with TileRenderer(product) as r:
        yield r


def _lonlat(col, row):
    x, y = ORIGIN[0] + col * RES, ORIGIN[1] - row * RES
    xs, ys = transform(CRS, "EPSG:4326", [x], [y])
    return xs[0], ys[0]


def _pixel_of(z, lon, lat, tilesize=256):
    """(tile, col, row) of a lon/lat at zoom z."""
    t = TMS.tile(lon, lat, z)
    left, bottom, right, top = TMS.xy_bounds(t)
    xs, ys = transform("EPSG:4326", "EPSG:3857", [lon], [lat])
    col = int((xs[0] - left) / (right - left) * tilesize)
    row = int((top - ys[0]) / (top - bottom) * tilesize)
    return t, col, row


def _decode(png: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG"
    assert im.size == (256, 256)
    return np.asarray(im.convert("RGBA"))


def _obj_centre():
    r0, r1, c0, c1 = OBJ
    return _lonlat((c0 + c1) / 2, (r0 + r1) / 2)


def test_every_layer_is_a_256px_png(renderer):
    z = renderer.info().maxzoom
    t, _, _ = _pixel_of(z, *_obj_centre())
    for layer in LAYERS:
        png = renderer.render(layer, t.z, t.x, t.y)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        rgba = _decode(png)
        assert rgba[..., 3].any(), layer


def test_changes_red_over_the_appeared_object(renderer):
    z = renderer.info().maxzoom
    t, col, row = _pixel_of(z, *_obj_centre())
    rgba = _decode(renderer.render("changes", t.z, t.x, t.y)).astype(int)
    r, g, b, a = rgba[row, col]
    assert a > 0 and r > 200 and g < 100 and b < 100
    # the outline is drawn in opaque red too
    red = (rgba[..., 0] > 200) & (rgba[..., 1] < 100) & (rgba[..., 3] == 255)
    assert red.sum() > 20


def test_changes_transparent_where_nothing_changed(renderer):
    z = renderer.info().maxzoom
    # the south-east corner of the product: analysed, no change, far from the object
    lon, lat = _lonlat(SIZE - 2, SIZE - 2)
    t, _, _ = _pixel_of(z, lon, lat)
    assert renderer.tile_exists(t.z, t.x, t.y)
    assert _decode(renderer.render("before", t.z, t.x, t.y))[..., 3].any()
    assert not _decode(renderer.render("changes", t.z, t.x, t.y))[..., 3].any()


def test_not_analysed_is_hatched_and_imagery_masked(renderer):
    z = renderer.info().maxzoom
    t, col, row = _pixel_of(z, *_lonlat(BAD_COLS / 2, SIZE / 2))
    changes = _decode(renderer.render("changes", t.z, t.x, t.y)).astype(int)
    patch = changes[max(row - 4, 0):row + 4, max(col - 4, 0):col + 4]
    assert (patch[..., 3] > 0).all()
    assert (np.abs(patch[..., 0] - patch[..., 2]) < 10).all()  # grey
    before = _decode(renderer.render("before", t.z, t.x, t.y))
    assert before[row, col, 3] == 0  # the internal mask is honoured
    score = _decode(renderer.render("score", t.z, t.x, t.y))
    assert score[row, col, 3] == 0   # score nodata


def test_score_transparent_where_low(renderer):
    z = renderer.info().maxzoom
    t, col, row = _pixel_of(z, *_lonlat(SIZE - 5, SIZE - 5))
    assert not _decode(renderer.render("score", t.z, t.x, t.y))[..., 3].any()
    t, col, row = _pixel_of(z, *_obj_centre())
    assert _decode(renderer.render("score", t.z, t.x, t.y))[row, col, 3] > 100


def test_outside_bounds_is_transparent(renderer):
    z = renderer.info().maxzoom
    t, _, _ = _pixel_of(z, *_obj_centre())
    assert not renderer.tile_exists(z, t.x + 50, t.y)
    for layer in LAYERS:
        assert not _decode(renderer.render(layer, z, t.x + 50, t.y))[..., 3].any()


@pytest.mark.parametrize("zxy", [(0, 1, 0), (0, 0, 1), (3, -1, 0), (3, 0, 8), (-1, 0, 0), (31, 0, 0), (2, 1.5, 0)])
def test_out_of_range_raises(renderer, zxy):
    with pytest.raises(TileOutOfRange):
        renderer.render("before", *zxy)
    with pytest.raises(ValueError):
        renderer.tile_exists(*zxy)


def test_unknown_layer(renderer):
    with pytest.raises(ValueError):
        renderer.render("ndvi", 0, 0, 0)


def test_deterministic(product, renderer):
    z = renderer.info().maxzoom
    t, _, _ = _pixel_of(z, *_obj_centre())
    with TileRenderer(product) as other:
        for layer in LAYERS:
            assert renderer.render(layer, t.z, t.x, t.y) == renderer.render(layer, t.z, t.x, t.y)
            assert renderer.render(layer, t.z, t.x, t.y) == other.render(layer, t.z, t.x, t.y)


def test_concurrent_rendering_matches_serial(renderer):
    info = renderer.info()
    tiles = [t for z in (info.maxzoom - 1, info.maxzoom) for t in TMS.tiles(*info.bounds, zooms=[z])]
    jobs = [(layer, t.z, t.x, t.y) for t in tiles for layer in LAYERS]
    serial = [renderer.render(*j) for j in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda j: renderer.render(*j), jobs * 2))
    assert parallel == serial * 2


def test_changes_tiles_hold_no_text_at_any_zoom(renderer):
    """Object numbers are the client's (vector markers that declutter): a changes tile holds only the palette's
    colours (mask fills, hatch, outlines), never antialiased text, even where the object fills the screen."""
    from imagery.tilestyle import CHANGES_PALETTE

    r0, _, c0, c1 = OBJ
    palette = {tuple(c) for c in CHANGES_PALETTE.tolist()}
    info = renderer.info()
    for z in range(info.maxzoom - 3, info.maxzoom + 1):
        t, _, _ = _pixel_of(z, *_lonlat((c0 + c1) / 2, r0))
        im = Image.open(io.BytesIO(renderer.render("changes", t.z, t.x, t.y)))
        assert im.mode == "P", z
        colours = {tuple(c) for c in np.asarray(im.convert("RGBA")).reshape(-1, 4).tolist()}
        assert colours <= palette, z
        white = [c for c in colours if c[3] == 255 and min(c[:3]) > 230]
        assert not white, z


def test_tilejson(renderer):
    info = renderer.info()
    tj = tilejson(info, "https://h/v1/analyses/7/tiles/{z}/{x}/{y}.png", layer="changes", attribution="basewatch",
                  token="t0k")
    assert tj["tilejson"] == "3.0.0"
    assert tj["tiles"] == ["https://h/v1/analyses/7/tiles/{z}/{x}/{y}.png?layer=changes&token=t0k"]
    expected_utm = (ORIGIN[0], ORIGIN[1] - SIZE * RES, ORIGIN[0] + SIZE * RES, ORIGIN[1])
    expected = transform_bounds(CRS, "EPSG:4326", *expected_utm, densify_pts=21)
    assert tj["bounds"] == pytest.approx(expected, abs=1e-6)
    w, s, e, n = tj["bounds"]
    assert w < tj["center"][0] < e and s < tj["center"][1] < n
    assert tj["minzoom"] <= tj["center"][2] <= tj["maxzoom"]
    # maxzoom: the first zoom finer than the pixel (0.5 m on the ground, ~0.75 m in Web Mercator at 48.5 N) + 1
    merc_px = RES / np.cos(np.radians(48.47))
    native = tj["maxzoom"] - 1
    assert TMS.matrix(native).cellSize <= merc_px < TMS.matrix(native - 1).cellSize
    assert (native, tj["maxzoom"]) == (18, 19)
    # minzoom: the AOI (100 m) covers a few pixels
    w3857, s3857, e3857, n3857 = transform_bounds(CRS, "EPSG:3857", *expected_utm, densify_pts=21)
    span = max(e3857 - w3857, n3857 - s3857)
    assert span / TMS.matrix(tj["minzoom"]).cellSize >= 8 > span / TMS.matrix(tj["minzoom"] - 1).cellSize
    # a template that already carries layer/token is kept as is
    tj2 = tilejson(info, "https://h/t/{z}/{x}/{y}.png?layer=before", layer="before", attribution="a")
    assert tj2["tiles"] == ["https://h/t/{z}/{x}/{y}.png?layer=before"]


def test_wmts_capabilities(renderer):
    info = renderer.info()
    xml = wmts_capabilities(info, "https://h/v1/analyses/7", token="a&b", title="basewatch 7")
    root = ET.fromstring(xml.encode())
    assert root.tag == f"{WMTS}Capabilities" and root.get("version") == "1.0.0"
    layers = root.findall(f"{WMTS}Contents/{WMTS}Layer")
    assert [layer.findtext(f"{OWS}Identifier") for layer in layers] == list(LAYERS)
    for layer in layers:
        url = layer.find(f"{WMTS}ResourceURL")
        assert url.get("resourceType") == "tile" and url.get("format") == "image/png"
        name = layer.findtext(f"{OWS}Identifier")
        assert url.get("template") == (f"https://h/v1/analyses/7/tiles/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png"
                                       f"?layer={name}&token=a%26b")
        assert layer.findtext(f"{WMTS}TileMatrixSetLink/{WMTS}TileMatrixSet") == "WebMercatorQuad"
        lower = layer.findtext(f"{OWS}WGS84BoundingBox/{OWS}LowerCorner").split()
        assert [float(v) for v in lower] == pytest.approx(info.bounds[:2])
        limits = layer.findall(f"{WMTS}TileMatrixSetLink/{WMTS}TileMatrixSetLimits/{WMTS}TileMatrixLimits")
        assert [int(lim.findtext(f"{WMTS}TileMatrix")) for lim in limits] == list(range(info.minzoom, info.maxzoom + 1))
        top = limits[-1]
        t, _, _ = _pixel_of(info.maxzoom, *_obj_centre())
        assert int(top.findtext(f"{WMTS}MinTileCol")) <= t.x <= int(top.findtext(f"{WMTS}MaxTileCol"))
        assert int(top.findtext(f"{WMTS}MinTileRow")) <= t.y <= int(top.findtext(f"{WMTS}MaxTileRow"))
    tms = root.find(f"{WMTS}Contents/{WMTS}TileMatrixSet")
    assert tms.findtext(f"{OWS}Identifier") == "WebMercatorQuad"
    assert tms.findtext(f"{OWS}SupportedCRS") == "urn:ogc:def:crs:EPSG::3857"
    matrices = tms.findall(f"{WMTS}TileMatrix")
    assert len(matrices) == info.maxzoom + 1
    m0 = matrices[0]
    assert float(m0.findtext(f"{WMTS}ScaleDenominator")) == pytest.approx(559082264.0287178)
    assert m0.findtext(f"{WMTS}MatrixWidth") == "1"
    assert int(matrices[-1].findtext(f"{WMTS}MatrixWidth")) == 2 ** info.maxzoom


def test_overzoomed_tiles_join_and_match_a_direct_warp(product, renderer, monkeypatch):
    import imagery.tiles as tiles_mod

    z = renderer.info().maxzoom + 3  # 8x finer than the data's zoom: read small, enlarged with a 1 px buffer
    t, _, _ = _pixel_of(z, *_lonlat(SIZE * 0.6, SIZE * 0.6))
    assert renderer._read_size(z, 256) < 256
    for layer in ("before", "score"):
        left = _decode(renderer.render(layer, z, t.x, t.y)).astype(int)
        right = _decode(renderer.render(layer, z, t.x + 1, t.y)).astype(int)
        seam = np.abs(left[:, -1, :3] - right[:, 0, :3]).mean()
        inside = np.abs(np.diff(left[:, :, :3], axis=1)).mean(axis=(0, 2)).max()
        assert seam <= 2 * inside + 1, layer
    with TileRenderer(product) as direct:
        monkeypatch.setattr(tiles_mod, "OVERZOOM_OVERSAMPLING", 1e9)
        assert direct._read_size(z, 256) == 256
        for layer in ("before", "score"):
            a = _decode(renderer.render(layer, z, t.x, t.y)).astype(int)
            b = _decode(direct.render(layer, z, t.x, t.y)).astype(int)
            assert np.abs(a - b).mean() < 3, layer


def test_wmts_capabilities_open_in_gdal(renderer, tmp_path):
    """GDAL's WMTS driver (a stand-in for QGIS) understands the document; opening reads no tile."""
    caps = tmp_path / "WMTSCapabilities.xml"
    caps.write_text(wmts_capabilities(renderer.info(), "http://127.0.0.1:9/v1/analyses/7"))
    with rasterio.open(f"WMTS:{caps}") as ds:
        assert ds.subdatasets == [f"WMTS:{caps},layer={layer}" for layer in LAYERS]
    with rasterio.open(f"WMTS:{caps},layer=changes") as ds:
        assert ds.crs.to_epsg() == 3857 and ds.count == 4
        merc_px = ds.res[0]
        assert merc_px == pytest.approx(TMS.matrix(renderer.info().maxzoom).cellSize)


def test_close_while_rendering(product):
    r = TileRenderer(product)
    info = r.info()
    jobs = [(layer, t.z, t.x, t.y) for t in TMS.tiles(*info.bounds, zooms=[info.maxzoom]) for layer in LAYERS] * 3

    def job(j):
        try:
            return r.render(*j)
        except RuntimeError:
            return None

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(job, j) for j in jobs]
        r.close()
        results = [f.result() for f in futures]
    assert all(res is None or res.startswith(b"\x89PNG") for res in results)
    with pytest.raises(RuntimeError):
        r.render("before", *jobs[0][1:])


def test_zooms_below_minzoom_are_out_of_range(renderer):
    info = renderer.info()
    for z in (0, 1, info.minzoom - 1):
        t = TMS.tile(*info.center[:2], z)
        for layer in LAYERS:
            with pytest.raises(TileOutOfRange, match="minzoom"):
                renderer.render(layer, z, t.x, t.y)


def test_far_tiles_warp_only_the_part_the_product_covers(product, monkeypatch):
    """A tile much larger than the product reads the product's extent, not the tile's at full resolution."""
    import rio_tiler.reader

    sizes = []

    class Spy(rio_tiler.reader.WarpedVRT):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            sizes.append(self.width * self.height)

    monkeypatch.setattr(rio_tiler.reader, "WarpedVRT", Spy)
    with TileRenderer(product) as r:
        info = r.info()
        for z in range(info.minzoom, info.minzoom + 3):
            t = TMS.tile(*info.center[:2], z)
            for layer in LAYERS:
                r.render(layer, z, t.x, t.y)
        product_px = (r._bounds_3857[2] - r._bounds_3857[0]) * (r._bounds_3857[3] - r._bounds_3857[1]) / r._merc_res ** 2
    assert sizes and max(sizes) <= 2 * product_px  # the whole tile at minzoom would be ~250 x the product


def test_read_budget(product):
    """Past the per-read pixel budget a tile is refused, not read (here: no overviews, seen from far)."""
    with TileRenderer(product, max_read_pixels=10_000) as r:
        info = r.info()
        t = TMS.tile(*info.center[:2], info.minzoom)
        with pytest.raises(TileTooCostly, match="budget"):
            r.render("before", t.z, t.x, t.y)
        t = TMS.tile(*_obj_centre(), info.maxzoom + 2)  # overzoomed: a small read
        assert _decode(r.render("before", t.z, t.x, t.y))[..., 3].any()


# --- transparency: a tile shows exactly the alpha the layer asks for, whatever it covers ---------------------

# Three cases per layer: a tile wholly inside the not-analysed (no data) columns, one straddling their edge,
# one outside the product; plus a score tile wholly inside the high-score object.
WHOLLY_NA = (23, BAD_COLS / 2, SIZE / 2)   # z23: ~3 m across, inside the 5 m wide strip
PARTLY_NA = (21, BAD_COLS, SIZE / 2)        # the strip's edge in the middle of the tile
OUTSIDE = (21, -40, SIZE / 2)               # 20 m west of the product


def _tile_alpha(renderer, layer, z, col, row):
    t, _, _ = _pixel_of(z, *_lonlat(col, row))
    return _decode(renderer.render(layer, z, t.x, t.y))[..., 3]


def test_changes_wholly_not_analysed_is_translucent(renderer):
    """The hatch over not-analysed ground must let the imagery show through, even when it fills the tile."""
    alpha = _tile_alpha(renderer, "changes", *WHOLLY_NA)
    assert set(np.unique(alpha)) == {45, 150}  # hatch lines and the grey between them, never opaque


def test_changes_partly_not_analysed(renderer):
    alpha = _tile_alpha(renderer, "changes", *PARTLY_NA)
    assert set(np.unique(alpha)) == {0, 45, 150}  # analysed without change: fully transparent


@pytest.mark.parametrize("layer", ["before", "after", "score"])
def test_no_data_is_transparent_wholly_or_partly(renderer, layer):
    assert not _tile_alpha(renderer, layer, *WHOLLY_NA).any()
    alpha = _tile_alpha(renderer, layer, *PARTLY_NA)
    assert (alpha == 0).any()
    if layer != "score":  # imagery is opaque where valid; low scores are transparent anyway
        assert set(np.unique(alpha)) == {0, 255}


@pytest.mark.parametrize("layer", LAYERS)
def test_outside_the_product_is_transparent(renderer, layer):
    assert not _tile_alpha(renderer, layer, *OUTSIDE).any()


def test_score_wholly_inside_a_change_stays_translucent(renderer):
    """A tile covered by high scores keeps the ramp's alpha (at most 190), never turning opaque."""
    r0, r1, c0, c1 = OBJ
    alpha = _tile_alpha(renderer, "score", 22, (c0 + c1) / 2, (r0 + r1) / 2)  # ~6 m tile in the 20 m object
    assert alpha.min() > 100 and alpha.max() < 255


# --- encodings -------------------------------------------------------------------------------------------------


def _decode_any(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.size == (256, 256)
    return im


def test_overlays_are_palette_pngs_and_exact_lossless_webps(renderer):
    z = renderer.info().maxzoom - 3  # the object is a few pixels: fill and outline
    t, _, _ = _pixel_of(z, *_obj_centre())
    for layer in ("changes", "score"):
        png = _decode_any(renderer.render(layer, t.z, t.x, t.y))
        assert png.format == "PNG" and png.mode == "P", layer
        webp = _decode_any(renderer.render(layer, t.z, t.x, t.y, fmt="webp"))
        assert webp.format == "WEBP"
        a, b = np.asarray(png.convert("RGBA")).astype(int), np.asarray(webp.convert("RGBA")).astype(int)
        visible = a[..., 3] > 0
        assert (a[..., 3] == b[..., 3]).all() and (a[visible] == b[visible]).all(), layer  # colour under alpha 0 is free


def test_imagery_webp_is_lossy_but_close_and_smaller(renderer):
    z = renderer.info().maxzoom
    t, _, _ = _pixel_of(z, *_obj_centre())
    png, webp = renderer.render("after", t.z, t.x, t.y), renderer.render("after", t.z, t.x, t.y, fmt="webp")
    a = np.asarray(_decode_any(png).convert("RGBA")).astype(int)
    b = np.asarray(_decode_any(webp).convert("RGBA")).astype(int)
    assert (a[..., 3] == b[..., 3]).all()  # alpha stays exact: no data stays transparent
    assert np.abs(a[..., :3] - b[..., :3]).mean() < 4
    assert len(webp) < len(png) / 2
    assert renderer.render("after", t.z, t.x, t.y, fmt="webp") == webp  # deterministic: ETags stay valid


def test_unknown_format(renderer):
    with pytest.raises(ValueError, match="format"):
        renderer.render("before", 18, 0, 0, fmt="gif")


# --- the cold path reads only what the zoom needs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def layered_product(tmp_path_factory, product):
    """The product with a ``before.tif`` whose full resolution and two overview levels hold different flat
    values (10 %, 40 %, 70 % reflectance; the 0-100 % stretch spans 0.1-0.8): what a tile shows tells which
    level was read."""
    import shutil

    d = tmp_path_factory.mktemp("layered")
    for f in product.iterdir():
        shutil.copy(f, d / f.name)
    src = d / "before.src.tif"
    shape = (3, SIZE, SIZE)
    with rasterio.open(src, "w", driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="float32", crs=CRS,
                       transform=Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1]), tiled=True, blockxsize=64,
                       blockysize=64) as ds:
        ds.write(np.full(shape, 0.7, np.float32))
        for i, name in enumerate(("red", "green", "blue"), start=1):
            ds.set_band_description(i, name)
    for value, level in ((0.7, 4), (0.4, 2)):  # level 4 from 0.7, then level 2 from 0.4 (level 4 kept)
        with rasterio.open(src, "r+") as ds:
            ds.write(np.full(shape, value, np.float32))
            ds.build_overviews([level], rasterio.enums.Resampling.average)
    with rasterio.open(src, "r+") as ds:
        full = np.full(shape, 0.1, np.float32)  # full resolution: 0.1, with a corner pixel for the stretch
        full[:, -1, -1] = 0.8
        ds.write(full)
    gdal_copy(str(src), str(d / "before.tif"), driver="COG", compress="deflate", blocksize=256)  # keeps those overviews
    src.unlink()
    return d


def test_each_zoom_reads_the_overview_it_needs(layered_product):
    with TileRenderer(layered_product, score_range=(0.5, 1.0), percentiles=(0, 100)) as r:
        info = r.info()
        assert sorted(r._overviews["before"]) == [1, 2, 4]
        grey = {}
        for z in range(info.minzoom, info.native_zoom + 1):
            t, col, row = _pixel_of(z, *_lonlat(SIZE / 2, SIZE / 2))
            grey[z] = int(_decode(r.render("before", z, t.x, t.y))[row, col, 0])
        ratio = {z: TMS.matrix(z).cellSize / info.mercator_pixel_m for z in grey}  # data pixels per tile pixel
    level_of = {round(255 * ((v - 0.1) / 0.7) ** (1 / 1.2)): level for v, level in ((0.1, 1), (0.4, 2), (0.7, 4))}
    read = {z: next(level for value, level in level_of.items() if abs(g - value) <= 2) for z, g in grey.items()}
    for z, level in read.items():  # the coarsest level not coarser than the tile
        assert level == max(f for f in (1, 2, 4) if f <= max(ratio[z], 1)), (z, round(ratio[z], 2), level)
    assert set(read.values()) == {1, 2, 4}


def test_a_tile_warps_only_its_own_extent(product, monkeypatch):
    """Within the product, a tile's warp covers the tile (plus the 1 px margin of an enlarged read), nothing wider."""
    import rio_tiler.reader

    warped = []

    class Spy(rio_tiler.reader.WarpedVRT):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            warped.append(self.bounds)

    monkeypatch.setattr(rio_tiler.reader, "WarpedVRT", Spy)
    with TileRenderer(product) as r:
        info = r.info()
        for z in range(info.maxzoom - 2, info.maxzoom + 4):
            t, _, _ = _pixel_of(z, *_lonlat(SIZE * 0.6, SIZE * 0.6))
            for layer in LAYERS:
                warped.clear()
                r.render(layer, z, t.x, t.y)
                left, bottom, right, top = TMS.xy_bounds(t)
                n = r._read_size(z, 256) if layer in ("before", "after", "score") else 256
                margin = (right - left) / n * (1 if n < 256 else 0) + info.mercator_pixel_m  # margin + one data pixel
                assert warped, (z, layer)
                for w, s, e, nn in warped:
                    assert w >= left - margin and e <= right + margin and s >= bottom - margin and nn <= top + margin, (z, layer)
