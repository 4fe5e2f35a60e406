"""Classes from sizes in metres."""

from imagery.objects import classify


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
