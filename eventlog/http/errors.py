"""Every failure becomes a JSON body ``{"error": {"code", "message"}}`` with a 4xx status for the
client's own mistakes, 507 for a full disk, 503 while shutting down, while another process holds
the write lock (with ``Retry-After``) or when storage fails (a corrupt file included), and 500 for
any other error: clients can switch on ``code``."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from eventlog import errors

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)

_STATUS: list[tuple[type[errors.EventLogError], int]] = [
    (errors.RunNotFound, 404),
    (errors.RunExists, 409),
    (errors.RunEnded, 409),
    (errors.RunDeleted, 410),
    (errors.ProducerFenced, 403),
    (errors.ProducerSeqGap, 409),
    (errors.WriterSeqConflict, 409),
    (errors.RunActive, 409),
    (errors.IdempotencyConflict, 422),
    (errors.InvalidInput, 422),
    (errors.NotSupported, 400),
    (errors.DatabaseFull, 507),
    (errors.DatabaseBusy, 503),
    (errors.LogClosed, 503),
    (errors.StorageError, 503),  # DatabaseCorrupt included
]

RETRY_AFTER = "1"
"""Seconds a client should wait before retrying after DatabaseBusy (another process held the
write lock past the deadline; it is usually a short burst, and a retry with the same
Idempotency-Key is safe)."""


class ApiError(Exception):
    """An HTTP-level problem with a request (bad header, body too large, wrong thread...)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status, headers=headers)


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def handle_log_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.EventLogError)
    status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)  # unmapped: ours, not the client's
    headers = {"Retry-After": RETRY_AFTER} if isinstance(exc, errors.DatabaseBusy) else None
    return error_response(status, exc.code, str(exc), headers)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    details = [
        {"loc": list(e["loc"]), "message": e["msg"]} for e in exc.errors(include_url=False, include_input=False)
    ]
    summary = "; ".join(f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['message']}" for d in details)
    return error_response(422, "invalid_body", summary, details=details)


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    errors.EventLogError: handle_log_error,
    HTTPException: handle_http_exception,
    ValidationError: handle_validation_error,
}


async def read_bytes(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (a 413 beyond, as soon as it is known)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the request body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"the request body exceeds {limit} bytes")
    return bytes(body)


async def read_body(request: Request, model: type[BaseModelT], limit: int, *, optional: bool = False) -> BaseModelT:
    """Read at most ``limit`` bytes of JSON and validate it against ``model``."""
    body = await read_bytes(request, limit)
    if not body.strip() and optional:
        return model()
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    return model.model_validate(payload)

