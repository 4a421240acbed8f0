"""The notification template renderer (domain/communication/templates/), in process: no servers,
nothing sent. The shipped defaults render for every kind and channel in English and Hindi, dates
come out in the clinic's zone for the locale, HTML escapes only where it should, and a clinic's
own template is refused when it is wrong or reaches outside its context."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from domain.communication.models import CHANNELS
from domain.communication.templates import (
    KINDS,
    LIMITS,
    TemplateContext,
    locale_candidates,
    render,
    sample_context,
    shipped_source,
    validate,
)
from domain.errors import Invalid
from domain.notifications.models import KINDS as NOTIFICATION_KINDS

HINDI_KINDS = ("appointment.booked", "appointment.reminder", "queue.called",
               "staff.appointment_booked", "staff.appointment_cancelled", "billing.receipt")
DEVANAGARI = range(0x0900, 0x0980)


def refused(field: str, call: object, *args: object, **kw: object) -> Invalid:
    with pytest.raises(Invalid) as caught:
        call(*args, **kw)  # type: ignore[operator]
    assert [e.field for e in caught.value.errors] == [field], caught.value.message
    return caught.value


def devanagari(text: str) -> bool:
    return any(ord(c) in DEVANAGARI for c in text)


# ---------------------------------------------------------------- every shipped kind and channel


@pytest.mark.parametrize("locale", ["en", "hi", "hi-IN"])
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_template_renders(kind: str, channel: str, locale: str) -> None:
    out = render(kind, channel, locale, sample_context(locale))
    assert out.text and "None" not in out.text
    if channel == "email":
        assert out.subject and out.html and "\n" not in out.subject
        assert "https://carewire.example/u/sample-token" in out.text
        assert 'href="https://carewire.example/u/sample-token"' in out.html
    elif channel == "push":
        assert out.subject and out.html is None
    else:
        assert out.subject is None and out.html is None
    for part in ("subject", "text"):
        limit = LIMITS.get((channel, part))
        assert limit is None or len(getattr(out, part) or "") <= limit
    # Hindi where it is shipped, English (with English dates) where it falls back.
    hindi = locale != "en" and kind in HINDI_KINDS
    assert devanagari(out.text) is hindi
    assert shipped_source(kind, channel, locale)[1] == ("hi" if hindi else "en")


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_source_passes_its_own_validation(kind: str, channel: str) -> None:
    for locale in ("en", "hi"):
        validate(shipped_source(kind, channel, locale)[0], channel)


def test_hindi_booking_confirmation_exactly() -> None:
    ctx = sample_context("hi-IN")
    assert render("appointment.booked", "sms", "hi-IN", ctx).text == (
        "Sunrise Clinic: Dr. Meera Rao के साथ आपकी अपॉइंटमेंट 4 दिस॰ 2026, 9:30 am के लिए बुक हो गई है।"
        " स्थान: Sunrise Clinic, Indiranagar")
    email = render("appointment.booked", "email", "hi-IN", ctx)
    assert email.subject == "Sunrise Clinic में आपकी अपॉइंटमेंट बुक हो गई है"
    assert email.text == (
        "नमस्ते Asha,\n\n"
        "Dr. Meera Rao के साथ आपकी अपॉइंटमेंट 4 दिस॰ 2026, 9:30 am के लिए बुक हो गई है।\n"
        "स्थान: Sunrise Clinic, Indiranagar\n\n"
        "Sunrise Clinic\n\n"
        "ये ईमेल बंद करने के लिए: https://carewire.example/u/sample-token")
    push = render("appointment.booked", "push", "hi", ctx)
    assert (push.subject, push.text) == (
        "अपॉइंटमेंट बुक हो गई", "Dr. Meera Rao के साथ, 4 दिस॰ 2026, 9:30 am, Sunrise Clinic, Indiranagar।")


def test_queue_call_names_the_room_in_each_language() -> None:
    assert render("queue.called", "push", "en", sample_context()).text == (
        "Ticket A-014: please go to room 3 now.")
    assert render("queue.called", "push", "hi-IN", sample_context("hi-IN")).text == (
        "टोकन A-014: कृपया अभी कमरा नंबर 3 में जाएँ।")
    no_room = msgspec.structs.replace(sample_context("hi"), room=None)
    assert render("queue.called", "sms", "hi", no_room).text == (
        "Sunrise Clinic: टोकन A-014, आपकी बारी आ गई है। कृपया अभी परामर्श कक्ष में जाएँ।")


def test_a_kind_without_hindi_falls_back_to_english_with_english_dates() -> None:
    assert shipped_source("appointment.cancelled", "sms", "hi-IN")[1] == "en"
    assert render("appointment.cancelled", "sms", "hi-IN", sample_context("hi-IN")).text == (
        "Sunrise Clinic: your appointment with Dr. Meera Rao on Dec 4, 2026, 9:30 AM is cancelled.")


def test_locale_fallback_order() -> None:
    assert locale_candidates("hi-IN") == ["hi-in", "hi", "en"]
    assert locale_candidates("hi_IN") == ["hi-in", "hi", "en"]
    assert locale_candidates("hi") == ["hi", "en"]
    assert locale_candidates("en") == ["en"]
    assert shipped_source("queue.called", "sms", "hi-IN")[1] == "hi"
    assert shipped_source("queue.called", "sms", "ta-IN")[1] == "en"
    for bad in ("", "hindi-language-please", "h", "en IN", "../../etc"):
        refused("locale", render, "test", "sms", bad, sample_context())


def test_every_notification_kind_has_shipped_templates() -> None:
    """Notifications send every kind of theirs through these templates; the test send is ours."""
    assert set(KINDS) == {*NOTIFICATION_KINDS, "test"}


def test_staff_hear_of_a_booking_in_one_line() -> None:
    push = render("staff.appointment_booked", "push", "en", sample_context())
    assert (push.subject, push.text) == (
        "New booking", "Asha, Dec 4, 2026, 9:30 AM, Sunrise Clinic, Indiranagar.")
    assert render("staff.appointment_cancelled", "sms", "hi", sample_context("hi")).text == (
        "Sunrise Clinic: रद्द, Asha, 4 दिस॰ 2026, 9:30 am।")


def test_unknown_kind_and_channel_are_named() -> None:
    refused("kind", render, "appointment.exploded", "sms", "en", sample_context())
    refused("channel", render, "test", "fax", "en", sample_context())
    refused("channel", validate, "hello", "fax")


# ------------------------------------------------------------------------------------- dates

DATES = ("{{ starts_at | datetime }}|{{ starts_at | date }}|{{ starts_at | time }}"
         "|{{ starts_at | date('full') }}")


@pytest.mark.parametrize(("locale", "zone", "expected"), [
    ("en", "Asia/Kolkata", "Dec 4, 2026, 9:30 AM|Dec 4, 2026|9:30 AM|Friday, December 4, 2026"),
    ("en-IN", "Asia/Kolkata", "4 Dec 2026, 9:30 AM|4 Dec 2026|9:30 AM|Friday, 4 December 2026"),
    ("hi", "Asia/Kolkata", "4 दिस॰ 2026, 9:30 am|4 दिस॰ 2026|9:30 am|शुक्रवार, 4 दिसंबर 2026"),
    ("hi-IN", "Asia/Kolkata", "4 दिस॰ 2026, 9:30 am|4 दिस॰ 2026|9:30 am|शुक्रवार, 4 दिसंबर 2026"),
    # The same instant is the evening before in New York: the date moves with the zone.
    ("en", "America/New_York", "Dec 3, 2026, 11:00 PM|Dec 3, 2026|11:00 PM|Thursday, December 3, 2026"),
])
def test_dates_are_formatted_in_the_clinic_zone_for_the_locale(locale: str, zone: str,
                                                              expected: str) -> None:
    ctx = msgspec.structs.replace(sample_context(locale), clinic_timezone=zone)
    assert ctx.starts_at == datetime(2026, 12, 4, 4, 0, tzinfo=UTC)
    assert render("test", "sms", locale, ctx, override=DATES).text == expected


def test_english_times_carry_no_non_gsm_spaces() -> None:
    text = render("appointment.reminder", "sms", "en", sample_context()).text
    assert text == ("Sunrise Clinic: reminder of your appointment with Dr. Meera Rao on "
                    "Dec 4, 2026, 9:30 AM at Sunrise Clinic, Indiranagar.")
    assert "\u202f" not in text and "\u00a0" not in text


def test_the_date_filters_take_only_named_formats_and_aware_datetimes() -> None:
    refused("template", validate, "{{ starts_at | date('yyyy') }}", "sms")
    refused("template", validate, "{{ clinic_name | datetime }}", "sms")
    no_time = msgspec.structs.replace(sample_context(), starts_at=None)
    refused("template", render, "appointment.booked", "sms", "en", no_time)


def test_the_context_refuses_naive_datetimes_and_unknown_zones() -> None:
    fields = {f: getattr(sample_context(), f) for f in TemplateContext.__struct_fields__}
    refused("starts_at", TemplateContext, **{**fields, "starts_at": datetime(2026, 12, 4, 9, 30)})
    refused("clinic_timezone", TemplateContext, **{**fields, "clinic_timezone": "Mars/Olympus"})


# ---------------------------------------------------------------------------------- escaping

HOSTILE = '<script>alert("x")</script> & <b>Co</b>'


def test_html_part_escapes_a_hostile_name_and_plain_parts_do_not() -> None:
    ctx = msgspec.structs.replace(sample_context(), patient_first_name=HOSTILE, clinic_name=HOSTILE)
    email = render("appointment.booked", "email", "en", ctx)
    assert email.html is not None and "<script>" not in email.html and "<b>Co" not in email.html
    assert ("<p>Hello &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;,</p>"
            in email.html)
    assert email.text.startswith(f"Hello {HOSTILE},\n")
    assert email.subject == f"Your appointment at {HOSTILE} is booked"
    assert render("queue.next", "sms", "en", ctx).text.startswith(f"{HOSTILE}: ticket A-014")
    assert render("test", "whatsapp", "en", ctx).text.startswith(f"*{HOSTILE}*\n\nHello {HOSTILE},")


def test_a_template_cannot_turn_escaping_off() -> None:
    for source in ("{% block subject %}s{% endblock %}{% block text %}t{% endblock %}"
                   "{% block html %}{{ patient_first_name | safe }}{% endblock %}",
                   "{% block subject %}s{% endblock %}{% block text %}t{% endblock %}"
                   "{% block html %}{% autoescape false %}{{ patient_first_name }}"
                   "{% endautoescape %}{% endblock %}"):
        refused("template", validate, source, "email")


# --------------------------------------------------------------------------- what is refused


def test_a_typo_in_a_variable_is_refused_at_save_time() -> None:
    error = refused("template", validate, "Hello {{ patient_frist_name }}", "sms")
    assert "patient_frist_name" in error.message and "undefined" in error.message
    refused("template", validate, "Hello {{ patient_first_name.nickname }}", "sms")
    refused("template", render, "test", "sms", "en", sample_context(), override="{{ clinc_name }}")


def test_an_empty_optional_field_prints_as_nothing() -> None:
    ctx = msgspec.structs.replace(sample_context(), room=None, ticket=None)
    assert render("test", "sms", "en", ctx, override="[{{ room }}|{{ ticket }}]").text == "[|]"


def test_the_unsubscribe_link_is_an_email_variable_only() -> None:
    refused("template", validate, "Stop: {{ unsubscribe_url }}", "sms")
    validate("{% block subject %}s{% endblock %}{% block text %}{{ unsubscribe_url }}{% endblock %}"
             "{% block html %}<a href=\"{{ unsubscribe_url }}\">x</a>{% endblock %}", "email")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ starts_at.__class__.__base__ }}",
    "{{ starts_at.tzinfo.__reduce__() }}",
    "{{ clinic_name.__len__ }}",
    "{{ '{0.__class__}'.format(clinic_name) }}",
    "{{ clinic_name | attr('__class__') }}",
    "{{ request.application.__globals__ }}",
    "{{ config.items() }}",
    "{{ clinic_name.center(1000000000) }}",
    "{{ 'x' * 1000000000 }}",
    "{{ 9 ** 9 ** 9 }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ [clinic_name] * 100000 }}",
    "{{ clinic_name | replace('', clinic_name) | replace('', clinic_name) | replace('', clinic_name) }}",
    "{% set x = clinic_name ~ clinic_name %}{{ x }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% include '/etc/passwd' %}",
    "{% extends 'base.html' %}",
    "{% import 'x' as y %}",
    "{% filter upper %}{{ clinic_name }}{% endfilter %}",
    "{% with a = clinic_name %}{{ a }}{% endwith %}",
    "{{ clinic_name",
    "{% if %}",
    "{{ clinic_name | no_such_filter }}",
])
def test_sandbox_escapes_and_broken_templates_are_refused(source: str) -> None:
    refused("template", validate, source, "sms")
    refused("template", render, "test", "sms", "en", sample_context(), override=source)


def test_the_sandbox_itself_refuses_underscore_attributes() -> None:
    """Attribute access needs no refused node type: this is Jinja's sandbox answering."""
    for source in ("{{ ''.__class__ }}", "{{ self._TemplateReference__context }}",
                   "{{ starts_at.__class__ }}"):
        assert "not allowed" in refused("template", validate, source, "sms").message


def test_each_channel_needs_exactly_its_blocks() -> None:
    ok_email = ("{% block subject %}s{% endblock %}\n{% block text %}t{% endblock %}\n"
                "{% block html %}<p>h</p>{% endblock %}\n")
    validate(ok_email, "email")
    validate("{% block title %}t{% endblock %}{% block body %}b{% endblock %}", "push")
    refused("template", validate, ok_email.replace("html", "htm"), "email")
    refused("template", validate, "{% block subject %}s{% endblock %}{% block text %}t{% endblock %}",
            "email")
    refused("template", validate, ok_email + "stray text", "email")
    refused("template", validate, "{% block title %}t{% endblock %}", "push")
    refused("template", validate, "{% block text %}t{% endblock %}", "sms")
    refused("template", validate, "   ", "sms")
    refused("template", validate, "{% if false %}x{% endif %}", "whatsapp")  # renders empty


# ------------------------------------------------------------------------------ length limits


@pytest.mark.parametrize(("channel", "make", "limit"), [
    ("sms", lambda n: "x" * n, 1600),
    ("whatsapp", lambda n: "x" * n, 4096),
    ("push", lambda n: "{% block title %}" + "t" * n + "{% endblock %}{% block body %}b{% endblock %}", 100),
    ("push", lambda n: "{% block title %}t{% endblock %}{% block body %}" + "b" * n + "{% endblock %}", 1000),
])
def test_rendered_length_limits(channel: str, make: object, limit: int) -> None:
    ctx = sample_context()
    render("test", channel, "en", ctx, override=make(limit))  # type: ignore[operator]
    error = refused("template", render, "test", channel, "en", ctx,
                    override=make(limit + 1))  # type: ignore[operator]
    assert f"at most {limit:,}" in error.message
    refused("template", validate, make(limit + 1), channel)  # type: ignore[operator]


def test_the_limit_counts_what_the_context_fills_in() -> None:
    """A template under the limit is refused when the names it is given push it over."""
    source = "x" * 1590 + " {{ clinic_name }}"
    render("test", "sms", "en", sample_context(), override=source[:-17] + "{{ ticket }}")
    refused("template", render, "test", "sms", "en", sample_context(), override=source)
