"""The scaled-out path: PostgreSQL instead of SQLite, analyses on a Dask distributed cluster."""

from __future__ import annotations


import psycopg

from tests.live import LiveServer, run_one_analysis



def test_service_on_postgresql(tmp_path, pg_url):
    srv = LiveServer(tmp_path / "data", env={"BASEWATCH_DATABASE_URL": pg_url}).start()
    try:
        body = run_one_analysis(srv, tmp_path / "pair")
        assert body["status"] == "succeeded", body["error"]
        with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
            statuses = conn.execute("SELECT status FROM analyses").fetchall()
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert statuses == [("succeeded",)]
        assert {"scenes", "aois", "analyses", "api_keys", "alembic_version"} <= tables
        # the embedded SQLite file is not used
        assert not (srv.data_dir / "basewatch.db").exists()
    finally:
        srv.stop()


def test_two_api_processes_share_postgresql_and_each_analysis_runs_once(tmp_path, pg_url):
    from app import store
    from app.db import make_engine, migrate, session_factory
    from app.models import Analysis, Aoi, Scene

    migrate(pg_url)
    sessions = session_factory(make_engine(pg_url))
    with sessions() as s:
        s.add(Scene(id="s1", team="t", filename="a", path="a", acquired_at=__import__("datetime").date(2024, 1, 1), sensor=None,
                    bands=["red"], crs="EPSG:32635", pixel_size_m=1, width=1, height=1, dtype="uint8", footprint={},
                    west=0, south=0, east=1, north=1, checksum="x", size_bytes=1))
        s.add(Aoi(id="a1", team="t", name="a", geometry={}, west=0, south=0, east=1, north=1, area_m2=1))
        s.commit()
        for i in range(10):
            s.add(Analysis(id=f"an{i}", team="t", aoi_id="a1", before_scene_id="s1", after_scene_id="s1", method="hacd", params={}))
        s.commit()
    # two dispatchers claiming concurrently (SKIP LOCKED): every analysis goes to exactly one of them
    import threading

    claimed = {"w1": [], "w2": []}

    def claim(worker):
        with sessions() as s:
            for _ in range(10):
                claimed[worker] += store.claim_queued(s, worker, 2)

    threads = [threading.Thread(target=claim, args=(w,)) for w in claimed]
    [t.start() for t in threads]
    [t.join() for t in threads]
    everything = claimed["w1"] + claimed["w2"]
    assert sorted(everything) == sorted(f"an{i}" for i in range(10))
    assert len(set(everything)) == len(everything)


def test_analyses_run_on_a_dask_cluster(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        srv = LiveServer(tmp_path / "data", env={"BASEWATCH_DASK_ADDRESS": cluster.scheduler_address}).start()
        try:
            body = run_one_analysis(srv, tmp_path / "pair")
            assert body["status"] == "succeeded", body["error"]
            with Client(cluster) as client:
                prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
            assert "analysis" in prefixes
        finally:
            srv.stop()
