"""Object stage rules on small hand-made arrays."""

import pytest

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


def test_presence_works_on_a_single_band():
    """The presence test must not fail on panchromatic data (np.cov of one band is 0-d)."""
    import numpy as np

    from imagery.objectchange import presence

    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 2.0, (1, 40, 40)).astype(np.float32)
    region = np.zeros((40, 40), bool)
    region[15:25, 15:25] = True
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[12:28, 12:28] = False
    absent = presence(image, region, ring, np.array([2.0]))
    image[0][region] += 40.0
    present = presence(image, region, ring, np.array([2.0]))
    assert np.isfinite(absent) and absent < 9.0
    assert present > 100.0


def test_residues_of_an_explained_region_are_dropped():
    """An object covering a small share of its changed region is a residue; one that fills its region is kept."""
    import numpy as np

    from imagery.objectchange import drop_residues

    candidates = np.zeros((60, 60), np.int32)
    candidates[2:12, 2:12] = 1  # 100 px: a vehicle and its shadow
    candidates[20:50, 20:55] = 2  # 1050 px: a moved building shadow
    objects = np.zeros_like(candidates)
    objects[3:10, 3:9] = 1  # 42 % of region 1
    objects[30:34, 30:35] = 2  # 2 % of region 2
    objects[55:58, 55:58] = 3  # outside every candidate region
    labels, kinds, dropped = drop_residues(objects, {1: "appeared", 2: "appeared", 3: "disappeared"}, candidates, 0.15)
    assert dropped == 1
    assert kinds == {1: "appeared", 2: "disappeared"}
    assert (labels[3:10, 3:9] == 1).all() and (labels[30:34, 30:35] == 0).all() and (labels[55:58, 55:58] == 2).all()


def test_an_object_belongs_to_the_region_holding_most_of_it():
    """An object straddling a region's edge is judged by that region's share, not by the pixels outside."""
    import numpy as np

    from imagery.objectchange import drop_residues

    candidates = np.zeros((40, 40), np.int32)
    candidates[5:15, 5:15] = 1  # 100 px
    objects = np.zeros_like(candidates)
    objects[8:12, 10:20] = 1  # 40 px, 20 of them inside region 1 (20 % of it), 20 outside every region
    kept, kinds, dropped = drop_residues(objects, {1: "appeared"}, candidates, 0.15)
    assert dropped == 0 and kinds == {1: "appeared"}
    kept, kinds, dropped = drop_residues(objects, {1: "appeared"}, candidates, 0.25)
    assert dropped == 1 and kinds == {} and not kept.any()
