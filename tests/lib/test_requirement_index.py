"""The requirement index agrees with the accounts' JSON after every kind of write.

The oracle reads the mirror's JSON directly (every attached account, every code of its four
lists) and is compared with ``requirement_codes`` after creates, updates, requirement and
deadline changes, refused older fetches, attach, detach, reattach, deletes, a rebuild, the
migration's backfill and real syncs/disconnects against the emulator. The counts the
Requirements page shows are compared with the JSON-expanding query they replaced.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Engine,
    Result,
    ScalarResult,
    case,
    delete,
    distinct,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy.orm import Session

from lib.accounts import account_row_values, upsert_account
from lib.connect_flow import detach, disconnect
from lib.db import utcnow
from lib.freelancers import create_freelancer
from lib.migrate import downgrade, upgrade
from lib.models import ConnectedAccount, Freelancer, RequirementCode
from lib.requirement_index import BUCKETS, rebuild, refresh_accounts
from lib.requirements_queries import CATEGORIES, requirement_counts
from lib.roles import Operator
from lib.stripe_gateway import StripeGateway
from lib.sync import refresh_account
from tests.conftest import requires_postgresql
from tests.factories import make_settings
from tests.factories_dashboard import (
    QueryCounter,
    account_dict,
    add_freelancer,
    seed_many,
)
from tests.lib.test_account_status import account

ADMIN = Operator.from_role_names("alice", ["admin"])
FINANCE = Operator.from_role_names("fin", ["finance"])
T0 = datetime(2026, 11, 1, tzinfo=UTC)
DEADLINE = 1_900_000_000


def _from_json(session: Session) -> set[tuple[str, str, str, datetime | None]]:
    """What the index must hold, read from the mirror's JSON (the oracle)."""
    expected: set[tuple[str, str, str, datetime | None]] = set()
    rows: Result[str, dict[str, Any], datetime | None] = session.execute(
        select(ConnectedAccount.stripe_id, ConnectedAccount.requirements,
               ConnectedAccount.current_deadline)
        .join(Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id))
    for stripe_id, requirements, deadline in rows:
        for bucket in ("past_due", "currently_due", "eventually_due", "pending_verification"):
            for code in (requirements or {}).get(bucket) or []:
                expected.add((stripe_id, bucket, code, deadline))
    return expected


def _indexed(session: Session) -> set[tuple[str, str, str, datetime | None]]:
    return set(session.execute(
        select(ConnectedAccount.stripe_id, RequirementCode.bucket, RequirementCode.code,
               RequirementCode.deadline)
        .join(ConnectedAccount, ConnectedAccount.id == RequirementCode.account_id)).all())


def _agrees(session_factory) -> set[tuple[str, str, str, datetime | None]]:
    """Assert the index equals the oracle; returns the rows for further checks."""
    with session_factory() as session:
        indexed = _indexed(session)
        assert indexed == _from_json(session)
        count = session.scalar(select(func.count()).select_from(RequirementCode))
    assert count == len(indexed)            # no duplicates, no rows of vanished accounts
    return indexed


def _attach(session: Session, account_id: str, name: str = "Ida Index") -> Freelancer:
    freelancer = create_freelancer(session, name=name, email=f"{name.split()[0]}@example.com")
    freelancer.stripe_account_id = account_id
    freelancer.connection_method = "account_link"
    freelancer.connected_at = T0
    session.flush()
    return freelancer


def _due(*codes: str, past: tuple[str, ...] = (), deadline: int | None = DEADLINE) -> dict:
    return account(requirements={"currently_due": list(codes), "eventually_due": list(codes),
                                 "past_due": list(past), "current_deadline": deadline})


def test_buckets_are_the_pages_categories() -> None:
    assert set(BUCKETS) == {key for key, _ in CATEGORIES}


def test_upsert_creates_updates_and_respects_the_synced_at_guard(session_factory) -> None:
    with session_factory.begin() as session:
        _attach(session, "acct_1")
        assert upsert_account(session, account=_due("a", "b"), fetched_at=T0)
    rows = _agrees(session_factory)
    assert {(b, c) for _, b, c, _ in rows} == {
        ("currently_due", "a"), ("currently_due", "b"),
        ("eventually_due", "a"), ("eventually_due", "b")}
    assert {d for *_, d in rows} == {datetime.fromtimestamp(DEADLINE, tz=UTC)}

    with session_factory.begin() as session:     # requirements change
        assert upsert_account(session, account=_due("b", past=("b",)),
                              fetched_at=T0 + timedelta(seconds=2))
    rows = _agrees(session_factory)
    assert {(b, c) for _, b, c, _ in rows} == {
        ("currently_due", "b"), ("eventually_due", "b"), ("past_due", "b")}

    with session_factory.begin() as session:     # an older fetch is refused: nothing moves
        assert not upsert_account(session, account=_due("z"), fetched_at=T0)
    assert _agrees(session_factory) == rows

    with session_factory.begin() as session:     # only the deadline moves
        upsert_account(session, account=_due("b", past=("b",), deadline=DEADLINE + 86_400),
                       fetched_at=T0 + timedelta(seconds=3))
    rows = _agrees(session_factory)
    assert {d for *_, d in rows} == {datetime.fromtimestamp(DEADLINE + 86_400, tz=UTC)}

    with session_factory.begin() as session:     # everything provided
        upsert_account(session, account=_due(), fetched_at=T0 + timedelta(seconds=4))
    assert _agrees(session_factory) == set()


def _index_writes(statements: list[str]) -> list[str]:
    # On PostgreSQL the DELETE carries the label counts' deltas in a WITH (one round trip).
    return [s for s in statements if "requirement_codes" in s
            and s.lstrip().upper().startswith(("INSERT", "DELETE", "UPDATE", "WITH"))]


def test_an_unchanged_upsert_writes_nothing_to_the_index(session_factory) -> None:
    with session_factory.begin() as session:
        _attach(session, "acct_1")
        upsert_account(session, account=_due("a"), fetched_at=T0)
    with QueryCounter() as counter, session_factory.begin() as session:
        # Newer fetch, other promoted fields changed, the same codes and deadline.
        assert upsert_account(session, account={**_due("a"), "email": "new@example.com"},
                              fetched_at=T0 + timedelta(seconds=1))
    assert _index_writes(counter.statements) == []
    with QueryCounter() as counter, session_factory.begin() as session:
        upsert_account(session, account=_due("a", "c"), fetched_at=T0 + timedelta(seconds=2))
    assert len(_index_writes(counter.statements)) == 2        # one delete, one insert
    _agrees(session_factory)


def test_only_attached_accounts_are_indexed_attach_detach_reattach(session_factory) -> None:
    with session_factory.begin() as session:
        upsert_account(session, account=_due("a"), fetched_at=T0)
    assert _agrees(session_factory) == set()                  # mirrored, nobody's account

    with session_factory.begin() as session:
        # The callback's order: attach (pending in the session), then the upsert.
        freelancer = create_freelancer(session, name="Cal Back", email="cal@example.com")
        freelancer.stripe_account_id = "acct_1"
        upsert_account(session, account=_due("a", "b"), fetched_at=T0 + timedelta(seconds=1))
        first_id = freelancer.id
    assert len(_agrees(session_factory)) == 4

    with session_factory.begin() as session:
        detach(session, freelancer=session.get(Freelancer, first_id))
    assert _agrees(session_factory) == set()

    with session_factory.begin() as session:
        _attach(session, "acct_1", name="Other Owner")
    assert len(_agrees(session_factory)) == 4


def test_orm_writes_requirement_changes_and_deletes(session_factory) -> None:
    with session_factory.begin() as session:
        for state in ("restricted", "pending", "disabled", "active", "not_connected"):
            add_freelancer(session, state=state)
    assert len(_agrees(session_factory)) == 3 + 4 + 3
    with session_factory.begin() as session:
        restricted = session.scalars(select(ConnectedAccount).where(
            ConnectedAccount.status == "RESTRICTED")).one()
        restricted.requirements = {**restricted.requirements,
                                   "currently_due": ["individual.dob.day"]}
        restricted.current_deadline = T0
    _agrees(session_factory)
    with session_factory.begin() as session:
        disabled = session.scalars(select(ConnectedAccount).where(
            ConnectedAccount.status == "DISABLED")).one()
        session.delete(disabled)
        # A freelancer dropped while attached takes the account's rows with them.
        session.delete(session.scalars(select(Freelancer).join(
            ConnectedAccount, ConnectedAccount.stripe_id == Freelancer.stripe_account_id)
            .where(ConnectedAccount.status == "PENDING")).one())
    rows = _agrees(session_factory)
    assert {c for _, _, c, _ in rows} == {"individual.dob.day", "individual.verification.document",
                                          "individual.id_number"}


def test_refresh_repairs_and_rebuild_matches_the_incremental_index(session_factory) -> None:
    seed_many(session_factory, 140)
    incremental = _agrees(session_factory)
    assert incremental
    with session_factory.begin() as session:
        session.execute(delete(RequirementCode))
    with session_factory.begin() as session:
        some = session.scalars(select(ConnectedAccount.stripe_id)).all()
        assert refresh_accounts(session=session, stripe_ids=some) > 0
        assert refresh_accounts(session=session, stripe_ids=some) == 0  # nothing left to do
    assert _agrees(session_factory) == incremental
    with session_factory.begin() as session:
        assert rebuild(session=session) == len(incremental)
    assert _agrees(session_factory) == incremental


def test_the_migration_backfills_existing_accounts(engine: Engine, session_factory) -> None:
    downgrade(engine, "0003")
    try:
        now = utcnow()
        with engine.begin() as conn:                # rows written before the index existed
            for number, state in enumerate(("restricted", "pending", "disabled", "active")):
                values = account_row_values(account_dict(f"acct_old{number}", state, now=now),
                                            fetched_at=now)
                conn.execute(insert(ConnectedAccount.__table__).values(**values))
                conn.execute(insert(Freelancer.__table__).values(
                    name=f"Old {number}", email=f"old{number}@example.com",
                    stripe_account_id=f"acct_old{number}", created_at=now))
            values = account_row_values(account_dict("acct_orphan", "pending", now=now),
                                        fetched_at=now)
            conn.execute(insert(ConnectedAccount.__table__).values(**values))
    finally:
        upgrade(engine)
    assert len(_agrees(session_factory)) == 3 + 4 + 3


@pytest.fixture
def gateway(emulator) -> StripeGateway:
    return StripeGateway(make_settings(stripe_api_base=emulator.base_url,
                                       stripe_connect_base=emulator.base_url))


def test_sync_and_disconnect_against_the_emulator(gateway, emulator, session_factory) -> None:
    created = gateway.create_express_account(email="eve@example.com", country="US",
                                             metadata={}, idempotency_key="index-eve")
    with session_factory.begin() as session:
        freelancer_id = _attach(session, created.id, name="Eve Express").id
    refresh_account(session_factory, gateway=gateway, operator=ADMIN, account_id=created.id)
    assert _agrees(session_factory)                           # a new account has codes due

    emulator.set_account(created.id, requirements={
        "currently_due": ["individual.dob.day", "individual.dob.month"],
        "eventually_due": ["individual.dob.day", "individual.dob.month"], "past_due": []})
    refresh_account(session_factory, gateway=gateway, operator=ADMIN, account_id=created.id)
    rows = _agrees(session_factory)
    assert {c for _, _, c, _ in rows} == {"individual.dob.day", "individual.dob.month"}
    with session_factory() as session:
        counts = requirement_counts(session, operator=FINANCE)
    assert [(c.category, c.label, c.accounts) for c in counts] == [
        ("Currently due", "Date of birth", 1), ("Eventually due", "Date of birth", 1)]

    disconnect(session_factory, gateway=gateway, operator=ADMIN, freelancer_id=freelancer_id)
    assert _agrees(session_factory) == set()


# ---- the counts equal the JSON-expanding query they replaced ------------------------------------


def _counts_from_json(session: Session, within_days: int | None, now: datetime) -> list[tuple]:
    """The previous implementation of ``requirement_counts``, kept as the oracle."""
    parts = []
    for key, _ in CATEGORIES:
        if session.get_bind().dialect.name == "postgresql":
            value = ConnectedAccount.requirements.op("->")(literal(key))
            array = case((func.jsonb_typeof(value) == "array", value),
                         else_=func.jsonb_build_array())
            elements = func.jsonb_array_elements_text(array).table_valued("value").lateral()
        else:
            elements = func.json_each(ConnectedAccount.requirements, f"$.{key}").table_valued(
                "value")
        part = (select(ConnectedAccount.id.label("account_id"), literal(key).label("category"),
                       elements.c.value.label("code"))
                .select_from(ConnectedAccount)
                .join(Freelancer, Freelancer.stripe_account_id == ConnectedAccount.stripe_id)
                .join(elements, true()))
        if within_days is not None:
            part = part.where(ConnectedAccount.current_deadline < now + timedelta(days=within_days))
        parts.append(part)
    codes = parts[0].union_all(*parts[1:]).subquery()
    from lib.account_status import requirement_label

    distinct_codes: ScalarResult[str | None] = session.scalars(select(codes.c.code).distinct())
    found = [str(c) for c in distinct_codes if c is not None]
    if not found:
        return []
    labelled = select(codes.c.category, case({c: requirement_label(c) for c in found},
                                             value=codes.c.code).label("label"),
                      codes.c.account_id).subquery()
    names = dict(CATEGORIES)
    rank = {name: index for index, (_, name) in enumerate(CATEGORIES)}
    counted: Result[str, str, int] = session.execute(
        select(labelled.c.category, labelled.c.label, func.count(distinct(labelled.c.account_id)))
        .group_by(labelled.c.category, labelled.c.label))
    rows = [(names[str(c)], str(label), int(n)) for c, label, n in counted]
    return sorted(rows, key=lambda r: (rank[r[0]], -r[2], r[1]))


def test_counts_equal_the_json_query_they_replaced(session_factory) -> None:
    now = utcnow()
    seed_many(session_factory, 210, now=now)
    with session_factory.begin() as session:
        for number, days in enumerate((-3, 2, 9, 40)):
            freelancer = add_freelancer(session, state="restricted", now=now, deadline_days=days)
            mirror = session.scalars(select(ConnectedAccount).where(
                ConnectedAccount.stripe_id == freelancer.stripe_account_id)).one()
            dob = ["individual.dob.day", "individual.dob.month", "individual.dob.year"]
            mirror.requirements = {**mirror.requirements, "currently_due": dob[: number + 1],
                                   "past_due": dob[:number], "pending_verification": [
                                       f"person_{number}.verification.document"]}
    _agrees(session_factory)
    with session_factory() as session:
        for within in (None, 0, 3, 10, 365):
            expected = _counts_from_json(session, within, now)
            got = requirement_counts(session, operator=FINANCE, within_days=within, now=now)
            assert [(c.category, c.label, c.accounts) for c in got] == expected, within
            assert expected or within == 0


# ---- concurrency on PostgreSQL ------------------------------------------------------------------


@requires_postgresql()
def test_concurrent_upserts_and_attach_leave_the_index_true(session_factory) -> None:
    """Eight writers race on one account (upserts with changing codes, detach/attach)."""
    with session_factory.begin() as session:
        upsert_account(session, account=_due("start"), fetched_at=T0)
        owner = _attach(session, "acct_1").id
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def upserts(worker: int) -> None:
        try:
            barrier.wait()
            for step in range(40):
                with session_factory.begin() as session:
                    upsert_account(session, account=_due(f"w{worker}", f"s{step % 3}"),
                                   fetched_at=utcnow())
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
            errors.append(exc)

    def toggles(_worker: int) -> None:
        try:
            barrier.wait()
            for step in range(40):
                with session_factory.begin() as session:
                    freelancer = session.get(Freelancer, owner)
                    freelancer.stripe_account_id = None if step % 2 else "acct_1"
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
            errors.append(exc)

    threads = [threading.Thread(target=upserts if n < 6 else toggles, args=(n,))
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]
    _agrees(session_factory)
