"""A small bounded HTTP/1.1 load generator: asyncio raw sockets, keep-alive, loopback only.

Why not httpx: its per-request overhead in one Python process is close to what a uvicorn
worker spends answering, so the client would be the bottleneck and every ratio would read
the client's speed. Pre-built request bytes written on a kept-alive socket and a minimal
response parser (status line, Content-Length or chunked) cost a few microseconds instead.

Bounded by construction: it stops after ``duration`` seconds, after ``total`` requests, or
when a non-cycling request list is used up — whichever comes first — and each read has a
timeout, so a stuck server cannot hang a benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
#: A single answer slower than this is a failure, not a data point.
READ_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a run did: completed requests, wall time, status counts, transport errors."""

    requests: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def build_request(method: str, path: str, *, port: int, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    """The raw bytes of one keep-alive HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


class _Source:
    """Hands out requests to every connection: round robin, or each one once."""

    def __init__(self, requests: Sequence[bytes], *, cycle: bool, total: int | None) -> None:
        if not requests:
            raise ValueError("the load generator needs at least one request")
        self.requests = requests
        self.cycle = cycle
        self.limit = total if total is not None else (None if cycle else len(requests))
        self.issued = 0

    def next(self) -> bytes | None:
        if self.limit is not None and self.issued >= self.limit:
            return None
        if not self.cycle and self.issued >= len(self.requests):
            return None
        request = self.requests[self.issued % len(self.requests)]
        self.issued += 1
        return request


async def _connection(port: int, source: _Source, deadline: float, statuses: Counter[int],
                      errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        while time.perf_counter() < deadline:
            request = source.next()
            if request is None:
                return
            writer.write(request)
            try:
                status = await asyncio.wait_for(_read_response(reader), READ_TIMEOUT_SECONDS)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                # The connection is unusable now: count it and reconnect.
                errors.append(1)
                writer.close()
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
                continue
            statuses[status] += 1
    finally:
        writer.close()


async def _run(port: int, source: _Source, concurrency: int, duration: float | None) -> LoadResult:
    statuses: Counter[int] = Counter()
    errors: list[int] = []
    started = time.perf_counter()
    deadline = started + duration if duration is not None else float("inf")
    await asyncio.gather(*(_connection(port, source, deadline, statuses, errors)
                           for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return LoadResult(sum(statuses.values()), seconds, dict(statuses), len(errors))


def run_load(port: int, requests: Sequence[bytes], *, concurrency: int = 16,
             duration: float | None = None, total: int | None = None,
             cycle: bool = True) -> LoadResult:
    """Send ``requests`` to 127.0.0.1:``port`` over ``concurrency`` keep-alive connections.

    ``cycle=True`` repeats the list (needs ``duration`` or ``total``); ``cycle=False`` sends
    each request once (distinct signed webhooks).
    """
    if cycle and duration is None and total is None:
        raise ValueError("a cycling load needs a duration or a request count to stop")
    source = _Source(requests, cycle=cycle, total=total)
    return asyncio.run(_run(port, source, concurrency, duration))


@dataclass(frozen=True, slots=True)
class PacedResult:
    """An open-loop run: each request's latency from the moment it was due to be sent."""

    latencies: list[float]
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def percentile(self, fraction: float) -> float:
        """The latency at ``fraction`` (0.5 = median), nearest rank."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def _paced(port: int, requests: Sequence[bytes], rate: float,
                 connections: int) -> PacedResult:
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[int] = []
    started = time.perf_counter()

    async def produce() -> None:
        for index in range(len(requests)):
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, requests[index]))
        for _ in range(connections):
            queue.put_nowait(None)

    async def consume() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            while (item := await queue.get()) is not None:
                due, request = item
                writer.write(request)
                try:
                    status = await asyncio.wait_for(_read_response(reader), READ_TIMEOUT_SECONDS)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    errors.append(1)
                    writer.close()
                    reader, writer = await asyncio.open_connection(LOOPBACK, port)
                    continue
                # From when it was due, not when a connection was free: a slow server cannot
                # hide its queueing (no coordinated omission).
                latencies.append(time.perf_counter() - due)
                statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(produce(), *(consume() for _ in range(connections)))
    return PacedResult(latencies, time.perf_counter() - started, dict(statuses), len(errors))


def run_paced(port: int, requests: Sequence[bytes], *, rate: float,
              connections: int = 8) -> PacedResult:
    """Send each request once at ``rate`` per second (open loop) over ``connections``."""
    if rate <= 0 or not requests:
        raise ValueError("a paced run needs a positive rate and at least one request")
    return asyncio.run(_paced(port, requests, rate, connections))
