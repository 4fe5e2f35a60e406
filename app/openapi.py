"""The OpenAPI document as generated clients (openapi-python-client, openapi-generator) need it.

FastAPI describes every route as answering JSON. A route that answers a file or a tile declares its
media type (``responses={200: {"content": {"image/png": {}}}}``); here that declaration replaces the
JSON default, with a binary schema for binary types, so a generated client never decodes a PNG as
JSON. The two ways of sending the API key are security schemes (the bearer header everywhere but
``/healthz``, and ``?token=`` on map routes), and operation ids are the route functions' names
(``get_analysis``, ``get_report_pdf``), short and stable.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from app.deps import get_map_principal, get_principal

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "API key: `Authorization: Bearer KEY` (not needed while the service has no key)."},
    "token": {"type": "apiKey", "in": "query", "name": "token",
              "description": "The API key as `?token=KEY`, for map clients and links that cannot send headers."},
}


def is_json(media_type: str) -> bool:
    kind = media_type.split(";")[0].strip()
    return kind == "application/json" or kind.endswith("+json")


def schema_for(media_type: str) -> dict:
    """The body schema of a media type: an object for JSON, a string for text, binary for the rest."""
    if is_json(media_type):
        return {"type": "object"}
    if media_type.startswith("text/") or media_type.split(";")[0].endswith("xml"):
        return {"type": "string"}
    return {"type": "string", "format": "binary"}


def uses(dependant, dependency) -> bool:
    return any(d.call is dependency or uses(d, dependency) for d in dependant.dependencies)


def fix_content(operation: dict) -> None:
    """Declared media types replace FastAPI's JSON default; each gets a schema. Errors are always JSON
    (``{"detail"}``), also on routes answering text or files."""
    for status, response in operation.get("responses", {}).items():
        content = response.get("content")
        if not content:
            continue
        if status[0] in "45":
            response["content"] = {"application/json": {"schema": next(iter(content.values())).get("schema", {})}}
            continue
        default = content.get("application/json")
        if default is not None and not default.get("schema") and len(content) > 1:
            del content["application/json"]
        for media_type, body in content.items():
            if not body.get("schema"):
                body["schema"] = schema_for(media_type)


def fix_security(operation: dict, route: APIRoute) -> None:
    if uses(route.dependant, get_map_principal):
        operation["security"] = [{"bearer": []}, {"token": []}]
        operation["parameters"] = [p for p in operation.get("parameters", []) if (p["in"], p["name"]) != ("query", "token")]
        if not operation["parameters"]:
            del operation["parameters"]
    elif uses(route.dependant, get_principal):
        operation["security"] = [{"bearer": []}]
    else:
        operation["security"] = []


def build_schema(app: FastAPI) -> dict:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for route in (ctx.original_route for ctx in iter_route_contexts(app.routes)):  # routes with their routers' prefixes
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["operationId"] = route.name
            fix_content(operation)
            fix_security(operation, route)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`build_schema` at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build_schema(app)
        return app.openapi_schema

    app.openapi = openapi
