"""`benchmarks/report.py --quick` produces the report: every section, every plot, no NaN.

No figure is checked (timing belongs to the benchmarks, not to tests): this proves that the
command `.ci/run` runs still works end to end, redis-server included. The Durable Streams section
measures against the Node reference server where benchmarks/durable_streams/install.sh installed
it, and says why not elsewhere; where EVENTLOG_REQUIRE_NODE is set (.ci/run) it must measure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = [
    "## Targets (issue 10)",
    "## Machine and versions",
    "## Append throughput vs producers",
    "## Resume latency vs log size",
    "## End-to-end SSE latency vs subscribers",
    "## Memory per idle stream and server RSS",
    "## Wake-up latency",
    "## Stream bridge publish",
    "## Durable Streams protocol vs the reference server",
]
DURABLE = SECTIONS[-1]
PLOTS = ["append_throughput.png", "resume_latency.png", "sse_latency.png", "wakeup_latency.png", "memory.png"]


@pytest.mark.timeout(100)
def test_quick_report_is_produced(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (Debian package redis-server): the benchmark report needs it")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "REPORT.md").read_text()
    for heading in SECTIONS:
        assert heading in report, f"missing section {heading!r}"
    for plot in PLOTS:
        data = (tmp_path / plot).read_bytes()
        assert data.startswith(b"\x89PNG"), f"{plot} is not a PNG"
        assert f"]({plot})" in report, f"{plot} is not linked from the report"
    assert not re.search(r"\bnan\b", report, re.IGNORECASE), "the report contains NaN"
    assert "**met**" in report or "**missed**" in report
    durable = report.split(DURABLE, 1)[1]
    if os.environ.get("EVENTLOG_REQUIRE_NODE"):
        assert "not measured:" not in durable.split("\n## ", 1)[0], "EVENTLOG_REQUIRE_NODE is set: " + durable[:300]


def test_missing_reference_server_is_one_line(tmp_path: Path) -> None:
    """Without the reference server's install the Durable Streams benchmark stops at once with one
    line saying how to install it (report.py writes the same reason into its section)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "durable_streams.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "EVENTLOG_BENCH_NODE_CACHE": str(tmp_path / "not-installed")},
    )
    reason = ("node is not on PATH (apt-get install nodejs npm)" if shutil.which("node") is None else
              "the reference server is not installed (run benchmarks/durable_streams/install.sh; it needs npm)")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"benchmarks/durable_streams.py: {reason}"]


def test_missing_redis_server_is_one_line(tmp_path: Path) -> None:
    """Without redis-server on PATH the report stops at once with one line saying what to install."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": str(tmp_path)},
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "report.py: redis-server not found on PATH: install Debian's redis-server package (apt-get install redis-server)"
    ]
    assert not (tmp_path / "REPORT.md").exists()
