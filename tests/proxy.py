"""A TCP proxy on 127.0.0.1 in front of a redis-server that loses replies.

``LossyProxy(server_port, ...)`` forwards every byte both ways, and cuts
connections (both sides closed, so the client sees a reset) in two ways:

- ``lose=n``: right after forwarding a call that carries one of ``markers``
  (the Lua entry points that claim, recognised by their function name or
  script sha in the client's stream), it holds the reply back; a reply that
  carries work is never delivered (kept in ``lost``) and the connection is
  cut, a reply of an empty claim goes through. Redis has applied the call (its
  reply came back), the client never sees what it claimed: ``n`` claims that
  took something are lost that way, at least ``gap_sec`` apart (``lost``:
  when, and the reply).
- ``reset_p``: each chunk read from either side cuts its connection with this
  probability instead of going on: a chunk from the client is forwarded first
  (so the call is applied and its reply lost), a chunk from the server is not
  (so the reply is lost).

Every connection gets two threads that only copy bytes; ``stop()`` closes them.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections.abc import Iterable

CHUNK = 65536


def claim_markers() -> list[bytes]:
    """How the claim calls look on the wire: the function name (FCALL, see
    ``RedisBackend.entry_points.heads``) or script sha (EVALSHA) of the
    ``claim`` and ``finish_claim`` entry points, as the bulk string that
    carries it. The names carry a hash of the code, so they are computed from
    the same code the runner loads."""
    from pynenc_ray.backends.redis.scripts import library, source

    names = library()[2]
    words = [names[e] for e in ("claim", "finish_claim")]
    words += [hashlib.sha1(source(e).encode()).hexdigest() for e in ("claim", "finish_claim")]
    return [b"\r\n" + w.encode() + b"\r\n" for w in words]


def _empty_claim(reply: bytes) -> bool:
    """A claim's reply that claimed nothing: ``claim``'s empty list, or
    ``finish_claim``'s {OK or DROP, empty list} (RESP2)."""
    return reply == b"*0\r\n" or (reply.startswith(b"*2\r\n$") and reply.endswith(b"\r\n*0\r\n")
                                  and reply.count(b"\r\n") == 4)


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, proxy: LossyProxy, client: socket.socket, server: socket.socket):
        self.proxy, self.client, self.server = proxy, client, server
        self.held = False  # a claim call went out: its reply is looked at first
        self.closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def upstream(self) -> None:
        """Client -> server: forward; note a claim call; cut at random."""
        tail = b""
        try:
            while True:
                data = self.client.recv(CHUNK)
                if not data:
                    break
                seen = tail + data  # a name split between two chunks is still seen
                if self.proxy.lose_left() and any(
                        seen.find(m, max(0, len(tail) - len(m) + 1)) >= 0
                        for m in self.proxy.markers):
                    self.held = True  # before it is sent: the reply may come at once
                self.server.sendall(data)
                tail = seen[-80:]
                if self.proxy.roll():
                    break
        except OSError:
            pass
        self.close()

    def downstream(self) -> None:
        """Server -> client: forward, unless the reply of a held claim carries
        work (then it is kept and the connection cut); cut at random."""
        try:
            while True:
                data = self.server.recv(CHUNK)
                if not data:
                    break
                if self.held:
                    self.held = False
                    if not _empty_claim(data) and self.proxy.take_loss(data):
                        break
                if self.proxy.roll():
                    break
                self.client.sendall(data)
        except OSError:
            pass
        self.close()


class LossyProxy:
    """``LossyProxy(port, lose=3, markers=claim_markers()).start()`` in
    front of the redis-server on ``port``; ``.url`` for the clients to use,
    ``.lost`` the replies it kept back (with when), ``.resets`` the random cuts
    so far."""

    def __init__(self, server_port: int, *, lose: int = 0, markers: Iterable[bytes] = (),
                 gap_sec: float = 0.0, reset_p: float = 0.0, seed: int | None = None):
        self.server_port = server_port
        self.markers = list(markers)
        self.reset_p = reset_p
        self.lost: list[tuple[float, bytes]] = []  # (time.time() when cut, the reply)
        self.resets = 0
        self._lose, self._gap = lose, gap_sec
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LossyProxy:
        threading.Thread(target=self._accept, name="lossy-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    def lose_left(self) -> bool:
        """Whether a claim's reply may be lost now (``lose`` and ``gap_sec``)."""
        with self._lock:
            return (len(self.lost) < self._lose
                    and (not self.lost or time.time() - self.lost[-1][0] >= self._gap))

    def take_loss(self, reply: bytes) -> bool:
        """Keep ``reply`` back as a lost one, if one may be lost now."""
        with self._lock:
            if len(self.lost) >= self._lose or (
                    self.lost and time.time() - self.lost[-1][0] < self._gap):
                return False
            self.lost.append((time.time(), reply))
            return True

    def roll(self) -> bool:
        """Whether this chunk cuts its connection (``reset_p``)."""
        if not self.reset_p:
            return False
        with self._lock:
            cut = self._rng.random() < self.reset_p
            self.resets += cut
            return cut

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.server_port))
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, server)
            with self._lock:
                self._links = [x for x in self._links if not x.closed] + [link]
            threading.Thread(target=link.upstream, daemon=True).start()
            threading.Thread(target=link.downstream, daemon=True).start()
