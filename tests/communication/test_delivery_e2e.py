"""Outbound delivery end to end on a stack of its own, over REST only: a clinic configures its
providers, staff suppress an address, a user registers a phone; a real worker sends through
local servers speaking ZeptoMail's and FCM's protocols, and the REST delivery log tells what
happened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domain.communication.commands.config import TEST_CONTENT
from tests import servers
from tests.communication.fakes.fcm import FcmFake, fcm_server, service_account
from tests.communication.fakes.zeptomail import FakeZeptoMail, zeptomail_server
from tests.communication.pipeline_stack import Stack, pipeline_stack
from tests.conftest import Api
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # a stack, a server and a worker of its own

TOKEN = "zepto-e2e-token-5d2a"
FCM_TOKEN = "fcm-registration-token-" + "a" * 40


class World:
    def __init__(self, api: Api, sa: str, clinic: str, stack: Stack, zepto: FakeZeptoMail,
                 fcm: FcmFake) -> None:
        self.api, self.sa, self.clinic, self.stack, self.zepto, self.fcm = api, sa, clinic, stack, zepto, fcm

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.api.as_(self.sa, method, path, **kw)

    def test_send(self, channel: str) -> list[str]:
        r = self.call("POST", f"/clinics/{self.clinic}/communication/test/{channel}")
        assert r.status_code == 202, r.text
        return list(r.json()["message_ids"])

    def settled(self, ids: list[str]) -> list[dict[str, Any]]:
        """The messages as the REST delivery log shows them, once none is still on its way."""
        def done() -> list[dict[str, Any]] | None:
            rows = [self.call("GET", f"/clinics/{self.clinic}/communication/messages/{i}").json()
                    for i in ids]
            return rows if all(r["status"] not in ("queued", "sending") for r in rows) else None
        return eventually(done)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(env) -> Iterator[World]:
    with zeptomail_server(TOKEN) as zepto, fcm_server() as fcm, \
            pipeline_stack(env, zeptomail_url=zepto.url, fcm_url=fcm.url,
                           google_token_url=fcm.token_url) as stack:
        sa_json, public = service_account(project_id="carewire-e2e")
        fcm.add_account(sa_json, public)
        srv = servers.Server(stack.env)
        srv.start()
        try:
            with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client, \
                    workers(stack.env, 1):
                api = Api(client)
                sa = api.token("root@isolated.test", "root-password-1")
                r = api.as_(sa, "POST", "/clinics", json={"name": "E2E", "timezone": "UTC"})
                assert r.status_code == 201, r.text
                clinic = r.json()["id"]
                r = api.as_(sa, "PUT", f"/clinics/{clinic}/communication/config", json={
                    "channels": {"email": {"providers": ["zeptomail"],
                                           "sender": {"from_address": "desk@e2e.test"}},
                                 "push": {"providers": ["fcm"]}},
                    "credentials": {"zeptomail": {"api_key": TOKEN},
                                    "fcm": {"service_account_json": sa_json}}})
                assert r.status_code == 200, r.text
                yield World(api, sa, clinic, stack, zepto, fcm)
        finally:
            srv.stop()


def test_unsubscribing_an_address_stops_its_mail(world: World) -> None:
    (first,) = world.settled(world.test_send("email"))
    assert (first["status"], first["provider"], first["kind"]) == ("sent", "zeptomail", "test")
    assert first["attempts"][0]["outcome"] == "sent" and len(world.zepto.accepted) == 1
    mail = world.zepto.accepted[0]["body"]  # under the clinic's token (the server checks it)
    assert mail["to"][0]["email_address"]["address"] == "root@isolated.test"
    assert mail["from"]["address"] == "desk@e2e.test"
    assert mail["subject"] == TEST_CONTENT.subject

    r = world.call("POST", f"/clinics/{world.clinic}/communication/suppressions",
                   json={"channel": "email", "address": "ROOT@isolated.test", "reason": "unsubscribe"})
    assert r.status_code == 201, r.text
    (second,) = world.settled(world.test_send("email"))
    assert second["status"] == "suppressed" and second["attempts"] == []
    assert len(world.zepto.accepted) == 1  # nothing more reached the provider

    r = world.call("DELETE", f"/clinics/{world.clinic}/communication/suppressions/email/root@isolated.test")
    assert r.status_code == 204, r.text
    (third,) = world.settled(world.test_send("email"))
    assert third["status"] == "sent" and len(world.zepto.accepted) == 2


def test_a_push_token_the_provider_calls_dead_is_retired_and_never_used_again(world: World) -> None:
    r = world.call("POST", "/users/me/devices",
                   json={"kind": "fcm", "token": FCM_TOKEN, "platform": "android", "app_version": "1.2"})
    assert r.status_code == 201, r.text
    device = r.json()["id"]
    (ok,) = world.settled(world.test_send("push"))
    assert (ok["status"], ok["provider"]) == ("sent", "fcm")
    assert world.fcm.accepted[-1]["message"]["token"] == FCM_TOKEN

    world.fcm.mode = "UNREGISTERED"
    (dead,) = world.settled(world.test_send("push"))
    assert dead["status"] == "failed" and dead["attempts"][0]["outcome"] == "rejected"
    devices = world.call("GET", "/users/me/devices").json()
    assert all(d["id"] != device for d in (devices["items"] if isinstance(devices, dict) else devices))
    r = world.call("POST", f"/clinics/{world.clinic}/communication/test/push")
    assert r.status_code == 400 and "devices" in r.text  # no active device left to send to
