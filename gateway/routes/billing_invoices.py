"""Invoices: list and read (patients their own), the PDF, drafts written by staff, finalising
and voiding. Invoices for appointments and plans are opened by billing itself."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Response, Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from domain.billing import pdf
from domain.billing.commands import invoices as commands
from domain.billing.models import Invoice, InvoiceStatus, LineInput
from domain.billing.queries import invoices as queries
from domain.paging import Page
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body


class LineBody(Body):
    description: Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
    quantity: int
    #: Minor units of the clinic's billing currency.
    unit_amount: int


class InvoiceCreate(Body):
    clinic_id: uuid.UUID
    patient_id: uuid.UUID
    lines: Annotated[list[LineBody], msgspec.Meta(max_length=commands.MAX_LINES)]
    #: Minor units, off the subtotal before tax.
    discount: int = 0


class VoidBody(Body):
    reason: Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)]


@get("/", permission="invoices:read")
async def list_invoices(
    principal: CurrentPrincipal, clinic_id: FromQuery[uuid.UUID],
    patient_id: FromQuery[uuid.UUID | None] = None,
    status: FromQuery[InvoiceStatus | None] = None, limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[Invoice]:
    """Oldest first, keyset pages. A patient sees only their own."""
    return await queries.list_invoices(principal, clinic_id=clinic_id, patient_id=patient_id,
                                       status=status, limit=limit, cursor=cursor)


@post("/", permission="invoices:manage")
async def create_invoice(principal: CurrentPrincipal, data: JSONBody[InvoiceCreate]) -> Invoice:
    """201 and a draft (no number yet) in the clinic's currency, taxed at its rate."""
    return await commands.create_draft(
        principal, clinic_id=data.clinic_id, patient_id=data.patient_id,
        lines=[LineInput(x.description, x.quantity, x.unit_amount) for x in data.lines],
        discount=data.discount)


@get("/{invoice_id:str}", permission="invoices:read")
async def get_invoice(principal: CurrentPrincipal, invoice_id: FromPath[uuid.UUID]) -> Invoice:
    return await queries.get_invoice(principal, invoice_id)


@get("/{invoice_id:str}/pdf", permission="invoices:read", media_type="application/pdf")
async def invoice_pdf(principal: CurrentPrincipal,
                      invoice_id: FromPath[uuid.UUID]) -> Response[bytes]:
    """The invoice as a PDF (409 for a draft)."""
    invoice = await queries.get_invoice(principal, invoice_id)
    data = await pdf.stored_pdf(invoice.id, invoice=invoice)
    return Response(data, media_type="application/pdf", headers={
        "content-disposition": f'inline; filename="{invoice.number}.pdf"',
        "cache-control": "private, no-store"})


@post("/{invoice_id:str}/finalize", permission="invoices:manage", status_code=200)
async def finalize(principal: CurrentPrincipal, invoice_id: FromPath[uuid.UUID]) -> Invoice:
    """A draft takes the clinic's next number and opens (409 when it is not a draft)."""
    return await commands.finalize(principal, invoice_id)


@post("/{invoice_id:str}/void", permission="invoices:manage", status_code=200)
async def void(principal: CurrentPrincipal, invoice_id: FromPath[uuid.UUID],
               data: JSONBody[VoidBody]) -> Invoice:
    """An open invoice with nothing paid becomes void (409 otherwise). Audited with the
    reason."""
    return await commands.void_invoice(principal, invoice_id, reason=data.reason)


router = Router(path="/billing/invoices", route_handlers=[
    list_invoices, create_invoice, get_invoice, invoice_pdf, finalize, void], tags=["billing"])
