"""``/openapi.json``: the HTTP API described for clients and tools (schemathesis, codegen)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlog import __version__
from eventlog.http.auth import Need, guard
from eventlog.http.schemas import AppendBody, CreateRunBody, EndBody

_ERROR = {"$ref": "#/components/schemas/Error"}
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}
_THREAD_ID = {"name": "thread_id", "in": "path", "required": True, "schema": {"type": "string"}}
_CURSOR = [
    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    {"name": "last_event_id", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    {"name": "on_gap", "in": "query", "schema": {"enum": ["continue", "stop"]}},
]
_SSE = {"200": {"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


def _body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    errors = {"4XX": {"description": "Client error", "content": {"application/json": {"schema": _ERROR}}}}
    return {"summary": summary, "responses": {**responses, **errors}, **extra}


def _json(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def build_spec() -> dict[str, Any]:
    components: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
        }
    }
    for model in (AppendBody, CreateRunBody, EndBody):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    paging = [{"name": n, "in": "query", "schema": {"type": "integer", "minimum": 0}} for n in ("limit", "offset")]
    return {
        "openapi": "3.1.0",
        "info": {"title": "eventlog", "version": __version__},
        "paths": {
            "/runs": {
                "post": _op("Create a run", {"201": _json("The run")}, requestBody=_body(CreateRunBody)),
                "get": _op("List runs, newest first", {"200": _json("{runs: [...]}")}, parameters=[*paging, {"name": "status", "in": "query", "schema": {"enum": ["running", "ended"]}}]),
            },
            "/runs/{run_id}": {
                "get": _op("A run", {"200": _json("The run")}, parameters=[_RUN_ID]),
                "delete": _op("Delete a run and its events", {"204": {"description": "Deleted"}}, parameters=[_RUN_ID]),
            },
            "/runs/{run_id}/events": {
                "post": _op(
                    "Append events (durable on 201)", {"201": _json("{ids: [...]}")},
                    parameters=[_RUN_ID, {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 256}}],
                    requestBody=_body(AppendBody),
                ),
                "get": _op("A page of events after a cursor", {"200": _json("{events: [...], next_after}")}, parameters=[_RUN_ID, {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}}, paging[0]]),
            },
            "/runs/{run_id}/end": {"post": _op("End a run", {"201": _json("Ended"), "200": _json("Already ended with this reason")}, parameters=[_RUN_ID], requestBody=_body(EndBody, required=False))},
            "/runs/{run_id}/stream": {"get": _op("Stream a run (SSE), resuming after Last-Event-ID", _SSE, parameters=[_RUN_ID, *_CURSOR])},
            "/threads/{thread_id}/runs/{run_id}": {"get": _op("LangGraph run status", {"200": _json("{run_id, thread_id, status}")}, parameters=[_THREAD_ID, _RUN_ID])},
            "/threads/{thread_id}/runs/{run_id}/stream": {
                "get": _op("LangGraph join_stream", _SSE, parameters=[_THREAD_ID, _RUN_ID, *_CURSOR, {"name": "stream_mode", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}}, {"name": "cancel_on_disconnect", "in": "query", "schema": {"type": "boolean"}}])
            },
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": _json("ok")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text/plain"}}}},
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "API key, or a reader JWT"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(build_spec())


routes = [Route("/openapi.json", guard(openapi, Need.ANY), methods=["GET"])]
