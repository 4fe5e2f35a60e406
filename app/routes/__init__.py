"""HTTP routers: thin wrappers around app.store, app.ingest and imagery."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts


def add_head_routes(app: FastAPI) -> None:
    """HEAD answers like GET without a body (RFC 9110 §9.3.2) wherever GET answers: GDAL, curl -I and caches
    probe files and tiles with HEAD. Each GET route gets a HEAD twin, kept out of the OpenAPI document."""
    routes = [ctx.original_route for ctx in iter_route_contexts(app.routes)]  # with the routers' prefixes
    for route in [r for r in routes if isinstance(r, APIRoute) and r.methods == {"GET"}]:
        app.router.add_api_route(route.path, route.endpoint, methods=["HEAD"], name=f"{route.name}_head",
                                 response_class=route.response_class, response_model=route.response_model,
                                 status_code=route.status_code, include_in_schema=False)
