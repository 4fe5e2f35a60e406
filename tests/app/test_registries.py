"""The registries are data: change methods and map layers are each one table, and what lists them (the API's
OpenAPI enums, the CLI, the pipeline, the tile renderer) reads that table (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.main import create_app
from imagery import change, contract, tiles
from imagery.change import METHODS, ChangeResult, Method
from imagery.pipeline import AnalysisParams, analyze
from imagery.scenes import inspect_scene
from tests.pairs import small_pair

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


@pytest.fixture(scope="module")
def openapi() -> dict:
    return create_app(run_jobs=False).openapi()


def test_openapi_lists_the_method_table_and_the_contracts_layers(openapi):
    method = openapi["components"]["schemas"]["AnalysisCreate"]["properties"]["method"]
    strings = [branch for branch in method["anyOf"] if branch.get("type") == "string"]
    assert strings and strings[0]["enum"] == list(METHODS)
    assert all(m.summary in method["description"] for m in METHODS.values())
    assert openapi["components"]["schemas"]["Layer"]["enum"] == list(contract.LAYERS)


def test_every_layer_of_the_contract_has_a_drawing_and_a_file():
    assert tuple(tiles.LAYER_DRAWINGS) == contract.LAYERS == tuple(contract.LAYER_FILES) == tuple(contract.LAYER_TITLES)
    assert [d.lossless for d in tiles.LAYER_DRAWINGS.values()] == [False, False, True, True]  # imagery, then overlays


def test_cli_lists_the_method_table():
    result = CliRunner().invoke(cli, ["methods"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name, method in METHODS.items():
        assert name in result.output and method.summary in " ".join(result.output.split())


def test_a_method_added_to_the_table_is_run_by_the_pipeline(tmp_path, monkeypatch):
    """One entry plus its function: here a method that calls every analysed pixel changed."""

    def everything(inputs: change.ChangeInputs) -> ChangeResult:
        return ChangeResult(score=inputs.analysed.astype(np.float32), changed=inputs.analysed.copy(), threshold=0.5,
                            rule="every analysed pixel")

    monkeypatch.setitem(METHODS, "everything", Method(everything, "every analysed pixel changed"))
    before, after, _ = small_pair(tmp_path)
    result = analyze(inspect_scene(before), inspect_scene(after), None, AnalysisParams(method="everything"))
    analysed = result.mask != contract.MASK_NOT_ANALYSED
    changed = np.isin(result.mask[analysed], contract.MASK_CHANGED)
    assert analysed.any() and changed.mean() > 0.999, changed.mean()  # all but a few pixels the cleaning trims
    assert result.change.rule == "every analysed pixel"
