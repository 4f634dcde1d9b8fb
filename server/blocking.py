"""Where the API handlers run their blocking work (database sessions, Stripe calls).

FastAPI runs a plain ``def`` handler through anyio's ``to_thread``: a limiter, a cancel scope
and a copied context per call. Under 16 keep-alive clients (issue 7, median of four runs on a
busy 2-core machine) the server spent ~380 µs of CPU per ``/healthz`` that way against ~255 µs
with the same function handed to a ``ThreadPoolExecutor``, and ~920 against ~810 µs per
``/stripe-connect-status``; the write paths, dominated by their transactions, measured alike.
So every handler is ``async`` and passes its blocking part (a session, a Stripe call) to
:func:`run_blocking`: one way in the whole service, never a plain ``def`` handler nor
starlette's ``run_in_threadpool`` (the same anyio path).

One pool per process, as many threads as anyio's default limiter (40): a slow Stripe call
holds a thread exactly as before, and threads start only when every one is busy. A cancelled
request (the client went away) does not stop the work it started: a transaction in flight
finishes or rolls back on its own, as it did in anyio's shielded threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: anyio's default ``to_thread`` limit, which the sync handlers had.
MAX_THREADS = 40
_EXECUTOR = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="connect-ops-blocking")


async def run_blocking(function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``function(*args, **kwargs)`` in the service's worker threads, awaited.

    It runs in a copy of the caller's context (context variables), as anyio's threads do.
    """
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, call)
