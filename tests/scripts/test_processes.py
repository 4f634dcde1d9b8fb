"""scripts.processes: wait_until polls a condition; wait_until_healthy returns once the child
answers and raises when it never will."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.processes import ConditionNotMet, ServerNotHealthy, wait_until, wait_until_healthy
from tests.support.servers import HOST, free_port


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])  # a fixed argv, no shell


@pytest.fixture
def idle_child() -> Iterator[subprocess.Popen[bytes]]:
    """A child that stays alive and serves nothing (the server under test is in-process)."""
    process = _child("import time; time.sleep(60)")
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def _serve(status: int) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{HOST}:{server.server_address[1]}/health"


@pytest.fixture
def answering() -> Iterator[dict[int, str]]:
    servers: list[ThreadingHTTPServer] = []
    urls: dict[int, str] = {}
    for status in (200, 404, 503):
        server, url = _serve(status)
        servers.append(server)
        urls[status] = url
    try:
        yield urls
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_returns_once_the_url_answers(idle_child: subprocess.Popen[bytes],
                                      answering: dict[int, str]) -> None:
    wait_until_healthy(answering[200], process=idle_child, timeout=5)


def test_a_status_outside_the_accepted_ones_is_not_healthy(
        idle_child: subprocess.Popen[bytes], answering: dict[int, str]) -> None:
    with pytest.raises(ServerNotHealthy, match="did not answer") as caught:
        wait_until_healthy(answering[404], process=idle_child, timeout=0.5, poll_interval=0.05)
    assert caught.value.returncode is None
    wait_until_healthy(answering[404], process=idle_child, timeout=5,
                       ok_statuses=range(100, 500))
    with pytest.raises(ServerNotHealthy):
        wait_until_healthy(answering[503], process=idle_child, timeout=0.5,
                           ok_statuses=range(100, 500), poll_interval=0.05)


def test_a_child_that_exits_is_reported_with_its_code_and_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # a fixed argv, no shell
            [sys.executable, "-c", "import sys; print('boom: no database'); sys.exit(3)"],
            stdout=out, stderr=subprocess.STDOUT)
        process.wait(timeout=30)
    url = f"http://{HOST}:{free_port()}/health"
    with pytest.raises(ServerNotHealthy, match=r"the child exited \(3\)") as caught:
        wait_until_healthy(url, process=process, timeout=30, name="the child", log=log)
    assert caught.value.returncode == 3
    assert caught.value.url == url
    assert "boom: no database" in str(caught.value)


def test_a_child_that_never_answers_times_out(idle_child: subprocess.Popen[bytes]) -> None:
    url = f"http://{HOST}:{free_port()}/health"  # nobody listens there
    with pytest.raises(ServerNotHealthy, match=r"did not answer .* in 0.3s") as caught:
        wait_until_healthy(url, process=idle_child, timeout=0.3, poll_interval=0.05)
    assert caught.value.returncode is None
    assert idle_child.poll() is None  # the caller stops its child; the helper only waits


def test_wait_until_returns_the_first_truthy_answer() -> None:
    answers: Iterator[object] = iter([None, 0, [], "ready"])
    assert wait_until(lambda: next(answers), what="the fourth answer", timeout=5,
                      interval=0.001) == "ready"


def test_wait_until_names_what_never_happened() -> None:
    with pytest.raises(ConditionNotMet, match=r"the flag set: not reached within 0.1s"):
        wait_until(lambda: False, what="the flag set", timeout=0.1, interval=0.01)


def test_wait_until_lets_an_error_of_the_condition_through_at_once() -> None:
    calls: list[int] = []

    def broken() -> bool:
        calls.append(1)
        raise LookupError("the row is gone")

    with pytest.raises(LookupError, match="the row is gone"):
        wait_until(broken, what="never", timeout=30)
    assert len(calls) == 1
