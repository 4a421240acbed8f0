"""Typed events, the transactional outbox and each clinic's gapless sequence."""
