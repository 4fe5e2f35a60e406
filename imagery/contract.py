"""The product contract, defined once: change types, object classes, mask codes, colours, map layers and
the files they are drawn from.

Products (:mod:`imagery.products`), tiles (:mod:`imagery.tiles`), the report, the exports, the service's
routes and the viewer (which receives :func:`as_json`) all read these; a change here changes them all.
"""

from __future__ import annotations

#: What happened to an object between the dates, in the order tables list them.
CHANGE_TYPES = ("appeared", "disappeared", "changed")
#: Human names of the change types (tables, filters).
CHANGE_LABELS = {"appeared": "Appeared", "disappeared": "Disappeared", "changed": "Changed"}
#: Object classes, smallest first.
CLASSES = ("vehicle", "vehicle_group", "tent", "structure", "other")
#: Human names of the classes (tables, popups).
CLASS_LABELS = {"vehicle": "Vehicle", "vehicle_group": "Vehicle group", "tent": "Tent", "structure": "Structure",
                "other": "Other"}

#: Values of ``change_mask.tif`` (uint8).
MASK_VALUES = {"none": 0, "appeared": 1, "disappeared": 2, "changed": 3, "not_analysed": 255}
MASK_NOT_ANALYSED = MASK_VALUES["not_analysed"]
#: Mask values that mean "changed" (any change type).
MASK_CHANGED = tuple(MASK_VALUES[c] for c in CHANGE_TYPES)
#: The mask's values as written into the COG's ``VALUES`` tag.
MASK_VALUES_TAG = ", ".join(f"{v} {'no change' if k == 'none' else k.replace('_', ' ')}" for k, v in MASK_VALUES.items())

#: Colour of each change type (report, exports, tiles, viewer), sRGB hex.
CHANGE_COLOURS = {"appeared": "#ff2a2a", "disappeared": "#19d3ff", "changed": "#ffd21a"}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as an (r, g, b) tuple of 0-255 integers."""
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


#: Map layers and the product file each is drawn from.
LAYER_FILES = {"before": "before.tif", "after": "after.tif", "score": "change_score.tif", "changes": "change_mask.tif"}
LAYERS = tuple(LAYER_FILES)
#: Title and abstract of each layer (WMTS capabilities, viewer).
LAYER_TITLES = {
    "before": ("Before", "The older scene, true colour (same stretch as after)."),
    "after": ("After", "The newer scene, true colour (same stretch as before)."),
    "score": ("Change score", "Per-pixel change score 0-1 as a heat ramp; transparent where low."),
    "changes": ("Changes", "Change objects: red appeared, cyan disappeared, yellow changed; grey hatch not analysed."),
}


def as_json() -> dict:
    """The contract as the viewer receives it."""
    return {"change_types": list(CHANGE_TYPES), "change_labels": CHANGE_LABELS, "classes": list(CLASSES),
            "class_labels": CLASS_LABELS, "change_colours": CHANGE_COLOURS,
            "layers": {k: LAYER_TITLES[k][0] for k in LAYERS}}
