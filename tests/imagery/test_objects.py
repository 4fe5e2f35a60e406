"""Classes from sizes in metres."""

from imagery.objects import classify
import pytest

pytestmark = pytest.mark.fast  # in-process: no server, browser, PostgreSQL or cluster (make test-fast)


def test_a_pixelated_vehicle_outline_is_still_a_vehicle():
    """A 7 x 3.5 m vehicle outlined on a 1 m grid can measure 8 x 5 m: still a vehicle, not a tent."""
    assert classify(30.0, 8.0, 5.0, 0.9, pixel_size_m=0.5, outline_px_m=1.0) == "vehicle"
    # measured that wide on a fine grid it is too wide for a vehicle: a tent
    assert classify(30.0, 8.0, 5.0, 0.9, pixel_size_m=0.3) == "tent"
    # square things are tents, whatever the grid
    assert classify(36.0, 6.0, 6.0, 0.95, pixel_size_m=0.5, outline_px_m=1.0) == "tent"


def test_vehicles_are_not_counted_where_pixels_do_not_resolve_them():
    assert classify(25.0, 7.0, 3.5, 0.9, pixel_size_m=3.0) != "vehicle"
    assert classify(25.0, 7.0, 3.5, 0.9, pixel_size_m=0.5) == "vehicle"


def test_slivers_are_left_out_of_objects_and_mask():
    """A 1-pixel-wide strip along an edge is not an object at 0.5 m; a vehicle-sized block is."""
    import numpy as np
    from affine import Affine

    from imagery.change import ChangeResult
    from imagery.grid import Grid
    from imagery.segment import finish_objects
    from imagery.objects import SizeRules

    grid = Grid(crs="EPSG:32633", transform=Affine(0.5, 0, 500000, 0, -0.5, 5000000), shape=(80, 80))
    labels = np.zeros((80, 80), np.int32)
    labels[10:24, 10:17] = 1  # 7 x 3.5 m vehicle
    labels[40, 5:45] = 2  # 20 m x 0.5 m sliver
    result = ChangeResult(score=np.ones((80, 80), np.float32), changed=labels > 0, threshold=0.5, rule="test")
    image = np.ones((3, 80, 80), np.float32)
    objects, mask = finish_objects(labels, {1: "appeared", 2: "appeared"}, result, image, image, grid=grid,
                                   pixel_size_m=0.5, rules=SizeRules())
    assert [o.cls for o in objects] == ["vehicle"]
    assert (mask[10:24, 10:17] == 1).all() and not mask[40].any()
