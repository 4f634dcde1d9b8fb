"""A TCP proxy for tests: sit between a process and its database, then cut the link and restore it.

    with TcpProxy("127.0.0.1", 5432) as proxy:       # listens on a free 127.0.0.1 port
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/db"
        proxy.cut()       # every open connection is closed, new ones are reset at once
        proxy.restore()   # new connections reach the server again

Why threads and not the process's own sockets
    The process under test is a real subprocess (uvicorn, a worker): the only place a test can
    break its database link without touching its code is the network between them.

What ``cut`` means
    Both halves of every relayed connection are shut down (the server sees its client vanish and
    rolls back whatever transaction was open; the client sees "server closed the connection"),
    and until :meth:`restore` a new connection is accepted and immediately reset (SO_LINGER 0).
    The listening socket stays bound, so the address never changes and no other process can
    take the port while the database is "down". ``cut`` returns only once every relay thread
    has finished, so nothing reaches the server after it.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from types import TracebackType

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN: the peer learns at once that the link is gone."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass  # already closed by the peer: closing is all that is left
    sock.close()


class _Link:
    """One relayed connection: the client's socket, the server's socket, two pump threads."""

    def __init__(self, client: socket.socket, server: socket.socket, name: str) -> None:
        self.client = client
        self.server = server
        self.threads = [
            threading.Thread(target=self._pump, args=(client, server), daemon=True,
                             name=f"{name}-up"),
            threading.Thread(target=self._pump, args=(server, client), daemon=True,
                             name=f"{name}-down"),
        ]
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._running = len(self.threads)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass  # the other side or cut() closed the link: stop relaying
        finally:
            self.shutdown()
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:  # the other pump has stopped too: nobody uses the sockets any more
                self.client.close()
                self.server.close()

    def shutdown(self) -> None:
        """Wake both pumps (recv returns) and stop the traffic in both directions."""
        self.closed.set()
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected any more

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)


class TcpProxy:
    """Relay ``HOST:port`` to ``upstream``; :meth:`cut` and :meth:`restore` the link."""

    def __init__(self, upstream_host: str, upstream_port: int, *, connect_timeout: float = 5.0
                 ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connect_timeout = connect_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._refusing = False
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"tcp-proxy-{self.port}")
        #: Connections relayed / reset since start (lets a test see that clients reconnected).
        self.relayed = 0
        self.refused = 0

    @property
    def is_cut(self) -> bool:
        return self._refusing

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by close()
            client.settimeout(None)
            with self._lock:
                refusing = self._refusing
            if refusing:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=self.connect_timeout)
            except OSError as exc:
                logger.warning("tcp proxy %s: upstream %s:%s unreachable (%s)", self.port,
                               *self.upstream, exc.__class__.__name__)
                _reset(client)
                continue
            server.settimeout(None)
            link = _Link(client, server, f"tcp-proxy-{self.port}")
            with self._lock:
                if self._refusing:  # cut() ran while we were connecting upstream
                    self.refused += 1
                    _reset(client)
                    _reset(server)
                    continue
                self._links = [known for known in self._links if not known.closed.is_set()]
                self._links.append(link)
                self.relayed += 1
            link.start()

    def cut(self, timeout: float = 5.0) -> None:
        """Drop every open connection and reset new ones until :meth:`restore`."""
        with self._lock:
            self._refusing = True
            links, self._links = self._links, []
        for link in links:
            link.shutdown()
        for link in links:
            link.join(timeout)
        logger.info("tcp proxy %s: cut (%s connections dropped)", self.port, len(links))

    def restore(self) -> None:
        """Relay new connections again (old ones stay dead, as after a real outage)."""
        with self._lock:
            self._refusing = False
        logger.info("tcp proxy %s: restored", self.port)

    def close(self) -> None:
        """Stop accepting, drop everything, release the port."""
        self._stopping.set()
        self.cut()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
