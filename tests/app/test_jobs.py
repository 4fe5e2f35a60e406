"""Analyses as durable jobs (app.jobs, the queue in app.store) on their own: a real SQLite database, real scenes,
the real pipeline, in this process (no server). A claimed analysis runs to one summary written once; a bad one
fails with its reason and leaves no products; one taken over stops; interrupted ones are requeued or, out of
attempts, failed."""

from __future__ import annotations

import json

import pytest

from app import jobs, services, store
from tests.live import service_state

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


@pytest.fixture()
def queue(tmp_path):
    """One queued analysis of a small pair over its footprint; (settings, sessions, analysis id)."""
    settings, sessions, ids, _ = service_state(tmp_path, lease_s=5, max_attempts=2)
    with sessions() as session:
        analysis = services.queue_analysis(session, "red", ids["aoi"], ids["before"], ids["after"])
        return settings, sessions, analysis.id


def test_a_claimed_analysis_runs_to_one_summary(queue):
    settings, sessions, analysis_id = queue
    with sessions() as session:
        assert store.claim_queued(session, "w1", 5) == [analysis_id]
        assert store.claim_queued(session, "w2", 5) == []  # claimed once
    assert jobs.run_job(analysis_id, settings.model_dump_json()) == "succeeded"
    with sessions() as session:
        row = store.load_analysis(session, analysis_id)
        assert (row.status, row.progress, row.error) == ("succeeded", 1.0, None)
        written = json.loads((settings.data_dir / row.product_dir / "summary.json").read_text())
        assert row.summary == written  # the API's summary is the file's
        assert row.summary["counts"]["total"] > 0  # the small pair has vehicles that arrived
        assert row.summary["aoi"]["name"] == "motor pool"
        assert row.summary["sources"]["before"]["file"].endswith(".tif")  # the analyst's file names, not storage paths


def test_a_bad_analysis_fails_with_its_reason_and_leaves_no_products(queue):
    settings, sessions, analysis_id = queue
    with sessions() as session:
        row = store.load_analysis(session, analysis_id)
        scene_path = settings.data_dir / store.get_scene(session, "red", row.after_scene_id).path
        store.claim_queued(session, "w1", 1)
    scene_path.write_bytes(b"garbage, no header")
    assert jobs.run_job(analysis_id, settings.model_dump_json()) == "failed"
    with sessions() as session:
        row = store.load_analysis(session, analysis_id)
        assert row.status == "failed" and "\n" not in row.error and "Traceback" not in row.error
        assert "not a GeoTIFF" in row.error  # the reason, not "internal error"
        assert row.product_dir is None
    assert not (settings.data_dir / "analyses" / analysis_id).exists()


def test_a_failure_while_writing_products_leaves_none(queue, monkeypatch):
    import imagery.report

    settings, sessions, analysis_id = queue
    with sessions() as session:
        store.claim_queued(session, "w1", 1)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imagery.report, "render_report", disk_full)
    assert jobs.run_job(analysis_id, settings.model_dump_json()) == "failed"
    with sessions() as session:
        row = store.load_analysis(session, analysis_id)
        assert row.status == "failed" and "No space left on device" in row.error and row.summary is None
    leftovers = [p.name for p in (settings.data_dir / "analyses").iterdir()] if (settings.data_dir / "analyses").exists() else []
    assert leftovers == []  # neither the product folder nor its temporary sibling


def test_an_analysis_taken_over_midway_is_left_to_its_new_worker(queue, monkeypatch):
    settings, sessions, analysis_id = queue
    with sessions() as session:
        store.claim_queued(session, "w1", 1)
    beat = store.heartbeat

    def take_over_then_beat(session, analysis_id, worker, **kwargs):
        # the lease expired and another server claimed the analysis, just before this progress report
        with sessions() as other:
            other.get(store.Analysis, analysis_id).worker = "w2"
            other.commit()
        return beat(session, analysis_id, worker, **kwargs)

    monkeypatch.setattr(store, "heartbeat", take_over_then_beat)
    assert jobs.run_job(analysis_id, settings.model_dump_json()) == "cancelled"
    with sessions() as session:
        row = store.load_analysis(session, analysis_id)
        assert (row.status, row.worker, row.summary, row.product_dir) == ("running", "w2", None, None)
    assert not (settings.data_dir / "analyses" / analysis_id).exists()  # w1 wrote no products


def test_a_job_for_an_analysis_no_longer_running_does_nothing(queue):
    settings, sessions, analysis_id = queue
    assert jobs.run_job(analysis_id, settings.model_dump_json()) == "queued"  # never claimed
    with sessions() as session:
        assert store.load_analysis(session, analysis_id).status == "queued"
        services.delete_analysis(session, settings.data_dir, "red", analysis_id)
    assert jobs.run_job(analysis_id, settings.model_dump_json()) == "deleted"


def test_interrupted_analyses_are_requeued_then_failed_out_of_attempts(queue):
    settings, sessions, analysis_id = queue
    with sessions() as session:
        for attempt in (1, 2):
            assert store.claim_queued(session, f"w{attempt}", 1) == [analysis_id]
            assert store.recover_interrupted(session, older_than_s=3600, max_attempts=2) == (0, 0)  # still fresh
            row = store.load_analysis(session, analysis_id)
            assert row.attempts == attempt
            row.heartbeat_at = None  # the worker died without a word
            session.commit()
            expected = (1, 0) if attempt < 2 else (0, 1)
            assert store.recover_interrupted(session, older_than_s=settings.lease_s, max_attempts=2) == expected
        row = store.load_analysis(session, analysis_id)
        assert row.status == "failed" and "interrupted 2 times" in row.error
        assert store.claim_queued(session, "w3", 1) == []
