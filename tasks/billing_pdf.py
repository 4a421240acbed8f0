"""Invoice PDFs rendered and stored after their finalisation commits (planned by
domain/billing/commands/invoices.py), so a GET usually finds the PDF ready."""

from __future__ import annotations

import uuid
from typing import Any

from domain.billing.commands.invoices import PDF_TASK
from domain.billing.pdf import stored_pdf
from domain.errors import Conflict, NotFound
from tasks.registry import job


@job(PDF_TASK, max_attempts=5)
async def render_invoice_pdf(*, job_key: str, payload: dict[str, Any]) -> None:
    """Idempotent: a PDF already stored for the invoice's state is left as it is."""
    try:
        await stored_pdf(uuid.UUID(payload["invoice_id"]))
    except (NotFound, Conflict):
        return  # gone, or back to a draft: nothing to render
