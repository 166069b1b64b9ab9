"""The SSE benchmark's baseline: a plain in-memory broadcast behind the same two endpoints.

    python benchmarks/baselines/memory_broadcast.py --host 127.0.0.1 --port 8001 [--heartbeat 15]

A minimal Starlette app served by uvicorn exactly as ``eventlog serve`` serves eventlog (same
``uvicorn.run`` defaults, so the same loop and HTTP implementation), run as its own process by
``benchmarks/sse.py``:

- ``POST /runs/{run_id}/events`` with ``{"event": "updates", "data": {...}}`` (or
  ``{"events": [...]}``) -> 201 ``{"ids": [...]}``; appending to an unknown run creates it;
- ``GET /runs/{run_id}/stream`` -> the same SSE wire format as eventlog: first frame
  ``retry: 1000``, then ``id: <int>`` / ``event: <name>`` / ``data: <compact JSON>`` frames,
  ``: heartbeat`` comments when idle; replays from the start of the run (or after
  ``Last-Event-ID``), 404 for an unknown run;
- ``GET /healthz``.

Nothing is stored: a run is a shared list of encoded frames plus an ``asyncio.Event`` that is set
(and replaced) at every publish. Each subscriber keeps an index into the list; when woken it
sends everything after its index as one chunk (the same batching eventlog's streams do). No
durability, no retention, no validation beyond what the benchmark needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT_FRAME = b": heartbeat\n\n"


class Run:
    __slots__ = ("frames", "changed")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.changed = asyncio.Event()

    def publish(self, event_id: int, name: str, data: object) -> None:
        data_json = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        self.frames.append(f"id: {event_id}\nevent: {name}\ndata: {data_json}\n\n".encode())

    def wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class Broadcast:
    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.next_id = 1


def create_app(heartbeat: float = 15.0, retry_ms: int = 1000) -> Starlette:
    state = Broadcast()

    async def append(request: Request) -> Response:
        body = json.loads(await request.body())
        items = body["events"] if "events" in body else [body]
        run = state.runs.get(request.path_params["run_id"])
        if run is None:
            run = state.runs[request.path_params["run_id"]] = Run()
        ids = []
        for item in items:
            ids.append(state.next_id)
            run.publish(state.next_id, item["event"], item.get("data"))
            state.next_id += 1
        run.wake()
        return JSONResponse({"ids": ids}, 201)

    async def stream(request: Request) -> Response:
        run = state.runs.get(request.path_params["run_id"])
        if run is None:
            return JSONResponse({"error": "run_not_found"}, 404)
        last = request.headers.get("last-event-id")
        # Ids are global, frames per run: a resume point is found by scanning (the benchmark
        # never resumes; this is here so the endpoint means the same thing as eventlog's).
        cursor = 0
        if last and last.isdigit():
            cursor = sum(1 for frame in run.frames if int(frame[4 : frame.index(b"\n")]) <= int(last))

        async def frames() -> AsyncIterator[bytes]:
            nonlocal cursor
            yield f"retry: {retry_ms}\n\n".encode()
            while True:
                if cursor < len(run.frames):
                    chunk = b"".join(run.frames[cursor:])
                    cursor = len(run.frames)
                    yield chunk
                    continue
                changed = run.changed
                try:
                    async with asyncio.timeout(heartbeat):
                        await changed.wait()
                except TimeoutError:
                    yield HEARTBEAT_FRAME

        return StreamingResponse(frames(), media_type="text/event-stream", headers=HEADERS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/runs/{run_id}/events", append, methods=["POST"]),
            Route("/runs/{run_id}/stream", stream, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--heartbeat", type=float, default=float(os.environ.get("EVENTLOG_HEARTBEAT", 15.0)))
    args = parser.parse_args()
    # The same call as ``eventlog serve`` (eventlog/cli.py), on an app object instead of a factory.
    uvicorn.run(create_app(args.heartbeat), host=args.host, port=args.port, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
