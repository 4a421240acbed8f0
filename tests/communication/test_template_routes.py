"""A clinic's templates at /clinics/{id}/communication/templates/{kind}/{channel}/{locale}: the
shipped default until the clinic saves its own, the locale fallback, refusals that store
nothing, previews, removal; and `render_for_send`, which notifications call at send time: the
clinic's template, or the shipped default (announced to the clinic's admins once) when the
clinic's fails on real data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from domain.communication.commands.templates import render_for_send
from domain.communication.templates import (
    TemplateContext,
    render,
    sample_context,
    shipped_source,
)

SMS = "{{ clinic_name }}: see you {{ starts_at | datetime }}, {{ patient_first_name }}."
HINDI_SMS = "{{ clinic_name }}: नमस्ते {{ patient_first_name }}, {{ starts_at | datetime }}."
ESCAPE = "{{ ''.__class__.__mro__ }}"


@pytest.fixture(scope="module")
def clinic(clinic_factory, member_factory) -> dict[str, Any]:
    c = clinic_factory("Lotus Clinic")
    c["admin"] = member_factory(c["id"], "CLINIC_ADMIN", tag="tpl-admin")
    return c


def path(clinic: dict[str, Any], kind: str = "appointment.booked", channel: str = "sms",
         locale: str = "en") -> str:
    return f"/clinics/{clinic['id']}/communication/templates/{kind}/{channel}/{locale}"


def call(api, clinic, method: str, url: str, **kw: Any):
    return api.as_(clinic["admin"]["token"], method, url, **kw)


def stored(db, clinic) -> list[dict[str, Any]]:
    return db.fetch("SELECT kind, channel, locale, source FROM communication_templates "
                    "WHERE clinic_id = $1::uuid ORDER BY kind, channel, locale", clinic["id"])


def assert_invalid(r, field: str) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid"
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


def test_the_default_until_the_clinic_saves_its_own(api, db, clinic):
    kind = "appointment.rescheduled"
    r = call(api, clinic, "GET", path(clinic, kind))
    assert r.status_code == 200, r.text
    default = shipped_source(kind, "sms", "en")[0]
    assert r.json() == {"kind": kind, "channel": "sms", "locale": "en", "source": default,
                             "origin": "default", "source_locale": "en",
                             "default_source": default, "updated_at": None, "updated_by": None}
    r = call(api, clinic, "PUT", path(clinic, kind), json={"source": SMS})
    assert r.status_code == 200, r.text
    saved = r.json()
    assert (saved["origin"], saved["source"], saved["default_source"]) == ("clinic", SMS, default)
    assert saved["updated_by"] == clinic["admin"]["user_id"] and saved["updated_at"]
    assert call(api, clinic, "GET", path(clinic, kind)).json() == saved
    audit = db.fetch("""SELECT detail::text AS detail FROM audit_log WHERE clinic_id = $1::uuid
                        AND action = 'communication_templates:manage'""", clinic["id"])
    assert len(audit) == 1 and '"appointment.rescheduled"' in audit[0]["detail"]
    assert "see you" not in audit[0]["detail"]  # never the source


def test_hindi_falls_back_to_hi_then_en_for_the_default_and_the_clinics_own(api, clinic):
    kind = "queue.next"  # no Hindi shipped: the English default
    r = call(api, clinic, "GET", path(clinic, kind, locale="hi-IN")).json()
    assert (r["locale"], r["origin"], r["source_locale"]) == ("hi-in", "default", "en")
    booked = call(api, clinic, "GET", path(clinic, "appointment.booked", locale="hi-IN")).json()
    assert (booked["origin"], booked["source_locale"]) == ("default", "hi")
    # the clinic's English one serves a Hindi reader who has nothing closer ...
    assert call(api, clinic, "PUT", path(clinic, kind), json={"source": SMS}).status_code == 200
    r = call(api, clinic, "GET", path(clinic, kind, locale="hi-IN")).json()
    assert (r["origin"], r["source_locale"], r["source"]) == ("clinic", "en", SMS)
    # ... until it saves a Hindi one, which `hi-IN` finds first
    r = call(api, clinic, "PUT", path(clinic, kind, locale="hi"), json={"source": HINDI_SMS})
    assert (r.status_code, r.json()["locale"]) == (200, "hi")
    r = call(api, clinic, "GET", path(clinic, kind, locale="hi-IN")).json()
    assert (r["origin"], r["source_locale"], r["source"]) == ("clinic", "hi", HINDI_SMS)
    # a region tag is stored normalised
    r = call(api, clinic, "PUT", path(clinic, kind, locale="hi_IN"), json={"source": HINDI_SMS})
    assert (r.status_code, r.json()["locale"], r.json()["source_locale"]) == (200, "hi-in", "hi-in")


@pytest.mark.parametrize(("source", "says"), [
    (ESCAPE, "not allowed"),
    ("{{ clinic_name.__class__ }}", "not allowed"),
    ("{{ patient_last_name }}", "undefined"),
    ("{% for x in clinic_name %}{{ x }}{% endfor %}", "loops"),
    ("{{ clinic_name ", "syntax"),
    ("{{ 'x' * 1700 }}", "1,700 characters"),
])
def test_a_bad_template_is_refused_and_nothing_is_stored(api, db, clinic, source, says):
    before = stored(db, clinic)
    r = call(api, clinic, "PUT", path(clinic, "appointment.cancelled"), json={"source": source})
    assert_invalid(r, "template")
    assert says in r.json()["detail"] + str(r.json()["errors"])
    assert "__mro__" not in r.text or source == ESCAPE
    assert stored(db, clinic) == before
    assert call(api, clinic, "GET", path(clinic, "appointment.cancelled")).json()["origin"] == "default"


@pytest.mark.parametrize(("where", "field"), [
    (("appointment.exploded", "sms", "en"), "kind"),
    (("appointment.booked", "fax", "en"), "channel"),
    (("appointment.booked", "sms", "hindi-language-please"), "locale"),
    (("appointment.booked", "sms", "e"), "locale"),
    (("appointment.booked", "sms", "en-" + "a" * 40), "locale"),
])
def test_an_unknown_kind_channel_or_locale_is_named(api, db, clinic, where, field):
    before = stored(db, clinic)
    url = path(clinic, *where)
    for method, body in (("GET", None), ("PUT", {"source": SMS}), ("DELETE", None),
                         ("POST", None)):
        r = call(api, clinic, method, url + ("/preview" if method == "POST" else ""), json=body)
        assert_invalid(r, field)
    assert stored(db, clinic) == before


def test_preview_of_the_stored_and_of_an_unsaved_source(api, db, clinic):
    kind = "follow_up.scheduled"
    r = call(api, clinic, "POST", path(clinic, kind, "push") + "/preview")
    assert r.status_code == 200, r.text
    default = r.json()
    assert default["subject"] and "Lotus Clinic" not in default["subject"] + default["text"]
    push = ("{% block title %}{{ clinic_name }}{% endblock %}"
            "{% block body %}{{ patient_first_name }} at {{ starts_at | time }}{% endblock %}")
    r = call(api, clinic, "POST", path(clinic, kind, "push") + "/preview", json={"source": push})
    assert r.status_code == 200, r.text
    # the clinic's name and zone (Asia/Kolkata: 04:00 UTC is 09:30) with the sample visit
    assert r.json() == {"subject": "Lotus Clinic", "text": "Asha at 9:30 AM", "html": None}
    assert not [t for t in stored(db, clinic) if t["kind"] == kind]  # a preview saves nothing
    assert call(api, clinic, "PUT", path(clinic, kind, "push"), json={"source": push}).status_code == 200
    r = call(api, clinic, "POST", path(clinic, kind, "push", "hi") + "/preview", json=None)
    assert r.json()["subject"] == "Lotus Clinic"  # hi falls back to the clinic's en
    r = call(api, clinic, "POST", path(clinic, kind, "push") + "/preview", json={"source": ESCAPE})
    assert_invalid(r, "template")


def test_delete_restores_the_default(api, db, clinic):
    kind = "appointment.no_show"
    assert call(api, clinic, "DELETE", path(clinic, kind)).status_code == 404
    assert call(api, clinic, "PUT", path(clinic, kind), json={"source": SMS}).status_code == 200
    assert call(api, clinic, "GET", path(clinic, kind)).json()["origin"] == "clinic"
    assert call(api, clinic, "DELETE", path(clinic, kind)).status_code == 204
    r = call(api, clinic, "GET", path(clinic, kind)).json()
    assert (r["origin"], r["source"]) == ("default", shipped_source(kind, "sms", "en")[0])
    assert call(api, clinic, "DELETE", path(clinic, kind)).status_code == 404
    assert not [t for t in stored(db, clinic) if t["kind"] == kind]


def test_other_staff_and_other_clinics_cannot_touch_them(api, db, clinic, clinic_factory,
                                                         member_factory):
    nurse = member_factory(clinic["id"], "NURSE", tag="tpl-nurse")
    assert api.as_(nurse["token"], "GET", path(clinic)).status_code == 403
    other = clinic_factory()
    stranger = member_factory(other["id"], "CLINIC_ADMIN", tag="tpl-stranger")
    before = stored(db, clinic)
    for method, body in (("GET", None), ("PUT", {"source": SMS}), ("DELETE", None)):
        r = api.as_(stranger["token"], method, path(clinic), json=body)
        assert r.status_code == 404 and "Lotus" not in r.text, r.text
    assert stored(db, clinic) == before


# --- render_for_send: what notifications call at send time --------------------------------------

WALK_IN = msgspec.structs.replace(sample_context(), starts_at=None, room=None)


def events_of(db, clinic_id: str) -> list[dict[str, Any]]:
    return db.fetch("""SELECT data::text AS data, audience FROM events WHERE clinic_id = $1::uuid
                       AND type = 'communication.template_failed' ORDER BY seq""", clinic_id)


def send(layer, clinic_id: str, kind: str, channels: list[str], locale: str,
         context: TemplateContext) -> dict[str, Any]:
    from domain import db as database

    async def run() -> dict[str, Any]:
        async with database.transaction():  # as notifications do: inside its transaction
            return await render_for_send(clinic_id=uuid.UUID(clinic_id), kind=kind,
                                         channels=channels, locale=locale,
                                         context=context)
    return layer.run(run())


def test_render_for_send_uses_the_clinics_most_specific_template(api, domain_layer, clinic):
    kind = "appointment.reminder"
    assert call(api, clinic, "PUT", path(clinic, kind, "sms", "hi"),
                json={"source": HINDI_SMS}).status_code == 200
    out = send(domain_layer, clinic["id"], kind, ["sms", "push"], "hi-IN", sample_context("hi-IN"))
    assert out["sms"].text == "Sunrise Clinic: नमस्ते Asha, 4 दिस॰ 2026, 9:30 am."
    assert out["push"].text.startswith("Dr. Meera Rao")  # no clinic push: the Hindi default
    english = send(domain_layer, clinic["id"], kind, ["sms"], "en", sample_context())
    assert english == {"sms": render(kind, "sms", "en", sample_context())}  # no English of its own


def test_a_clinic_template_failing_at_send_time_falls_back_and_is_announced_once(
        api, db, domain_layer, clinic):
    """A queue call for a walk-in has no appointment time: a template that shows one saves
    (the sample has a time) and fails on the real call."""
    kind = "queue.called"
    broken = "{{ clinic_name }}: ticket {{ ticket }}, booked for {{ starts_at | time }}."
    assert call(api, clinic, "PUT", path(clinic, kind), json={"source": broken}).status_code == 200
    booked = send(domain_layer, clinic["id"], kind, ["sms"], "en", sample_context())
    assert booked["sms"].text == "Sunrise Clinic: ticket A-014, booked for 9:30 AM."
    assert events_of(db, clinic["id"]) == []
    for _ in range(3):
        out = send(domain_layer, clinic["id"], kind, ["sms", "push"], "en", WALK_IN)
        assert out["sms"].text == ("Sunrise Clinic: ticket A-014, it is your turn. "
                                   "Please go to the consultation room now.")  # the default
    failed = events_of(db, clinic["id"])
    assert len(failed) == 1, failed
    assert msgspec.json.decode(failed[0]["data"]) == {"kind": kind, "channel": "sms", "locale": "en"}
    assert failed[0]["audience"] == [f"clinic:{clinic['id']}:role:CLINIC_ADMIN"]
    assert "starts_at" not in failed[0]["data"] and "Sunrise" not in failed[0]["data"]
    # saved again (still broken for walk-ins): the next failure is announced again, once
    assert call(api, clinic, "PUT", path(clinic, kind), json={"source": broken}).status_code == 200
    for _ in range(2):
        send(domain_layer, clinic["id"], kind, ["sms"], "en", WALK_IN)
    assert len(events_of(db, clinic["id"])) == 2


def test_render_for_send_needs_an_aware_context_and_a_known_kind(domain_layer, clinic):
    from domain.errors import Invalid

    with pytest.raises(Invalid):
        send(domain_layer, clinic["id"], "appointment.exploded", ["sms"], "en", sample_context())
    assert send(domain_layer, clinic["id"], "appointment.booked", [], "en", sample_context()) == {}
    later = msgspec.structs.replace(sample_context(), starts_at=datetime(2027, 1, 2, 3, 30, tzinfo=UTC))
    out = send(domain_layer, clinic["id"], "appointment.booked", ["sms"], "en", later)
    assert "Jan 2, 2027, 9:00 AM" in out["sms"].text
