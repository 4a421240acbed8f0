"""Notification events: a new inbox item, to its owner's room only, by id and kind (the text is
fetched over REST, where access is checked)."""

from __future__ import annotations

import uuid

from domain.events.envelope import Category, DomainEvent


class NotificationCreated(DomainEvent, frozen=True):
    TYPE = "notification.created"
    CATEGORY = Category.COMMUNICATION
    notification_id: uuid.UUID
    kind: str
