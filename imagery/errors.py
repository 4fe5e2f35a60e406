"""Errors raised by basewatch.imagery: one root, one line each.

Each error is also the matching built-in (``ValueError`` for bad input,
``RuntimeError`` for a failed analysis) so callers may catch either.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty): one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class ImageryError(Exception):
    """Root of every error raised by the imagery package."""


class InvalidSceneError(ImageryError, ValueError):
    """The file is not a usable scene: not a GeoTIFF, corrupt, truncated or refused."""


class SceneTooLargeError(InvalidSceneError):
    """The scene declares more pixels, bands or bytes than the limits allow."""


class BandError(ImageryError, ValueError):
    """Band roles are missing, ambiguous or differ between the two scenes."""


class NoOverlapError(ImageryError, ValueError):
    """The scenes (or the scenes and the AOI) do not overlap."""


class GridTooLargeError(ImageryError, ValueError):
    """The analysis grid would exceed the pixel limit; use a smaller AOI."""


class AnalysisError(ImageryError, RuntimeError):
    """The analysis could not produce a result (e.g. nothing valid to compare)."""


class ProductError(ImageryError, OSError):
    """A product folder could not be written or read."""
