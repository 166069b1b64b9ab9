"""Usage mistakes through the real entry point: one line on stderr naming the mistake and the
help to read, exit 2; never click's boxed, multi-line usage message, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def eventlog(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventlog", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["nosuch"], "No such command 'nosuch'"),
        (["tail"], "Missing argument"),
        (["tail", "run", "--bogus"], "No such option: --bogus"),
        (["runs", "--status", "foo", "--db", "x.db"], "'foo' is not one of"),
        (["trim", "--max-age", "soon", "--db", "x.db"], "soon"),
    ],
)
def test_a_usage_mistake_is_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    result = eventlog(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eventlog: ") and says in lines[0], result.stderr
    assert "--help" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_help_still_helps(tmp_path: Path) -> None:
    result = eventlog("--help", cwd=tmp_path)
    assert result.returncode == 0 and "Usage" in result.stdout and "tail" in result.stdout
    assert eventlog("tail", "--help", cwd=tmp_path).returncode == 0
