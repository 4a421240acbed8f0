"""Which provider a session uses, and every OpenVidu call behind the circuit breaker (rooms
opened and closed, a waiting patient promoted on admission).

The rules: OpenVidu first when the deployment says so (`CAREWIRE_VIDEO_PROVIDER=openvidu`, the
default) or the clinic stored its own OpenVidu, as long as one is configured; else Jitsi. A room
is opened at OpenVidu through a breaker shared by every worker (Redis; the communication
context's breaker code): a timeout, a refused connection or a 5xx counts against it, and after
`breaker_threshold` such failures in a row it opens, so later sessions go to Jitsi at once
instead of waiting for a timeout each. After `breaker_open_seconds` the next call is a trial
(purgatory's half-open): success closes the breaker and new sessions are back on OpenVidu. A
4xx (`ProviderRefused`) does not count (OpenVidu is up and said no: our bug) and propagates.

Circuits: one per OpenVidu deployment, `breaker:video:openvidu` for the deployment's and
`breaker:video:openvidu:{clinic_id}` for a clinic's own, so one clinic's broken server never
moves another clinic's sessions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import msgspec

from domain import kv
from domain.access.policies import require
from domain.communication import breakers
from domain.principal import Principal
from domain.settings import get as app_settings
from domain.tenancy.queries import load_clinic
from domain.video import providers
from domain.video.models import PROVIDERS, VideoProviderName
from domain.video.providers.base import NotConfigured, ProviderDown, ProviderRefused, VideoProvider
from domain.video.providers.openvidu import OpenVidu

log = logging.getLogger(__name__)

#: An OpenVidu room nobody joined (or everyone left) closes after this long; a later join
#: opens it again (LiveKit's auto-create), so this only frees an abandoned room.
EMPTY_TIMEOUT_SECONDS = 30 * 60
#: Doctor, patient and the staff observing.
MAX_PARTICIPANTS = 10


class ProviderHealth(msgspec.Struct, frozen=True, kw_only=True):
    provider: VideoProviderName
    #: A clinic's own account or the deployment's is set up.
    configured: bool
    #: The clinic stored its own account (credentials) for this provider.
    own: bool
    #: Its health check answered just now (None: not configured, not asked).
    healthy: bool | None
    #: OpenVidu's circuit breaker (None for Jitsi: it has no server calls to guard).
    breaker: breakers.BreakerState | None


class VideoHealth(msgspec.Struct, frozen=True, kw_only=True):
    #: The provider new sessions try first (None: none configured); with OpenVidu's breaker
    #: open they go on to Jitsi.
    first_choice: VideoProviderName | None
    providers: list[ProviderHealth]


def circuit(clinic_id: uuid.UUID, own: bool) -> str:
    """The breaker of the OpenVidu this clinic uses."""
    if own:
        return kv.key("breaker", "video", "openvidu", clinic_id)
    return kv.key("breaker", "video", "openvidu")


async def _configured(clinic_id: uuid.UUID, name: VideoProviderName) -> bool:
    try:
        await providers.provider(clinic_id, name)
    except NotConfigured:
        return False
    return True


async def first_choice(clinic_id: uuid.UUID) -> VideoProviderName:
    """openvidu when settings.video_provider (or the clinic's own OpenVidu) says so and it is
    configured; else jitsi. NotConfigured when neither is set up."""
    prefers_openvidu = (app_settings().video_provider == "openvidu"
                        or await providers.has_own(clinic_id, "openvidu"))
    order: tuple[VideoProviderName, ...] = (("openvidu", "jitsi") if prefers_openvidu
                                            else ("jitsi", "openvidu"))
    for name in order:
        if await _configured(clinic_id, name):
            return name
    raise NotConfigured("no video provider is set up for this clinic or the deployment")


async def _guarded(clinic_id: uuid.UUID, call: Callable[[OpenVidu], Awaitable[object]]) -> str | None:
    """Run one OpenVidu call (create or close a room, promote a participant) through the
    clinic's breaker: None when it went through, else why OpenVidu is unavailable."""
    adapter, own = await providers.openvidu(clinic_id)
    factory, cfg = await breakers.factory(), app_settings()
    breaker = await factory.get_breaker(circuit(clinic_id, own), threshold=cfg.breaker_threshold,
                                        ttl=cfg.breaker_open_seconds, exclude=[ProviderRefused])
    try:
        async with breaker:
            await call(adapter)
    except breakers.OpenedState:
        return "openvidu unavailable: circuit open"
    except ProviderDown as err:
        return f"openvidu unavailable: {err}"
    return None


async def open_room(clinic_id: uuid.UUID, room: str) -> str | None:
    """Make sure the room exists at OpenVidu, through the breaker (CreateRoom is idempotent).
    None: ready. A short reason ("openvidu unavailable: timeout" / "...: HTTP 503" /
    "...: circuit open") when OpenVidu is down: the caller moves the session to Jitsi.
    ProviderRefused propagates (our bug, not an outage); NotConfigured when the clinic has no
    OpenVidu (ask `first_choice` first)."""
    reason = await _guarded(clinic_id, lambda adapter: adapter.create_room(
        room, empty_timeout_seconds=EMPTY_TIMEOUT_SECONDS, max_participants=MAX_PARTICIPANTS))
    if reason is not None:
        log.warning("video room %s not opened at OpenVidu: %s", room, reason)
    return reason


async def close_room(clinic_id: uuid.UUID, provider: VideoProviderName, room: str) -> None:
    """Best effort after an end (logged, never raised)."""
    try:
        if provider == "openvidu":
            reason = await _guarded(clinic_id, lambda adapter: adapter.close_room(room))
            if reason is not None:
                log.warning("video room %s not closed at OpenVidu: %s", room, reason)
        else:
            await (await providers.provider(clinic_id, provider)).close_room(room)
    except Exception:
        log.exception("video room %s not closed at %s", room, provider)


async def admit_participant(clinic_id: uuid.UUID, room: str, identity: str) -> None:
    """After an admission's COMMIT, best effort (logged, never raised): the patient, if already
    connected to the OpenVidu room with waiting grants, may now publish, subscribe and send
    data. Not connected is fine (their next token carries the full grants); an outage only
    leaves them waiting at OpenVidu until the app, told `video.admitted`, asks a new token."""
    promoted: list[bool] = []

    async def promote(adapter: OpenVidu) -> None:
        promoted.append(await adapter.admit_participant(room, identity))

    try:
        reason = await _guarded(clinic_id, promote)
    except Exception:
        log.exception("patient %s not promoted in video room %s", identity, room)
        return
    if reason is not None:
        log.warning("patient %s not promoted in video room %s: %s", identity, room, reason)
    elif promoted == [False]:
        log.info("patient %s not connected to video room %s: their next token admits them",
                 identity, room)


async def _unchecked(clinic_id: uuid.UUID,
                     name: VideoProviderName) -> tuple[ProviderHealth, VideoProvider | None]:
    """The provider's health without its live check, and its adapter (None: not configured)."""
    own = await providers.has_own(clinic_id, name)
    try:
        adapter = await providers.provider(clinic_id, name)
    except NotConfigured:
        return ProviderHealth(provider=name, configured=False, own=False, healthy=None,
                              breaker=None), None
    breaker = await breakers.state_of(circuit(clinic_id, own)) if name == "openvidu" else None
    return ProviderHealth(provider=name, configured=True, own=own, healthy=None,
                          breaker=breaker), adapter


async def health(clinic_id: uuid.UUID) -> VideoHealth:
    """Each provider as this clinic would use it: configured, its live health check (both
    asked at once, each bounded by `video_timeout_seconds`), OpenVidu's breaker."""
    found = [await _unchecked(clinic_id, name) for name in PROVIDERS]  # one connection: in turn
    checks = await asyncio.gather(*(adapter.healthy() for _, adapter in found if adapter is not None))
    answers = iter(checks)
    shown = [msgspec.structs.replace(h, healthy=next(answers)) if adapter is not None else h
             for h, adapter in found]
    try:
        first: VideoProviderName | None = await first_choice(clinic_id)
    except NotConfigured:
        first = None
    return VideoHealth(first_choice=first, providers=shown)


async def clinic_health(principal: Principal, clinic_id: uuid.UUID) -> VideoHealth:
    """`health` for staff allowed to read the clinic's video settings (another clinic: 404)."""
    require(principal, "video_settings:read", clinic_id, resource_type="clinic",
            resource_id=clinic_id)
    await load_clinic(clinic_id)
    return await health(clinic_id)
