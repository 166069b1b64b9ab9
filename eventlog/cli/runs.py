"""Commands on one run: ``eventlog tail``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from eventlog.cli.app import TokenOption, UrlOption, app


@app.command()
def tail(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    after: Annotated[Optional[int], typer.Option(help="Resume after this event id.")] = None,
) -> None:
    """Print a run's events as JSON lines, following it until it ends."""
    import httpx
    from httpx_sse import connect_sse

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10, read=None)) as http:
        with connect_sse(http, "GET", f"/runs/{run_id}/stream") as source:
            if source.response.status_code != 200:
                typer.echo(f"eventlog: {source.response.status_code} {source.response.read().decode()}", err=True)
                raise typer.Exit(1)
            for sse in source.iter_sse():
                if not sse.data:  # the retry: hint
                    continue
                line = {"id": int(sse.id) if sse.id else None, "event": sse.event, "data": json.loads(sse.data)}
                typer.echo(json.dumps(line, ensure_ascii=False))
                sys.stdout.flush()
                if sse.event == "end":
                    return
