"""Listing runs by a reader token's globs: the filter is SQL, with ``fnmatch.fnmatchcase``'s meaning.

The globs become SQLite ``GLOB`` patterns (``eventlog/storage/globs.py``). Hypothesis draws globs
from an alphabet rich in the characters whose meaning differs between the two dialects (``!``,
``^``, ``]``, ``-``, ``\\``, unclosed ``[``, reversed ranges) and compares SQLite's answer, on a
real file, with ``fnmatchcase``'s."""

from __future__ import annotations

import asyncio
import fnmatch
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import EventLog, InvalidInput
from eventlog.storage.globs import postgres_regex, sqlite_glob

pytestmark = pytest.mark.backends

GLOB_ALPHABET = "ab-]![^*?\\.:_Az0\u00e9"
RUN_IDS = ["a", "b", "ab", "a-b", "a.b", "a:b", "a_b", "A", "z", "0", "a0", "-", ".", ":", "_", "ba", "aab", "zz9", "A-z", "b-a"]
_pieces = st.one_of(
    st.sampled_from(GLOB_ALPHABET),
    st.builds(lambda bang, body: f"[{bang}{body}]", st.sampled_from(["", "!"]), st.text(GLOB_ALPHABET, max_size=5)),
)
globs = st.lists(_pieces, max_size=4).map("".join)
"""Globs with bracket expressions often enough: a plain text of the alphabet rarely holds one."""


@settings(max_examples=2000, deadline=None)
@given(glob=globs, text=st.text(GLOB_ALPHABET + "\n", max_size=6))
def test_translation_matches_what_fnmatchcase_matches(glob: str, text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Against a drawn text, the glob itself, and every single character (sets go wrong there)."""
    pattern = sqlite_glob(glob)
    with sqlite3.connect(tmp_path_factory.getbasetemp() / "globs.db") as conn:
        for candidate in (text, glob, *GLOB_ALPHABET):
            matched = pattern is not None and conn.execute("SELECT ? GLOB ?", (candidate, pattern)).fetchone()[0] == 1
            assert matched == fnmatch.fnmatchcase(candidate, glob), (glob, pattern, candidate)


@pytest.mark.postgres
def test_the_postgres_translation_matches_what_fnmatchcase_matches(postgres_cluster) -> None:  # type: ignore[no-untyped-def]
    """The same property for PostgreSQL's regular expressions (``~``), on one connection."""
    import asyncpg

    with asyncio.Runner() as runner:
        conn = runner.run(asyncpg.connect(postgres_cluster.url()))
        try:
            @settings(max_examples=1000, deadline=None)
            @given(glob=globs, text=st.text(GLOB_ALPHABET + "\n", max_size=6))
            def check(glob: str, text: str) -> None:
                pattern = postgres_regex(glob)
                for candidate in (text, glob, *GLOB_ALPHABET):
                    matched = pattern is not None and runner.run(conn.fetchval("SELECT $1 ~ $2", candidate, pattern))
                    assert matched == fnmatch.fnmatchcase(candidate, glob), (glob, pattern, candidate)

            check()
        finally:
            runner.run(conn.close())


async def opened(path: Path | str) -> EventLog:
    return await EventLog.open(path)


def test_runs_by_globs_page_before_limit(database: Path | str) -> None:
    with asyncio.Runner() as runner:
        log = runner.run(opened(database))
        try:
            for run_id in RUN_IDS:
                runner.run(log.create_run(run_id))
            newest_first = [info.run_id for info in runner.run(log.runs(limit=1000))]
            assert sorted(newest_first) == sorted(RUN_IDS)

            @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
            @given(grant=st.lists(globs, max_size=3), limit=st.integers(1, 4), offset=st.integers(0, 6))
            def check(grant: list[str], limit: int, offset: int) -> None:
                granted = [r for r in newest_first if any(fnmatch.fnmatchcase(r, g) for g in grant)]
                page = runner.run(log.runs(limit=limit, offset=offset, run_globs=grant))
                assert [info.run_id for info in page] == granted[offset:offset + limit], grant

            check()
            assert runner.run(log.runs(run_globs=[])) == []
            with pytest.raises(InvalidInput):
                runner.run(log.runs(run_globs="a*"))
        finally:
            runner.run(log.close())


def test_a_token_with_thousands_of_globs_lists_its_runs(database: Path | str) -> None:
    """More globs than SQLite's expression depth limit (1000) would allow in a chain of ORs."""
    with asyncio.Runner() as runner:
        log = runner.run(opened(database))
        try:
            for run_id in ("job-1", "job-2", "other"):
                runner.run(log.create_run(run_id))
            grant = [f"nothing-{n}" for n in range(3000)] + ["job-[2]", "job-1"]
            assert sorted(info.run_id for info in runner.run(log.runs(run_globs=grant))) == ["job-1", "job-2"]
        finally:
            runner.run(log.close())
