"""The tile cache (app.tilecache) on its own, no HTTP: the bounded LRU, a tile rendered once then served from
memory and, in another process's cache, from disk with the same bytes and ETag; a deleted analysis forgotten
by every process; an unreadable product refused and remembered; the render queue bounded."""

from __future__ import annotations

import shutil
import threading

import pytest

from app.errors import Overloaded, ProductUnavailable
from app.settings import Settings
from app.tilecache import LRU, ProductCache, ProductRef
from imagery.pipeline import AnalysisParams, analyze
from imagery.products import write_products
from imagery.scenes import inspect_scene
from imagery.tiles import TileRenderer
from tests.pairs import small_pair

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


@pytest.fixture(scope="module")
def product_dir(tmp_path_factory):
    before, after, _ = small_pair(tmp_path_factory.mktemp("pair"))
    analysis = analyze(inspect_scene(before), inspect_scene(after), None, AnalysisParams())
    return write_products(analysis, tmp_path_factory.mktemp("products") / "result")


@pytest.fixture()
def world(tmp_path, product_dir):
    """A data folder with one succeeded analysis's products, its ref and the native-zoom tile at its centre."""
    settings = Settings(data_dir=tmp_path / "data", tile_queue=2)
    settings.ensure_dirs()
    folder = settings.data_dir / "analyses" / "a1"
    shutil.copytree(product_dir, folder)
    ref = ProductRef("a1", "red", folder, "2026-01-01T00:00:00")
    with TileRenderer(folder) as renderer:
        info = renderer.info()
    z = info.native_zoom
    tile = _tile_at(info.center[0], info.center[1], z)
    caches = []

    def cache() -> ProductCache:
        caches.append(ProductCache(settings))
        return caches[-1]

    yield settings, ref, tile, cache
    for c in caches:
        c.close()


def _tile_at(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    from imagery.tiles import TMS

    t = TMS.tile(lon, lat, z)
    return t.z, t.x, t.y


def test_lru_is_bounded_by_items_and_bytes_and_evicts_the_least_recent():
    lru = LRU(max_items=3, max_bytes=10)
    for key in "abc":
        lru.put(key, b"xx")
    assert lru.get("a") == b"xx"  # a is now the most recent
    lru.put("d", b"xx")  # over 3 items: the least recent (b) goes
    assert [lru.get(k) for k in "abcd"] == [b"xx", None, b"xx", b"xx"]
    lru.put("e", b"x" * 8)  # 14 bytes: evict from the oldest until at most 10
    assert lru.get("c") is None and lru.get("a") is None and lru.get("e") == b"x" * 8
    lru.drop(lambda key: key == "e")
    assert lru.get("e") is None and lru.get("d") == b"xx"


def test_a_tile_is_rendered_once_then_served_from_memory_and_from_disk(world):
    settings, ref, (z, x, y), cache = world
    first = cache()
    rendered, source = first.tile(ref, "changes", z, x, y, "png")
    assert source == "rendered" and rendered.body.startswith(b"\x89PNG")
    again, source = first.tile(ref, "changes", z, x, y, "png")
    assert source == "memory" and again is rendered
    on_disk = first.disk_path(ref, "changes", z, x, y, "png")
    assert on_disk.read_bytes() == rendered.body
    assert [p.name for p in on_disk.parent.iterdir()] == [on_disk.name]  # written whole: no temporary left
    other = cache()  # another HTTP process: an empty memory, the shared disk cache
    from_disk, source = other.tile(ref, "changes", z, x, y, "png")
    assert source == "disk" and (from_disk.body, from_disk.etag) == (rendered.body, rendered.etag)
    status, headers, body = from_disk.answer(private=False, not_modified=False)
    assert status == 200 and body == rendered.body
    assert dict(headers)[b"cache-control"].endswith(b"immutable") and dict(headers)[b"etag"] == rendered.etag.encode()
    assert from_disk.answer(private=True, not_modified=True)[:2] == (304, list(from_disk.not_modified[True]))
    assert dict(from_disk.not_modified[True])[b"cache-control"].startswith(b"private")  # key in the URL: not shared
    # the ETag names the rendering: another layer, format or a re-run analysis has another
    webp, _ = first.tile(ref, "changes", z, x, y, "webp")
    assert webp.etag != rendered.etag and webp.body.startswith(b"RIFF")
    rerun = ProductRef(ref.analysis_id, ref.team, ref.product_dir, "2026-02-01T00:00:00")
    assert rerun.etag("changes", z, x, y, "png") != rendered.etag


def test_a_deleted_analysis_is_forgotten_by_every_process(world):
    settings, ref, (z, x, y), cache = world
    first, other = cache(), cache()
    for c in (first, other):
        c.remember(ref)
        assert c.ref("a1") == ref
    first.tile(ref, "before", z, x, y, "png")
    first.forget("a1")
    assert not (settings.data_dir / "tilecache" / "a1").exists()
    assert first.cached(ref, "before", z, x, y, "png") is None
    assert other.ref("a1") is None  # the stamp told the other process


def test_an_unreadable_product_is_refused_and_remembered(world, tmp_path):
    settings, ref, (z, x, y), cache = world
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    (broken_dir / "after.tif").write_bytes(b"not a GeoTIFF")
    broken = ProductRef("b1", "red", broken_dir, "2026-01-01T00:00:00")
    c = cache()
    with pytest.raises(ProductUnavailable) as caught:
        c.tile(broken, "after", z, x, y, "png")
    assert "b1" in str(caught.value) and "not a GeoTIFF" not in str(caught.value)  # no file detail to the client
    shutil.rmtree(broken_dir)
    shutil.copytree(ref.product_dir, broken_dir)  # repaired: still refused for a minute (no retry storm)
    with pytest.raises(ProductUnavailable):
        c.renderer(broken)


def test_the_render_queue_is_bounded(world):
    settings, ref, _, cache = world
    c = cache()
    release = threading.Event()
    waiting = [c.submit(release.wait, 10) for _ in range(settings.tile_queue)]
    with pytest.raises(Overloaded):
        c.submit(release.wait, 10)
    release.set()
    assert all(f.result(timeout=10) for f in waiting)
    c.submit(lambda: None).result(timeout=10)  # room again once they finished
