"""The pinned input rules, checked before anything reaches storage."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from eventlog.errors import InvalidData, InvalidEventName, InvalidInput, InvalidRunId

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
RESERVED_EVENT_NAMES = frozenset({"end", "gap"})
"""``end`` is the end marker's name and ``gap`` the name of the gap frame; a producer's event
with either name would read, on the SSE wire, as the stream's own signal."""
MAX_IDEMPOTENCY_KEY = 256


def is_storable(text: str) -> bool:
    """False for text SQLite cannot store: lone surrogates (``"\\ud800"``) have no UTF-8 form.
    They pass ``json.dumps`` with ``ensure_ascii=False``, and would fail the whole group commit
    they land in. ``isascii`` is O(1) in CPython, so ASCII text costs nothing here."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise InvalidRunId(f"run id must be 1-128 characters of A-Z a-z 0-9 . _ : - (got {run_id!r:.150})")
    return run_id


def check_event_name(name: object, *, allow_reserved: bool = False) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 128:
        raise InvalidEventName(f"event name must be a string of 1-128 characters (got {name!r:.150})")
    if _CONTROL.search(name):
        raise InvalidEventName(f"event name must not contain control characters (got {name!r:.150})")
    if not is_storable(name):
        raise InvalidEventName(f"event name must be valid Unicode text (got {name!r:.150})")
    if not allow_reserved and name in RESERVED_EVENT_NAMES:
        raise InvalidEventName(f"event name {name!r} is reserved for the stream's own frames")
    return name


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON (UTF-8 kept as is, NaN and infinities refused) as one C call per value.

    ``JSONEncoder.encode`` builds its C encoder anew at every call, which is half of its cost
    for an event's data (0.8 of 1.5 us): this builds the one ``encode`` would, once. Without
    circular checks: a value that contains itself meets the recursion limit instead, refused
    all the same (as RecursionError), and no other value pays for the check. Where the C
    accelerator is missing (not on CPython), ``encode`` itself."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False)
    if c_make_encoder is None:
        return encoder.encode
    iterencode = c_make_encoder(
        None, encoder.default, encode_basestring, None, encoder.key_separator, encoder.item_separator,
        encoder.sort_keys, encoder.skipkeys, encoder.allow_nan,
    )
    return lambda value: "".join(iterencode(value, 0))


_encode = _compact_encoder()


def encode_json(value: Any, what: str = "event data") -> str:
    """Compact JSON, UTF-8 kept as is; NaN and infinities are refused since JSON has neither."""
    try:
        encoded = _encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidData(f"{what} is not JSON-serialisable: {exc}") from None
    if not is_storable(encoded):
        raise InvalidData(f"{what} holds text that is not valid Unicode (a lone surrogate)")
    return encoded


def encode_event(name: object, data: Any) -> tuple[str, str]:
    """One event as storage takes it: its checked name and its data as compact JSON."""
    return check_event_name(name), encode_json(data)


def encode_events(events: Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    if not events:
        raise InvalidInput("at least one event is required")
    encoded = []
    for item in events:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InvalidInput(f"each event must be a (name, data) pair (got {item!r:.150})")
        encoded.append(encode_event(*item))
    return encoded


MESSAGE_EVENT = "message"
"""The event name of a stream's message: a JSON value, or bytes (``validation.encode_message``)."""


def encode_message(value: Any = None, body: bytes | None = None) -> tuple[str, str, bytes | None]:
    """A stream's message as storage takes it: a JSON value as compact JSON, or the exact
    ``body`` bytes of a byte stream's message (its data is then ``null``)."""
    if body is not None:
        return MESSAGE_EVENT, "null", bytes(body)
    return MESSAGE_EVENT, encode_json(value, "a message"), None


PRODUCER_NUMBER_MAX = 2**63 - 1
"""The largest epoch or sequence number of a producer: storage's integers end there."""


def check_producer(producer_id: object, epoch: object, seq: object) -> None:
    if not isinstance(producer_id, str) or not producer_id or not is_storable(producer_id):
        raise InvalidInput("a producer id must be a non-empty string of valid Unicode text")
    for name, number in (("epoch", epoch), ("seq", seq)):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= PRODUCER_NUMBER_MAX:
            raise InvalidInput(f"a producer's {name} must be an integer from 0 to {PRODUCER_NUMBER_MAX} (got {number!r:.40})")


def check_idempotency_key(key: object) -> str:
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY
        or _CONTROL.search(key)
        or not is_storable(key)
    ):
        raise InvalidInput(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} characters without control characters"
        )
    return key


def fingerprint(events: Sequence[tuple[str, str]]) -> str:
    """Identifies a request's events, so a reused idempotency key with other events is caught."""
    digest = hashlib.sha256()
    for name, data_json in events:
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(data_json.encode())
        digest.update(b"\0")
    return digest.hexdigest()
