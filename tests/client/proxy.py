"""A TCP relay on 127.0.0.1 in front of a real server, for faults that a real network has and a
server kill cannot produce on cue: the server did the work, but its answer never reaches the
client; connections dropped while the server lives on. It also records the head of each
request and the status of each answer it relays, so a test can check or wait for them."""

from __future__ import annotations

import socket
import threading


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.lose_next_answer = False
        self.statuses: list[int] = []
        self.requests: list[bytes] = []
        """The head (first chunk) of each request relayed."""
        self.relayed = threading.Condition()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_status(self, status: int, timeout: float = 30.0) -> None:
        with self.relayed:
            assert self.relayed.wait_for(lambda: status in self.statuses, timeout), self.statuses

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            self._sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if not answers and chunk[:8].split(b" ")[0] in (b"GET", b"POST", b"DELETE"):
                    self.requests.append(chunk)
                if answers and chunk.startswith(b"HTTP/"):
                    if self.lose_next_answer:
                        self.lose_next_answer = False
                        break
                    with self.relayed:
                        self.statuses.append(int(chunk.split(b" ", 2)[1]))
                        self.relayed.notify_all()
                sink.sendall(chunk)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        """Drop every open connection (the listener stays): what a flaky network does."""
        open_now, self._sockets = self._sockets[1:], self._sockets[:1]
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
