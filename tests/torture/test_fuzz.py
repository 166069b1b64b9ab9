"""Fuzzing: schemathesis throws generated requests at a real server with access control on, first
with the producer key, then with a reader token scoped to some runs while a well-behaved
producer appends to a witness run outside that scope and a consumer streams it. Every answer
must keep to the generated OpenAPI document and none may be a 5xx; the witness stream must come
through whole, exactly once: what a reader sends disturbs nobody else. (With the producer key the
fuzzer may end or delete any run it finds, the witness included, as that key is meant to.)"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx

from eventlog.http.auth import mint_token
from tests.http.fuzz import schemathesis
from tests.http.server import ServerProcess
from tests.http.sse_client import consume
from tests.torture.figures import Figures
from tests.torture.producer import post_acknowledged

KEY = "fuzz-producer-key"
SECRET = "fuzz-jwt-secret-of-at-least-32-bytes"
WITNESS = "witness"
# Idle runs the fuzzer created end soon, so that its streams of them end instead of waiting for
# the request timeout; the witness producer appends far more often than that.
SERVER_ENV = {"EVENTLOG_ABANDON_AFTER": "1.5", "EVENTLOG_RETENTION_INTERVAL": "0.2",
              "EVENTLOG_API_KEY": KEY, "EVENTLOG_JWT_SECRET": SECRET}


def fuzz(server: ServerProcess, tmp_path: Path, label: str, credential: str, examples: int, seed: int,
         figures: Figures) -> None:
    report = schemathesis(label, f"{server.url}/openapi.json", tmp_path, "-H", f"Authorization: Bearer {credential}",
                          max_examples=examples, seed=seed)
    cases = report["test_cases"]
    figures.faults += cases["generated"]
    figures.operations += cases["generated"]
    figures.error(f"fuzzed with the {label}", cases["generated"])  # schemathesis failed on any finding


async def test_fuzzing_beside_a_producer_and_a_consumer(tmp_path: Path, scale: int, figures: Figures,
                                                       rng: random.Random) -> None:
    server = ServerProcess(tmp_path / "fuzz.db", env=SERVER_ENV).start()
    headers = {"Authorization": f"Bearer {KEY}"}
    acknowledged: list[int] = []
    end_id: list[int] = []
    fuzzing = True
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:

            async def produce() -> None:
                i = 0
                while fuzzing:
                    body = {"event": "updates", "data": {"i": i}}
                    answer = await post_acknowledged(http, f"/runs/{WITNESS}/events", body, f"w-{i}", figures)
                    acknowledged.extend(answer["ids"])
                    i += 1
                    await asyncio.sleep(0.02)
                ended = await post_acknowledged(http, f"/runs/{WITNESS}/end", {"reason": "success"}, None, figures)
                end_id.append(ended["id"])

            seed = rng.randrange(2**31)
            fuzz(server, tmp_path, "producer key", KEY, 15 * scale, seed, figures)
            producer = asyncio.create_task(produce())
            while not acknowledged:
                await asyncio.sleep(0.01)
            consumer = asyncio.create_task(
                consume(f"{server.url}/runs/{WITNESS}/stream?access_token={KEY}", deadline=300)
            )
            try:
                reader = mint_token(SECRET, ["r*", "fuzz-*"], ttl=3600)  # not the witness
                await asyncio.to_thread(fuzz, server, tmp_path, "reader token", reader, 15 * scale, seed + 1, figures)
            finally:
                fuzzing = False
            await producer
            received = await asyncio.wait_for(consumer, 60)
    finally:
        server.kill()
    figures.acknowledged = len(acknowledged)
    figures.tally(acknowledged, received.ids[:-1])  # the stream's last id is the end marker's
    assert received.ids == acknowledged + end_id, "the witness stream lost, repeated or reordered events"
    assert received.end == {"reason": "success"}
    figures.check()
