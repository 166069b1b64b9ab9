"""The Node side of the Durable Streams tests: where tests/durable_streams/install.sh put the
pinned packages (the protocol's conformance suite, its TypeScript client), and how to run a
script there.

The tests marked ``node`` need it; ``find_install`` returns None where there is no ``node`` or no
install, and the suite then deselects them with ``HINT`` (see conftest), or fails where
EVENTLOG_REQUIRE_NODE is set (.ci/run sets it). The lookup never installs: a test run does not
reach the network; ``make test`` and .ci/run call install.sh first.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

INSTALL_SCRIPT = Path(__file__).resolve().parent / "durable_streams" / "install.sh"
HINT = (
    "Durable Streams tests deselected: no node, or its packages are not installed; run "
    "tests/durable_streams/install.sh (needs node and npm: `apt-get install nodejs npm`, as .ci/run does)"
)


def find_install() -> Path | None:
    """The install directory (with the scripts refreshed), or None without node or an install."""
    if shutil.which("node") is None:
        return None
    found = subprocess.run(["bash", str(INSTALL_SCRIPT), "--no-install"], capture_output=True, text=True)
    return Path(found.stdout.strip()) if found.returncode == 0 else None


class NodeScript:
    """A script of the install directory in a child process (``node`` on the PATH), whose
    stdout is JSON lines: read them as they come, each within a timeout, so a stalled client
    fails the test instead of hanging it."""

    def __init__(self, install: Path, script: str, *args: str) -> None:
        self.command = ["node", str(install / script), *args]
        self._stderr = tempfile.TemporaryFile()  # not a pipe: nobody reads it until the end
        self.process = subprocess.Popen(self.command, cwd=install, stdout=subprocess.PIPE, stderr=self._stderr)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_line(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next line, parsed; None once the script has ended (and said all it had to say)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.command}: no line within {timeout}s") from None
        return None if line is None else json.loads(line)

    def finish(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The remaining lines, once the script has exited with 0."""
        lines = []
        while (line := self.next_line(timeout)) is not None:
            lines.append(line)
        returncode = self.process.wait(timeout)
        self._stderr.seek(0)
        assert returncode == 0, f"{self.command} exited with {returncode}: {self._stderr.read().decode()[-3000:]}"
        return lines

    def kill(self) -> None:
        """Stop the script if it still runs (a failed test's reader must not tail on)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()
