"""Settings refuse what would be unsafe in production."""

from __future__ import annotations

import stat

import pytest
from pydantic import ValidationError

from baton.secret_key import ensure_key_file, key_file, write_keys
from baton.security import SecretBox
from baton.settings import DEVELOPMENT_SECRET_KEY, MissingSecretKey, Settings


def test_the_old_public_development_key_is_refused_in_every_environment():
    for environment in ("development", "production"):
        with pytest.raises(ValidationError, match="public development key"):
            Settings(environment=environment, secret_key=DEVELOPMENT_SECRET_KEY)


def test_a_real_secret_key_is_accepted_and_never_shown():
    settings = Settings(environment="production", secret_key="x" * 48)
    assert settings.require_secret_key() == "x" * 48
    assert "x" * 48 not in repr(settings)


def test_a_short_secret_key_is_refused():
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(secret_key="short")


def test_without_a_key_nothing_can_be_encrypted_and_the_error_says_how_to_get_one(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("BATON_SECRET_KEY")
    settings = Settings(data_dir=tmp_path)
    assert settings.secret_key is None
    with pytest.raises(MissingSecretKey, match=r"BATON_SECRET_KEY.*baton up"):
        SecretBox.from_settings(settings)


def test_the_key_file_is_private_random_and_read_with_its_previous_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("BATON_SECRET_KEY")
    assert ensure_key_file(tmp_path) is True
    path = key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = Settings(data_dir=tmp_path).require_secret_key()
    assert len(first) >= 48 and ensure_key_file(tmp_path) is False
    assert ensure_key_file(tmp_path / "elsewhere") is True
    assert Settings(data_dir=tmp_path / "elsewhere").require_secret_key() != first

    write_keys(path, ["n" * 32, first])
    settings = Settings(data_dir=tmp_path)
    assert settings.require_secret_key() == "n" * 32
    assert settings.previous_secret_key_values() == [first]
    # What the old key encrypted still decrypts; new values use the new key.
    old = SecretBox(first).encrypt("sk-old")
    box = SecretBox.from_settings(settings)
    assert box.decrypt(old) == "sk-old"
    assert SecretBox("n" * 32).decrypt(box.rotate(old)) == "sk-old"


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
