"""Changes a user makes to their own notifications: preferences and the inbox's read marks."""
