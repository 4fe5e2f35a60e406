"""Local background estimates: what a pixel's neighbourhood looks like, at a scale in pixels.

Median filters over windows of tens of metres are slow at full resolution,
so the median is taken on a block-reduced grid and interpolated back; the
result is a smooth, edge-preserving background at the requested scale.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage import morphology


def local_median(image: np.ndarray, valid: np.ndarray, window_px: float, *, stats=None) -> np.ndarray:
    """Median of each band over a square window of about ``window_px`` pixels.

    Parameters
    ----------
    image : ndarray (bands, rows, cols) or (rows, cols)
    valid : ndarray (rows, cols) bool
        Invalid pixels take the band median; blocks less than half valid are
        filled from the nearest valid block.
    window_px : float
        Window side in pixels.
    stats : SceneStats, optional
        Scene statistics: the band medians invalid pixels take (``fill``); default measured here.

    Returns
    -------
    ndarray, same shape as ``image``, float32
        The block medians (blocks of ``window_px / 5`` pixels) median-filtered
        over the window and bilinearly interpolated back to full resolution.
        Blocks start at row and column 0 (see :func:`median_block_px`).
    """
    from imagery.scenestats import scene_stats

    stats = scene_stats(stats)
    squeeze = image.ndim == 2
    stack = image[None] if squeeze else image
    rows, cols = valid.shape
    block = median_block_px(window_px)
    nr, nc = -(-rows // block), -(-cols // block)
    size = max(3, int(round(window_px / block)) | 1)
    out = np.empty(stack.shape, dtype=np.float32)
    coverage = np.zeros((nr * block, nc * block), dtype=np.float32)
    coverage[:rows, :cols] = valid
    coverage = coverage.reshape(nr, block, nc, block).mean(axis=(1, 3))
    for k in range(stack.shape[0]):
        # invalid pixels take the band's median so block medians stay fast; blocks under half valid are refilled
        fill = stats.take(f"fill{k}", lambda: float(np.median(stack[k][valid][:: max(1, int(valid.sum()) // 200_000)]))
                          if valid.any() else 0.0)
        padded = np.full((nr * block, nc * block), fill, dtype=np.float32)
        padded[:rows, :cols] = np.where(valid, stack[k], fill)
        blocks = padded.reshape(nr, block, nc, block).transpose(0, 2, 1, 3).reshape(nr, nc, -1)
        small = np.median(blocks, axis=2)
        small[coverage < 0.5] = np.nan
        missing = np.isnan(small)
        if missing.all():
            out[k] = 0.0
            continue
        if missing.any():
            idx = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
            small = small[tuple(idx)]
        if size <= 5:  # OpenCV's float median is limited to 3 and 5 but is much faster
            med = cv2.medianBlur(np.ascontiguousarray(small, dtype=np.float32), size)
        else:
            med = ndimage.median_filter(small, size=size, mode="nearest")
        if block == 1:
            out[k] = med[:rows, :cols]
            continue
        # block centres -> pixel centres, bilinear
        out[k] = ndimage.zoom(med, block, order=1, grid_mode=True, mode="nearest")[:rows, :cols]
    return out[0] if squeeze else out


def edge_padded(image: np.ndarray, radius: int) -> np.ndarray:
    """(bands, rows, cols) padded by ``radius`` pixels on each side, edges replicated (for :func:`shifted`)."""
    return np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="edge")


def shifted(padded: np.ndarray, radius: int, d: tuple[int, int]) -> np.ndarray:
    """A view of the image :func:`edge_padded` by ``radius`` moved by ``d = (rows, cols)`` pixels: value at p is
    the image at p - d (as ``np.roll``, with the edges replicated instead of wrapped round, so a block of a larger
    grid sees what the whole grid would)."""
    rows, cols = padded.shape[1] - 2 * radius, padded.shape[2] - 2 * radius
    return padded[:, radius - d[0]: radius - d[0] + rows, radius - d[1]: radius - d[1] + cols]


def median_block_px(window_px: float) -> int:
    """Side (pixels) of the blocks :func:`local_median` takes medians of: a block of a larger grid gives the
    same background when its origin is a multiple of it."""
    return max(1, int(window_px // 5))


def disk(radius_px: int) -> np.ndarray:
    """A disk of ``radius_px`` pixels (a single pixel for 0 or less) as a boolean structuring element."""
    return morphology.disk(max(0, int(radius_px))).astype(bool)


def robust_sigma(values: np.ndarray, *, nonzero: bool = False) -> float:
    """Standard deviation from the median absolute deviation (Gaussian-consistent) of the finite values.

    0 for constant input or no finite value; with ``nonzero`` (a scale to divide by) the standard deviation
    when the MAD is 0 (more than half the values equal), and 1 when that is 0 too or no value is finite.
    """
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0 if nonzero else 0.0
    med = np.median(values)
    mad = float(1.4826 * np.median(np.abs(values - med)))
    if mad > 0 or not nonzero:
        return mad
    return float(values.std() or 1.0)
