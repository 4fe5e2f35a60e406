"""A real basewatch server (uvicorn in a subprocess) on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx

from tests.pairs import footprint_geojson, small_pair

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``basewatch serve`` on a free loopback port with its own data folder."""

    def __init__(self, data_dir: Path, *, env: dict | None = None, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "BASEWATCH_DATA_DIR": str(self.data_dir), "BASEWATCH_HOST": "127.0.0.1",
                    "BASEWATCH_PORT": str(self.port), "BASEWATCH_LOG_LEVEL": "warning", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> "LiveServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group (server and its workers), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)


def wait_for_analysis(client: httpx.Client, analysis_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/analyses/{analysis_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.5)
    raise TimeoutError(f"analysis {analysis_id} still {body['status']} after {timeout}s")


# --- helpers the end-to-end tests share ------------------------------------------------------------


def upload(client, path, **fields):
    with open(path, "rb") as fh:
        return client.post("/v1/scenes", files={"file": (path.name, fh, "image/tiff")}, data=fields)


def leftovers(data_dir):
    """Files under uploads/ and partial files under scenes/ and analyses/."""
    found = [p for p in (data_dir / "uploads").rglob("*") if p.is_file()]
    found += [p for p in (data_dir / "scenes").glob(".*")]
    found += [p for p in (data_dir / "analyses").glob(".*")]
    return found


def create_key(data_dir, name, team, role="analyst") -> str:
    out = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--name", name, "--team", team, "--role", role],
                         cwd=ROOT, env={**__import__("os").environ, "BASEWATCH_DATA_DIR": str(data_dir)},
                         capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, "keys create must print the key alone on stdout"
    return lines[0]


def run_analysis(client, before, after) -> dict:
    ids = [upload(client, p).json()["id"] for p in (before, after)]
    aoi = client.post("/v1/aois", json={"name": "hardening", "geometry": footprint_geojson(before)}).json()
    r = client.post(f"/v1/aois/{aoi['id']}/analyses", json={"before_scene_id": ids[0], "after_scene_id": ids[1]})
    assert r.status_code == 202, r.text
    body = wait_for_analysis(client, r.json()["id"])
    assert body["status"] == "succeeded", body["error"]
    return body


def descendants(pid: int) -> set[int]:
    """Processes whose parent chain reaches ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_one_analysis(srv: LiveServer, folder) -> dict:
    before, after, _ = small_pair(folder)
    client = srv.client()
    ids = []
    for path in (before, after):
        with open(path, "rb") as fh:
            r = client.post("/v1/scenes", files={"file": (path.name, fh, "image/tiff")})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    aoi = client.post("/v1/aois", json={"name": "scale-out", "geometry": footprint_geojson(before)}).json()
    aid = client.post(f"/v1/aois/{aoi['id']}/analyses", json={"before_scene_id": ids[0], "after_scene_id": ids[1]}).json()["id"]
    return wait_for_analysis(client, aid)


@contextmanager
def served_analysis(root: Path, keys: dict[str, tuple[str, ...]], env: dict[str, str] | None = None):
    """A live server on ``root / "data"`` with the API keys ``keys`` (label -> ``create_key`` arguments after the
    data folder), and one succeeded analysis of the small pair by the key labelled ``"a"``; yields a namespace
    of ``server``, ``keys`` (label -> key), ``analysis``, ``pair``, ``tilejson`` and ``root``."""
    data = root / "data"
    made = {label: create_key(data, *args) for label, args in keys.items()}
    srv = LiveServer(data, env=env).start()
    try:
        pair = small_pair(root / "pair")[:2]
        body = run_analysis(srv.client(made["a"]), *pair)
        tilejson = srv.client(made["a"]).get(f"/v1/analyses/{body['id']}/tilejson.json").json()
        yield SimpleNamespace(server=srv, keys=made, analysis=body, pair=pair, tilejson=tilejson, root=root)
    finally:
        srv.stop()


def service_state(folder: Path, **settings):
    """The service's state without a server: a migrated SQLite database in ``folder/data``, team red's two scenes of
    a small pair (ingested as uploads are) and an AOI over their footprint. Returns (settings, session factory,
    ids of "before", "after" and "aoi", the BEFORE GeoTIFF)."""
    from app import services, store
    from app.db import make_engine, migrate, session_factory
    from app.demo import upload_from_file
    from app.ingest import ingest
    from app.settings import Settings

    config = Settings(data_dir=folder / "data", **settings)
    config.ensure_dirs()
    migrate(config.db_url)
    sessions = session_factory(make_engine(config.db_url))
    before, after, _ = small_pair(folder / "pair")
    with sessions() as session:
        b = store.add_scene(session, ingest(upload_from_file(before, config), config, "red"))
        a = store.add_scene(session, ingest(upload_from_file(after, config), config, "red"))
        aoi = services.create_aoi(session, "red", footprint_geojson(before), "motor pool", "north gate")
        return config, sessions, {"before": b.id, "after": a.id, "aoi": aoi.id}, before
