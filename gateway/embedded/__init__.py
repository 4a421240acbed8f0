"""Private PostgreSQL and Redis from PyPI packages, for the no-configuration default and tests."""
