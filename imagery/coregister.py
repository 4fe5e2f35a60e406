"""Co-registration: the residual shift of AFTER against BEFORE on the analysis grid.

Estimate first (:func:`estimate_shift`), let the caller apply it (the
pipeline re-reads AFTER onto the grid moved by :meth:`ShiftEstimate.offset_m`,
so the correction costs no extra resampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.registration import phase_cross_correlation

from imagery.grid import Grid


@dataclass(frozen=True)
class ShiftEstimate:
    """Shift that registers AFTER onto BEFORE, in analysis-grid pixels.

    Attributes
    ----------
    rows, cols : float
        Where BEFORE's content appears in AFTER, minus where it is in BEFORE:
        a feature at pixel (r, c) in BEFORE is at (r + rows, c + cols) in AFTER.
    blocks_used, blocks_total : int
        Blocks that agreed with the consensus, and blocks measured.
    spread_px : float
        Median absolute deviation of the agreeing blocks' shifts, pixels.
    """

    rows: float
    cols: float
    blocks_used: int
    blocks_total: int
    spread_px: float

    @property
    def quality(self) -> float:
        """Fraction of measured blocks that agree with the consensus (0-1)."""
        return self.blocks_used / self.blocks_total if self.blocks_total else 0.0

    @property
    def magnitude_px(self) -> float:
        return float(np.hypot(self.rows, self.cols))

    def offset_m(self, grid: Grid) -> tuple[float, float]:
        """The same shift as a ``(dx, dy)`` offset in the grid CRS (east, north), metres for projected grids."""
        return self.cols * grid.transform.a, self.rows * grid.transform.e

    def to_dict(self, grid: Grid) -> dict:
        dx, dy = self.offset_m(grid)
        return {
            "rows_px": round(self.rows, 3),
            "cols_px": round(self.cols, 3),
            "east_m": round(dx, 3),
            "north_m": round(dy, 3),
            "magnitude_px": round(self.magnitude_px, 3),
            "blocks_used": self.blocks_used,
            "blocks_total": self.blocks_total,
            "spread_px": round(self.spread_px, 3),
            "quality": round(self.quality, 3),
        }


NO_SHIFT = ShiftEstimate(0.0, 0.0, 0, 0, 0.0)


def structure_band(image: np.ndarray, valid: np.ndarray, *, sigma_px: float = 1.0) -> np.ndarray:
    """Gradient magnitude of a single band after light Gaussian smoothing.

    Edges keep their position when illumination, season or sensor gain
    change, which makes the gradient a better registration target than the
    radiometry itself. Invalid pixels are filled with the valid median first.

    Parameters
    ----------
    image : ndarray (rows, cols)
    valid : ndarray (rows, cols) bool
    sigma_px : float
        Gaussian smoothing before the gradient, pixels.
    """
    stride = max(1, int(valid.sum()) // 1_000_000)
    fill = float(np.median(image[valid][::stride])) if valid.any() else 0.0
    filled = np.where(valid, image, fill).astype(np.float32)
    smooth = cv2.GaussianBlur(filled, (0, 0), sigma_px, borderType=cv2.BORDER_REPLICATE)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return cv2.magnitude(gx, gy)


def block_origins(valid: np.ndarray, block_px: int, *, min_valid: float = 0.8, max_blocks: int = 36):
    """Upper-left corners of blocks of ``block_px`` (half-overlapping) that are at least ``min_valid`` valid."""
    rows, cols = valid.shape
    if rows < block_px or cols < block_px:
        return []
    step = max(1, block_px // 2)
    rs = list(range(0, rows - block_px + 1, step))
    cs = list(range(0, cols - block_px + 1, step))
    origins = [(r, c) for r in rs for c in cs if valid[r:r + block_px, c:c + block_px].mean() >= min_valid]
    if len(origins) > max_blocks:
        keep = np.linspace(0, len(origins) - 1, max_blocks).round().astype(int)
        origins = [origins[i] for i in keep]
    return origins


def consensus(shifts: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Boolean mask of the largest group of shifts lying within ``tolerance_px`` of one of them (mode seeking)."""
    dist = np.hypot(*(shifts[:, None, :] - shifts[None, :, :]).transpose(2, 0, 1))
    support = (dist <= tolerance_px).sum(axis=1)
    best = int(np.argmax(support))
    return dist[best] <= tolerance_px


def estimate_shift(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    *,
    block_px: int | None = None,
    upsample: int = 20,
    tolerance_px: float = 0.5,
) -> ShiftEstimate:
    """Sub-pixel translation of AFTER relative to BEFORE by blockwise phase correlation.

    Parameters
    ----------
    before, after : ndarray (rows, cols)
        Structure bands (e.g. :func:`structure_band`) of the two dates on the
        same grid.
    valid : ndarray (rows, cols) bool
        Pixels valid in both dates.
    block_px : int, optional
        Block side in pixels; default the largest power of two up to half the
        shorter side, clipped to 64-256 (a 256-pixel tile is measured in nine
        128-pixel blocks: small blocks of a scene where half the ground
        changed hold too little shared structure to agree); blocks overlap
        by half and need 80 % valid pixels (invalid ones are zeroed after centring); when fewer than three
        blocks of that side are valid enough (valid ground in pieces, as in a mosaic of windows), halves of
        it are tried down to 64 pixels.
    upsample : int
        Phase-correlation upsampling factor: precision 1/upsample px.
    tolerance_px : float
        Blocks agree when their shifts lie within this distance; the
        estimate is the mean of the largest agreeing group, and no shift at
        all (quality 0) when fewer than three blocks agree (two when only two
        were measured; a single block is never trusted alone).

    Returns
    -------
    ShiftEstimate
        Mean of the agreeing blocks; zero shift when no block has enough
        valid pixels or the blocks do not agree.

    References
    ----------
    Guizar-Sicairos, Thurman & Fienup (2008), Efficient subpixel image
    registration algorithms, Optics Letters 33(2).
    """
    short = min(valid.shape)
    if block_px is None:
        block_px = int(np.clip(2 ** np.floor(np.log2(max(short // 2, 64))), 64, 256))
    block_px = min(block_px, short)
    origins = block_origins(valid, block_px)
    while len(origins) < 3 and block_px >= 128:  # valid ground in pieces (a mosaic of windows): smaller blocks fit
        smaller = block_origins(valid, block_px // 2)
        if len(smaller) <= len(origins):
            break
        origins, block_px = smaller, block_px // 2
    if not origins and valid.mean() > 0.5:
        origins, block_px = [(0, 0)], short
    window = np.outer(np.hanning(block_px), np.hanning(block_px)).astype(np.float32)
    shifts = []
    for r, c in origins:
        ok = valid[r:r + block_px, c:c + block_px]
        ref = np.where(ok, before[r:r + block_px, c:c + block_px], 0.0)
        mov = np.where(ok, after[r:r + block_px, c:c + block_px], 0.0)
        if ref.std() == 0 or mov.std() == 0:
            continue
        ref = (ref - ref[ok].mean()) * ok * window
        mov = (mov - mov[ok].mean()) * ok * window
        shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=upsample, normalization=None)
        shifts.append(-np.asarray(shift, dtype=float))
    if not shifts:
        return NO_SHIFT
    shifts = np.array(shifts)
    agree = consensus(shifts, tolerance_px)
    if agree.sum() < min(3, max(2, len(shifts))):
        # No group of blocks agrees (one block alone cannot be checked): the estimate would be noise; leave the
        # scenes as georeferenced.
        return ShiftEstimate(0.0, 0.0, 0, len(shifts), float(np.median(np.hypot(*(shifts - np.median(shifts, 0)).T))))
    inliers = shifts[agree]
    best = inliers.mean(axis=0)
    spread = float(np.median(np.hypot(*(inliers - best).T))) if len(inliers) > 1 else 0.0
    return ShiftEstimate(float(best[0]), float(best[1]), int(agree.sum()), len(shifts), spread)
