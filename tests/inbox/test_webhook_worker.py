"""End to end with a real worker: a verified SES hard bounce posted to a gateway is stored,
processed by `carewire worker` (the inbox job), marks the message bounced and suppresses the
address; the next message to that address the pipeline takes is `suppressed`, never sent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests import servers
from tests.communication.fakes import webhooks as fake
from tests.communication.pipeline_stack import Stack, pipeline_stack
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # a stack, a gateway and a worker of its own


@pytest.fixture(scope="module")
def stack(env) -> Iterator[Stack]:
    with pipeline_stack(env) as s:
        yield s


def test_a_bounce_processed_by_a_worker_suppresses_the_next_message(stack: Stack,
                                                                    sns_host) -> None:
    clinic = stack.clinic()
    address = f"bouncing-{uuid.uuid4().hex[:8]}@example.test"
    ses_id = f"ses-{uuid.uuid4().hex}"
    [message] = stack.db.fetch(
        """INSERT INTO communication_messages (id, clinic_id, channel, kind, address, status,
               provider, provider_message_id, body, sent_at)
           VALUES (gen_random_uuid(), $1, 'email', 'test', $2, 'sent', 'ses', $3, 'hi', now())
           RETURNING id""", clinic, address, ses_id)
    note = sns_host.notification(fake.ses_event("Bounce", ses_id, address))
    gateway = servers.Server(stack.env)
    gateway.start()
    try:
        for _ in range(5):  # SNS retrying: one event
            r = httpx.post(gateway.base_url + "/api/v1/webhooks/communication/ses",
                           content=json.dumps(note).encode(),
                           headers={"content-type": "text/plain",
                                    "x-amz-sns-message-type": "Notification"})
            assert r.status_code == 200, r.text
    finally:
        gateway.stop()
    with workers(stack.env, 2):
        row = eventually(lambda: stack.db.fetch(
            "SELECT * FROM webhook_inbox WHERE provider = 'ses' AND event_id = $1 "
            "AND processed_at IS NOT NULL", note["MessageId"]))[0]
        assert row["result"] == "bounced" and row["error"] is None
        later = stack.enqueue(clinic, to=address)
        rows = eventually(lambda: stack.settled(later))
    assert stack.messages([message["id"]])[0]["status"] == "bounced"
    assert rows[0]["status"] == "suppressed"
    assert stack.attempts(later) == []  # no provider was called
    assert stack.db.fetch("SELECT count(*) AS n FROM webhook_inbox")[0]["n"] == 1
    [suppressed] = stack.db.fetch(
        "SELECT reason, source_event_id FROM communication_suppressions WHERE address = $1",
        address)
    assert suppressed == {"reason": "hard_bounce", "source_event_id": f"ses:{note['MessageId']}"}
    runs = stack.db.fetch("SELECT count(*) AS n FROM scheduled_jobs WHERE task = 'inbox.process'")
    assert runs[0]["n"] == 1
