"""Zones: named parts of an AOI (motor pool, barracks, tent lines) that every analysis counts separately.

A zone lies within its AOI and overlaps no other zone of it, so each object is counted in one zone at
most and the zones' counts plus ``outside_zones`` add up to the AOI's.
"""

from __future__ import annotations

from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Session

from aoi import AOILimits, InvalidAOIError, parse_aoi
from aoi.geometry import geodesic_area_m2
from app import store
from app.errors import InvalidRequest
from app.models import Zone
from app.schemas import ZoneCreate

#: Zones per AOI: each analysis intersects every object with every zone.
MAX_ZONES = 50
#: Area a zone may stray outside its AOI or into another zone (vertices drawn on the same edge), m².
TOLERANCE_M2 = 1.0
ZONE_LIMITS = AOILimits(min_area_m2=1.0)


def zone_geometry(geometry, aoi_geometry: BaseGeometry, others: dict[str, BaseGeometry]) -> BaseGeometry:
    """A zone's lon/lat geometry, validated: a valid polygon within the AOI overlapping none of ``others``
    (name -> geometry), both within TOLERANCE_M2; InvalidRequest otherwise."""
    try:
        zone = parse_aoi(geometry, limits=ZONE_LIMITS).geometry
    except InvalidAOIError as exc:
        raise InvalidRequest(str(exc).replace("AOI", "zone", 1)) from None
    outside = geodesic_area_m2(zone.difference(aoi_geometry))
    if outside > TOLERANCE_M2:
        raise InvalidRequest(f"the zone is not within its AOI: {outside:,.0f} m² of it lie outside")
    if len(others) >= MAX_ZONES:
        raise InvalidRequest(f"an AOI has at most {MAX_ZONES} zones")
    for name, other in others.items():
        shared = geodesic_area_m2(zone.intersection(other))
        if shared > TOLERANCE_M2:
            raise InvalidRequest(f"the zone overlaps zone {name!r} ({shared:,.0f} m²): zones must not overlap, "
                                 "so that each object is counted once")
    return zone


def create_zone(session: Session, team: str, aoi_id: str, body: ZoneCreate) -> Zone:
    aoi = store.get_aoi(session, team, aoi_id)
    others = {z.name: shape(z.geometry) for z in store.zones_of(session, aoi.id)}
    zone = zone_geometry(body.geometry, shape(aoi.geometry), others)
    return store.add_zone(session, Zone(team=team, aoi_id=aoi.id, name=body.name, geometry=mapping(zone),
                                        area_m2=geodesic_area_m2(zone)))
