"""Small scene pairs with known changes, written as GeoTIFFs, for service tests (fast; the accuracy
tests use the synth package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine

from tests.conftest import textured, write_tif

SPECTRA_GROUND = np.array([0.08, 0.11, 0.14, 0.25])
SPECTRA_VEHICLE = np.array([0.05, 0.07, 0.06, 0.18])


def small_pair(folder: Path, *, size: int = 320, vehicles: int = 4, origin=(400000.0, 5370000.0), crs="EPSG:32635",
               shift_px=(1.3, -0.7)) -> tuple[Path, Path, list[tuple[int, int]]]:
    """A 4-band uint16 pair at 0.5 m: AFTER has ``vehicles`` 14 x 7 px dark objects, a gain/offset and a shift.

    Returns before path, after path, and the (row, col) centres of the vehicles in BEFORE's grid.
    """
    from scipy import ndimage

    folder.mkdir(parents=True, exist_ok=True)
    tex = textured((size, size), seed=11)
    ground = (0.7 + 0.6 * tex)[None] * SPECTRA_GROUND[:, None, None]
    after = ground.copy()
    centres = []
    for k in range(vehicles):
        r = 60 + (k % 4) * 60
        c = 70 + (k // 4) * 80
        after[:, r - 3:r + 4, c - 7:c + 7] = SPECTRA_VEHICLE[:, None, None]
        centres.append((r, c))
    after = np.stack([ndimage.shift(b, shift_px, order=1, mode="nearest") for b in after])
    gain = np.array([1.2, 1.1, 1.05, 0.9])[:, None, None]
    after = after * gain + 0.01
    transform = Affine(0.5, 0, origin[0], 0, -0.5, origin[1])
    b = write_tif(folder / "before.tif", (ground * 10000).astype(np.uint16), crs=crs, transform=transform, nodata=0,
                  tags={"ACQUISITION_DATE": "2024-03-01"}, descriptions=("blue", "green", "red", "nir"))
    a = write_tif(folder / "after.tif", (after * 10000).astype(np.uint16), crs=crs, transform=transform, nodata=0,
                  tags={"ACQUISITION_DATE": "2024-04-15"}, descriptions=("blue", "green", "red", "nir"))
    return b, a, centres


def footprint_geojson(path: Path, shrink_m: float = 10.0) -> dict:
    """The scene's footprint in lon/lat, shrunk by ``shrink_m`` metres, as a GeoJSON Polygon."""
    import rasterio
    from rasterio.warp import transform_geom
    from shapely.geometry import box, mapping

    with rasterio.open(path) as ds:
        geom = box(*ds.bounds).buffer(-shrink_m)
        return transform_geom(ds.crs, "EPSG:4326", mapping(geom))
