"""One-click unsubscribe (RFC 8058) end to end, on a stack of its own: a notification email of
kind K to X carries `List-Unsubscribe` and `List-Unsubscribe-Post` (as ZeptoMail received them
from a real worker); the link works without any login, for K and X only; a GET never changes
anything; a tampered link is refused and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests import servers
from tests.communication.fakes.zeptomail import FakeZeptoMail, zeptomail_server
from tests.communication.pipeline_stack import Stack, pipeline_stack
from tests.conftest import Api
from tests.servers import workers

pytestmark = [pytest.mark.slow]  # a stack, a server and a worker of its own

TOKEN = "zepto-unsubscribe-token-77c1"
PUBLIC_URL = "https://mail.carewire.test"
K, OTHER_KIND = "appointment.reminder", "appointment.booked"
PER_MINUTE = 12  # CAREWIRE_UNSUBSCRIBE_ATTEMPTS_PER_IP here (the tests above use 6)


class World:
    def __init__(self, api: Api, sa: str, clinic: str, stack: Stack, zepto: FakeZeptoMail,
                 base_url: str) -> None:
        self.api, self.sa, self.clinic, self.stack, self.zepto = api, sa, clinic, stack, zepto
        self.base_url = base_url

    def send(self, kind: str, to: str) -> dict[str, Any]:
        """Enqueue one email of `kind` to `to`, with its unsubscribe headers; the settled row."""
        (message_id,) = self.stack.enqueue(uuid.UUID(self.clinic), to=to, kind=kind,
                                           unsubscribe=True)
        (row,) = servers.eventually(lambda: self.stack.settled([message_id]))
        return row

    def received(self, to: str) -> list[dict[str, Any]]:
        return [m["body"] for m in self.zepto.accepted
                if m["body"]["to"][0]["email_address"]["address"] == to]

    def suppressions(self) -> list[dict[str, Any]]:
        r = self.api.as_(self.sa, "GET", f"/clinics/{self.clinic}/communication/suppressions")
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    def anonymous(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """The link as a mail client follows it: no Authorization, no cookie."""
        path = urlsplit(url).path
        return httpx.request(method, self.base_url + path, timeout=30, **kw)


@pytest.fixture(scope="module")
def world(env) -> Iterator[World]:
    with zeptomail_server(TOKEN) as zepto, \
            pipeline_stack(env, zeptomail_url=zepto.url, public_url=PUBLIC_URL,
                           unsubscribe_attempts_per_ip=str(PER_MINUTE)) as stack:
        srv = servers.Server(stack.env)
        srv.start()
        try:
            with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client, \
                    workers(stack.env, 1):
                api = Api(client)
                sa = api.token("root@isolated.test", "root-password-1")
                r = api.as_(sa, "POST", "/clinics", json={"name": "Unsub", "timezone": "UTC"})
                assert r.status_code == 201, r.text
                clinic = r.json()["id"]
                r = api.as_(sa, "PUT", f"/clinics/{clinic}/communication/config", json={
                    "channels": {"email": {"providers": ["zeptomail"],
                                           "sender": {"from_address": "desk@unsub.test"}}},
                    "credentials": {"zeptomail": {"api_key": TOKEN}}})
                assert r.status_code == 200, r.text
                yield World(api, sa, clinic, stack, zepto, srv.base_url)
        finally:
            srv.stop()


def tampered(url: str) -> str:
    """The link with one character of its token's claims changed."""
    head, _, token = url.rpartition("/")
    at = token.index(".") + 8
    swapped = "B" if token[at] != "B" else "C"
    return f"{head}/{token[:at]}{swapped}{token[at + 1:]}"


def test_the_link_unsubscribes_that_kind_for_that_address_only(world: World) -> None:
    x, y = f"x-{uuid.uuid4().hex[:8]}@unsub.test", f"y-{uuid.uuid4().hex[:8]}@unsub.test"
    first = world.send(K, x)
    assert first["status"] == "sent", first
    (mail,) = world.received(x)
    headers = mail["mime_headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/api/v1/unsubscribe/")
    link = headers["List-Unsubscribe"][1:-1]

    # a link scanner's GET: a page with the button, and nothing changed
    page = world.anonymous("GET", link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'method="post"' in page.text and urlsplit(link).path in page.text
    assert world.suppressions() == []

    # one character changed: refused, nothing changed
    for method in ("POST", "GET"):
        bad = world.anonymous(method, tampered(link), content=b"List-Unsubscribe=One-Click",
                              headers={"content-type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 400, bad.text
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in bad.json()["errors"]] == ["token"]
    assert world.suppressions() == []

    # the mail client's one-click POST, with no login: K is suppressed for X
    r = world.anonymous("POST", link, content=b"List-Unsubscribe=One-Click",
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert r.json() == {"clinic_id": world.clinic, "kind": K, "unsubscribed": True}
    again = world.anonymous("POST", link)  # an empty body, a second click: the same, once
    assert again.status_code == 200 and again.json() == r.json()
    button = world.anonymous("POST", link, headers={"accept": "text/html,*/*;q=0.8"})
    assert button.status_code == 200 and "Unsubscribed" in button.text  # the page's button
    (entry,) = world.suppressions()
    assert (entry["channel"], entry["address"], entry["kind"], entry["reason"]) == (
        "email", x, K, "unsubscribe")

    assert world.send(K, x)["status"] == "suppressed"  # K to X: never sent again
    assert world.send(OTHER_KIND, x)["status"] == "sent"  # another kind to X still goes
    assert world.send(K, y)["status"] == "sent"  # K to another address still goes
    assert len(world.received(x)) == 2 and len(world.received(y)) == 1


def test_a_staff_suppression_still_stops_every_kind(world: World) -> None:
    z = f"z-{uuid.uuid4().hex[:8]}@unsub.test"
    r = world.api.as_(world.sa, "POST", f"/clinics/{world.clinic}/communication/suppressions",
                      json={"channel": "email", "address": z})
    assert r.status_code == 201 and r.json()["kind"] is None, r.text
    assert {world.send(k, z)["status"] for k in (K, OTHER_KIND)} == {"suppressed"}
    assert world.received(z) == []


def test_hammering_the_route_is_limited_per_address(world: World) -> None:
    """Last in this module: the window is shared with the tests above (at most 6 requests)."""
    forged = f"{PUBLIC_URL}/api/v1/unsubscribe/" + "x" * 40
    answers = [world.anonymous("POST", forged) for _ in range(PER_MINUTE + 1)]
    codes = [r.status_code for r in answers]
    assert set(codes) == {400, 429} and codes[-1] == 429, codes
    limited = next(r for r in answers if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"].startswith("application/problem+json")
