"""Settings refuse what would be unsafe in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from baton.settings import Settings


def test_production_refuses_the_development_secret_key():
    with pytest.raises(ValidationError, match="BATON_SECRET_KEY still has the development default"):
        Settings(environment="production")


def test_production_accepts_a_real_secret_key():
    settings = Settings(environment="production", secret_key="x" * 48)
    assert settings.secret_key.get_secret_value() == "x" * 48
    assert "x" * 48 not in repr(settings)


def test_a_short_secret_key_is_refused():
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(secret_key="short")


def test_sqlite_under_the_data_dir_by_default(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}"


def test_settings_come_from_baton_environment_variables(monkeypatch):
    monkeypatch.setenv("BATON_TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("BATON_DATABASE_URL", "postgresql+asyncpg://baton@db/baton")
    settings = Settings()
    assert settings.temporal_address == "temporal.internal:7233"
    assert settings.resolved_database_url == "postgresql+asyncpg://baton@db/baton"


def test_empty_variables_from_env_example_count_as_unset(monkeypatch):
    monkeypatch.setenv("BATON_TEMPORAL_TLS_CERT_PATH", "")
    monkeypatch.setenv("BATON_TEMPORAL_API_KEY", "")
    monkeypatch.setenv("BATON_DATABASE_URL", "")
    settings = Settings()
    assert settings.temporal_tls_cert_path is None
    assert settings.temporal_api_key is None
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
