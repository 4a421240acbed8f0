"""The webhook inbox: every provider's webhooks (communication now; payments and video later)
arrive here, verified on the raw body, stored keyed by the provider's event id before any
processing, answered at once, and processed once by a job (DESIGN.md §5).

The inbox owns the envelope (signatures, event ids, storage, the once); what an event means
belongs to the context that owns the provider: `handlers.HANDLERS` names, per provider, the
function that applies it (communication's are in domain/communication/webhooks.py)."""
