"""Integer request parameters (cursors, limits, offsets): one parser, one rule, one cap.

The rule: optional spaces or tabs around one to nineteen ASCII digits, at most ``high``. HTTP
parsers strip that whitespace from a header value before the app sees it, so the same rule for
query parameters makes ``Last-Event-ID: " 5"`` and ``?last_event_id=%205`` mean the same cursor.
A cursor is an event id, capped where SQLite's integers end.

Starlette decodes header values as latin-1; ``header`` reads the raw bytes as UTF-8 (with
replacement characters) so that an error message echoes what the client sent.
"""

from __future__ import annotations

from typing import Literal

from starlette.requests import Request

from eventlog.http.errors import ApiError
from eventlog.http.openapi import Param

CURSOR_MAX = 2**63 - 1
_WHITESPACE = " \t"


def parse_int(raw: str, *, name: str, source: str, low: int, high: int) -> int:
    """``raw`` as an integer from ``low`` to ``high``; a 400 ``invalid_<name>`` otherwise."""
    text = raw.strip(_WHITESPACE)
    if text.isascii() and text.isdigit() and len(text) <= 19 and low <= int(text) <= high:
        return int(text)
    raise ApiError(400, f"invalid_{name}", f"the {source} must be an integer from {low} to {high} (got {raw[:64]!r})")


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` (``default`` when absent)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return parse_int(raw, name=name, source=f"{name} parameter", low=low, high=high)


def header(request: Request, name: str, *, strict: bool = False) -> str | None:
    """The header's value decoded as UTF-8, as clients mean it (``name`` in lower case). Bytes
    that are not UTF-8 become replacement characters, fine for echoing; a value that identifies
    something (``strict``) is refused instead, with a 400, since that would merge distinct values."""
    key = name.encode("latin-1")
    for field, value in request.scope["headers"]:
        if field == key:
            try:
                return value.decode("utf-8", "strict" if strict else "replace")
            except UnicodeDecodeError:
                shown = value.decode("utf-8", "replace")[:64]
                raise ApiError(400, f"invalid_{name.replace('-', '_')}", f"the {name} header is not UTF-8 (got {shown!r})") from None
    return None


def resume_cursor(request: Request) -> int | None:
    """The cursor to resume after: the ``Last-Event-ID`` header (browsers send it on their own
    reconnects, so it wins), else the ``last_event_id`` query parameter, else None. An empty
    value is no cursor: ``EventSource`` sends ``Last-Event-ID: ""`` before it has seen an id."""
    raw, source = header(request, "last-event-id"), "Last-Event-ID header"
    if raw is None:
        raw, source = request.query_params.get("last_event_id"), "last_event_id parameter"
    if raw is None or not raw.strip(_WHITESPACE):
        return None
    return parse_int(raw, name="last_event_id", source=source, low=0, high=CURSOR_MAX)


def gap_policy(request: Request) -> Literal["continue", "stop"]:
    on_gap = request.query_params.get("on_gap", "continue")
    if on_gap not in ("continue", "stop"):
        raise ApiError(400, "invalid_on_gap", "on_gap must be 'continue' or 'stop'")
    return on_gap  # type: ignore[return-value]


_CURSOR_SCHEMA = {"type": "integer", "minimum": 0, "maximum": CURSOR_MAX}
CURSOR_PARAMS = (
    Param("Last-Event-ID", "header", _CURSOR_SCHEMA, "resume after this event id (wins over last_event_id)"),
    Param("last_event_id", "query", _CURSOR_SCHEMA, "resume after this event id, for clients that cannot set headers"),
    Param("on_gap", "query", {"enum": ["continue", "stop"]}, "after a gap frame, go on from the earliest event, or close"),
)
"""The parameters ``resume_cursor`` and ``gap_policy`` read, as the description states them."""
