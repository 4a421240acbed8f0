"""Users, credentials, sessions and tokens."""
