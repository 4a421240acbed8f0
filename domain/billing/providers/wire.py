"""What every adapter does with a provider's JSON: typed reads that treat anything else as
absent, and a webhook body that must be a JSON object of the provider's event shape."""

from __future__ import annotations

import json
from typing import Any

from domain.inbox.signatures import malformed


def text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def webhook_object(body: bytes, provider: str, *, type_field: str | None = None) -> dict[str, Any]:
    """The body as a JSON object (400 `malformed` otherwise); with `type_field`, that field must
    be a string (the provider's event type)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise malformed("the webhook body is not JSON") from None
    if not isinstance(doc, dict):
        raise malformed("the webhook body is not a JSON object")
    if type_field is not None and not isinstance(doc.get(type_field), str):
        raise malformed(f"the webhook body is not a {provider} event (no {type_field})")
    return doc
