"""``/openapi.json``: the HTTP API described for clients and tools (schemathesis, codegen).

Nothing here is written by hand per path: each route is an ``ApiRoute`` that carries its
``Operation`` (summary, parameters, request and response models) next to its handler, and the
``Need`` its guard checks, which adds the 401/403 answers and the security requirement. The
document is built from the app's route table and the pydantic models the handlers serialize.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from eventlog import __version__
from eventlog.http.auth import Handler, Need, guard
from eventlog.http.schemas import Error

_REF = "#/components/schemas/{model}"
_ERRORS = {
    400: "A malformed parameter, header or JSON body",
    401: "Missing or invalid credentials (only when keys or tokens are configured)",
    403: "Valid credentials that do not grant this",
    404: "No such run (or no such thread of the run)",
    409: "The run's state forbids it (it exists, has ended, or is not idle)",
    410: "Gone: a stream deleted while its forks read it, or an offset retention has passed",
    413: "The body or the batch is too large",
    422: "A body or value that breaks the input rules",
    503: "The log cannot serve now (it is closed as the server shuts down, or its storage failed)",
    507: "The disk is full: nothing was stored",
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str = ""

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where, "required": self.where == "path", "schema": dict(self.schema)}
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented success response: a JSON ``model``, or another media type, or no body."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = "application/json"


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    replies: Mapping[int, Reply]
    errors: tuple[int, ...] = ()
    """Statuses answered with the ``Error`` body, besides those the route's ``Need`` adds."""
    parameters: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True


class ApiRoute(Route):
    """A route that knows what it needs (its guard) and what it does (its ``Operation``)."""

    def __init__(self, path: str, handler: Handler, method: str, need: Need, operation: Operation) -> None:
        super().__init__(path, guard(handler, need), methods=[method])
        self.method = method
        self.need = need
        self.operation = operation

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A 405 whose ``Allow`` names every method of the path: each method is its own route,
        and starlette's 405 would name only those of the first route matching the path."""
        if scope["method"] not in self.methods:  # type: ignore[operator]
            methods = {m for r in scope["app"].routes if isinstance(r, ApiRoute) and r.path == self.path for m in r.methods}
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(methods))})
        await super().handle(scope, receive, send)


def _content(reply: Reply, schemas: Mapping[type[BaseModel], Any]) -> dict[str, Any]:
    if reply.media_type is None:
        return {}
    if reply.model is not None:
        schema = schemas[reply.model]
    else:
        schema = {"type": "object"} if reply.media_type == "application/json" else {"type": "string"}
    return {"content": {reply.media_type: {"schema": schema}}}


def _operation(route: ApiRoute, schemas: Mapping[type[BaseModel], Any]) -> dict[str, Any]:
    op = route.operation
    responses: dict[str, Any] = {
        str(status): {"description": reply.description, **_content(reply, schemas)}
        for status, reply in sorted(op.replies.items())
    }
    error = {"content": {"application/json": {"schema": schemas[Error]}}}
    for status in sorted({*op.errors, *route.need.statuses}):
        responses[str(status)] = {"description": _ERRORS[status], **error}
    spec: dict[str, Any] = {"summary": op.summary, "operationId": route.name, "responses": responses}
    if route.endpoint.__doc__:  # the handler's docstring (guard keeps it)
        spec["description"] = inspect.cleandoc(route.endpoint.__doc__)
    if op.parameters:
        spec["parameters"] = [param.spec() for param in op.parameters]
    if op.body is not None:
        spec["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": schemas[op.body]}}}
    if route.need is Need.OPEN:
        spec["security"] = []
    return spec


def build_spec(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of the ``ApiRoute``s among ``routes``."""
    api_routes = [route for route in routes if isinstance(route, ApiRoute)]
    bodies = {route.operation.body for route in api_routes} - {None}
    replies = {reply.model for route in api_routes for reply in route.operation.replies.values()} - {None}
    keyed: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((model, "validation") for model in sorted(bodies, key=lambda m: m.__name__)),  # type: ignore[union-attr]
        *((model, "serialization") for model in sorted({*replies, Error}, key=lambda m: m.__name__)),  # type: ignore[union-attr]
    ]
    refs, definitions = models_json_schema(keyed, ref_template=_REF)
    schemas = {model: refs[(model, mode)] for model, mode in keyed}
    paths: dict[str, dict[str, Any]] = {}
    for route in api_routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "eventlog", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key, or a reader JWT"},
                "access_token": {
                    "type": "apiKey", "in": "query", "name": "access_token",
                    "description": "The same credential, for browsers' EventSource, which cannot set headers",
                },
            },
        },
        "security": [{"bearer": []}, {"access_token": []}],
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(build_spec(request.app.routes))


routes = [
    ApiRoute(
        "/openapi.json", openapi, "GET", Need.ANY,
        Operation("This description", {200: Reply("The OpenAPI 3.1 document")}),
    )
]
