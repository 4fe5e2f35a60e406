"""basewatch.imagery: the science. Pure functions on arrays and grids, plus scene reading and product writing at the edges."""

__version__ = "0.1.0"
