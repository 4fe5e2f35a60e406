"""How map tiles look: the colours of the change types, the not-analysed hatching, the display bands, the
gamma and score ramps, as lookup tables and palettes for :mod:`imagery.tiles` (no I/O).

Colours come from the product contract (:data:`imagery.contract.CHANGE_COLOURS`); sizes are tile pixels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from imagery.contract import CHANGE_COLOURS as CHANGE_COLOURS_HEX
from imagery.contract import CHANGE_TYPES, MASK_CHANGED, MASK_NOT_ANALYSED, MASK_VALUES, rgb

#: Change mask values of the change types, and their colours (RGB).
CHANGE_NAMES = {c: MASK_VALUES[c] for c in CHANGE_TYPES}
CHANGE_COLOURS = {MASK_VALUES[c]: rgb(CHANGE_COLOURS_HEX[c]) for c in CHANGE_TYPES}
FILL_ALPHA = 110
NOT_ANALYSED = MASK_NOT_ANALYSED
HATCH_RGBA = (200, 200, 200, 150)     # hatch lines over not-analysed pixels
NOT_ANALYSED_RGBA = (128, 128, 128, 45)  # between the hatch lines
HATCH_PERIOD, HATCH_WIDTH = 8, 2      # pixels, diagonal lines continuous across tiles
OUTLINE_WIDTH = 2                     # pixels

GAMMA_LEVELS = 1024


def band_roles(ds) -> tuple[str, ...]:
    """Band roles from the band descriptions, else from a ``BAND_NAMES`` tag, lower-case ('' if unknown)."""
    roles = tuple((d or "").strip().lower() for d in ds.descriptions)
    if not any(roles):
        tag = ds.tags().get("BAND_NAMES", "")
        names = [n.strip().lower() for n in tag.split(",")] if tag else []
        if len(names) == ds.count:
            roles = tuple(names)
    return roles


def display_bands(roles: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """1-based band indexes and names to draw: red, green, blue if present, else one grey band."""
    if all(r in roles for r in ("red", "green", "blue")):
        names = ("red", "green", "blue")
        return tuple(roles.index(r) + 1 for r in names), names
    for r in ("pan", "red", "green", "blue"):
        if r in roles:
            return (roles.index(r) + 1,), (r,)
    return (1,), (roles[0] if roles and roles[0] else "b1",)


def gamma_lut(gamma: float) -> np.ndarray:
    x = np.linspace(0.0, 1.0, GAMMA_LEVELS)
    return np.round(255.0 * x ** (1.0 / gamma)).astype(np.uint8)


def score_lut(low: float, high: float, max_alpha: int = 190) -> tuple[np.ndarray, np.ndarray]:
    """The score ramp as a palette: ``(index (257,) uint8, palette (n <= 256, 4) RGBA)`` where the lookup index
    is ``round(score * 255)`` and 256 is nodata (transparent); equal colours share one palette entry."""
    from matplotlib import colormaps

    s = np.arange(256) / 255.0
    t = np.clip((s - low) / max(high - low, 1e-6), 0.0, 1.0)
    rgb = colormaps["inferno"](0.35 + 0.65 * t)[:, :3]  # purple -> red -> orange -> yellow
    lut = np.zeros((257, 4), np.uint8)
    lut[:256, :3] = np.round(rgb * 255)
    lut[:256, 3] = np.round(max_alpha * t ** 1.5)
    lut[:256][lut[:256, 3] == 0] = 0
    palette, index = np.unique(lut, axis=0, return_inverse=True)
    return index.reshape(-1).astype(np.uint8), palette


#: The changes layer's palette: transparent, fills of appeared/disappeared/changed, not-analysed on and between
#: the hatch lines, then the opaque outlines of appeared/disappeared/changed objects.
CHANGES_PALETTE = np.array([(0, 0, 0, 0), *((*CHANGE_COLOURS[v], FILL_ALPHA) for v in (1, 2, 3)), HATCH_RGBA,
                            NOT_ANALYSED_RGBA, *((*CHANGE_COLOURS[v], 255) for v in (1, 2, 3))], np.uint8)
OUTLINE_INDEX = {v: 5 + v for v in (1, 2, 3)}


def change_luts() -> tuple[np.ndarray, np.ndarray]:
    """Change mask value -> :data:`CHANGES_PALETTE` index (256,) lookups: one for hatch-line pixels, one for the others."""
    on = np.zeros(256, np.uint8)
    on[list(MASK_CHANGED)] = [1, 2, 3]
    off = on.copy()
    on[NOT_ANALYSED], off[NOT_ANALYSED] = 4, 5
    return on, off


@lru_cache(maxsize=64)
def hatch(tilesize: int, x: int, y: int) -> np.ndarray:
    """Boolean (tilesize, tilesize): pixels on the diagonal hatch lines, continuous across tiles."""
    off = (x * tilesize + y * tilesize) % HATCH_PERIOD
    r = np.arange(tilesize)
    return ((r[:, None] + r[None, :] + off) % HATCH_PERIOD) < HATCH_WIDTH
