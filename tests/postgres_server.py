"""A throwaway PostgreSQL cluster for the tests (and benchmarks): ``initdb`` into a temporary
directory, ``postgres`` on a free 127.0.0.1 port with ``fsync=on``, removed at the end.

PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
system user (Debian's package creates it) and runs through ``runuser``. The binaries are found
in ``$EVENTLOG_PG_BIN`` or Debian's ``/usr/lib/postgresql/<version>/bin``; ``find_bin`` returns
None where there are none, and the suite then deselects the PostgreSQL tests (see conftest).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

HINT = (
    "PostgreSQL tests deselected: no PostgreSQL server binaries found; install them "
    "(`apt-get install postgresql`, as .ci/run does) or set EVENTLOG_PG_BIN to their directory"
)


def find_bin() -> Path | None:
    candidates = [os.environ["EVENTLOG_PG_BIN"]] if os.environ.get("EVENTLOG_PG_BIN") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    """One cluster; ``new_database()`` gives each test a database (and URL) of its own."""

    def __init__(self, bin_dir: Path, port: int | None = None) -> None:
        self.bin = bin_dir
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="eventlog-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None
        self.paused = False

    def _as_user(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", self._user, "--", *command] if self._user else command

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://eventlog@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        if not self.data.exists():
            subprocess.run(
                self._as_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", "eventlog", "--auth=trust",
                               "--no-sync", "-E", "UTF8", "--locale=C"]),
                check=True, capture_output=True,
            )
        return self.run()

    def run(self, timeout: float = 30.0) -> PostgresCluster:
        """Start the server on the cluster (again) and wait until it accepts connections."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self._as_user([str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.dir), "-p", str(self.port),
                           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=300"]),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_path.read_text()[-2000:]}")
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "eventlog", "-d", "postgres"],
                                   capture_output=True)
            if ready.returncode == 0:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not start: {self.log_path.read_text()[-2000:]}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        return subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url(database), "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout

    def new_database(self) -> str:
        """A fresh, empty database's URL. Copied from template0, which accepts no connections:
        an autovacuum worker on template1 would make CREATE DATABASE fail or wait."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: SIGINT, sessions are told; ``immediate``: SIGQUIT, a crash
        that recovers from the WAL at the next start)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.postmaster_pid(), {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode])
        self.process.wait(30)

    def postmaster_pid(self) -> int:
        """The server's own pid (under root, ``self.process`` is ``runuser``, its parent)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def server_pids(self) -> list[int]:
        """The postmaster and its children (each backend is a session of its own, so no
        process group holds them all)."""
        postmaster = self.postmaster_pid()
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == postmaster:
                children.append(int(stat.split("/")[2]))
        return [postmaster, *children]

    def pause(self) -> None:
        """Freeze every server process (SIGSTOP; the postmaster first, so it starts no new
        one): a network stall, as clients see it."""
        for pid in self.server_pids():
            os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        for pid in reversed(self.server_pids()):
            os.kill(pid, signal.SIGCONT)
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)  # runuser stops itself when its child stops
        self.paused = False

    def resume_if_paused(self) -> None:
        if self.paused:
            self.resume()

    def destroy(self) -> None:
        """Stopped ``immediate``: its files are removed next, so a fast stop's shutdown
        checkpoint (about 11 s at the end of the suite, after hundreds of databases) is waste."""
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
