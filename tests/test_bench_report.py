"""`benchmarks/report.py --quick` produces the report: every section, every plot, no NaN.

No figure is checked (timing belongs to the benchmarks, not to tests): this proves that the
command `.ci/run` runs still works end to end, redis-server included.
"""

from __future__ import annotations

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
]
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
