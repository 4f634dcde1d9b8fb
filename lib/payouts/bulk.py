"""Bulk payouts from a CSV: a dry-run preview, then a confirm that can be repeated safely.

The file: a header row naming ``freelancer_email`` or ``freelancer_id`` (either or both),
``amount``, ``currency`` and optionally ``description`` and ``reference`` (an invoice number,
at most 100 characters); UTF-8 (a BOM is fine), at most :data:`MAX_CSV_BYTES` and
:data:`MAX_ROWS` rows. The preview shows each row by its line number (the header is line 1).

Row identity
    A row is identified by its **content** (:mod:`lib.payouts.bulk_keys`: freelancer, amount,
    currency, description, reference), never by the file's bytes or the row's line: a sheet
    saved again with other line endings, a BOM, a trailing newline, reordered columns or sorted
    rows is the same instruction and finds the payouts it already made. Two rows of one file
    with the same content are refused as duplicates unless a reference or description tells
    them apart.

Preview (:func:`preview_bulk`) parses every row and names every problem (missing field, unknown
freelancer, bad amount or currency, a duplicate of an earlier row, an account that fails its
preflight checks); it totals the good rows per currency against the platform's available
balance (one ``Balance.retrieve``). It writes nothing.

Confirm (:func:`confirm_bulk`) takes the session *factory*: each good row becomes its own payout
request (committed) and is then executed (its own transactions around its own Stripe call, see
:mod:`lib.payouts.execution`), so one row's failure or a crash never undoes another's payment.
Rows are keyed by their content key, a UNIQUE column of the ledger: confirming the same file
again, or re-uploading it (re-saved or not) after a crash, finds each row's existing payout and
only finishes what is unfinished (retrying unknown outcomes with the same key).
The preview also flags rows that look like a payout already in the ledger by other means (the
same freelancer, amount, currency and description within the duplicate window, see
:mod:`lib.payouts.duplicates`); confirm refuses such a file until the operator acknowledges them.
Rows at or above the approval threshold wait for a second operator like any other payout.
Confirm refuses to start when the good rows still to pay exceed the available balance of
their currency, so a batch is never left half-paid for lack of funds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lib import audit
from lib.errors import ConflictError, ConnectOpsError, StripeGatewayError, ValidationError
from lib.freelancers import normalise_email
from lib.models import ConnectedAccount, Freelancer, Payout, PayoutStatus, PayoutType
from lib.money import Money, format_money
from lib.payouts.bulk_keys import bulk_row_key
from lib.payouts.duplicates import find_payout_duplicate
from lib.payouts.execution import execute_payout
from lib.payouts.ledger import parse_money, request_payout
from lib.payouts.preflight import PreflightResult, account_checks, available_in
from lib.roles import Action, AuditedRefusal, Operator, authorize, authorize_in
from lib.settings import Settings
from lib.stripe_gateway import StripeGateway

logger = logging.getLogger(__name__)

MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5_000
DEFAULT_DESCRIPTION = "Bulk payout"

MISSING_FIELD = "missing_field"
UNKNOWN_FREELANCER = "unknown_freelancer"
BAD_AMOUNT = "bad_amount"
BAD_DESCRIPTION = "bad_description"
BAD_REFERENCE = "bad_reference"
MAX_REFERENCE = 100
DUPLICATE_ROW = "duplicate_row"
NOT_PAYABLE = "not_payable"

#: Ledger states of a bulk row that need no more money from the balance.
_DONE_OR_SENT = frozenset({PayoutStatus.PAID, PayoutStatus.SUBMITTED, PayoutStatus.UNKNOWN,
                           PayoutStatus.REVERSED, PayoutStatus.FAILED, PayoutStatus.REJECTED})


@dataclass(frozen=True, slots=True)
class BulkProblem:
    code: str
    message: str


@dataclass(slots=True)
class BulkRow:
    """One CSV row as understood: what it would pay, and every problem with it."""

    row_number: int
    freelancer_ref: str
    amount_text: str
    currency_text: str
    description: str
    reference: str | None = None
    freelancer_id: int | None = None
    freelancer_name: str | None = None
    money: Money | None = None
    preflight: PreflightResult | None = None
    problems: list[BulkProblem] = field(default_factory=list)
    #: The content key (set once freelancer and amount are known).
    row_key: str | None = None
    #: The payout this very row already made (a re-upload resumes it, never pays it again).
    existing_payout_id: int | None = None
    existing_status: str | None = None
    #: A payout made otherwise that this row looks like (confirm needs an acknowledgement).
    matches_payout_id: int | None = None
    match_detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_row(self) -> dict[str, Any]:
        return {
            "row": self.row_number, "freelancer": self.freelancer_ref,
            "freelancer_id": self.freelancer_id, "name": self.freelancer_name,
            "amount": format_money(self.money) if self.money else self.amount_text,
            "amount_minor": self.money.amount_minor if self.money else None,
            "currency": self.money.currency if self.money else self.currency_text,
            "description": self.description, "reference": self.reference or "",
            "ok": self.ok, "problems": "; ".join(p.message for p in self.problems),
            "problem_codes": ",".join(p.code for p in self.problems),
            "already_in_ledger": (f"#{self.existing_payout_id} ({self.existing_status})"
                                  if self.existing_payout_id else ""),
            "looks_like": self.match_detail,
        }


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    """The good rows of one currency against the platform's available balance."""

    currency: str
    rows: int
    amount_minor: int
    available_minor: int | None

    @property
    def covered(self) -> bool:
        return self.available_minor is not None and self.available_minor >= self.amount_minor

    def to_row(self) -> dict[str, Any]:
        return {"currency": self.currency, "rows": self.rows,
                "total": format_money(Money(self.amount_minor, self.currency)),
                "available": format_money(Money(self.available_minor, self.currency))
                if self.available_minor is not None else "unknown",
                "covered": self.covered}


@dataclass(slots=True)
class BulkPreview:
    fingerprint: str
    rows: list[BulkRow]
    totals: list[CurrencyTotal]
    balance_error: str | None = None

    @property
    def good_rows(self) -> list[BulkRow]:
        return [r for r in self.rows if r.ok]

    @property
    def bad_rows(self) -> list[BulkRow]:
        return [r for r in self.rows if not r.ok]

    @property
    def covered(self) -> bool:
        return all(t.covered for t in self.totals)

    @property
    def ledger_matches(self) -> list[BulkRow]:
        """Good rows that look like a payout already made otherwise (acknowledge before paying)."""
        return [r for r in self.rows if r.ok and r.matches_payout_id is not None]

    @property
    def already_in_ledger(self) -> list[BulkRow]:
        """Good rows this file (or a re-saved copy) already made a payout for."""
        return [r for r in self.rows if r.ok and r.existing_payout_id is not None]

    def to_rows(self) -> list[dict[str, Any]]:
        return [r.to_row() for r in self.rows]


@dataclass(frozen=True, slots=True)
class BulkRowResult:
    row_number: int
    payout_id: int | None
    status: str
    detail: str = ""


@dataclass(slots=True)
class BulkResult:
    fingerprint: str
    results: list[BulkRowResult]
    skipped: list[BulkRow]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def to_rows(self) -> list[dict[str, Any]]:
        return [{"row": r.row_number, "payout_id": r.payout_id, "status": r.status,
                 "detail": r.detail} for r in self.results]


def fingerprint_of(csv_bytes: bytes) -> str:
    """The upload's SHA-256 (names the upload in the audit log; rows are keyed by content)."""
    return hashlib.sha256(csv_bytes).hexdigest()


def _decode(csv_bytes: bytes) -> str:
    if not isinstance(csv_bytes, bytes | bytearray):
        raise ValidationError("The CSV must be given as bytes.")
    if not csv_bytes.strip():
        raise ValidationError("The CSV file is empty.")
    if len(csv_bytes) > MAX_CSV_BYTES:
        raise ValidationError(
            f"The CSV file is {len(csv_bytes):,} bytes; the limit is {MAX_CSV_BYTES:,}. "
            "Split it into smaller files."
        )
    try:
        text = bytes(csv_bytes).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"The CSV file is not UTF-8 (byte {exc.start}): save it as 'CSV UTF-8'."
        ) from None
    if "\x00" in text:
        raise ValidationError("The CSV file contains NUL bytes: is it really a CSV?")
    return text


def _read(csv_bytes: bytes) -> list[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(_decode(csv_bytes), newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise ValidationError("The CSV file has no header row.")
        names = [h.strip().lower() for h in header]
        has_ref = "freelancer_email" in names or "freelancer_id" in names
        missing = [n for n in ("amount", "currency") if n not in names]
        if not has_ref or missing:
            need = missing + ([] if has_ref else ["freelancer_email or freelancer_id"])
            raise ValidationError(
                "The CSV header must name freelancer_email or freelancer_id, amount, currency "
                f"(and optionally description, reference); missing: {', '.join(need)}."
            )
        if len(set(names)) != len(names):
            raise ValidationError("The CSV header names a column twice.")
        rows: list[tuple[int, dict[str, str]]] = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(rows) >= MAX_ROWS:
                raise ValidationError(f"The CSV file has more than {MAX_ROWS:,} rows.")
            padded = values + [""] * (len(names) - len(values))
            row = {name: padded[i].strip() for i, name in enumerate(names)}
            if len(values) > len(names):
                row["__extra__"] = "x"
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise ValidationError(f"The CSV file is malformed at line {reader.line_num}: {exc}.") \
            from None
    if not rows:
        raise ValidationError("The CSV file has a header but no rows.")
    return rows


def _freelancers(session: Session, rows: list[tuple[int, dict[str, str]]]
                 ) -> tuple[dict[int, Freelancer], dict[str, Freelancer]]:
    ids = {int(r["freelancer_id"]) for _, r in rows
           if r.get("freelancer_id", "").isdigit() and len(r["freelancer_id"]) < 12}
    emails = {r["freelancer_email"].lower() for _, r in rows if r.get("freelancer_email")}
    by_id: dict[int, Freelancer] = {}
    by_email: dict[str, Freelancer] = {}
    for chunk in _chunks(sorted(ids)):
        for f in session.scalars(select(Freelancer).where(Freelancer.id.in_(chunk))):
            by_id[f.id] = f
    for chunk in _chunks(sorted(emails)):
        for f in session.scalars(select(Freelancer).where(Freelancer.email.in_(chunk))):
            by_email[f.email] = f
    return by_id, by_email


def _accounts(session: Session, freelancers: list[Freelancer]) -> dict[str, ConnectedAccount]:
    ids = sorted({f.stripe_account_id for f in freelancers if f.stripe_account_id})
    found: dict[str, ConnectedAccount] = {}
    for chunk in _chunks(ids):
        for a in session.scalars(select(ConnectedAccount).where(
            ConnectedAccount.stripe_id.in_(chunk)
        )):
            found[a.stripe_id] = a
    return found


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def _resolve_freelancer(row: BulkRow, raw: dict[str, str], by_id: dict[int, Freelancer],
                        by_email: dict[str, Freelancer]) -> Freelancer | None:
    fid, email = raw.get("freelancer_id", ""), raw.get("freelancer_email", "")
    if not fid and not email:
        row.problems.append(BulkProblem(MISSING_FIELD, "No freelancer_email or freelancer_id."))
        return None
    found_by_id = by_id.get(int(fid)) if fid.isdigit() and len(fid) < 12 else None
    found_by_email = None
    if email:
        try:
            found_by_email = by_email.get(normalise_email(email))
        except ValidationError:
            row.problems.append(BulkProblem(UNKNOWN_FREELANCER, f"{email!r} is not an email."))
            return None
    if fid and found_by_id is None:
        row.problems.append(BulkProblem(UNKNOWN_FREELANCER, f"No freelancer has id {fid!r}."))
        return None
    if email and found_by_email is None:
        row.problems.append(BulkProblem(UNKNOWN_FREELANCER, f"No freelancer has email {email}."))
        return None
    if found_by_id and found_by_email and found_by_id.id != found_by_email.id:
        row.problems.append(BulkProblem(
            UNKNOWN_FREELANCER, f"Freelancer id {fid} and email {email} are different people."))
        return None
    return found_by_id or found_by_email


def _build_rows(session: Session, csv_bytes: bytes, settings: Settings) -> list[BulkRow]:
    raw_rows = _read(csv_bytes)
    by_id, by_email = _freelancers(session, raw_rows)
    accounts = _accounts(session, [*by_id.values(), *by_email.values()])
    seen: dict[str, int] = {}
    rows: list[BulkRow] = []
    for line, raw in raw_rows:
        description = raw.get("description", "") or DEFAULT_DESCRIPTION
        reference = raw.get("reference", "") or None
        row = BulkRow(
            row_number=line,
            freelancer_ref=raw.get("freelancer_email") or raw.get("freelancer_id", ""),
            amount_text=raw.get("amount", ""), currency_text=raw.get("currency", ""),
            description=description, reference=reference,
        )
        rows.append(row)
        if "__extra__" in raw:
            row.problems.append(BulkProblem(MISSING_FIELD, "The row has more fields than the "
                                            "header (a stray comma?)."))
        freelancer = _resolve_freelancer(row, raw, by_id, by_email)
        for name in ("amount", "currency"):
            if not raw.get(name):
                row.problems.append(BulkProblem(MISSING_FIELD, f"The {name} is empty."))
        if raw.get("amount") and raw.get("currency"):
            try:
                row.money = parse_money(raw["amount"], raw["currency"], settings=settings)
            except ValidationError as exc:
                row.problems.append(BulkProblem(BAD_AMOUNT, exc.message))
        if len(description) > 500 or any(ord(ch) < 32 for ch in description):
            row.problems.append(BulkProblem(BAD_DESCRIPTION, "The description must be one line "
                                            "of at most 500 characters."))
        if reference is not None and (len(reference) > MAX_REFERENCE
                                      or any(ord(ch) < 32 for ch in reference)):
            row.problems.append(BulkProblem(BAD_REFERENCE, "The reference must be one line of at "
                                            f"most {MAX_REFERENCE} characters."))
        if freelancer is None:
            continue
        row.freelancer_id, row.freelancer_name = freelancer.id, freelancer.name
        if row.money is None:
            continue
        row.row_key = bulk_row_key(
            freelancer_id=freelancer.id, amount_minor=row.money.amount_minor,
            currency=row.money.currency, description=description, reference=reference)
        if row.row_key in seen:
            row.problems.append(BulkProblem(
                DUPLICATE_ROW, f"Same freelancer, amount, currency, description and reference as "
                f"line {seen[row.row_key]}: give it a reference (or a distinct description) if "
                "both are meant."))
            continue
        seen[row.row_key] = line
        account = accounts.get(freelancer.stripe_account_id or "")
        row.preflight = PreflightResult(tuple(account_checks(freelancer, account, row.money)))
        if not row.preflight.ok:
            row.problems.append(BulkProblem(NOT_PAYABLE, row.preflight.summary()))
    return rows


def _totals(rows: list[BulkRow], balance: dict[str, Any] | None) -> list[CurrencyTotal]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        if row.ok and row.money is not None:
            sums[row.money.currency][0] += 1
            sums[row.money.currency][1] += row.money.amount_minor
    return [
        CurrencyTotal(currency=c, rows=n, amount_minor=total,
                      available_minor=available_in(balance, c) if balance is not None else None)
        for c, (n, total) in sorted(sums.items())
    ]


def _balance(gateway: StripeGateway | None) -> tuple[dict[str, Any] | None, str | None]:
    if gateway is None:
        return None, "no Stripe gateway configured"
    try:
        return gateway.retrieve_balance().data, None
    except StripeGatewayError as exc:
        logger.warning("bulk balance read failed: %s", exc)
        return None, exc.message


def _mark_ledger_matches(session: Session, rows: list[BulkRow], settings: Settings) -> None:
    """Say which rows this file already paid, and which look like payouts made otherwise."""
    keys = [r.row_key for r in rows if r.ok and r.row_key]
    existing: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(keys):
        for key, payout_id, status in session.execute(
            select(Payout.bulk_row_key, Payout.id, Payout.status)
            .where(Payout.bulk_row_key.in_(chunk))
        ):
            existing[str(key)] = (int(payout_id), str(status))
    for row in rows:
        if not row.ok or row.row_key is None or row.money is None:
            continue
        if row.row_key in existing:
            row.existing_payout_id, row.existing_status = existing[row.row_key]
            continue
        assert row.freelancer_id is not None
        earlier = find_payout_duplicate(session, freelancer_id=row.freelancer_id,
                                        money=row.money, description=row.description,
                                        settings=settings)
        if earlier is not None:
            row.matches_payout_id = earlier.id
            row.match_detail = (f"payout #{earlier.id} ({earlier.status}, "
                                f"{earlier.created_at:%Y-%m-%d}, {earlier.payout_type})")


def preview_bulk(
    session: Session, *, gateway: StripeGateway | None, operator: Operator, csv_bytes: bytes,
    settings: Settings,
) -> BulkPreview:
    """Validate every row and total the good ones against the balance; writes nothing."""
    authorize(operator, Action.REQUEST_PAYOUT, session=session)
    rows = _build_rows(session, csv_bytes, settings)
    _mark_ledger_matches(session, rows, settings)
    to_pay = [r for r in rows if r.ok and r.existing_payout_id is None]
    balance, error = _balance(gateway)
    return BulkPreview(fingerprint=fingerprint_of(csv_bytes), rows=rows,
                       totals=_totals(to_pay, balance), balance_error=error)


def confirm_bulk(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    csv_bytes: bytes, settings: Settings, acknowledge_matches: bool = False,
) -> BulkResult:
    """Create and send a payout for every good row, once, however often this is called.

    Rows that look like payouts made otherwise (see :attr:`BulkPreview.ledger_matches`) refuse
    the whole file unless ``acknowledge_matches`` says the operator checked them.
    """
    try:
        authorize_in(factory, operator, Action.REQUEST_PAYOUT)
        fingerprint = fingerprint_of(csv_bytes)
        with factory() as session:
            rows = _build_rows(session, csv_bytes, settings)
            _mark_ledger_matches(session, rows, settings)
        matches = [r for r in rows if r.ok and r.matches_payout_id is not None]
        if matches and not acknowledge_matches:
            lines = ", ".join(f"line {r.row_number} ~ {r.match_detail}" for r in matches[:10])
            more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
            raise ConflictError(
                f"{len(matches)} row(s) look like payouts already in the ledger ({lines}{more}). "
                "Check them, then confirm again acknowledging them, or remove them.")
        to_pay = [r for r in rows if r.ok and PayoutStatus(
            r.existing_status or PayoutStatus.PENDING) not in _DONE_OR_SENT]
        balance, error = _balance(gateway)
        short = [t for t in _totals(to_pay, balance) if not t.covered]
        if short:
            detail = error or "; ".join(
                f"{t.currency.upper()} needs {format_money(Money(t.amount_minor, t.currency))}, "
                f"{format_money(Money(t.available_minor or 0, t.currency))} available"
                for t in short)
            raise ConflictError(f"Not enough available balance for this file: {detail}.")
    except ConnectOpsError as exc:
        if not isinstance(exc, AuditedRefusal):  # authorize already wrote that one
            audit.record_now(factory, actor=operator, action="payout.bulk_confirm",
                             result=f"refused:{exc.code}", detail=exc.message,
                             input={"bytes": len(csv_bytes) if isinstance(csv_bytes, bytes)
                                    else 0})
        raise

    audit.record_now(factory, actor=operator, action="payout.bulk_confirm",
                     result="started", target=f"bulk:{fingerprint[:16]}",
                     input={"fingerprint": fingerprint, "rows": len(rows),
                            "good": sum(1 for r in rows if r.ok), "to_pay": len(to_pay),
                            "already_in_ledger": sum(1 for r in rows if r.existing_payout_id),
                            "acknowledged_matches": [r.matches_payout_id for r in matches]})
    results = [_pay_row(factory, gateway=gateway, operator=operator, settings=settings,
                        row=row, fingerprint=fingerprint) for row in rows if row.ok]
    result = BulkResult(fingerprint=fingerprint, results=results,
                        skipped=[r for r in rows if not r.ok])
    audit.record_now(factory, actor=operator, action="payout.bulk_confirm",
                     result="finished", target=f"bulk:{fingerprint[:16]}",
                     input={status.value: result.count(status.value) for status in PayoutStatus})
    logger.info("bulk %s: %d rows, %d paid, %d skipped", fingerprint[:12], len(results),
                result.count("paid"), len(result.skipped))
    return result


def _pay_row(
    factory: sessionmaker[Session], *, gateway: StripeGateway, operator: Operator,
    settings: Settings, row: BulkRow, fingerprint: str,
) -> BulkRowResult:
    assert row.money is not None and row.freelancer_id is not None and row.row_key is not None
    try:
        with factory.begin() as session:
            # The ledger match was shown in the preview and acknowledged at confirm; the content
            # key (unique) is what keeps this row from ever making a second payout.
            payout = request_payout(
                session, operator=operator, freelancer_id=row.freelancer_id, amount=row.money,
                currency=row.money.currency, description=row.description,
                client_request_token=None, settings=settings, payout_type=PayoutType.BULK,
                bulk_fingerprint=fingerprint, bulk_row=row.row_number, bulk_row_key=row.row_key,
                reference=row.reference, check_duplicates=False,
            )
            payout_id, status = payout.id, PayoutStatus(payout.status)
        if status in (PayoutStatus.PENDING, PayoutStatus.UNKNOWN, PayoutStatus.SUBMITTED):
            # The file's total was checked against the balance; Stripe refuses a short row.
            payout = execute_payout(factory, gateway=gateway, payout_id=payout_id,
                                    operator=operator, recheck_balance=False)
        return BulkRowResult(row.row_number, payout.id, payout.status, payout.error_message or "")
    except ConnectOpsError as exc:
        logger.warning("bulk row %s not paid: %s", row.row_number, exc)
        return BulkRowResult(row.row_number, None, "error", exc.message)
