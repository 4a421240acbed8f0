"""Taskiq broker and workers (outbox relay, outbound communication, scheduled jobs).

Not built yet: it arrives with the live-backbone issue. Nothing here is on the public surface.
"""
