"""Child servers: wait until one answers its health URL, or say why it never will.

The benchmarks and the browser tests start servers (the dashboard, the companion, the emulator)
as child processes and poll them until they answer. This is the one loop they share; it lives
here, beside the demo runner, because tests must not import ``bench``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Container
from pathlib import Path
from typing import Any

import httpx

#: How much of the child's log an error quotes (its end, where the traceback is).
LOG_TAIL_CHARS = 3000


class ServerNotHealthy(RuntimeError):
    """A child server exited, or did not answer its health URL in time.

    ``returncode`` is the child's exit code, or None when it is still running (a time-out).
    """

    def __init__(self, message: str, *, url: str, returncode: int | None) -> None:
        super().__init__(message)
        self.url = url
        self.returncode = returncode


def _log_tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return ":\n" + log.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def wait_until_healthy(
    url: str, *, process: subprocess.Popen[Any], timeout: float,
    ok_statuses: Container[int] = (200,), poll_interval: float = 0.2,
    request_timeout: float = 1.0, name: str = "the server", log: Path | None = None,
) -> None:
    """Poll ``url`` until it answers with one of ``ok_statuses``.

    Raises :class:`ServerNotHealthy` as soon as ``process`` exits, or once ``timeout`` seconds
    have passed; the message ends with the tail of ``log`` (the child's output) when given.
    """
    deadline = time.monotonic() + timeout
    while True:
        returncode = process.poll()
        if returncode is not None:
            raise ServerNotHealthy(f"{name} exited ({returncode}){_log_tail(log)}",
                                   url=url, returncode=returncode)
        try:
            if httpx.get(url, timeout=request_timeout).status_code in ok_statuses:
                return
        except httpx.HTTPError:
            pass  # not listening yet, or too slow to answer: poll again
        if time.monotonic() >= deadline:
            raise ServerNotHealthy(
                f"{name} did not answer {url} in {timeout:g}s{_log_tail(log)}",
                url=url, returncode=None)
        time.sleep(poll_interval)
