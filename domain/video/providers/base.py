"""What every video provider adapter offers, and how a failure is told apart from a refusal.

A `ProviderDown` (5xx, timeout, connection refused, an open breaker) is a reason to move the
session to the fallback; a `ProviderRefused` (the provider answered 4xx) is not: the provider
is up and said no, and failing over would hide our bug."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.video.models import RecordingStatus, Role, VideoProviderName


class ProviderDown(Exception):
    """The provider did not answer usefully: counts against the breaker; fail over."""


class ProviderRefused(Exception):
    """The provider answered and refused (its error code in `code`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class NotConfigured(Exception):
    """Neither the clinic nor the deployment set this provider up."""


@dataclass(frozen=True)
class Grants:
    """What a participant may do in the room (PROVIDERS.md, Video)."""

    publish: bool
    subscribe: bool
    #: Moderate the room (LiveKit roomAdmin; Jitsi moderator).
    moderate: bool
    #: Start and stop recordings (LiveKit roomRecord).
    record: bool


#: The grants of each role in the call: the doctor runs it, the patient takes part, an observer
#: (staff the permission file lets join) only watches.
GRANTS: dict[Role, Grants] = {
    Role.DOCTOR: Grants(publish=True, subscribe=True, moderate=True, record=True),
    Role.PATIENT: Grants(publish=True, subscribe=True, moderate=False, record=False),
    Role.OBSERVER: Grants(publish=False, subscribe=True, moderate=False, record=False),
}

#: A patient in the virtual waiting room (a token asked before the doctor admitted them): in the
#: room, so the doctor sees them there as a participant, but nobody sees or hears anybody (no
#: publish, subscribe or data). Admission promotes them to `GRANTS[Role.PATIENT]` (OpenVidu:
#: UpdateParticipant; their next token carries the full grants too).
WAITING = Grants(publish=False, subscribe=False, moderate=False, record=False)


@dataclass(frozen=True)
class Participant:
    #: Our user id (the provider's participant identity).
    identity: str
    #: Shown to the others in the call.
    name: str
    role: Role


@dataclass(frozen=True)
class Ticket:
    """A join: `url` opens the call; OpenVidu clients use `server_url` + `token`."""

    url: str
    server_url: str | None
    token: str


class VideoProvider(Protocol):
    name: VideoProviderName

    async def create_room(self, room: str, *, empty_timeout_seconds: int,
                          max_participants: int) -> None:
        """Make sure the room exists (idempotent: an existing room is success)."""

    def ticket(self, room: str, who: Participant, grants: Grants, *, not_before: datetime,
               expires_at: datetime) -> Ticket:
        """A signed join token for one participant (no network call)."""

    async def close_room(self, room: str) -> None:
        """End the call for everyone (idempotent: a room already gone is success)."""

    async def healthy(self) -> bool:
        """The provider's health check answered (PROVIDERS.md: OpenVidu `GET /`)."""


class Recorder(Protocol):
    """Recording through the provider (OpenVidu egress); Jitsi has none here."""

    async def start_recording(self, room: str, *, bucket: str, file_key: str) -> tuple[str, RecordingStatus]:
        """Start a composite recording of the room into the bucket; (egress id, status)."""

    async def stop_recording(self, egress_id: str) -> RecordingStatus:
        """Stop it (idempotent for one already stopping or stopped)."""
