"""The one path every message takes, run by the worker's delivery loop (tasks/delivery.py):

claim (one worker, under a lease; commands/messages.py) → suppression list → provider chain
(the clinic's primary and fallbacks, then the global default where one is configured) → each
provider's breaker (shared by all workers) → its rate limit (waits, never drops) → send → the
delivery log.

A message is sent at most once across providers: a provider that took it ends the chain, one
that refused it (`Rejected`) fails it, and one that may have sent it (`MaybeSent`) leaves it
`unknown` unless the channel's config says to risk a duplicate rather than a loss. When no
provider could take it, it goes back to the queue for another round after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import msgspec

from domain import clock
from domain.communication import breakers, config, throttle
from domain.communication.commands import devices
from domain.communication.commands.messages import AttemptRow, Claimed, Finish, finished
from domain.communication.events import announce
from domain.communication.models import Outbound, Sender, Status
from domain.communication.providers import PROVIDERS
from domain.communication.providers.base import (
    MaybeSent,
    Provider,
    Rejected,
    SendError,
    Sent,
    Unavailable,
)
from domain.errors import DomainError
from domain.settings import get as app_settings

log = logging.getLogger("carewire.communication")

#: The longest a worker sleeps for a rate-limit slot; a later slot reschedules the message.
MAX_THROTTLE_SLEEP = 5.0


class Step(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    source: Literal["clinic", "default"]
    sender: Sender
    rate_per_second: int | None
    retry_unknown: bool


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """What one round did; its caller records `finish` (delivery loops batch them)."""

    channel: str
    finish: Finish


def chain(claimed: Claimed) -> list[Step]:
    """The clinic's chain, then the global default where one is configured (never the implicit
    local sink: a clinic's real messages are not 'delivered' to a sink because its providers
    are down)."""
    steps: list[Step] = []
    resolved = [claimed.config] if claimed.config else []
    default = config.default_for(claimed.channel)
    if not resolved or getattr(config.defaults(), claimed.channel) is not None:
        resolved.append(default)
    for r in resolved:
        for name in r.providers:
            step = Step(provider=name, source=r.source, sender=r.sender,
                        rate_per_second=r.rate_per_second, retry_unknown=r.retry_unknown)
            if all((s.provider, s.source) != (name, r.source) for s in steps):
                steps.append(step)
    return steps


def _outbound(claimed: Claimed, step: Step) -> Outbound:
    c = claimed.content
    to = claimed.token if claimed.channel == "push" else claimed.address
    return Outbound(message_id=claimed.id, clinic_id=claimed.clinic_id, channel=claimed.channel,
                    to=to or "", token_kind=claimed.token_kind, subject=c.subject, text=c.text,
                    html=c.html, data=c.push_data, headers=c.headers, template=c.template,
                    sender=step.sender, idempotency_key=str(claimed.id))


async def _send(adapter: Provider, outbound: Outbound, credentials: Mapping[str, str],
                deadline: float) -> Sent:
    """The adapter's call with a last-resort deadline; anything unexpected from it counts as
    the provider being unavailable (logged by type only: its text might carry a secret)."""
    try:
        async with asyncio.timeout(deadline):
            return await adapter.send(outbound, credentials)
    except SendError:
        raise
    except TimeoutError:
        raise MaybeSent(f"{adapter.name}: no answer within {deadline:g} s") from None
    except Exception as exc:
        log.error("provider %s failed unexpectedly: %s", adapter.name, type(exc).__name__)
        raise Unavailable(f"{adapter.name}: unexpected {type(exc).__name__}") from None


def _breaker_open(ctx: object) -> bool:
    state = getattr(ctx, "state", "closed")
    opened_at = getattr(ctx, "opened_at", None)
    ttl = float(getattr(ctx, "ttl", 0))
    return state == "opened" and opened_at is not None and time.time() <= opened_at + ttl


async def _announce_transitions() -> None:
    for name, state in breakers.take_transitions():
        owner = breakers.owner(name)
        if owner is None or state not in ("opened", "closed"):
            continue
        clinic_id, provider = owner
        try:
            failures = (await breakers.state(clinic_id, provider)).failure_count
            await announce(clinic_id, provider, up=state == "closed", failure_count=failures)
        except Exception:  # an announcement lost must not fail the message
            log.exception("could not announce breaker %s of %s", state, provider)


def _backoff(rounds: int) -> timedelta:
    base = app_settings().job_backoff_seconds
    return timedelta(seconds=min(base * 2 ** max(rounds - 1, 0), 600))


async def deliver(claimed: Claimed) -> Delivery:
    """One sending round for one claimed message; what it did is returned for the caller to
    record (`commands.messages.finish`), not written here."""
    cfg = app_settings()

    def done(status: Status | None, attempts: list[AttemptRow], **kw: Any) -> Delivery:
        return Delivery(channel=claimed.channel, finish=finished(claimed, status, attempts, **kw))

    if claimed.suppressed:
        return done("suppressed", [], error="the address is on the suppression list")
    if claimed.channel == "push" and claimed.token is None:
        return done("failed", [], error="the device was removed or its token retired")

    attempts: list[AttemptRow] = []
    factory = await breakers.factory()
    for step in chain(claimed):
        adapter = PROVIDERS.get(step.provider)
        if adapter is None or claimed.channel not in adapter.channels:
            attempts.append(AttemptRow(provider=step.provider, outcome="skipped",
                                       error=f"not a {claimed.channel} provider here"))
            continue
        kinds = getattr(adapter, "token_kinds", None)
        if claimed.channel == "push" and kinds is not None and claimed.token_kind not in kinds:
            attempts.append(AttemptRow(provider=step.provider, outcome="skipped",
                                       error=f"cannot reach {claimed.token_kind} tokens"))
            continue
        try:
            credentials = await config.credentials_for(claimed.clinic_id, step.provider, step.source)
        except DomainError as exc:  # none stored, or they do not decrypt here
            attempts.append(AttemptRow(provider=step.provider, outcome="skipped", error=exc.message))
            continue
        brk = await factory.get_breaker(breakers.circuit(claimed.clinic_id, step.provider))
        if _breaker_open(brk.context):
            attempts.append(AttemptRow(provider=step.provider, outcome="skipped",
                                       error="circuit breaker open"))
            continue
        later = await throttle.acquire(
            claimed.clinic_id, step.provider, max_wait=MAX_THROTTLE_SLEEP,
            rate_per_second=step.rate_per_second or adapter.default_rate_per_second)
        if later is not None:
            return done(None, attempts, retry_in=timedelta(seconds=later),
                              counts_as_round=False, error=f"waiting for {step.provider}'s rate limit")
        started, began = time.perf_counter(), clock.now()
        try:
            async with brk:
                sent = await _send(adapter, _outbound(claimed, step), credentials,
                                   cfg.provider_timeout_seconds + 5)
        except breakers.OpenedState:
            attempts.append(AttemptRow(provider=step.provider, outcome="skipped",
                                       error="circuit breaker open"))
            continue
        except SendError as exc:
            ms = (time.perf_counter() - started) * 1000
            await _announce_transitions()
            if isinstance(exc, Rejected):
                attempts.append(AttemptRow(provider=step.provider, outcome="rejected", at=began,
                                           status_code=exc.status_code, latency_ms=ms, error=str(exc)))
                if exc.retire_token and claimed.device_id is not None:
                    await devices.retire(claimed.device_id, reason=str(exc)[:200])
                return done("failed", attempts, provider=step.provider, error=str(exc))
            if isinstance(exc, MaybeSent):
                attempts.append(AttemptRow(provider=step.provider, outcome="unknown", at=began,
                                           status_code=exc.status_code, latency_ms=ms, error=str(exc)))
                if not step.retry_unknown:
                    return done("unknown", attempts, provider=step.provider, error=str(exc))
                continue
            attempts.append(AttemptRow(provider=step.provider, outcome="unavailable", at=began,
                                       status_code=exc.status_code, latency_ms=ms, error=str(exc)))
            continue
        ms = (time.perf_counter() - started) * 1000
        await _announce_transitions()
        attempts.append(AttemptRow(provider=step.provider, outcome="sent", at=began,
                                   status_code=sent.status_code, latency_ms=ms))
        ref = sent.provider_message_id
        return done("sent", attempts, provider=step.provider,
                    provider_message_id=None if ref is None else str(ref))

    if claimed.tries >= cfg.message_max_rounds:
        return done("failed", attempts,
                          error=f"no provider took it in {claimed.tries} rounds")
    return done(None, attempts, retry_in=_backoff(claimed.tries),
                      error="no provider could take it; retrying")
