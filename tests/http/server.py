"""A real eventlog server in a child process, on 127.0.0.1 and a free port, for the HTTP tests.

It can be killed with SIGKILL (or stopped with SIGTERM) and started again on the same file and
port, which is what clients see when a production server crashes and restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, db: Path | str, *, port: int | None = None, workers: int = 1, env: dict[str, str] | None = None,
                 args: list[str] | None = None, log_path: Path | None = None) -> None:
        self.db = db
        self.port = port or free_port()
        self.workers = workers
        self.env = {**os.environ, "EVENTLOG_HEARTBEAT": "1", "EVENTLOG_POLL_INTERVAL": "1", **(env or {})}
        self.args = args or []
        assert log_path is not None or isinstance(db, Path), "a database URL needs a log_path"
        self.log_path = log_path or Path(db).with_suffix(".server.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        log = open(self.log_path, "ab")
        command = [sys.executable, "-m", "eventlog", "serve", "--db", str(self.db), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(self.workers), *self.args]
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group (every worker): a crash, no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(["pgrep", "-g", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]
