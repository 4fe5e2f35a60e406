"""The structure stage: buildings built or demolished, from the roofs of each date (imagery/structures.py),
on 8-bit RGB scenes drawn in metres (tests/scenes.py), alone and inside the default method."""

from __future__ import annotations

import numpy as np
import pytest

from imagery.pipeline import AnalysisParams, analyze, stage_accounting
from imagery.scenes import inspect_scene
from imagery.structures import StructureParams, applies, detect_structure_changes
from tests.scenes import buildings_that_stay_come_and_go, suburb_on_scrub

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)

RGB = ("red", "green", "blue")


def structures(pair, params: StructureParams = StructureParams()):
    analysed = np.ones(pair.truth.shape, bool)
    return detect_structure_changes(pair.before.astype(np.float32), pair.after.astype(np.float32), analysed, RGB,
                                    pair.pixel_size_m, params)


def reported(found, footprint, kind: str | None = None) -> float:
    """Share of a footprint reported (as ``kind`` when given)."""
    labels = found.labels[footprint]
    if kind is None:
        return float((labels > 0).mean())
    return float(np.isin(labels, [k for k, v in found.kinds.items() if v == kind]).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_new_and_demolished_buildings_are_found_and_standing_or_reroofed_ones_are_not(seed):
    pair = buildings_that_stay_come_and_go(seed)
    found = structures(pair)
    for footprint in pair.others["new"]:
        assert reported(found, footprint, "appeared") > 0.3  # at least the roof's larger facet
    for footprint in pair.others["demolished"]:
        assert reported(found, footprint, "disappeared") > 0.5
    for footprint in pair.others["same"] + pair.others["reroofed"]:
        assert reported(found, footprint) < 0.05, "a building standing at both dates reported"
        assert found.present_both[footprint].mean() > 0.5  # ... and known to stand there
    assert found.details["appeared"] >= len(pair.others["new"]) and found.details["disappeared"] >= 1


def test_a_grey_slab_without_a_cast_shadow_is_not_a_building_but_one_with_a_shadow_is():
    pair = buildings_that_stay_come_and_go(0)
    slab = pair.others["slab"][0]
    assert reported(structures(pair), slab) == 0.0
    # the same slab is roof-like in every other respect: without the shadow rule it would be reported
    assert reported(structures(pair, StructureParams(min_shadow_share=0.0)), slab) > 0.5


def test_outlines_are_colour_edges_so_a_reroofed_building_is_still_there():
    pair = buildings_that_stay_come_and_go(3)
    found = structures(pair)
    for footprint in pair.others["reroofed"]:
        assert reported(found, footprint) < 0.05
    # a roof never persists when every pixel of the other date is taken for an edge-free surface
    flat = structures(pair, StructureParams(edge_strength=1e6))
    assert flat.details["appeared"] == 0 and flat.details["disappeared"] == 0  # no roof has a strong outline


def test_the_stage_needs_colour_and_roofs_resolved():
    assert applies(RGB, 0.5) and applies(("blue", "green", "red", "nir"), 1.0)
    assert not applies(RGB, 1.5)  # a 4 m roof across fewer than 4 pixels
    assert not applies(("red", "green", "nir"), 0.5)
    pair = buildings_that_stay_come_and_go(0)
    bands_without_blue = ("red", "green", "nir")
    found = detect_structure_changes(pair.before.astype(np.float32), pair.after.astype(np.float32),
                                     np.ones(pair.truth.shape, bool), bands_without_blue, 0.5)
    assert not found.labels.any() and not found.kinds


def test_not_analysed_pixels_are_never_part_of_a_structure():
    pair = buildings_that_stay_come_and_go(1)
    analysed = np.ones(pair.truth.shape, bool)
    rows, cols = pair.others["new"][0]
    analysed[rows, cols.start:cols.start + (cols.stop - cols.start) // 2] = False  # cloud over half a new house
    found = detect_structure_changes(pair.before.astype(np.float32), pair.after.astype(np.float32), analysed, RGB,
                                     pair.pixel_size_m)
    assert not (found.labels[~analysed] > 0).any()
    assert not found.present_both[~analysed].any()


def test_in_the_default_method_new_houses_are_structures_and_reroofed_halls_are_not_change(tmp_path):
    pair = buildings_that_stay_come_and_go(1)
    before, after = pair.write(tmp_path)
    result = analyze(inspect_scene(before), inspect_scene(after), None, AnalysisParams())
    changed = np.isin(result.mask, (1, 2, 3))
    for footprint in pair.others["new"]:
        assert changed[footprint].mean() > 0.3
    for footprint in pair.others["reroofed"]:
        assert changed[footprint].mean() < 0.1, "a re-roofed building reported as change"
    structures_found = [o for o in result.objects if o.cls == "structure" and o.change == "appeared"]
    assert len(structures_found) >= 2
    stages = {s["stage"]: s for s in stage_accounting(result.change.details)}
    assert stages["structures"]["removed_pixels"] > 0  # the standing roofs are accounted for
    assert result.change.details["resolved_method"] == "objects+structures+regions"


def test_in_the_default_method_the_region_stage_does_not_report_change_on_standing_roofs(tmp_path):
    pair = buildings_that_stay_come_and_go(3)
    before, after = pair.write(tmp_path)
    result = analyze(inspect_scene(before), inspect_scene(after), None, AnalysisParams())
    explanations = result.change.details["areas"]["explanations"]
    assert "standing_building" in explanations
    changed = np.isin(result.mask, (1, 2, 3))
    for footprint in pair.others["reroofed"]:
        assert changed[footprint].mean() < 0.1
    regions_alone = analyze(inspect_scene(before), inspect_scene(after), None, AnalysisParams(method="regions"))
    alone = np.isin(regions_alone.mask, (1, 2, 3))
    # the region stage alone takes the re-roofing as change: the explanation is what removes it
    assert max(alone[footprint].mean() for footprint in pair.others["reroofed"]) > 0.3


def test_a_suburb_of_grey_roofs_on_scrub_is_found_roof_by_roof():
    pair = suburb_on_scrub(0)
    found = structures(pair)
    grey = [fp for fp in pair.buildings if pair.after[:, fp[0], fp[1]].std(axis=0).mean() < 12]
    assert len(grey) >= 4
    hits = [reported(found, fp, "appeared") > 0.3 for fp in grey]
    assert sum(hits) >= 0.7 * len(hits)
    assert (found.labels[pair.nuisance] == 0).mean() > 0.99  # unchanged scrub


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("seed", [1, 2])
def test_segmentation_in_tiles_finds_what_one_piece_would_and_its_margin_matters(seed):
    pair = buildings_that_stay_come_and_go(seed)
    whole = structures(pair)  # the 160 m scene at 1 m work pixels is one tile
    tiled = structures(pair, StructureParams(tile_px=48))  # 48 m tiles: every roof near a seam
    assert whole.details["appeared"] >= 3
    # the background's segments differ with the window (and with them the scene's grey level), the roofs do not
    assert iou(whole.labels > 0, tiled.labels > 0) > 0.95
    assert iou(whole.present_both, tiled.present_both) > 0.9
    # without the margin, segments are cut at the seams and the roofs with them
    cut = structures(pair, StructureParams(tile_px=48, margin_m=1.0))
    assert iou(whole.labels > 0, cut.labels > 0) < 0.5


def test_summary_accounts_for_standing_buildings_without_a_caveat_for_roofs_that_stood():
    from imagery.pipeline import stage_caveats

    details = {"candidate_pixels": 1000, "unexplained_pixels": 600, "standing_building_pixels": 300, "object_pixels": 600,
               "structures": {"candidate_pixels": 5000, "removed_pixels": 4700},
               "areas": {"explanations": {"standing_building": {"removed_pixels": 950, "removed_share": 0.95,
                                                                "applied": True}}}}
    stages = stage_accounting(details)
    assert [(s["stage"], s["explanation"]) for s in stages] == [
        ("objects", "illumination_season_lean"), ("objects", "standing_building"),
        ("structures", "outline_at_both_dates"), ("regions", "standing_building")]
    assert stages[1]["removed_share"] == pytest.approx(0.5)
    assert stages[2]["removed_share"] == pytest.approx(0.94)
    caveats = stage_caveats(stages)
    # most roofs of a scene stand at both dates: that is no reason for a caveat; most change on roofs is
    assert not any("structures" in c for c in caveats)
    assert any("re-roofed" in c and "95 %" in c for c in caveats)
