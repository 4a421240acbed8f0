"""Settings come from the environment, typed, with clear refusals."""

from __future__ import annotations

import pytest

from domain.settings import SettingsError, from_env

BASE = {"DATABASE_URL": "postgresql://db", "REDIS_URL": "redis://r", "CAREWIRE_JWT_SECRET": "s" * 40}


def test_lists_and_numbers_are_parsed():
    s = from_env({**BASE, "CAREWIRE_GC_THRESHOLDS": "1000,10,10",
                  "CAREWIRE_ALLOWED_ORIGINS": "https://a.example,https://b.example",
                  "CAREWIRE_ACCESS_TOKEN_TTL_SECONDS": "60"})
    assert s.gc_thresholds == (1000, 10, 10)
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.access_token_ttl_seconds == 60


def test_missing_and_weak_settings_are_named():
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        from_env({"REDIS_URL": "redis://r", "CAREWIRE_JWT_SECRET": "s" * 40})
    with pytest.raises(SettingsError, match="at least 32"):
        from_env({**BASE, "CAREWIRE_JWT_SECRET": "short"})
    with pytest.raises(SettingsError, match="bad setting"):
        from_env({**BASE, "CAREWIRE_ACCESS_TOKEN_TTL_SECONDS": "soon"})


def test_origins_are_never_a_wildcard_by_default():
    assert "*" not in from_env(BASE).allowed_origins
