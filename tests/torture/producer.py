"""An idempotent HTTP producer, as a well-behaved client is written: every request carries its
own Idempotency-Key, and is repeated with the same key through connection failures and 5xx
answers (after the server's Retry-After, when it sends one) until it is acknowledged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.torture.figures import Figures

RETRY_PAUSE = 0.05  # seconds between attempts when the server gives no Retry-After
MAX_PAUSE = 2.0  # a longer Retry-After is obeyed only up to this (the tests have deadlines)


def error_kind(response: httpx.Response) -> str:
    """``HTTP 507 database_full``: the status and the JSON error code (a non-JSON error body is
    itself a defect, and shows up here as ``not-json``)."""
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = "not-json"
    return f"HTTP {response.status_code} {code}"


async def post_acknowledged(http: httpx.AsyncClient, url: str, body: dict[str, Any], key: str | None,
                            figures: Figures, *, deadline: float = 60.0) -> dict[str, Any]:
    """POST until a 2xx; returns its JSON. A 4xx is the caller's bug and fails at once."""
    stop_at = time.monotonic() + deadline
    headers = {"Idempotency-Key": key} if key else {}
    while time.monotonic() < stop_at:
        figures.operations += 1
        try:
            response = await http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            figures.error(type(exc).__name__)
            await asyncio.sleep(RETRY_PAUSE)
            continue
        if response.is_success:
            return response.json()
        figures.error(error_kind(response))
        assert response.status_code >= 500, f"{url} answered {response.status_code}: {response.text}"
        retry_after = response.headers.get("retry-after", "")
        await asyncio.sleep(min(float(retry_after), MAX_PAUSE) if retry_after.isdigit() else RETRY_PAUSE)
    raise AssertionError(f"POST {url} not acknowledged within {deadline}s")
