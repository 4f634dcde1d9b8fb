"""Waiting on a condition: the one poll loop, and child servers polled until they answer.

Tests, the demo runner and the benchmarks wait for things that happen elsewhere (a child server
answering its health URL, a worker settling an event, a row reaching a status). They poll the
condition with :func:`wait_until`, never sleep a guessed time; :func:`wait_until_healthy` is
that loop for a child server. It lives here, beside the demo runner, because tests must not
import ``bench``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

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


class ConditionNotMet(TimeoutError):
    """What :func:`wait_until` waited for did not happen in time."""


def wait_until(predicate: Callable[[], T], *, what: str, timeout: float = 20.0,
               interval: float = 0.05) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy; return it.

    Raises :class:`ConditionNotMet` (naming ``what``) once ``timeout`` seconds have passed; an
    exception from ``predicate`` propagates at once (a child that died will never answer).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ConditionNotMet(f"{what}: not reached within {timeout:g}s")
        time.sleep(interval)


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
    def answers() -> bool:
        returncode = process.poll()
        if returncode is not None:
            raise ServerNotHealthy(f"{name} exited ({returncode}){_log_tail(log)}",
                                   url=url, returncode=returncode)
        try:
            return httpx.get(url, timeout=request_timeout).status_code in ok_statuses
        except httpx.HTTPError:
            return False  # not listening yet, or too slow to answer: poll again

    try:
        wait_until(answers, what=f"{name} answering {url}", timeout=timeout,
                   interval=poll_interval)
    except ConditionNotMet:
        raise ServerNotHealthy(f"{name} did not answer {url} in {timeout:g}s{_log_tail(log)}",
                               url=url, returncode=None) from None
