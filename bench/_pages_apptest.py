"""Timing one dashboard page's script run with AppTest, cold and warm, and the framework floor.

A page run is what a logged-in user's browser asks the server for: the router
(``dashboard/app.py``: login check, sidebar, navigation) and then the page, through
``st.navigation``. *Cold* clears ``st.cache_data`` before each run — every cached lib read is
then redone, which is what a user meets whenever a cache entry expires (TTLs are 30 s to
5 minutes). ``st.cache_resource`` (settings, engine, gateway) is kept: it has no expiry, a
running server builds it once. *Warm* runs again with the caches as the previous run left them.

One AppTest artifact is removed: AppTest makes a new ``ScriptCache`` for every run, so it
parses, rewrites (``magic``) and compiles ``app.py`` and the page on each one (about 10 ms for
these scripts), while a running server compiles each script once per process. The benchmark
shares one ``ScriptCache`` across runs (:func:`server_like_script_cache`), as the server does;
the floor page gets the same treatment.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import streamlit as st
from sqlalchemy import event
from sqlalchemy.engine import Engine
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as _app_test
from streamlit.testing.v1 import local_script_runner as _local_script_runner

from dashboard.navigation import PAGES, PageSpec
from lib.roles import Operator, Role
from lib.settings import PROJECT_ROOT

APP = str(PROJECT_ROOT / "dashboard" / "app.py")
FLOOR_SCRIPT = "import streamlit as st\n\nst.title('Floor')\n"
TIMEOUT = 300.0
#: The demo users (``.streamlit/auth.example.yaml``), most powerful first.
USERS = ("admin", "finance", "manager")
#: The element types that carry data (a page's cost beyond its text and inputs).
DRAWN = frozenset({"dataframe", "table", "vega_lite_chart", "metric"})


@contextmanager
def server_like_script_cache() -> Iterator[None]:
    """One ScriptCache for every AppTest run inside (a server compiles a script once)."""
    shared = ScriptCache()
    with ExitStack() as patches:
        for module in (_app_test, _local_script_runner):
            patches.enter_context(patch.object(module, "ScriptCache", lambda: shared))
        yield


class PageFailed(RuntimeError):
    """A page raised instead of rendering: its timing would mean nothing."""


@dataclass(slots=True)
class PageTiming:
    """Median seconds of the cold and warm runs, and what one cold run did."""

    cold: float
    warm: float
    cold_samples: list[float] = field(default_factory=list)
    warm_samples: list[float] = field(default_factory=list)
    queries: int = 0
    errors: list[str] = field(default_factory=list)
    #: Median seconds spent in the database per cold run (cursor execute to its return): the
    #: part of a page's time that could grow with the data; the rest is rendering.
    cold_sql: float = 0.0
    #: How many of each data widget (:data:`DRAWN`) the page drew: what it costs to render.
    widgets: dict[str, int] = field(default_factory=dict)


def user_for(spec: PageSpec) -> str:
    """The first demo user whose role may open the page."""
    for name in USERS:
        if any(Operator(username=name, roles=frozenset({Role(name)})).can(action)
               for action in spec.needs):
            return name
    raise ValueError(f"no demo user may open {spec.file}")


class _QueryClock:
    """The statements run inside, counted, and the time the database spent answering them."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started: dict[int, float] = {}

    def _before(self, connection: Any, *_args: Any) -> None:
        self.count += 1
        self._started[id(connection)] = time.perf_counter()

    def _after(self, connection: Any, *_args: Any) -> None:
        started = self._started.pop(id(connection), None)
        if started is not None:
            self.seconds += time.perf_counter() - started

    def __enter__(self) -> _QueryClock:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(Engine, "before_cursor_execute", self._before)
        event.remove(Engine, "after_cursor_execute", self._after)


def _checked(at: AppTest, what: str) -> AppTest:
    if at.exception:
        raise PageFailed(f"{what}: {at.exception[0].value}")
    return at


def logged_in_page(spec: PageSpec) -> AppTest:
    """An AppTest logged in as a user who may see ``spec``, switched to that page and run once."""
    user = user_for(spec)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = user
    at.session_state["name"] = user.title()
    at.session_state["roles"] = [user]
    _checked(at.run(), f"{user} logging in")
    # AppTest resolves page paths from the main script's folder (dashboard/).
    at.switch_page(f"../pages/{spec.file}")
    return _checked(at.run(), spec.file)


def _time_runs(at: AppTest, what: str, *, repeat: int, cold: bool,
               sql: list[float] | None = None) -> list[float]:
    samples = []
    for _ in range(repeat):
        if cold:
            st.cache_data.clear()
        # Only the runs whose database time is asked for carry the clock's listeners.
        clock = _QueryClock() if sql is not None else None
        with clock or nullcontext():
            started = time.perf_counter()
            at.run()
            samples.append(time.perf_counter() - started)
        if sql is not None and clock is not None:
            sql.append(clock.seconds)
        _checked(at, what)
    return samples


def time_page(spec: PageSpec, *, repeat: int) -> PageTiming:
    """Cold and warm medians of ``repeat`` runs each (after the unmeasured first run)."""
    at = logged_in_page(spec)
    st.cache_data.clear()
    with _QueryClock() as counted:
        _checked(at.run(), spec.file)
    widgets = drawn(at)
    sql: list[float] = []
    cold = _time_runs(at, spec.file, repeat=repeat, cold=True, sql=sql)
    at.run()  # fill the caches once more, then measure them
    warm = _time_runs(at, spec.file, repeat=repeat, cold=False)
    return PageTiming(cold=statistics.median(cold), warm=statistics.median(warm),
                      cold_samples=cold, warm_samples=warm, queries=counted.count,
                      errors=[str(e.value) for e in at.error], cold_sql=statistics.median(sql),
                      widgets=widgets)


def drawn(at: AppTest) -> dict[str, int]:
    """How many of each :data:`DRAWN` element the last run of ``at`` put on the page."""
    counts: dict[str, int] = {}
    stack: list[Any] = [at._tree]
    while stack:
        node = stack.pop()
        kind = getattr(node, "type", None)
        if kind in DRAWN:
            counts[kind] = counts.get(kind, 0) + 1
        stack.extend(getattr(node, "children", {}).values())
    return dict(sorted(counts.items()))


def floor_samples(*, repeat: int) -> list[float]:
    """Script runs of a page that only imports streamlit and writes a title."""
    at = AppTest.from_string(FLOOR_SCRIPT, default_timeout=TIMEOUT)
    _checked(at.run(), "the floor page")
    return _time_runs(at, "the floor page", repeat=repeat, cold=True)


def time_all_pages(*, repeat: int, progress: Callable[[str], None]) -> dict[str, PageTiming]:
    """Every page of ``dashboard.navigation.PAGES`` against the configured database."""
    st.cache_resource.clear()  # a new DATABASE_URL: build the engine again
    st.cache_data.clear()
    timings: dict[str, PageTiming] = {}
    for spec in PAGES:
        timing = time_page(spec, repeat=repeat)
        progress(f"  {spec.title:<22} cold {timing.cold * 1000:8.1f} ms   "
                 f"warm {timing.warm * 1000:8.1f} ms   {timing.queries:3d} queries   "
                 f"database {timing.cold_sql * 1000:6.1f} ms")
        timings[spec.file] = timing
    return timings
