"""A real ``basewatch serve`` for the service benchmarks (bench/load.py, bench/tiles.py): started on a free
127.0.0.1 port with its own data folder and an API key, one analysis run through the API, the server's CPU
time read from /proc. Everything it starts it stops (the whole process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, ... (from /proc)."""
    found, frontier = [], [pid]
    while frontier:
        children = []
        for p in frontier:
            try:
                children += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
            except OSError:
                pass
        found += children
        frontier = children
    return found


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes, seconds (0 for those gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


class Service:
    """``basewatch serve`` with a key (team ``bench``) on a free port; ``env`` adds BASEWATCH_* settings."""

    def __init__(self, data_dir: Path, *, env: dict | None = None, log: Path | None = None):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "BASEWATCH_DATA_DIR": str(self.data_dir), "BASEWATCH_HOST": "127.0.0.1",
                    "BASEWATCH_PORT": str(self.port), "BASEWATCH_LOG_LEVEL": "warning", **(env or {})}
        self.log = log or self.data_dir.parent / f"server-{self.port}.log"
        out = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--name", "bench", "--team", "bench"],
                             cwd=ROOT, env=self.env, capture_output=True, text=True, check=True)
        self.key = out.stdout.strip()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "Service":
        with open(self.log, "ab") as log:  # a file, not a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], cwd=ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"the server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=120, **kw)

    def pids(self) -> list[int]:
        """The server and every process it started (HTTP workers, analysis workers)."""
        return [self.proc.pid, *descendants(self.proc.pid)] if self.proc else []

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def analyse(client: httpx.Client, before: Path, after: Path, aoi: dict | None = None, name: str = "bench") -> dict:
    """Upload two scenes, register the AOI (default: the before scene's footprint), run the analysis to the end;
    the succeeded analysis."""
    scenes = []
    for path in (before, after):
        with open(path, "rb") as fh:
            scenes.append(client.post("/v1/scenes", files={"file": (path.name, fh, "image/tiff")}).raise_for_status().json())
    geometry = aoi or scenes[0]["footprint"]
    aoi_id = client.post("/v1/aois", json={"name": name, "geometry": geometry}).raise_for_status().json()["id"]
    r = client.post(f"/v1/aois/{aoi_id}/analyses", json={"before_scene_id": scenes[0]["id"], "after_scene_id": scenes[1]["id"]})
    analysis_id = r.raise_for_status().json()["id"]
    while (body := client.get(f"/v1/analyses/{analysis_id}").json())["status"] not in ("succeeded", "failed"):
        time.sleep(0.5)
    if body["status"] != "succeeded":
        raise RuntimeError(f"the analysis failed: {body['error']}")
    return body
