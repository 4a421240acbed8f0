"""How a clinic's providers are doing: each one's circuit breaker (as every worker sees it, in
Redis) and its last five minutes of attempts (error rate, p95 latency), for every provider in
any of the clinic's chains or in the global defaults the clinic falls back to."""

from __future__ import annotations

import uuid

import msgspec

from domain import db
from domain.access.policies import require
from domain.communication import breakers
from domain.communication.config import resolve_all
from domain.principal import Principal
from domain.tenancy.queries import load_clinic

WINDOW_SECONDS = 300


class ProviderHealth(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    #: The clinic's channels whose chain names it.
    channels: list[str]
    breaker: breakers.BreakerState
    #: Requests made in the window (a `skipped` attempt made none and is not counted).
    attempts: int
    #: Of those, the ones the provider failed: unavailable, or unknown (no answer).
    errors: int
    error_rate: float | None
    p95_latency_ms: float | None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    window_seconds: int
    providers: list[ProviderHealth]


async def stats(clinic_id: uuid.UUID, providers: list[str]) -> dict[str, dict[str, float | int]]:
    """The window's counts and p95 latency per provider, in one query."""
    rows = await db.fetch(
        """SELECT provider, count(*) AS attempts,
                  count(*) FILTER (WHERE outcome IN ('unavailable', 'unknown')) AS errors,
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
           FROM communication_attempts
           WHERE clinic_id = $1 AND provider = ANY($2::text[]) AND outcome <> 'skipped'
             AND at > now() - make_interval(secs => $3)
           GROUP BY provider""",
        clinic_id, providers, WINDOW_SECONDS)
    return {r["provider"]: {"attempts": int(r["attempts"]), "errors": int(r["errors"]),
                            "p95": r["p95"]} for r in rows}


async def provider_health(principal: Principal, clinic_id: uuid.UUID) -> Health:
    require(principal, "communication_settings:read", clinic_id, resource_type="clinic",
            resource_id=clinic_id)
    await load_clinic(clinic_id)
    chains = await resolve_all(clinic_id)
    used: dict[str, list[str]] = {}
    for channel, chain in chains.items():
        for name in chain.providers:
            used.setdefault(name, []).append(channel)
    names = sorted(used)
    counted = await stats(clinic_id, names)
    out = []
    for name in names:
        s = counted.get(name, {})
        attempts, errors = int(s.get("attempts", 0)), int(s.get("errors", 0))
        p95 = s.get("p95")
        out.append(ProviderHealth(
            provider=name, channels=used[name], breaker=await breakers.state(clinic_id, name),
            attempts=attempts, errors=errors,
            error_rate=round(errors / attempts, 4) if attempts else None,
            p95_latency_ms=round(float(p95), 3) if p95 is not None else None))
    return Health(window_seconds=WINDOW_SECONDS, providers=out)


__all__ = ["WINDOW_SECONDS", "Health", "ProviderHealth", "provider_health", "stats"]
