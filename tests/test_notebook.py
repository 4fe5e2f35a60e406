"""The analyst walkthrough notebook runs end to end against a live server."""

import os

import nbformat
from nbclient import NotebookClient

from tests.live import ROOT, LiveServer


def test_walkthrough_notebook_runs_against_a_live_server(tmp_path):
    srv = LiveServer(tmp_path / "data").start()
    try:
        nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
        os.environ["BASEWATCH_URL"] = srv.url
        os.environ["BASEWATCH_NOTEBOOK_SEED"] = "3"
        try:
            NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
        finally:
            os.environ.pop("BASEWATCH_URL", None)
            os.environ.pop("BASEWATCH_NOTEBOOK_SEED", None)
        text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "succeeded" in text
        assert "objects:" in text and "changed area" in text
        images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(images) >= 2  # the report and the map
        # what the notebook created is really in the service
        client = srv.client()
        assert client.get("/v1/analyses?status=succeeded").json()["items"]
    finally:
        srv.stop()
