"""Child process of the producer crash test: an idempotent producer appending to a stream until
it is killed.

Usage: stream_producer.py DB RUN PRODUCER

Sends requests with seq 0, 1, 2, ... (epoch 0), each one message whose bytes are
``body(seq)``, and prints ``{"acked": seq}`` (flushed) after each write returned: a line on
stdout is a promise that the request and the producer's state are stored.
"""

from __future__ import annotations

import asyncio
import json
import sys

from eventlog import EventLog
from eventlog.storage.base import Producer, StreamAppend


def body(seq: int) -> bytes:
    """The message of request ``seq``: NUL and invalid UTF-8 bytes included."""
    return b"\x00\xff" + seq.to_bytes(4, "big")


async def main() -> None:
    path, run_id, producer = sys.argv[1], sys.argv[2], sys.argv[3]
    log = await EventLog.open(path)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    seq = 0
    while True:
        await log._storage.write(StreamAppend(run_id, [("message", "null", body(seq))], Producer(producer, 0, seq)))
        sys.stdout.write(json.dumps({"acked": seq}) + "\n")
        sys.stdout.flush()
        seq += 1


if __name__ == "__main__":
    asyncio.run(main())
