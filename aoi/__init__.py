"""Areas of interest: geometry validation and the rules of the AOI/scene catalogue."""

from aoi.geometry import AOI, AOILimits, InvalidAOIError, parse_aoi, read_aoi_file

__all__ = ["AOI", "AOILimits", "InvalidAOIError", "parse_aoi", "read_aoi_file"]
