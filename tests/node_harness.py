"""The Node side of the Durable Streams tests: where tests/durable_streams/install.sh put the
pinned packages (the protocol's conformance suite, its TypeScript client), and how to run a
script there.

The tests marked ``node`` need it; ``find_install`` returns None where there is no ``node`` or no
install, and the suite then deselects them with ``HINT`` (see conftest), or fails where
EVENTLOG_REQUIRE_NODE is set (.ci/run sets it). The lookup never installs: a test run does not
reach the network; ``make test`` and .ci/run call install.sh first.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
