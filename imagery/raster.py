"""The one raster value that flows through the pipeline: pixels + grid + band roles."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import numpy as np

from imagery.errors import BandError
from imagery.grid import Grid

#: Band roles the pipeline understands, in canonical order.
BAND_ROLES = ("blue", "green", "red", "nir", "pan")


@dataclass(frozen=True, eq=False)
class Raster:
    """Multiband pixels on a grid.

    Attributes
    ----------
    data : ndarray, shape (bands, rows, cols), float32
        Pixel values in the scene's radiometric unit (reflectance, or DN for
        display products). Values where ``valid`` is False are undefined.
    valid : ndarray, shape (rows, cols), bool
        True where the pixel holds data in this scene.
    grid : Grid
        Where the pixels are.
    bands : tuple of str
        Role of each band (``blue``, ``green``, ``red``, ``nir``, ``pan``).
    acquired : datetime.date or datetime.datetime, optional
        Acquisition date.
    """

    data: np.ndarray
    valid: np.ndarray
    grid: Grid
    bands: tuple[str, ...]
    acquired: dt.date | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.data.ndim != 3:
            raise ValueError("Raster.data must be (bands, rows, cols)")
        if self.data.shape[1:] != tuple(self.grid.shape) or self.valid.shape != tuple(self.grid.shape):
            raise ValueError(f"pixels {self.data.shape[1:]} / mask {self.valid.shape} do not match grid {self.grid.shape}")
        if len(self.bands) != self.data.shape[0]:
            raise ValueError("one band role per band is required")

    @property
    def count(self) -> int:
        return self.data.shape[0]

    def band(self, role: str) -> np.ndarray:
        """The 2-D pixels of the band with ``role``."""
        try:
            return self.data[self.bands.index(role)]
        except ValueError:
            raise BandError(f"no {role!r} band (bands are {', '.join(self.bands)})") from None

    def has(self, *roles: str) -> bool:
        return all(r in self.bands for r in roles)

    def with_data(self, data: np.ndarray, valid: np.ndarray | None = None, **changes) -> Raster:
        """A copy carrying new pixels (and optionally a new mask) on the same grid."""
        return replace(self, data=data, valid=self.valid if valid is None else valid, **changes)

    def select(self, roles: tuple[str, ...]) -> Raster:
        """A raster with only ``roles``, in that order."""
        idx = [self.bands.index(r) for r in roles]
        return replace(self, data=self.data[idx], bands=tuple(roles))


def brightness(raster: Raster) -> np.ndarray:
    """Mean of the visible bands (or of all bands when none is visible), float32 (rows, cols)."""
    visible = [i for i, r in enumerate(raster.bands) if r in ("blue", "green", "red", "pan")]
    idx = visible or list(range(raster.count))
    return raster.data[idx].mean(axis=0, dtype=np.float32)
