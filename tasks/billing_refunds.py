"""Refund jobs: (re)sending a pending refund to its provider, and the automatic full refund
of a visit cancelled inside the clinic's policy (the provider call cannot run inside the
cancellation's transaction)."""

from __future__ import annotations

import uuid
from typing import Any

from domain.billing.commands import refunds
from tasks.registry import job


@job(refunds.SEND_TASK, max_attempts=8)
async def send_refund(*, job_key: str, payload: dict[str, Any]) -> None:
    """Same idempotency key every attempt: the provider refunds once however often we ask. A
    provider still away raises, and the runner retries with backoff."""
    await refunds.send_refund(uuid.UUID(payload["refund_id"]))


@job(refunds.AUTOMATIC_TASK)
async def refund_automatically(*, job_key: str, payload: dict[str, Any]) -> None:
    """Serialised on the payment's row: a second run finds nothing left to refund."""
    await refunds.refund_automatically(uuid.UUID(payload["payment_id"]), payload["reason"])
