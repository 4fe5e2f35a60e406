"""Analyses as durable jobs: the analysis row is the queue.

The API process runs a :class:`Dispatcher` thread that claims queued rows and
hands them to an :class:`Executor` (worker processes on this machine, or a
Dask distributed cluster). Workers report progress and a heartbeat into the
row; a row whose heartbeat stops is requeued (or failed after
``max_attempts``), so a crash or restart never loses an accepted analysis.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Protocol

from app import store
from app.settings import Settings

log = logging.getLogger("basewatch.jobs")


class Executor(Protocol):
    """Runs ``run_job(analysis_id, settings_json)`` somewhere and returns a future."""

    capacity: int

    def submit(self, analysis_id: str, settings_json: str) -> Future: ...

    def shutdown(self) -> None: ...


class ProcessExecutor:
    """Analyses in local worker processes (spawned, so they share nothing with the server's threads)."""

    def __init__(self, workers: int):
        self.capacity = workers
        self._pool = self._new_pool()
        self._lock = threading.Lock()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.capacity, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=worker_init, initargs=(os.getpid(),))

    def submit(self, analysis_id: str, settings_json: str) -> Future:
        with self._lock:
            try:
                return self._pool.submit(run_job, analysis_id, settings_json)
            except BrokenProcessPool:
                self._pool = self._new_pool()
                return self._pool.submit(run_job, analysis_id, settings_json)

    def shutdown(self) -> None:
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()


class DaskExecutor:
    """Analyses on a Dask distributed cluster; workers need the same database and data folder."""

    def __init__(self, address: str, capacity: int | None = None):
        from distributed import Client

        self.client = Client(address, timeout="10s")
        self.capacity = capacity or max(1, sum(self.client.nthreads().values()))

    def submit(self, analysis_id: str, settings_json: str) -> Future:
        return self.client.submit(run_job, analysis_id, settings_json, pure=False, key=f"analysis-{analysis_id}-{time.time_ns()}")

    def shutdown(self) -> None:
        self.client.close()


def make_executor(settings: Settings) -> Executor:
    if settings.dask_address:
        return DaskExecutor(settings.dask_address)
    return ProcessExecutor(settings.workers)


def start_dispatcher(settings: Settings, sessions, *, on_done: Callable[[str, str, float], None] | None = None) -> Dispatcher:
    """The dispatcher of the process that owns the data folder, started with its executor (stop it with
    ``stop()`` then ``executor.shutdown()``)."""
    dispatcher = Dispatcher(settings, sessions, make_executor(settings), on_done=on_done,
                            worker_id=f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    dispatcher.start(recover_all_running=settings.is_sqlite)
    return dispatcher


class Dispatcher:
    """Claims queued analyses while the executor has room; requeues analyses whose worker went silent. Its
    :class:`app.alerts.Outbox` sends the alerts of the analyses that finished."""

    def __init__(self, settings: Settings, sessions, executor: Executor, *, worker_id: str,
                 on_done: Callable[[str, str, float], None] | None = None):
        self.settings = settings
        self.sessions = sessions
        self.executor = executor
        self.worker_id = worker_id
        self.on_done = on_done or (lambda analysis_id, status, seconds: None)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._in_flight: dict[str, float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="basewatch-dispatcher", daemon=True)
        self._settings_json = settings.model_dump_json()
        from app.alerts import Outbox  # here, not at the top: worker and conversion processes import this module

        self.outbox = Outbox(settings, sessions)

    def start(self, *, recover_all_running: bool) -> None:
        with self.sessions() as session:
            requeued, failed = store.recover_interrupted(
                session, older_than_s=0 if recover_all_running else self.settings.lease_s,
                max_attempts=self.settings.max_attempts)
        if requeued or failed:
            log.warning("recovered interrupted analyses: %d requeued, %d failed", requeued, failed)
        from app.watch import sync_all

        with self.sessions() as session:
            if queued := sync_all(session):
                log.warning("queued %d analyses of watched AOIs an interruption had left undone", queued)
        self._thread.start()
        self.outbox.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.outbox.stop()

    def _loop(self) -> None:
        last_recovery = time.monotonic()
        while not self._stop.is_set():
            try:
                self._dispatch()
                if time.monotonic() - last_recovery > self.settings.lease_s / 2:
                    with self.sessions() as session:
                        store.recover_interrupted(session, older_than_s=self.settings.lease_s,
                                                  max_attempts=self.settings.max_attempts)
                    last_recovery = time.monotonic()
            except Exception:  # the loop must survive a database hiccup
                log.exception("dispatcher iteration failed")
            self._wake.wait(timeout=1.0)
            self._wake.clear()

    def _dispatch(self) -> None:
        with self._lock:
            room = self.executor.capacity - len(self._in_flight)
        if room <= 0:
            return
        with self.sessions() as session:
            claimed = store.claim_queued(session, self.worker_id, room)
        for analysis_id in claimed:
            with self._lock:
                self._in_flight[analysis_id] = time.monotonic()
            future = self.executor.submit(analysis_id, self._settings_json)
            future.add_done_callback(lambda fut, aid=analysis_id: self._done(aid, fut))

    def _done(self, analysis_id: str, future) -> None:
        with self._lock:
            started = self._in_flight.pop(analysis_id, time.monotonic())
        seconds = time.monotonic() - started
        status = "failed"
        try:
            status = future.result()
        except BrokenProcessPool:
            # The worker process died (killed, out of memory): give the row back to the queue.
            with self.sessions() as session:
                store.requeue(session, analysis_id, self.worker_id, max_attempts=self.settings.max_attempts)
            status = "interrupted"
        except Exception as exc:  # a Dask worker lost, or a bug outside run_job's own handling
            log.error("analysis %s: executor error %s", analysis_id, exc)
            with self.sessions() as session:
                store.fail(session, analysis_id, self.worker_id, f"internal error: {exc}")
        self.on_done(analysis_id, status, seconds)
        self.wake()


# --- inside a worker -------------------------------------------------------------------------

_parent_pid: int | None = None
_engines: dict[str, object] = {}


def die_with_parent(parent_pid: int) -> None:
    """Have Linux SIGKILL this process when the thread that started it ends (the server died, even in the
    middle of a GDAL call that holds the GIL); exit at once if that already happened."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the heartbeat's parent check remains
        pass
    if os.getppid() != parent_pid:
        os._exit(3)


def worker_init(parent_pid: int) -> None:
    """Worker process set-up: die with the server (workers are started by its long-lived dispatcher thread)."""
    global _parent_pid
    _parent_pid = parent_pid
    die_with_parent(parent_pid)


def worker_sessions(settings: Settings):
    from app.db import make_engine, session_factory

    if settings.db_url not in _engines:
        _engines[settings.db_url] = session_factory(make_engine(settings.db_url))
    return _engines[settings.db_url]


class Cancelled(Exception):
    """The analysis was taken over or deleted while this worker ran it."""


class Heartbeat(threading.Thread):
    """Keeps the row's heartbeat fresh during long stages; exits the process if the server died."""

    def __init__(self, sessions, analysis_id: str, worker: str, every_s: float):
        super().__init__(daemon=True, name="basewatch-heartbeat")
        self.sessions, self.analysis_id, self.worker, self.every_s = sessions, analysis_id, worker, every_s
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            if _parent_pid is not None and os.getppid() != _parent_pid:
                os._exit(3)  # the server is gone; its successor will requeue this analysis
            try:
                with self.sessions() as session:
                    if not store.heartbeat(session, self.analysis_id, self.worker):
                        self.lost = True
            except Exception:
                log.exception("heartbeat failed")


def run_job(analysis_id: str, settings_json: str) -> str:
    """Run one analysis to the end; returns the final status. Never raises for a bad analysis."""
    from app.services import finish_analysis
    from imagery.blockwise import reuse_heap
    from imagery.errors import ImageryError, first_line

    reuse_heap()  # on a Dask worker, its nanny's allocator settings would map every array fresh
    settings = Settings.model_validate_json(settings_json)
    os.environ.setdefault("GDAL_CACHEMAX", str(settings.gdal_cachemax_mb))
    sessions = worker_sessions(settings)
    with sessions() as session:
        row = store.load_analysis(session, analysis_id)
        if row is None or row.status != "running":
            return row.status if row else "deleted"
        worker = row.worker
    beat = Heartbeat(sessions, analysis_id, worker, max(1.0, settings.lease_s / 4))
    beat.start()
    try:
        summary, product_dir = execute(analysis_id, settings, sessions, worker, beat)
        with sessions() as session:
            if not finish_analysis(session, settings, analysis_id, worker, summary, product_dir):
                return "cancelled"  # taken over or deleted meanwhile: the products are its new worker's or gone
        return "succeeded"
    except Cancelled:
        return "cancelled"
    except (ImageryError, ValueError) as exc:
        message = first_line(exc)
        with sessions() as session:
            store.fail(session, analysis_id, worker, message)
        return "failed"
    except MemoryError:
        with sessions() as session:
            store.fail(session, analysis_id, worker, "out of memory: use a smaller AOI or a coarser pixel_size_m")
        return "failed"
    except Exception as exc:
        log.error("analysis %s failed:\n%s", analysis_id, traceback.format_exc())
        with sessions() as session:
            store.fail(session, analysis_id, worker, f"internal error ({type(exc).__name__}: {exc}); see the server log")
        return "failed"
    finally:
        beat.stopped.set()


def execute(analysis_id: str, settings: Settings, sessions, worker: str, beat: Heartbeat) -> tuple[dict, str]:
    """Load the rows, run the pipeline, write products; returns (summary, product folder relative to data_dir)."""
    from shapely.geometry import shape

    from aoi import parse_aoi
    from imagery.pipeline import AnalysisParams, analyze, plan_analysis
    from imagery.products import read_summary, scratch_folder, write_products
    from imagery.scenes import SceneLimits, inspect_scene

    with sessions() as session:
        row, aoi_row, before_row, after_row, zone_rows = store.analysis_inputs(session, analysis_id)
        zones = {z.name: shape(z.geometry) for z in zone_rows}
        method, params = row.method, dict(row.params or {})
    data_dir = Path(settings.data_dir).resolve()  # absolute: a block may run in another process or on another machine
    limits = SceneLimits(max_pixels=settings.max_scene_pixels)

    def scene_info(scene_row):
        return inspect_scene(data_dir / scene_row.path, bands=scene_row.bands, acquired=scene_row.acquired_at, limits=limits)

    last = [0.0]

    def progress(stage: str, fraction: float) -> None:
        if beat.lost:
            raise Cancelled()
        now = time.monotonic()
        if now - last[0] >= 0.5 or fraction >= 1.0:
            last[0] = now
            with sessions() as session:
                if not store.heartbeat(session, analysis_id, worker, stage=stage, progress=0.9 * fraction):
                    raise Cancelled()

    aoi = parse_aoi(aoi_row.geometry)
    free = shutil.disk_usage(data_dir).free - settings.min_free_disk_mb * 2**20
    analysis_params = AnalysisParams(method=method, max_pixels=settings.max_analysis_pixels, block_px=settings.block_px,
                                     whole_band_pixels=settings.whole_band_pixels,
                                     max_disk_bytes=max(free, 0), **params)
    before_info, after_info, area = scene_info(before_row), scene_info(after_row), shape(aoi.to_geojson())
    plan = plan_analysis(before_info, after_info, area, analysis_params)  # refuses a grid too large before any read
    rel = Path("analyses") / analysis_id
    blockwise = analysis_params.blockwise(plan.grid.shape, len(plan.bands))  # rasters in the data folder meanwhile
    with scratch_folder(data_dir / rel) if blockwise else contextlib.nullcontext() as scratch:
        with block_executor(settings) if blockwise else contextlib.nullcontext() as executor:
            result = analyze(before_info, after_info, area, analysis_params, progress=progress, executor=executor,
                             scratch=scratch)
            progress("writing products", 1.0)
            for side, scene in (("before", before_row), ("after", after_row)):  # the names the analyst gave, not storage paths
                result.sources[side].update(scene_id=scene.id, file=scene.filename, sensor=scene.sensor)
            # a block-wise analysis's COGs are made by the same block processes (or Dask cluster), the files shared out
            write_products(result, data_dir / rel, overwrite=True, zones=zones, executor=executor,
                           aoi={"id": aoi_row.id, "name": aoi_row.name, "area_m2": round(aoi_row.area_m2, 1)})
    return read_summary(data_dir / rel), str(rel)


@contextlib.contextmanager
def block_executor(settings: Settings):
    """Where the blocks of one large analysis run: with ``dask_address``, tasks on that Dask cluster (from a Dask
    worker through ``worker_client``, which gives this task's thread to the blocks while it waits for them);
    else local processes (``block_workers``) that die with this worker."""
    from imagery.blockwise import local_executor

    if not settings.dask_address:
        executor = local_executor(settings.block_workers, initializer=die_with_parent, initargs=(os.getpid(),))
        try:
            yield executor
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        return
    from distributed import Client, get_worker, worker_client

    try:
        get_worker()
        client_context = worker_client()
    except ValueError:  # not on a Dask worker (an analysis run in this process)
        client_context = Client(settings.dask_address, timeout="10s")
    with client_context as client:
        yield client.get_executor(pure=False)
