"""The service's use cases (app.services) on their own: a real SQLite database, real scenes, no HTTP. The routes
and the demo call these, so each rule is tested once here and its HTTP translation in test_api."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app import services, store
from app.demo import upload_from_file
from app.errors import Conflict, InvalidRequest, NotFound
from app.ingest import ingest
from app.models import Alert, Delivery, Zone
from app.settings import Settings
from tests.live import service_state

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


@pytest.fixture()
def world(tmp_path):
    _, sessions, ids, before = service_state(tmp_path)
    return sessions, ids, before


def test_create_aoi_stores_bounds_and_geodesic_area(world):
    sessions, ids, before = world
    with sessions() as session:
        row = store.get_aoi(session, "red", ids["aoi"])
        assert (row.name, row.description) == ("motor pool", "north gate")
        assert row.west < row.east and row.south < row.north
        assert 10_000 < row.area_m2 < 40_000  # the small pair covers 160 m x 160 m
        with pytest.raises(NotFound):
            store.get_aoi(session, "blue", ids["aoi"])  # another team does not see it


def test_create_aoi_refuses_what_is_not_a_polygon(world):
    sessions, _, _ = world
    with sessions() as session, pytest.raises(Exception) as caught:
        services.create_aoi(session, "red", {"type": "Point", "coordinates": [30.0, 50.0]}, "a point")
    assert "polygon" in str(caught.value).lower()


def test_queue_analysis_applies_every_rule(world):
    sessions, ids, _ = world
    good = dict(aoi_id=ids["aoi"], before_scene_id=ids["before"], after_scene_id=ids["after"])
    with sessions() as session:
        row = services.queue_analysis(session, "red", **good, params={"margin_m": 5})
        assert (row.status, row.method, row.params) == ("queued", "auto", {"margin_m": 5.0})
        cases = [
            (dict(good, before_scene_id=ids["after"], after_scene_id=ids["before"]), InvalidRequest, "newer"),
            (dict(good, after_scene_id=ids["before"]), InvalidRequest, "different"),
            (dict(good, method="magic"), InvalidRequest, "unknown method"),
            (dict(good, params={"zoom": 3}), InvalidRequest, "params.zoom"),
            (dict(good, params={"pixel_size_m": 0}), InvalidRequest, "params.pixel_size_m"),
            (dict(good, before_scene_id="nope"), NotFound, "before scene not found"),
            (dict(good, after_scene_id="nope"), NotFound, "after scene not found"),
        ]
        for kwargs, error, message in cases:
            with pytest.raises(error) as caught:
                services.queue_analysis(session, "red", **kwargs)
            assert message in str(caught.value), (kwargs, caught.value)
        with pytest.raises(NotFound):
            services.queue_analysis(session, "blue", **good)  # another team's AOI and scenes
        rows, _ = store.list_analyses(session, "red")
        assert [r.id for r in rows] == [row.id]  # refused requests wrote nothing


def test_register_scene_records_the_row_or_leaves_no_file(world, tmp_path):
    sessions, ids, before = world
    settings = Settings(data_dir=tmp_path / "data")
    scene = ingest(upload_from_file(before, settings), settings, "red")
    assert (settings.data_dir / scene.path).exists()
    assert services.register_scene(sessions, settings.data_dir, scene) is False  # no watched AOI: nothing queued
    with sessions() as session:
        assert store.get_scene(session, "red", scene.id).path == scene.path

    broken = ingest(upload_from_file(before, settings), settings, "red")
    broken.team = None  # the row cannot be written (NOT NULL)
    with pytest.raises(Exception):
        services.register_scene(sessions, settings.data_dir, broken)
    assert not (settings.data_dir / broken.path).exists()
    with sessions() as session, pytest.raises(NotFound):
        store.get_scene(session, "red", broken.id)


def queue_one(sessions, ids) -> str:
    with sessions() as session:
        return services.queue_analysis(session, "red", ids["aoi"], ids["before"], ids["after"]).id


def test_delete_scene_removes_row_and_file_or_nothing(world, tmp_path):
    sessions, ids, _ = world
    data_dir = tmp_path / "data"
    analysis_id = queue_one(sessions, ids)
    with sessions() as session:
        path = data_dir / store.get_scene(session, "red", ids["before"]).path
        with pytest.raises(NotFound):
            services.delete_scene(session, data_dir, "blue", ids["before"])  # another team's scene
        with pytest.raises(Conflict) as caught:
            services.delete_scene(session, data_dir, "red", ids["before"])  # an analysis uses it
        assert "delete them first" in str(caught.value)
    assert path.exists()  # refused: the row and the file stay
    with sessions() as session:
        assert store.get_scene(session, "red", ids["before"]).id == ids["before"]
        services.delete_analysis(session, data_dir, "red", analysis_id)
        services.delete_scene(session, data_dir, "red", ids["before"])
    assert not path.exists()
    with sessions() as session, pytest.raises(NotFound):
        store.get_scene(session, "red", ids["before"])


def test_delete_analysis_removes_its_products_but_not_while_it_runs(world, tmp_path):
    sessions, ids, _ = world
    data_dir = tmp_path / "data"
    analysis_id = queue_one(sessions, ids)
    products = data_dir / "analyses" / analysis_id
    products.mkdir(parents=True)
    (products / "summary.json").write_text("{}")
    with sessions() as session:
        assert store.claim_queued(session, "worker-1", 1) == [analysis_id]
        store.load_analysis(session, analysis_id).product_dir = f"analyses/{analysis_id}"
        session.commit()
        with pytest.raises(Conflict):
            services.delete_analysis(session, data_dir, "red", analysis_id)  # its worker owns the folder
    assert (products / "summary.json").exists()
    with sessions() as session:
        store.fail(session, analysis_id, "worker-1", "stopped by the test")
        with pytest.raises(NotFound):
            services.delete_analysis(session, data_dir, "blue", analysis_id)
        services.delete_analysis(session, data_dir, "red", analysis_id)
        assert store.load_analysis(session, analysis_id) is None
    assert not products.exists()


def test_finish_analysis_stores_one_summary_and_queues_the_alerts_it_meets(world, tmp_path):
    sessions, ids, _ = world
    settings = Settings(data_dir=tmp_path / "data")
    analysis_id = queue_one(sessions, ids)
    summary = {"counts": {"objects": {"appeared": {"vehicle": 3, "tent": 1}}}, "changed_area_m2": 42.0}
    with sessions() as session:
        met = store.add_alert(session, Alert(team="red", aoi_id=ids["aoi"], url="http://127.0.0.1:9/hook",
                                             secret="s" * 16, rule={"class": "vehicle", "change": "appeared", "min": 3}))
        store.add_alert(session, Alert(team="red", aoi_id=ids["aoi"], url="http://127.0.0.1:9/hook",
                                       secret="s" * 16, rule={"class": "tent", "change": "appeared", "min": 2}))
        assert store.claim_queued(session, "worker-1", 1) == [analysis_id]
        # only the worker that runs it may finish it
        assert not services.finish_analysis(session, settings, analysis_id, "worker-2", summary, "analyses/x")
        assert store.load_analysis(session, analysis_id).status == "running"
        assert services.finish_analysis(session, settings, analysis_id, "worker-1", summary, f"analyses/{analysis_id}")
    with sessions() as session:
        row = store.load_analysis(session, analysis_id)
        assert (row.status, row.summary, row.product_dir) == ("succeeded", summary, f"analyses/{analysis_id}")
        deliveries = session.scalars(select(Delivery)).all()
        assert [d.alert_id for d in deliveries] == [met.id]  # 3 vehicles meet "min 3"; 1 tent does not meet "min 2"
        event = json.loads(deliveries[0].body)
        assert (event["analysis_id"], event["count"], event["zone"]) == (analysis_id, 3, None)


def test_analysis_inputs_are_the_rows_a_worker_runs_on(world):
    sessions, ids, _ = world
    analysis_id = queue_one(sessions, ids)
    with sessions() as session:
        store.add_zone(session, Zone(team="red", aoi_id=ids["aoi"], name="gate", area_m2=100.0,
                                     geometry=store.get_aoi(session, "red", ids["aoi"]).geometry))
        row, aoi, before, after, zones = store.analysis_inputs(session, analysis_id)
        assert (row.id, aoi.id, before.id, after.id) == (analysis_id, ids["aoi"], ids["before"], ids["after"])
        assert [z.name for z in zones] == ["gate"]
        with pytest.raises(NotFound):
            store.analysis_inputs(session, "no-such-analysis")
