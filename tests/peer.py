"""SQL through a connection of a "peer process" of its own, on either backend: for tests that
change stored rows behind the log's back (age a key, say). ``?`` placeholders, as in SQLite;
for PostgreSQL they become ``$1, $2, ...``."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any


async def peer_query(database: Path | str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if isinstance(database, Path):
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import asyncpg

    numbers = iter(range(1, len(params) + 1))
    pg = await asyncpg.connect(database)
    try:
        return [tuple(row) for row in await pg.fetch(re.sub(r"\?", lambda _: f"${next(numbers)}", sql), *params)]
    finally:
        await pg.close()
