"""Notification templates: the shipped defaults (`en/`, `hi/`), the sandboxed renderer and the
check a clinic's own template passes before it is saved. Not yet used by any sending path."""

from domain.communication.templates.context import TemplateContext, sample_context
from domain.communication.templates.engine import (
    BLOCKS,
    KINDS,
    LIMITS,
    Rendered,
    locale_candidates,
    render,
    shipped_source,
    validate,
)

__all__ = ["BLOCKS", "KINDS", "LIMITS", "Rendered", "TemplateContext", "locale_candidates",
           "render", "sample_context", "shipped_source", "validate"]
