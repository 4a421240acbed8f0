"""Render notification templates: Jinja2's sandbox, strict about undefined names, autoescaped for
HTML email only, dates formatted by babel in the clinic's time zone. A clinic's own templates
(commands/templates.py) are rendered through it at send time, the shipped default standing in
for one that fails.

A template is one source per kind, channel and locale (the unit a clinic admin edits). Email
sources hold three blocks (`subject`, `text`, `html`), push sources two (`title`, `body`); SMS
and WhatsApp sources are the message itself, without blocks. The email source is compiled twice:
plain for the subject and text, autoescaped for the html block.

Templates hold text, conditions (`if`), variables and the filters below; nothing else. Loops,
assignments, macros, calls, includes and `{% autoescape %}` are refused when the source is
parsed, so a template's cost is bounded by its length; the sandbox (no attributes starting
with `_`, no unsafe methods, immutable values) stands behind that, and every failure becomes
`Invalid` naming the field `template`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import msgspec
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_datetime_format
from jinja2 import StrictUndefined, Template, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from domain.communication.models import CHANNELS, Channel
from domain.communication.templates.context import TemplateContext, sample_context
from domain.errors import DomainError, invalid_field

#: The notification kinds that have shipped defaults: domain.notifications.models.KINDS and the
#: test send (tests/communication/test_templates.py keeps the two lists equal).
KINDS: Final[tuple[str, ...]] = (
    "appointment.booked", "appointment.rescheduled", "appointment.cancelled",
    "appointment.no_show", "appointment.reminder", "follow_up.scheduled", "queue.called",
    "queue.next", "video.starting", "staff.appointment_booked", "staff.appointment_cancelled",
    "billing.receipt", "test",
)
#: Blocks each channel's source must define (exactly these); none: the source is the message.
BLOCKS: Final[dict[str, tuple[str, ...]]] = {
    "email": ("subject", "text", "html"),
    "push": ("title", "body"),
    "sms": (),
    "whatsapp": (),
}
#: Longest rendered part, in characters, per channel and part of `Rendered`.
LIMITS: Final[dict[tuple[str, str], int]] = {
    ("sms", "text"): 1600,
    ("push", "subject"): 100,
    ("push", "text"): 1000,
    ("whatsapp", "text"): 4096,
    ("email", "subject"): 250,
}
#: Longest template source we accept.
MAX_SOURCE: Final = 20_000
#: Longest string a `*` in a template may build.
_MAX_PRODUCT: Final = 5_000
DEFAULT_LOCALE: Final = "en"
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_DATE_FORMATS = frozenset({"short", "medium", "long", "full"})

#: Node types a template may not contain (see the module docstring).
_REFUSED_NODES: Final[dict[type[nodes.Node], str]] = {
    nodes.For: "loops", nodes.Assign: "`set`", nodes.AssignBlock: "`set`",
    nodes.Macro: "macros", nodes.CallBlock: "`call` blocks", nodes.Call: "calls",
    nodes.Include: "`include`", nodes.Import: "`import`", nodes.FromImport: "`import`",
    nodes.Extends: "`extends`", nodes.FilterBlock: "`filter` blocks", nodes.With: "`with`",
    nodes.Scope: "scopes", nodes.OverlayScope: "scopes",
    nodes.EvalContextModifier: "`autoescape` blocks",
    nodes.ScopedEvalContextModifier: "`autoescape` blocks",
}


class Rendered(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered message: `subject` is the email subject or the push title (None for SMS and
    WhatsApp), `html` the email's HTML part (None for other channels)."""

    subject: str | None
    text: str
    html: str | None = None


# ---------------------------------------------------------------------------------- the sandbox


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with the operators that can build a large value from a short source bounded:
    `{{ 'x' * 10**9 }}`, `{{ '%0999999999d' % 1 }}` or `{{ 9 ** 9 ** 9 }}` would otherwise cost
    gigabytes or minutes in one line."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and not (isinstance(right, int) and -64 <= right <= 64
                                     and isinstance(left, int | float) and abs(left) <= 10**6):
            raise SecurityError("`**` is limited to small numbers in templates")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("`%` formatting is not available in templates")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, list | tuple) and isinstance(n, int):
                    raise SecurityError("lists cannot be repeated in templates")
                if isinstance(seq, str) and isinstance(n, int) and len(seq) * n > _MAX_PRODUCT:
                    raise SecurityError("`*` may not build a string this long in templates")
        return super().call_binop(context, operator, left, right)


def _zone_and_locale(ctx: Context) -> tuple[ZoneInfo, Locale]:
    return ZoneInfo(ctx["clinic_timezone"]), _babel_locale(ctx["locale"])


def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise SecurityError(f"the `{name}` filter takes an aware datetime, not {type(value).__name__}")
    return value


def _plain_spaces(value: str) -> str:
    """CLDR puts a narrow no-break space before "AM"; it is outside SMS's GSM-7 alphabet and
    would make every English SMS with a time a UCS-2 one (70 characters a part, not 160)."""
    return value.replace("\u202f", " ").replace("\u00a0", " ")


DateForm = Literal["short", "medium", "long", "full"]


def _format(value: str) -> DateForm:
    if value not in _DATE_FORMATS:
        raise SecurityError(f"date formats are {', '.join(sorted(_DATE_FORMATS))}")
    return value  # type: ignore[return-value]


@pass_context
def _datetime_filter(ctx: Context, value: object, date: str = "medium", time: str = "short") -> str:
    """`{{ starts_at | datetime }}`: the locale's medium date and short time, in the clinic's zone."""
    zone, locale = _zone_and_locale(ctx)
    local = _aware(value, "datetime").astimezone(zone)
    pattern = get_datetime_format(_format(date), locale=locale)
    return _plain_spaces(str(pattern).replace("{1}", format_date(local, _format(date), locale=locale))
                         .replace("{0}", format_time(local, _format(time), locale=locale)))


@pass_context
def _date_filter(ctx: Context, value: object, form: str = "medium") -> str:
    zone, locale = _zone_and_locale(ctx)
    return _plain_spaces(format_date(_aware(value, "date").astimezone(zone), _format(form),
                                     locale=locale))


@pass_context
def _time_filter(ctx: Context, value: object, form: str = "short") -> str:
    zone, locale = _zone_and_locale(ctx)
    return _plain_spaces(format_time(_aware(value, "time").astimezone(zone), _format(form),
                                     locale=locale))


#: Jinja's own filters a template may use (none of them can build output much longer than its
#: input: `replace('', name)` squares it, so it is out); `safe` is left out so nothing can turn
#: escaping off for a value.
_KEPT_FILTERS = ("capitalize", "default", "d", "e", "escape", "length", "lower", "striptags",
                 "title", "trim", "truncate", "upper")


def _blank_none(value: object) -> object:
    """An empty optional field (no room yet) prints as nothing, never as "None"."""
    return "" if value is None else value


def _environment(autoescape: bool) -> _Sandbox:
    env = _Sandbox(autoescape=autoescape, undefined=StrictUndefined, trim_blocks=True,
                   lstrip_blocks=True, keep_trailing_newline=False, auto_reload=False,
                   finalize=_blank_none)
    env.globals.clear()  # no range, cycler, joiner, namespace, lipsum, dict
    kept = {name: env.filters[name] for name in _KEPT_FILTERS}
    env.filters.clear()
    env.filters.update(kept)
    env.filters.update(datetime=_datetime_filter, date=_date_filter, time=_time_filter)
    return env


_PLAIN = _environment(autoescape=False)
_ESCAPED = _environment(autoescape=True)


# ------------------------------------------------------------------------------------ compiling


def _check_shape(tree: nodes.Template, channel: str) -> None:
    """The node types we refuse, and the blocks the channel needs (exactly those)."""
    for node in tree.find_all(tuple(_REFUSED_NODES)):
        raise SecurityError(f"templates may not use {_REFUSED_NODES[type(node)]} "
                            f"(line {node.lineno})")
    wanted = BLOCKS[channel]
    blocks = list(tree.find_all(nodes.Block))
    names = [b.name for b in blocks]
    if not wanted:
        if names:
            raise SecurityError(f"{channel} templates are the message itself, without blocks")
        return
    if sorted(names) != sorted(wanted):
        raise SecurityError(f"{channel} templates define exactly the blocks "
                            f"{', '.join(wanted)} (found: {', '.join(names) or 'none'})")
    for node in tree.body:
        if isinstance(node, nodes.Block):
            continue
        if isinstance(node, nodes.Output) and all(
                isinstance(c, nodes.TemplateData) and not c.data.strip() for c in node.nodes):
            continue
        raise SecurityError(f"text outside the blocks is never sent (line {node.lineno})")


@lru_cache(maxsize=512)
def _compile(source: str, channel: str) -> tuple[Template, Template | None]:
    """(plain, escaped) compilations of one source; escaped only for email. Raises Jinja's errors."""
    if len(source) > MAX_SOURCE:
        raise SecurityError(f"a template is at most {MAX_SOURCE:,} characters")
    _check_shape(_PLAIN.parse(source), channel)
    plain = _PLAIN.from_string(source)
    escaped = _ESCAPED.from_string(source) if channel == "email" else None
    return plain, escaped


# ------------------------------------------------------------------------------------- locales


@lru_cache(maxsize=64)
def _babel_locale(tag: str) -> Locale:
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


def locale_candidates(locale: str) -> list[str]:
    """Where to look for a template, in order: `hi-IN` → `hi-in`, `hi`, `en`."""
    if not _LOCALE.match(locale):
        raise invalid_field("locale", "not a locale tag, e.g. en, hi or hi-IN")
    tag = locale.replace("_", "-").lower()
    found = [tag]
    language = tag.split("-")[0]
    if language != tag:
        found.append(language)
    if DEFAULT_LOCALE not in found:
        found.append(DEFAULT_LOCALE)
    return found


def _effective_locale(requested: str, template_locale: str) -> str:
    """Dates follow the requested locale when the template is in its language (`en-IN` with the
    `en` template: "4 Dec 2026"); an English fallback for a Hindi request gets English dates."""
    language = requested.replace("_", "-").lower().split("-")[0]
    return requested if language == template_locale.split("-")[0] else template_locale


@lru_cache(maxsize=256)
def shipped_source(kind: str, channel: str, locale: str) -> tuple[str, str]:
    """(source, its locale) of the shipped default, with the locale fallback."""
    if kind not in KINDS:
        raise invalid_field("kind", f"unknown notification kind {kind!r}")
    root = resources.files(__package__)
    for candidate in locale_candidates(locale):
        path = root.joinpath(candidate, f"{kind}.{channel}.j2")
        if path.is_file():
            return path.read_text(encoding="utf-8"), candidate
    raise invalid_field("kind", f"no shipped template for {kind} on {channel}")  # pragma: no cover


# ------------------------------------------------------------------------------------ rendering


def _variables(context: TemplateContext, channel: str, locale: str) -> dict[str, object]:
    found = {f: getattr(context, f) for f in context.__struct_fields__}
    found["locale"] = locale
    if channel != "email":
        del found["unsubscribe_url"]
    return found


def _join(parts: Iterable[str]) -> str:
    return "".join(parts).strip()


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _run(source: str, channel: str, variables: dict[str, object]) -> Rendered:
    plain, escaped = _compile(source, channel)
    if channel == "email":
        assert escaped is not None
        ctx, html_ctx = plain.new_context(dict(variables)), escaped.new_context(dict(variables))
        return Rendered(subject=_one_line(_join(plain.blocks["subject"](ctx))),
                        text=_join(plain.blocks["text"](ctx)),
                        html=_join(escaped.blocks["html"](html_ctx)))
    if channel == "push":
        ctx = plain.new_context(dict(variables))
        return Rendered(subject=_one_line(_join(plain.blocks["title"](ctx))),
                        text=_join(plain.blocks["body"](ctx)))
    return Rendered(subject=None, text=plain.render(variables).strip())


def _guarded(run: Callable[[], Rendered]) -> Rendered:
    try:
        return run()
    except DomainError:
        raise
    except Exception as exc:  # a template is untrusted input: whatever it raises, it is invalid
        raise invalid_field("template", _describe(exc)) from exc


def _describe(exc: Exception) -> str:
    line = getattr(exc, "lineno", None)
    where = f" (line {line})" if line and f"line {line}" not in str(exc) else ""
    name = {"TemplateSyntaxError": "syntax error", "TemplateAssertionError": "syntax error",
            "UndefinedError": "undefined", "SecurityError": "not allowed"}.get(
                type(exc).__name__, type(exc).__name__)
    return f"{name}: {exc}{where}"


def _check_limits(rendered: Rendered, channel: str) -> Rendered:
    for part in ("subject", "text"):
        value = getattr(rendered, part)
        limit = LIMITS.get((channel, part))
        if value is not None and limit is not None and len(value) > limit:
            label = {"push": {"subject": "push title", "text": "push body"},
                     "email": {"subject": "email subject"}}.get(channel, {}).get(part, channel)
            raise invalid_field("template", f"the rendered {label} is {len(value):,} characters; "
                                            f"at most {limit:,}")
    if not rendered.text:
        raise invalid_field("template", "the rendered message is empty")
    return rendered


def _channel(channel: str) -> Channel:
    if channel not in CHANNELS:
        raise invalid_field("channel", f"one of {', '.join(CHANNELS)}")
    return channel


def render(kind: str, channel: str, locale: str, context: TemplateContext, *,
           override: str | None = None, override_locale: str | None = None) -> Rendered:
    """Render `kind` for `channel` in `locale` (template lookup `hi-IN` → `hi` → `en`), from the
    clinic's `override` source when given (stored under `override_locale`, by default the
    requested one), else the shipped default. Raises `Invalid` (field `template`) when the
    template fails or a rendered part is over its channel's limit."""
    ch = _channel(channel)
    source, template_locale = shipped_source(kind, ch, locale)
    if override is not None:
        source, template_locale = override, override_locale or locale_candidates(locale)[0]
    effective = _effective_locale(locale, template_locale)
    variables = _variables(context, ch, effective)
    return _check_limits(_guarded(_runner(source, ch, variables)), ch)


def validate(source: str, channel: str) -> None:
    """Refuse (`Invalid`, field `template`) a source that does not parse, names an undefined
    variable or filter, reaches outside its context, lacks the channel's blocks, or renders over
    the channel's limits against the sample appointment."""
    ch = _channel(channel)
    if not isinstance(source, str) or not source.strip():
        raise invalid_field("template", "must not be empty")
    for locale in ("en", "hi"):
        _check_limits(_guarded(_runner(source, ch, _variables(sample_context(locale), ch, locale))), ch)


def _runner(source: str, channel: str, variables: dict[str, object]) -> Callable[[], Rendered]:
    return lambda: _run(source, channel, variables)
