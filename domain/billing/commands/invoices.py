"""Invoices: drafts, finalisation with a gapless number per clinic and year, payments against
them, voiding.

Numbers: `billing_invoice_counters` holds the last number of each clinic and year (the year in
the clinic's time zone). Finalising bumps that row with an upsert in the same statement that
writes the invoice, so the row stays locked until COMMIT: concurrent finalisations of a clinic
queue behind each other, and a rolled-back one gives its number back with the rollback. Nothing
else is locked while the counter is held but the invoice itself; events and audit rows are
appended at COMMIT (domain.journal), after it, in the one lock order.

Amounts move only by guarded UPDATEs (`amount_paid + $n <= total`, status open), so two
payments racing for the last rupee cannot both land."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from asyncpg.exceptions import UniqueViolationError

from domain import clock, db
from domain.access.policies import require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.billing import events
from domain.billing.models import Invoice, InvoiceLine, InvoiceStatus, LineInput
from domain.billing.queries.invoices import LINES_OF_I, invoice_from_row, load_invoice, visible_invoice
from domain.errors import Conflict, NotFound, invalid_field
from domain.events.commands import record as record_event
from domain.jobs.commands import Planned, schedule_many
from domain.money import MAX_MINOR, check_amount, check_currency
from domain.principal import Principal
from domain.scheduling.commands.transitions import on_expiry
from domain.scheduling.models import Appointment
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinic, require_member

MAX_LINES = 100


# pure rules ----------------------------------------------------------------------------------

def check_lines(lines: list[LineInput], field: str = "lines") -> list[InvoiceLine]:
    """Each line valid (naming `lines[i].x` when not), with its amount computed."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise invalid_field(field, f"between 1 and {MAX_LINES} lines")
    out: list[InvoiceLine] = []
    for i, line in enumerate(lines):
        where = f"{field}.{i}"
        if not isinstance(line.description, str) or not 1 <= len(line.description.strip()) <= 200:
            raise invalid_field(f"{where}.description", "1 to 200 characters")
        q = line.quantity
        if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 10000:
            raise invalid_field(f"{where}.quantity", "a whole number from 1 to 10000")
        unit = check_amount(line.unit_amount, f"{where}.unit_amount", allow_zero=True)
        if q * unit >= MAX_MINOR:
            raise invalid_field(f"{where}.quantity", "quantity x unit_amount is absurdly large")
        out.append(InvoiceLine(description=line.description.strip(), quantity=q,
                               unit_amount=unit, amount=q * unit))
    return out


def totals(lines: list[InvoiceLine], discount: object, tax_rate_bp: int) -> tuple[int, int, int, int]:
    """(subtotal, discount, tax, total). Tax is on the discounted amount, rounded half up to
    the minor unit, in integers."""
    subtotal = sum(line.amount for line in lines)
    if subtotal >= MAX_MINOR:
        raise invalid_field("lines", "the invoice total is absurdly large")
    disc = check_amount(discount, "discount", allow_zero=True)
    if disc > subtotal:
        raise invalid_field("discount", "must not exceed the subtotal")
    base = subtotal - disc
    tax = (base * tax_rate_bp + 5000) // 10000
    return subtotal, disc, tax, base + tax


def number_year(clinic: Clinic, at: datetime) -> int:
    """Numbers restart each calendar year of the clinic's own time zone."""
    return at.astimezone(ZoneInfo(clinic.timezone)).year


# SQL -----------------------------------------------------------------------------------------

#: Take the clinic's next number for the year ($year) and keep its counter row locked.
_NEXT_NUMBER = """
n AS (
    INSERT INTO billing_invoice_counters (clinic_id, year, last_number) VALUES ({clinic}, {year}, 1)
    ON CONFLICT (clinic_id, year)
        DO UPDATE SET last_number = billing_invoice_counters.last_number + 1
    RETURNING 'INV-' || year || '-' || lpad(last_number::text, greatest(6, length(last_number::text)), '0')
        AS number
)"""

_INSERT_LINES = """
l AS (
    INSERT INTO billing_invoice_lines (invoice_id, position, description, quantity, unit_amount,
                                       amount)
    SELECT $1, t.pos, t.d, t.q, t.u, t.q * t.u
    FROM unnest($19::text[], $20::int[], $21::bigint[]) WITH ORDINALITY AS t(d, q, u, pos)
)"""

#: $6 number (drafts: NULL, finalised: from `n`), $7 status.
_INSERT_INVOICE = """
i AS (
    INSERT INTO billing_invoices (id, clinic_id, patient_id, appointment_id, subscription_id,
        number, status, currency, subtotal, discount, tax_rate_bp, tax_label, tax, total,
        amount_paid, due_at, finalized_at, paid_at, created_by, created_at)
    SELECT $1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::uuid, {number}, $7::text, $8::text,
        $9::bigint, $10::bigint, $11::int, $12::text, $13::bigint, $14::bigint, 0,
        $15::timestamptz, $16::timestamptz, CASE WHEN $7::text = 'paid' THEN $16::timestamptz END,
        $17::uuid, $18::timestamptz
    {source}
    RETURNING *
)"""

_OPEN = ("WITH" + _NEXT_NUMBER.format(clinic="$2", year="$6::int") + ","
         + _INSERT_INVOICE.format(number="n.number", source="FROM n") + "," + _INSERT_LINES
         + "\nSELECT * FROM i")
_DRAFT = ("WITH" + _INSERT_INVOICE.format(number="NULL::text", source="WHERE $6::int IS NULL")
          + "," + _INSERT_LINES + "\nSELECT * FROM i")

_FINALIZE = ("WITH" + _NEXT_NUMBER.format(clinic="$2", year="$3::int") + """,
i AS (
    UPDATE billing_invoices SET number = n.number, status = $4::text, due_at = $5::timestamptz,
        finalized_at = $6::timestamptz,
        paid_at = CASE WHEN $4::text = 'paid' THEN $6::timestamptz END, updated_at = now()
    FROM n WHERE id = $1 AND status = 'draft'
    RETURNING billing_invoices.*
)
SELECT i.*, """ + LINES_OF_I + " AS lines FROM i")

#: The guarded payment: only an open invoice of that currency, never above what is owed.
_PAY = """
UPDATE billing_invoices i SET amount_paid = amount_paid + $2,
    status = CASE WHEN amount_paid + $2 = total THEN 'paid' ELSE status END,
    paid_at = CASE WHEN amount_paid + $2 = total THEN now() ELSE paid_at END,
    updated_at = now()
WHERE id = $1 AND status = 'open' AND currency = $3 AND amount_paid + $2 <= total
RETURNING i.*, """ + LINES_OF_I + " AS lines"

_VOID = """
UPDATE billing_invoices i SET status = 'void', voided_at = now(), updated_at = now()
WHERE id = $1 AND status = 'open' AND amount_paid = 0
RETURNING i.*, """ + LINES_OF_I + " AS lines"

_VOID_EXPIRED = """
UPDATE billing_invoices i SET status = 'void', voided_at = now(), updated_at = now()
WHERE appointment_id = ANY($1::uuid[]) AND status = 'open' AND amount_paid = 0
RETURNING i.*, '[]'::json AS lines
"""


# events --------------------------------------------------------------------------------------

async def _event(actor: Principal | None, kind: type[events.InvoiceEvent], invoice: Invoice) -> None:
    await record_event(actor, clinic_id=invoice.clinic_id, event=kind(
        invoice_id=invoice.id, patient_id=invoice.patient_id,
        appointment_id=invoice.appointment_id, number=invoice.number,
        status=invoice.status.value, currency=invoice.currency, total=invoice.total,
        amount_paid=invoice.amount_paid), audience=events.audience(invoice.clinic_id,
                                                                    invoice.patient_id))


async def _audit(actor: Principal | None, action: str, invoice: Invoice, **detail: object) -> None:
    await record(actor, action=action, resource_type="invoice", resource_id=invoice.id,
                 clinic_id=invoice.clinic_id,
                 detail={"number": invoice.number, "status": invoice.status.value,
                         "currency": invoice.currency, "total": invoice.total, **detail})


#: The job that renders and stores a finalised invoice's PDF (tasks/billing_pdf.py), after the
#: finalisation commits: rendering never holds the counter row's lock.
PDF_TASK = "billing.invoice_pdf"


async def _plan_pdf(invoice: Invoice) -> None:
    await schedule_many([Planned(task=PDF_TASK, job_key=f"invoice-pdf:{invoice.id}",
                                 run_at=clock.now(), payload={"invoice_id": str(invoice.id)})],
                        wake_within=5.0)


# commands ------------------------------------------------------------------------------------

async def _insert(actor: Principal | None, clinic: Clinic, *, patient_id: uuid.UUID,
                  lines: list[LineInput], discount: int, appointment_id: uuid.UUID | None,
                  subscription_id: uuid.UUID | None, final: bool) -> Invoice:
    billing = clinic.settings.billing
    checked = check_lines(lines)
    subtotal, disc, tax, total = totals(checked, discount, billing.tax_rate_bp)
    now = clock.now()
    status = (InvoiceStatus.DRAFT if not final
              else InvoiceStatus.PAID if total == 0 else InvoiceStatus.OPEN)
    due_at = now + timedelta(days=billing.invoice_due_days) if final else None
    try:
        rows = await db.fetch(
            _OPEN if final else _DRAFT, uuid.uuid4(), clinic.id, patient_id, appointment_id,
            subscription_id, number_year(clinic, now) if final else None, status.value,
            billing.currency, subtotal, disc, billing.tax_rate_bp, billing.tax_label, tax, total,
            due_at, now if final else None, actor.user_id if actor else None, now,
            [x.description for x in checked], [x.quantity for x in checked],
            [x.unit_amount for x in checked])
    except UniqueViolationError as exc:
        if exc.constraint_name != "billing_invoices_appointment":
            raise
        raise Conflict("the appointment already has an invoice that is not void",
                       resource_type="appointment", resource_id=appointment_id) from None
    return invoice_from_row(rows[0], checked)


async def open_invoice(actor: Principal | None, clinic: Clinic, *, patient_id: uuid.UUID,
                       lines: list[LineInput], discount: int = 0,
                       appointment_id: uuid.UUID | None = None,
                       subscription_id: uuid.UUID | None = None) -> Invoice:
    """Create and finalise in one statement (inside the caller's transaction): the invoice
    gets its number, tax from the clinic's billing settings, its currency and its due date.
    A zero total is paid at once. Records invoice.opened (or .paid) and an audit row."""
    invoice = await _insert(actor, clinic, patient_id=patient_id, lines=lines,
                            discount=discount, appointment_id=appointment_id,
                            subscription_id=subscription_id, final=True)
    await _event(actor, events.InvoicePaid if invoice.status is InvoiceStatus.PAID
                 else events.InvoiceOpened, invoice)
    await _audit(actor, "invoices:open", invoice)
    await _plan_pdf(invoice)
    return invoice


async def create_draft(principal: Principal, *, clinic_id: uuid.UUID, patient_id: uuid.UUID,
                       lines: list[LineInput], discount: int = 0) -> Invoice:
    """`POST /billing/invoices`: staff write a draft for a patient of the clinic; it has no
    number until it is finalised."""
    async with db.transaction():
        require(principal, "invoices:manage", clinic_id, resource_type="invoice")
        clinic = await load_clinic(clinic_id)
        await require_member(clinic_id, patient_id, role=Role.PATIENT,
                             otherwise=invalid_field("patient_id", "not a patient of this clinic"))
        invoice = await _insert(principal, clinic, patient_id=patient_id, lines=lines,
                                discount=discount, appointment_id=None, subscription_id=None,
                                final=False)
        await _audit(principal, "invoices:create", invoice)
    return invoice


async def finalize(principal: Principal, invoice_id: uuid.UUID) -> Invoice:
    """A draft takes the clinic's next number and opens (a zero total is paid at once)."""
    async with db.transaction():
        draft = await visible_invoice(principal, invoice_id, "invoices:manage", lock=True)
        if draft.status is not InvoiceStatus.DRAFT:
            raise Conflict(f"invoice is {draft.status}, not a draft", resource_type="invoice",
                           resource_id=invoice_id)
        clinic = await load_clinic(draft.clinic_id)
        now = clock.now()
        status = InvoiceStatus.PAID if draft.total == 0 else InvoiceStatus.OPEN
        rows = await db.fetch(_FINALIZE, invoice_id, draft.clinic_id, number_year(clinic, now),
                              status.value,
                              now + timedelta(days=clinic.settings.billing.invoice_due_days), now)
        invoice = invoice_from_row(rows[0])
        await _event(principal, events.InvoicePaid if status is InvoiceStatus.PAID
                     else events.InvoiceOpened, invoice)
        await _audit(principal, "invoices:finalize", invoice)
        await _plan_pdf(invoice)
    return invoice


async def void_invoice(principal: Principal, invoice_id: uuid.UUID, *, reason: str) -> Invoice:
    """An open invoice nothing was paid against is voided (its number stays used: a void
    invoice is history, never a gap). A paid one needs a refund, not a void."""
    if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= 500:
        raise invalid_field("reason", "1 to 500 characters")
    async with db.transaction():
        current = await visible_invoice(principal, invoice_id, "invoices:manage", lock=True)
        if current.status is not InvoiceStatus.OPEN or current.amount_paid:
            why = ("something was paid against it: refund first" if current.amount_paid
                   else f"it is {current.status}")
            raise Conflict(f"invoice cannot be voided: {why}", resource_type="invoice",
                           resource_id=invoice_id)
        rows = await db.fetch(_VOID, invoice_id)
        invoice = invoice_from_row(rows[0])
        await _event(principal, events.InvoiceVoided, invoice)
        await _audit(principal, "invoices:void", invoice, reason=reason.strip())
    return invoice


async def record_payment(invoice_id: uuid.UUID, amount: int, currency: str) -> Invoice:
    """Money received against an invoice (inside the caller's transaction): one guarded UPDATE
    that also locks the row; the invoice is paid when the amount reaches the total
    (invoice.paid). Refused: a void, uncollectible, draft or paid invoice (409), another
    currency (422 currency), more than is owed (422 amount)."""
    check_amount(amount)
    check_currency(currency)
    rows = await db.fetch(_PAY, invoice_id, amount, currency)
    if not rows:
        raise await _why_not_paid(invoice_id, amount, currency)
    invoice = invoice_from_row(rows[0])
    if invoice.status is InvoiceStatus.PAID:
        await _event(None, events.InvoicePaid, invoice)
    await _audit(None, "invoices:payment", invoice, amount=amount,
                 amount_paid=invoice.amount_paid)
    return invoice


async def _why_not_paid(invoice_id: uuid.UUID, amount: int, currency: str) -> Exception:
    """Only on a refusal: read the invoice to say which rule refused."""
    try:
        invoice = await load_invoice(invoice_id)
    except NotFound as exc:
        return exc
    if invoice.status is not InvoiceStatus.OPEN:
        return Conflict(f"invoice is {invoice.status}: it takes no payment",
                        resource_type="invoice", resource_id=invoice_id)
    if invoice.currency != currency:
        return invalid_field("currency", f"the invoice is in {invoice.currency}")
    owed = invoice.total - invoice.amount_paid
    if amount > owed:
        return invalid_field("amount", f"more than the {owed} still owed")
    return Conflict("invoice changed meanwhile; try again", resource_type="invoice",
                    resource_id=invoice_id)


@on_expiry
async def void_expired(appointments: list[Appointment]) -> None:
    """The payment window ended: the unpaid invoices of those appointments are voided (inside
    the expiry's transaction, one statement however many)."""
    rows = await db.fetch(_VOID_EXPIRED, [a.id for a in appointments])
    for row in rows:
        invoice = invoice_from_row(row, [])
        await _event(None, events.InvoiceVoided, invoice)
        await _audit(None, "invoices:void", invoice, reason="payment window ended")
