import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from lib.freelancers import create_freelancer
from lib.models import OAuthState
from lib.oauth_states import consume_state, hash_state, issue_state
from tests.conftest import requires_postgresql

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _issue(session_factory, now=T0) -> tuple[str, int]:
    with session_factory.begin() as session:
        freelancer = create_freelancer(session, name="Ada Lovelace", email="ada@example.com")
        return issue_state(session, freelancer_id=freelancer.id, issued_by="admin",
                           attempt_id=None, now=now), freelancer.id


def test_only_the_hash_is_stored(session_factory) -> None:
    token, _ = _issue(session_factory)
    assert len(token) >= 43
    with session_factory() as session:
        row = session.scalars(select(OAuthState)).one()
    assert row.state_hash == hash_state(token)
    assert token not in row.state_hash


def test_state_is_consumed_once(session_factory) -> None:
    token, freelancer_id = _issue(session_factory)
    with session_factory.begin() as session:
        consumed = consume_state(session, token=token, now=T0 + timedelta(minutes=1))
    assert consumed is not None and consumed.freelancer_id == freelancer_id
    with session_factory.begin() as session:
        assert consume_state(session, token=token, now=T0 + timedelta(minutes=2)) is None


def test_expired_unknown_and_tampered_states_are_refused(session_factory) -> None:
    token, _ = _issue(session_factory)
    with session_factory.begin() as session:
        assert consume_state(session, token=token, now=T0 + timedelta(hours=1, seconds=1)) is None
        assert consume_state(session, token=token[:-1] + "x", now=T0) is None
        assert consume_state(session, token="", now=T0) is None
        assert consume_state(session, token="a" * 10_000, now=T0) is None
        assert consume_state(session, token="\udcff\x00", now=T0) is None


def test_a_new_state_does_not_invalidate_an_older_unused_one(session_factory) -> None:
    first, freelancer_id = _issue(session_factory)
    with session_factory.begin() as session:
        second = issue_state(session, freelancer_id=freelancer_id, issued_by="admin",
                             attempt_id=None, now=T0)
    with session_factory.begin() as session:
        assert consume_state(session, token=first, now=T0) is not None
        assert consume_state(session, token=second, now=T0) is not None


def _race(session_factory, token: str, n: int) -> list[bool]:
    barrier = threading.Barrier(n)
    wins: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        with session_factory.begin() as session:
            won = consume_state(session, token=token, now=T0) is not None
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return wins


def test_racing_consumers_one_winner(session_factory) -> None:
    token, _ = _issue(session_factory)
    wins = _race(session_factory, token, 8)
    assert len(wins) == 8 and wins.count(True) == 1


@requires_postgresql()
def test_racing_consumers_one_winner_on_postgresql(session_factory) -> None:
    token, _ = _issue(session_factory)
    wins = _race(session_factory, token, 20)
    assert len(wins) == 20 and wins.count(True) == 1
