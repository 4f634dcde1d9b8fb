"""What each summary counts, written once and turned into triggers and recount queries.

A summary row is ``(kind, day, k1, k2, k3) -> (n, amount)``: ``day`` is a UTC date as
``YYYY-MM-DD`` ('' for undated kinds), the keys are text ('' when unused), ``n`` counts rows and
``amount`` sums a money column in minor units (0 when the kind has none; never across
currencies: the currency is a key).

Each :class:`Contribution` says what one source row adds to a kind, as SQL over the row (``{r}``
stands for ``NEW`` or ``OLD`` in a trigger, and for the table's alias in a recount). A trigger
adds the new row's contribution and takes away the old one's, in the same transaction as the
write (so a snapshot always shows summaries equal to a recount of the same snapshot); an
UPDATE fires only when a column the contribution reads changed.

The kinds (and the page that reads each):

- ``attempts``: connection attempts per start day × method × outcome × failure reason
  (Overview's success rates, Connection metrics' series and failure reasons);
- ``attempt_hours``: the same attempts per start *hour* (``YYYYMMDDHH``) × outcome: the
  partial days at the Overview's window ends are whole hours from here plus at most half an
  hour of rows, so their cost does not depend on the time of day;
- ``connect_time``: succeeded attempts per start day × time-to-connect bucket (Connection
  metrics' distribution);
- ``connect_seconds``: the same per start day × a finer, 10 %-wide bucket, with the seconds
  added up (the weekly median time to connect);
- ``payouts``: ledger rows per creation day × currency × status, with their amount (Overview's
  payouts this month);
- ``reversed``: succeeded reversals per their payout's creation day × currency × status, with
  the amount taken back (the Payouts page's "reversed" and "net" columns); kept from both
  tables, since a reversal counts under its payout's keys;
- ``events``: webhook events per type × status, undated (Webhooks and sync's per-type table;
  the page shows all-time counts per type, so a per-day split would only multiply the rows it
  reads);
- ``freelancers``: every freelancer, by whether they have a current account (the Accounts
  page's total);
- ``connected``: freelancers with a current account per day they connected (Overview), and
  ``connected_hours`` the same per hour (the partial days at the window's ends);
- ``accounts``: freelancers' current accounts per status × currently-due flag × past-due flag,
  undated (Overview's account tiles), and ``deadlines``: the same accounts per day of their
  requirements deadline (Overview's "deadlines in the next 7 days"; ``deadline_hours`` per
  hour, for the window's partial days). Two tables feed both: an
  account row counts while a freelancer points at it, so both the mirror's and the
  freelancer's triggers move it.

- ``funnel_issued`` / ``funnel_returned`` / ``funnel_connected``: freelancers per day of their
  newest attempt, newest attempt that came back, newest succeeded attempt (the last by the
  verified and paid flags): Connection metrics' funnel for ranges ending today, read from
  ``funnel_freelancers`` (kept by its own triggers, :mod:`lib.summaries.funnel`).

Requirement counts per label are kept by :mod:`lib.requirement_index` itself (labels are Python,
see :mod:`lib.summaries.requirements`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.summaries import funnel
from lib.summaries.ddl import utc_day, utc_hour

#: Connection attempts' time-to-connect buckets: upper bounds in seconds (the last is open).
#: The same bounds as ``lib.connection_metrics.DURATION_BUCKETS`` (a test keeps them equal).
CONNECT_TIME_BOUNDS: tuple[int, ...] = (300, 900, 3_600, 21_600, 86_400, 604_800)


#: Finer buckets for the weekly median time to connect: 30 s, then 10 % wider each (to about
#: three months). The median is read as the mean of the bucket holding the middle connection,
#: so it is within about 5 % of the exact one, and exact when that bucket's values are equal.
FINE_BOUNDS: tuple[int, ...] = tuple(sorted({round(30 * 1.1 ** i) for i in range(132)}))


@dataclass(frozen=True, slots=True)
class Contribution:
    kind: str
    table: str
    #: SQL text over ``{r}`` (a timestamp column's day is written ``{day:column}``).
    day: str | None
    keys: tuple[str, ...]
    #: The columns the contribution reads: an UPDATE touching none of them changes nothing.
    watched: tuple[str, ...]
    amount: str = "0"
    condition: str = "1 = 1"
    #: False for a second way into a kind (the freelancer's side of ``accounts``): its
    #: triggers are needed, but the recount reads the kind from one side only.
    recount: bool = True
    #: What the recount reads instead of ``table`` (SQL for a derived table), when the table is
    #: itself kept by triggers: the check then verifies it too (``funnel_freelancers``).
    source: str | None = None
    #: False when the kind's triggers are written by hand below (its keys live on another
    #: table than its rows: ``reversed``): only the recount is generated.
    triggers: bool = True


def _seconds(start: str, end: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM ({end} - {start}))"
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


def _whole_seconds(dialect: str) -> str:
    seconds = _seconds("{r}.started_at", "{r}.finished_at", dialect)
    cast = "BIGINT" if dialect == "postgresql" else "INTEGER"
    return f"CAST(ROUND(CASE WHEN {seconds} < 0 THEN 0 ELSE {seconds} END) AS {cast})"


def _fine_bucket(dialect: str) -> str:
    seconds = _whole_seconds(dialect)
    whens = " ".join(f"WHEN {seconds} < {bound} THEN '{index:03d}'"
                     for index, bound in enumerate(FINE_BOUNDS))
    return f"CASE {whens} ELSE '{len(FINE_BOUNDS):03d}' END"


def _connect_bucket(dialect: str) -> str:
    seconds = _seconds("{r}.started_at", "{r}.finished_at", dialect)
    whens = " ".join(f"WHEN {seconds} < {bound} THEN '{index}'"
                     for index, bound in enumerate(CONNECT_TIME_BOUNDS))
    return f"CASE {whens} ELSE '{len(CONNECT_TIME_BOUNDS)}' END"


_CURRENT_OWNER = ("EXISTS (SELECT 1 FROM freelancers owner "
                  "WHERE owner.stripe_account_id = {r}.stripe_id)")
_ACCOUNT_WATCHED = ("stripe_id", "status", "currently_due_count", "past_due_count",
                    "current_deadline")


def _funnel(dialect: str) -> tuple[Contribution, ...]:
    source = funnel.source_sql(dialect)
    flags = ("CASE WHEN {r}.verified = 1 THEN '1' ELSE '0' END",
             "CASE WHEN {r}.paid = 1 THEN '1' ELSE '0' END")
    return (
        Contribution("funnel_issued", funnel.TABLE, "{r}.issued_day", (), ("issued_day",),
                     source=source),
        Contribution("funnel_returned", funnel.TABLE, "{r}.returned_day", (),
                     ("returned_day",), condition="{r}.returned_day <> ''", source=source),
        Contribution("funnel_connected", funnel.TABLE, "{r}.connected_day", flags,
                     ("connected_day", "verified", "paid"),
                     condition="{r}.connected_day <> ''", source=source),
    )


def contributions(dialect: str) -> tuple[Contribution, ...]:
    """Every contribution, with SQL for ``dialect`` ('sqlite' or 'postgresql')."""
    return _funnel(dialect) + (
        Contribution("attempts", "connection_attempts", "{day:started_at}",
                     ("{r}.method", "{r}.outcome", "COALESCE({r}.failure_reason, '')"),
                     ("started_at", "method", "outcome", "failure_reason")),
        Contribution("attempt_hours", "connection_attempts", "{hour:started_at}",
                     ("{r}.outcome",), ("started_at", "outcome")),
        Contribution("connect_time", "connection_attempts", "{day:started_at}",
                     (_connect_bucket(dialect),),
                     ("started_at", "finished_at", "outcome"),
                     condition="{r}.outcome = 'succeeded' AND {r}.finished_at IS NOT NULL"),
        Contribution("connect_seconds", "connection_attempts", "{day:started_at}",
                     (_fine_bucket(dialect),), ("started_at", "finished_at", "outcome"),
                     amount=_whole_seconds(dialect),
                     condition="{r}.outcome = 'succeeded' AND {r}.finished_at IS NOT NULL"),
        Contribution("payouts", "payouts", "{day:created_at}",
                     ("{r}.currency", "{r}.status"),
                     ("created_at", "currency", "status", "amount_minor"),
                     amount="{r}.amount_minor"),
        Contribution("reversed", "payout_reversals", "{day:created_at}",
                     ("{r}.currency", "{r}.status"), (), amount="{r}.amount_minor",
                     source=REVERSED_SOURCE, triggers=False),
        Contribution("events", "webhook_events", None, ("{r}.type", "{r}.status"),
                     ("type", "status")),
        Contribution("freelancers", "freelancers", None,
                     ("CASE WHEN {r}.stripe_account_id IS NULL THEN '0' ELSE '1' END",),
                     ("stripe_account_id",)),
        Contribution("connected", "freelancers", "{day:connected_at}", (),
                     ("stripe_account_id", "connected_at"),
                     condition="{r}.stripe_account_id IS NOT NULL"),
        Contribution("connected_hours", "freelancers", "{hour:connected_at}", (),
                     ("stripe_account_id", "connected_at"),
                     condition="{r}.stripe_account_id IS NOT NULL"),
        Contribution("accounts", "connected_accounts", None,
                     ("{r}.status",
                      "CASE WHEN {r}.currently_due_count > 0 THEN '1' ELSE '0' END",
                      "CASE WHEN {r}.past_due_count > 0 THEN '1' ELSE '0' END"),
                     _ACCOUNT_WATCHED[:4], condition=_CURRENT_OWNER),
        Contribution("deadlines", "connected_accounts", "{day:current_deadline}", (),
                     ("stripe_id", "current_deadline"),
                     condition=f"{{r}}.current_deadline IS NOT NULL AND {_CURRENT_OWNER}"),
        Contribution("deadline_hours", "connected_accounts", "{hour:current_deadline}", (),
                     ("stripe_id", "current_deadline"),
                     condition=f"{{r}}.current_deadline IS NOT NULL AND {_CURRENT_OWNER}"),
    )


#: The freelancer's side of ``accounts`` and ``deadlines``: the account it points at, by a join.
FREELANCER_ACCOUNT = (
    "SELECT 'accounts', '', current.status, "
    "CASE WHEN current.currently_due_count > 0 THEN '1' ELSE '0' END, "
    "CASE WHEN current.past_due_count > 0 THEN '1' ELSE '0' END, {sign}, 0 "
    "FROM connected_accounts current WHERE current.stripe_id = {r}.stripe_account_id"
)
FREELANCER_DEADLINE = (
    "SELECT 'deadlines', {day:current.current_deadline}, '', '', '', {sign}, 0 "
    "FROM connected_accounts current WHERE current.stripe_id = {r}.stripe_account_id "
    "AND current.current_deadline IS NOT NULL"
)
FREELANCER_DEADLINE_HOUR = FREELANCER_DEADLINE.replace("'deadlines'", "'deadline_hours'").replace(
    "{day:", "{hour:")

#: Succeeded reversals with the day, currency and status of the payout they took money back from.
REVERSED_SOURCE = (
    "SELECT owner.created_at AS created_at, owner.currency AS currency, owner.status AS status, "
    "taken.amount_minor AS amount_minor FROM payout_reversals taken "
    "JOIN payouts owner ON owner.id = taken.payout_id WHERE taken.status = 'succeeded'"
)
#: ``reversed`` from the reversal's side: a succeeded reversal counts under its payout's keys.
REVERSAL_REVERSED = (
    "SELECT 'reversed', {day:owner.created_at}, owner.currency, owner.status, '', {sign}, "
    "{sign} * {r}.amount_minor FROM payouts owner "
    "WHERE owner.id = {r}.payout_id AND {r}.status = 'succeeded'"
)
#: ``reversed`` from the payout's side: its succeeded reversals move with its day and status.
PAYOUT_REVERSED = (
    "SELECT 'reversed', {day:created_at}, {r}.currency, {r}.status, '', {sign} * COUNT(*), "
    "{sign} * SUM(taken.amount_minor) FROM payout_reversals taken "
    "WHERE taken.payout_id = {r}.id AND taken.status = 'succeeded' HAVING COUNT(*) > 0"
)

KINDS: tuple[str, ...] = ("attempts", "attempt_hours", "connect_time", "connect_seconds",
                          "payouts", "events", "freelancers", "connected_hours",
                          "deadline_hours", "connected", "accounts", "deadlines", "requirements",
                          "funnel_issued", "funnel_returned", "funnel_connected", "reversed")


def render(template: str, *, row: str, dialect: str) -> str:
    """``template`` with ``{r}`` as ``row``, ``{day:column}`` as that column's UTC day and
    ``{hour:column}`` as its UTC hour."""
    out = []
    rest = template
    while "{day:" in rest or "{hour:" in rest:
        at = min(i for i in (rest.find("{day:"), rest.find("{hour:")) if i >= 0)
        head, rest = rest[:at], rest[at + 1:]
        unit, _, tail = rest.partition(":")
        column, _, rest = tail.partition("}")
        if "." not in column:
            column = "{r}." + column
        out.append(head)
        out.append((utc_day if unit == "day" else utc_hour)(column, dialect))
    out.append(rest)
    return "".join(out).replace("{r}", row)


def select_of(item: Contribution, *, row: str, sign: str, dialect: str) -> str:
    """The SELECT that yields ``item``'s summary row for ``row``, signed (+1 or -1)."""
    keys = list(item.keys) + ["''"] * (3 - len(item.keys))
    day = item.day if item.day is not None else "''"
    amount = "0" if item.amount == "0" else f"{sign} * ({item.amount})"
    text = (f"SELECT '{item.kind}', {day}, {', '.join(keys)}, {sign}, {amount} "
            f"WHERE {item.condition}")
    return render(text, row=row, dialect=dialect)


def recount_sql(item: Contribution, *, dialect: str) -> str:
    """A full recount of ``item``'s kind from its table (GROUP BY the summary's key)."""
    keys = list(item.keys) + ["''"] * (3 - len(item.keys))
    day = item.day if item.day is not None else "''"
    source = f"({item.source})" if item.source else item.table
    text = ("SELECT day, k1, k2, k3, COUNT(*), COALESCE(SUM(amount), 0) FROM ("
            f"SELECT {day} AS day, {keys[0]} AS k1, {keys[1]} AS k2, {keys[2]} AS k3, "
            f"{item.amount} AS amount FROM {source} src WHERE {item.condition}) source_rows "
            "GROUP BY day, k1, k2, k3")
    return render(text, row="src", dialect=dialect)
