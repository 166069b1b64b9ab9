"""A throwaway redis-server for the Redis Streams baseline, started and stopped by the benchmark.

Durability matches what a Redis deployment that cares about its data runs with: the append-only
file on (``appendonly yes``) with ``appendfsync everysec`` (an acknowledged XADD can be lost on a
crash of the machine within the last second, not on a crash of redis-server), in a temporary
directory, listening on 127.0.0.1 only, on a free port. RDB snapshots are off (``save ""``) so a
background save never lands in a measurement.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sse import _die_with_parent

DURABILITY = "appendonly yes, appendfsync everysec (RDB snapshots off)"


class RedisMissing(RuntimeError):
    """redis-server is not installed: the Redis baseline cannot run."""


def executable() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisMissing("redis-server not found on PATH: install Debian's redis-server package (apt-get install redis-server)")
    return path


def version() -> str:
    """``7.0.15`` from ``Redis server v=7.0.15 sha=...``."""
    out = subprocess.run([executable(), "--version"], capture_output=True, text=True, check=True).stdout
    return next((word[2:] for word in out.split() if word.startswith("v=")), out.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """Start redis-server, yield its URL, stop it afterwards (also when the body raises)."""
    binary = executable()
    with tempfile.TemporaryDirectory(prefix="eventlog-bench-redis-") as tmp:
        port = _free_port()
        cmd = [
            binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", tmp,
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxclients", "4096", "--daemonize", "no", "--logfile", f"{tmp}/redis.log",
        ]
        # SIGTERM should the benchmark die without unwinding (kill -9): no redis-server outlives it.
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            deadline = time.monotonic() + timeout
            while not _ping(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = Path(tmp, "redis.log").read_text(errors="replace")[-500:] if Path(tmp, "redis.log").exists() else ""
                    raise RuntimeError(f"redis-server did not start on port {port}: {log.strip()}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
