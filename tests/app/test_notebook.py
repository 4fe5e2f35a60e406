"""The analyst walkthrough notebook: saved with its outputs, and runs end to end against a live server
from a folder outside the repository (it imports nothing of the repository: HTTP and the installed
``basewatch`` command only)."""

import os
import re

import nbformat
from nbclient import NotebookClient

from tests.live import ROOT, LiveServer

NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"


def outputs_text(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def images(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if {"image/png", "image/jpeg"} & set(o.get("data", {}))]


def test_walkthrough_is_saved_with_its_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code), "every code cell shows what it printed or drew"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = outputs_text(nb)
    assert "succeeded" in text and "caveats:" in text and "MGRS" in text and "provenance:" in text
    assert len(images(nb)) >= 2  # the report and the map
    assert NOTEBOOK.stat().st_size < 1_500_000, "keep the saved images light"


def test_walkthrough_notebook_runs_against_a_live_server(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*(from|import)\s+(imagery|app|aoi|tests)\b", source, re.MULTILINE)
    srv = LiveServer(tmp_path / "data").start()
    try:
        os.environ["BASEWATCH_URL"] = srv.url
        os.environ["BASEWATCH_NOTEBOOK_SEED"] = "3"
        try:
            (tmp_path / "elsewhere").mkdir()
            NotebookClient(nb, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(tmp_path / "elsewhere")}}).execute()
        finally:
            os.environ.pop("BASEWATCH_URL", None)
            os.environ.pop("BASEWATCH_NOTEBOOK_SEED", None)
        text = outputs_text(nb)
        assert "succeeded" in text
        assert "objects:" in text and "changed area" in text and "vehicles (estimated)" in text
        client = srv.client()
        analysis = client.get("/v1/analyses?status=succeeded").json()["items"][0]  # what the notebook made is in the service
        caveats = analysis["summary"]["caveats"]
        assert caveats and all(c in text for c in caveats)
        assert analysis["summary"]["aoi"]["mgrs"] in text
        assert "provenance: before.tif -> after.tif" in text
        assert len(images(nb)) >= 2
    finally:
        srv.stop()
