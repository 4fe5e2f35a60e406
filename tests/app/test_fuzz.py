"""Schemathesis against ``/openapi.json`` of a live server with a key and a small finished analysis:
a bounded number of generated requests per route, no 5xx, every response as the schema documents it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.live import LiveServer
from tests.pairs import small_pair
from tests.live import create_key
from tests.live import run_analysis

#: Checks that need what an OpenAPI document of this service cannot state: stateful links between
#: operations (use_after_free, ensure_resource_availability), documented security schemes (ignored_auth),
#: or that any schema-valid request succeeds (positive_data_acceptance: random ids are a 404).
EXCLUDED_CHECKS = "use_after_free,ensure_resource_availability,ignored_auth,positive_data_acceptance"


def schemathesis(url: str, key: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("schemathesis")
    return subprocess.run(
        [str(cli), *args[:2], "run", f"{url}/openapi.json", "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
         "--max-examples", "12", "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "12",
         "--header", f"Authorization: Bearer {key}", "--request-timeout", "30", "--no-color", *args[2:]],
        cwd=cwd, capture_output=True, text=True, timeout=600)


def test_openapi_fuzz_finds_no_server_error_and_no_schema_violation(tmp_path):
    data = tmp_path / "data"
    key = create_key(data, "fuzz", "team-fuzz")
    srv = LiveServer(data, env={"BASEWATCH_AUTH_FAILURES_PER_MINUTE": "100000"}).start()
    try:
        analysis = run_analysis(srv.client(key), *small_pair(tmp_path / "pair", size=160, vehicles=2)[:2])
        # reads with the real analysis and AOI ids, so tiles, TileJSON, WMTS, products, zones, alerts and the timeline
        # are reached
        config = tmp_path / "schemathesis.toml"
        config.write_text(f'[parameters]\n"path.analysis_id" = "{analysis["id"]}"\n"path.aoi_id" = "{analysis["aoi_id"]}"\n')
        reads = schemathesis(srv.url, key, tmp_path, "--config-file", str(config), "--exclude-method", "DELETE")
        (tmp_path / "empty.toml").write_text("")
        deletes = schemathesis(srv.url, key, tmp_path, "--config-file", str(tmp_path / "empty.toml"), "--include-method", "DELETE")
        for out in (reads, deletes):
            assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-2000:]
            assert " passed" in out.stdout and "Server error" not in out.stdout
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()
