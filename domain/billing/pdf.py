"""Invoice PDFs: rendered with fpdf2 (pure Python), amounts in the clinic's currency format
(babel, through domain.money.display), dates in the clinic's time zone; stored once per state
of the invoice (`invoices/{clinic}/{number}-{status}.pdf`, the key in billing_invoices.pdf_key),
so a paid invoice's PDF says paid and an open one's is never rendered twice.

Rendering happens outside any transaction: by the job finalisation plans (tasks/billing_pdf.py),
or by the first GET that finds no PDF of the invoice's current state."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import get_currency_symbol
from fpdf import FPDF

from domain import db
from domain.billing import storage
from domain.billing.models import Invoice, InvoiceStatus
from domain.billing.queries.invoices import load_invoice, pdf_key_of
from domain.errors import Conflict
from domain.money import display
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinic, load_member

#: A Unicode font when the host has one (the rupee sign, Devanagari names need it); otherwise
#: the PDF core font, with currency codes in place of symbols it cannot encode.
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
)

_STATUS_TEXT = {
    InvoiceStatus.OPEN: "Payment due",
    InvoiceStatus.PAID: "Paid",
    InvoiceStatus.VOID: "Void",
    InvoiceStatus.UNCOLLECTIBLE: "Uncollectible",
}


@lru_cache(maxsize=1)
def _unicode_font() -> str | None:
    return next((p for p in _FONT_CANDIDATES if Path(p).is_file()), None)


def key_for(invoice: Invoice) -> str:
    return f"invoices/{invoice.clinic_id}/{invoice.number}-{invoice.status.value}.pdf"


class _Doc:
    """The page and the one font choice every line goes through."""

    def __init__(self, locale: str) -> None:
        self.pdf = FPDF(format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=15)
        self.pdf.add_page()
        self.locale = locale
        font = _unicode_font()
        self.unicode = font is not None
        if font is not None:
            self.pdf.add_font("body", "", font)
            self.family = "body"
        else:
            self.family = "helvetica"

    def text(self, value: str) -> str:
        return value if self.unicode else value.encode("latin-1", "replace").decode("latin-1")

    def money(self, amount: int, currency: str) -> str:
        shown = display(amount, currency, self.locale)
        if not self.unicode:
            symbol = str(get_currency_symbol(currency, locale=self.locale))
            if symbol != currency and not _latin1(symbol):
                shown = shown.replace(symbol, f"{currency} ")
        return self.text(shown)

    def line(self, value: str, *, size: float = 10, height: float = 6) -> None:
        self.pdf.set_font(self.family, size=size)
        self.pdf.multi_cell(0, height, self.text(value), new_x="LMARGIN", new_y="NEXT")

    def row(self, cells: list[tuple[str, float, str]], *, size: float = 10) -> None:
        """(text, width mm, align L/R) per cell, on one line."""
        self.pdf.set_font(self.family, size=size)
        for value, width, align in cells:
            self.pdf.cell(width, 7, self.text(value), align=align)
        self.pdf.ln(7)


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def render(invoice: Invoice, clinic: Clinic, patient_name: str, *, locale: str = "en") -> bytes:
    """The invoice as a one-document PDF (more pages when the lines need them)."""
    billing = clinic.settings.billing
    tz = ZoneInfo(clinic.timezone)
    doc = _Doc(locale)

    def when(at: datetime) -> str:
        return str(format_datetime(at, "medium", tzinfo=tz, locale=locale)) + f" ({clinic.timezone})"

    def money(amount: int) -> str:
        return doc.money(amount, invoice.currency)

    doc.line(billing.legal_name or clinic.name, size=16, height=9)
    if billing.address:
        doc.line(billing.address)
    if billing.tax_id:
        doc.line(f"Tax ID: {billing.tax_id}")
    doc.pdf.ln(4)
    doc.line(f"Invoice {invoice.number}", size=14, height=8)
    if invoice.finalized_at:
        doc.line(f"Issued: {when(invoice.finalized_at)}")
    if invoice.due_at and invoice.status is InvoiceStatus.OPEN:
        doc.line(f"Due: {when(invoice.due_at)}")
    doc.line(f"Billed to: {patient_name}")
    doc.line(f"Status: {_STATUS_TEXT.get(invoice.status, invoice.status.value)}")
    if invoice.paid_at and invoice.status is InvoiceStatus.PAID:
        doc.line(f"Paid: {when(invoice.paid_at)}")
    doc.pdf.ln(4)

    doc.row([("Description", 90, "L"), ("Qty", 20, "R"), ("Unit price", 40, "R"),
             ("Amount", 40, "R")])
    for item in invoice.lines:
        doc.row([(item.description[:60], 90, "L"), (str(item.quantity), 20, "R"),
                 (money(item.unit_amount), 40, "R"), (money(item.amount), 40, "R")])
    doc.pdf.ln(2)
    summary = [("Subtotal", invoice.subtotal)]
    if invoice.discount:
        summary.append(("Discount", -invoice.discount))
    rate = f"{invoice.tax_rate_bp / 100:g} %"
    summary.append((f"{invoice.tax_label} ({rate})", invoice.tax))
    summary.append(("Total", invoice.total))
    summary.append(("Amount paid", invoice.amount_paid))
    summary.append(("Amount due", invoice.total - invoice.amount_paid
                    if invoice.status is InvoiceStatus.OPEN else 0))
    for label, amount in summary:
        shown = f"-{money(-amount)}" if amount < 0 else money(amount)
        doc.row([("", 60, "L"), (label, 50, "L"), (shown, 80, "R")])
    return bytes(doc.pdf.output())


async def stored_pdf(invoice_id: uuid.UUID, *, invoice: Invoice | None = None) -> bytes:
    """The PDF of the invoice as it now stands (`invoice`: already read by the caller): the
    stored one when its state's PDF exists, else rendered now, stored, and its key noted.
    Outside any transaction (storage is slow; nothing here needs a lock: two renders of one
    state write the same key)."""
    invoice = invoice or await load_invoice(invoice_id)
    if invoice.status is InvoiceStatus.DRAFT or invoice.number is None:
        raise Conflict("a draft has no PDF until it is finalised", resource_type="invoice",
                       resource_id=invoice_id)
    key = key_for(invoice)
    if await pdf_key_of(invoice_id) == key:
        found = await storage.get(key)
        if found is not None:
            return found
    clinic = await load_clinic(invoice.clinic_id)
    member = await load_member(invoice.clinic_id, invoice.patient_id)
    data = render(invoice, clinic, member.name if member else "Patient")
    await storage.put(key, data)
    await db.fetch("UPDATE billing_invoices SET pdf_key = $2 WHERE id = $1", invoice_id, key)
    return data
