"""The Durable Streams protocol's own conformance suite against the real ``eventlog serve``.

The suite is @durable-streams/server-conformance-tests, pinned in
tests/durable_streams/package-lock.json and installed outside the tree by install.sh; it runs
under vitest (tests/durable_streams/conformance.test.mjs) against a server on a fresh database of
each backend, and every one of its tests must pass, but those listed in ``EXPECTED_FAILURES``.
The suite skips its optional parts that are not enabled (the subscription APIs); the run's
summary says what it skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.http.server import ServerProcess

pytestmark = [pytest.mark.backends, pytest.mark.node]

# Conformance tests known to fail against eventlog, by full name ("Describe > ... > title"),
# each with a comment saying why. The goal is an empty list; a listed test that passes (or no
# longer exists) fails the run, so the list only shrinks on purpose.
EXPECTED_FAILURES: dict[str, str] = {}

# The suite's parts that are optional in the protocol and skipped unless enabled in the runner.
OPTIONAL_PARTS = ("Reserved subscription APIs",)

SERVER_ENV = {
    # The long-poll wait of the protocol (seconds): the suite's long-poll tests wait for one
    # timeout each, so a short one keeps the run short.
    "EVENTLOG_LONG_POLL_TIMEOUT": "0.5",
    # CORS is opt-in; the suite checks a browser's preflight (from https://example.com), as a
    # server that browsers read from, cross-origin, is configured.
    "EVENTLOG_CORS_ORIGINS": "*",
}
SUITE_TIMEOUT = 600.0
# The suite's waiting tests (TTL expiry, mostly 3 s sleeps) are `test.concurrent`; vitest runs
# 5 of them at once by default, so they take rounds. 20 at once cut the SQLite run from 25.5 s
# to 21.5 s here, with the same results.
MAX_CONCURRENCY = 20


@dataclass(frozen=True)
class SuiteTest:
    """One test of the suite's JSON report."""

    name: str
    status: str  # "passed", "failed", "skipped", "pending" or "todo"
    first_error: str

    @classmethod
    def from_report(cls, entry: dict[str, Any]) -> SuiteTest:
        messages = entry.get("failureMessages") or [""]
        first_line = next((line for line in messages[0].splitlines() if line.strip()), "")
        return cls(" > ".join([*entry["ancestorTitles"], entry["title"]]), entry["status"], first_line.strip())


def run_suite(install: Path, url: str, out_dir: Path) -> list[SuiteTest]:
    """Run the whole suite against ``url``; its tests, read from vitest's JSON report."""
    report_path = out_dir / "conformance.json"
    output_path = out_dir / "conformance.log"
    with open(output_path, "wb") as output:
        subprocess.run(
            [str(install / "node_modules" / ".bin" / "vitest"), "run", "conformance.test.mjs",
             "--reporter=json", f"--outputFile={report_path}", f"--maxConcurrency={MAX_CONCURRENCY}"],
            cwd=install, env={**os.environ, "CONFORMANCE_TEST_URL": url, "NO_COLOR": "1"},
            stdout=output, stderr=subprocess.STDOUT, timeout=SUITE_TIMEOUT,
        )
    if not report_path.exists():
        pytest.fail(f"the suite wrote no report: {output_path.read_text()[-3000:]}")
    report = json.loads(report_path.read_text())
    files = report["testResults"]
    broken = [f"{entry['name']}: {entry['message']}" for entry in files if entry.get("message")]
    tests = [SuiteTest.from_report(entry) for file in files for entry in file["assertionResults"]]
    if broken or not tests:
        pytest.fail(f"the suite did not run: {broken or output_path.read_text()[-3000:]}")
    return tests


def problems(tests: list[SuiteTest]) -> list[str]:
    """What is wrong with a run, one line each: unexpected failures (with their first error
    line), expected failures that passed or are gone, skips outside the optional parts."""
    by_name = {test.name: test for test in tests}
    found = [f"FAILED {test.name}: {test.first_error}" for test in tests
             if test.status == "failed" and test.name not in EXPECTED_FAILURES]
    found += [f"PASSED, remove from EXPECTED_FAILURES: {name}" for name in EXPECTED_FAILURES
              if name in by_name and by_name[name].status == "passed"]
    found += [f"NOT IN THE SUITE, remove from EXPECTED_FAILURES: {name}" for name in EXPECTED_FAILURES
              if name not in by_name]
    found += [f"SKIPPED outside the optional parts: {test.name}" for test in tests
              if test.status not in ("passed", "failed") and not test.name.startswith(OPTIONAL_PARTS)]
    return found


@pytest.mark.timeout(SUITE_TIMEOUT + 60)
def test_conformance_suite(node_install: Path, database: Path | str, backend: str, tmp_path: Path,
                           summary_line: Callable[[str], None]) -> None:
    server = ServerProcess(database, env=SERVER_ENV, log_path=tmp_path / "server.log").start()
    try:
        tests = run_suite(node_install, server.url, tmp_path)
    finally:
        server.kill()
    counts = {status: sum(test.status == status for test in tests) for status in ("passed", "failed")}
    skipped = len(tests) - counts["passed"] - counts["failed"]
    summary_line(f"Durable Streams conformance ({backend}): {len(tests)} tests, {counts['passed']} passed, "
                 f"{counts['failed']} failed ({len(EXPECTED_FAILURES)} expected), {skipped} skipped by the suite "
                 f"(optional, not enabled: {', '.join(OPTIONAL_PARTS)})")
    found = problems(tests)
    if found:
        pytest.fail(f"{len(found)} problems with the conformance run (server log: {server.log_path}):\n" + "\n".join(found),
                    pytrace=False)
