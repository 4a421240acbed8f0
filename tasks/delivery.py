"""Outbound delivery jobs: send one message (a round of the pipeline), and the sweeper that
hands messages whose worker died mid-send to another."""

from __future__ import annotations

import uuid
from typing import Any

from domain.communication.commands.messages import SEND_TASK, reclaim_abandoned
from domain.communication.pipeline import deliver
from realtime import metrics
from tasks.registry import job


@job(SEND_TASK, max_attempts=20)
async def send_message(*, job_key: str, payload: dict[str, Any]) -> None:
    """The pipeline owns the message's retries (rounds); a failure here (the database gone
    mid-round) is the job runner's to retry."""
    delivery = await deliver(uuid.UUID(payload["message_id"]))
    if delivery is None:
        return
    for a in delivery.attempts:
        metrics.MESSAGE_ATTEMPTS.labels(delivery.channel, a.provider, a.outcome).inc()
        if a.latency_ms is not None:
            metrics.PROVIDER_LATENCY.labels(a.provider).observe(a.latency_ms / 1000)
    metrics.MESSAGES.labels(delivery.channel, delivery.status or "requeued").inc()


@job("communication.reclaim", every=5)
async def reclaim(*, job_key: str, payload: dict[str, Any]) -> None:
    """A worker killed mid-send leaves its message `sending` past the lease; another round is
    scheduled for it (the message is sent once more at most)."""
    await reclaim_abandoned()
