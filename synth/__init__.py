"""Synthetic before/after image pairs of a military base, with exact ground truth.

No real imagery can be downloaded where basewatch is developed, so this package
makes the pairs that the demo, the tests and the accuracy benchmarks use. A
pair carries the nuisances a real pair has, so that a change detector that
passes on it is not fooled by sun, season or sensor:

* the world is a set of vector objects in metres in the UTM zone of the scene
  centre: fields with fractal texture, tree lines and single trees, roads, a
  fenced compound with a motor pool, a tent area, buildings and hangars, and
  (for large scenes) an airfield;
* each date is rendered by rasterising that world on a supersampled canvas,
  lighting it with the date's sun (cast shadows of every tall object, sloped
  roof facets, darker and bluer shade from skylight), seeing it from the date's
  view angle (tall objects lean), averaging it down to the pixel grid and
  blurring it with a Gaussian sensor PSF;
* between dates: per-band gain and haze offset, seasonal vegetation change that
  varies across the scene, sensor noise and striping, a sub-pixel
  misregistration, thick clouds with their cast shadows and an uncovered
  (nodata) corner;
* the changes (vehicles that arrived or left, new tents, new structures, roofs
  that changed) are recorded as :class:`TruthObject` footprints and as a truth
  mask on the before grid.

Pure functions make arrays (:func:`make_pair`, :func:`preset`); one function
writes files (:func:`write_pair`).

Modules: :mod:`synth.presets` (parameters, materials, sun, presets), :mod:`synth.world` (the vector world and
its layout), :mod:`synth.render` (rendering a date: lighting, shadows, clouds, sensor), :mod:`synth.pair`
(:func:`make_pair`, :func:`write_pair`), and :mod:`synth.alt`, an independent generator written apart from
these to check that a rule is general, not fitted to one generator's quirks.
"""

from synth.pair import make_pair, write_pair
from synth.presets import (
    APPEARED,
    CHANGED,
    DISAPPEARED,
    MS16_BANDS,
    NO_CHANGE,
    NOT_ASSESSABLE,
    PRESETS,
    RGB8_BANDS,
    SynthPair,
    SynthParams,
    SynthScene,
    TruthObject,
    preset,
    sun_position,
)

__all__ = ["SynthParams", "SynthScene", "TruthObject", "SynthPair", "PRESETS", "preset", "make_pair", "write_pair",
           "sun_position", "APPEARED", "CHANGED", "DISAPPEARED", "NO_CHANGE", "NOT_ASSESSABLE", "MS16_BANDS", "RGB8_BANDS"]
