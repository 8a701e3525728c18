"""Settings: environment over config file, clear one-line errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import _ENV_NAMES, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The developer's own shell may set any of these; each test starts from none.
    for name in [*_ENV_NAMES.values(), "IMAGINARIUM_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imaginarium.toml"
    path.write_text(text)
    return path


def test_defaults_mean_embedded_services() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.effective_broker_url is None
    assert settings.image_store == "local"
    assert settings.discord_api_base == "https://discord.com/api/v10"


def test_data_dir_follows_xdg_data_home(tmp_path: Path) -> None:
    assert load_settings().data_dir == tmp_path / "xdg" / "imaginarium"


def test_postgres_urls_are_normalised_to_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/app")
    assert load_settings().database_url == "postgresql+asyncpg://u:p@db:5432/app"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/app")
    assert load_settings().database_url == "postgresql+asyncpg://u@db/app"


def test_bad_database_url_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u@db/app")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "DATABASE_URL" in message
    assert "\n" not in message


def test_bad_broker_url_in_config_file_names_the_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'broker_url = "kafka://queue"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert "BROKER_URL" in str(info.value)
    assert "\n" not in str(info.value)


def test_config_file_is_read(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'database_url = "postgresql://file@db/app"\nlog_level = "DEBUG"\n')
    settings = load_settings(config)
    assert settings.database_url == "postgresql+asyncpg://file@db/app"
    assert settings.log_level == "DEBUG"


def test_config_file_from_imaginarium_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'REDIS_URL = "redis://cache:6379/0"\n')
    monkeypatch.setenv("IMAGINARIUM_CONFIG", str(config))
    assert load_settings().effective_broker_url == "redis://cache:6379/0"


def test_environment_beats_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'database_url = "postgresql://file@db/app"\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("DATABASE_URL", "postgresql://env@db/app")
    settings = load_settings(config)
    assert settings.database_url == "postgresql+asyncpg://env@db/app"
    assert settings.log_level == "DEBUG"  # keys the environment leaves alone still come from the file


def test_broker_url_beats_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache/0")
    assert load_settings().effective_broker_url == "redis://cache/0"
    monkeypatch.setenv("BROKER_URL", "amqp://guest@rabbit//")
    assert load_settings().effective_broker_url == "amqp://guest@rabbit//"


def test_missing_and_invalid_config_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as missing:
        load_settings(tmp_path / "nope.toml")
    assert "IMAGINARIUM_CONFIG" in str(missing.value) and "not found" in str(missing.value)
    broken = write_config(tmp_path, "database_url = \n")
    with pytest.raises(SettingsError) as invalid:
        load_settings(broken)
    assert "not valid TOML" in str(invalid.value)


def test_require_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings().require("discord_token")
    assert str(info.value).startswith("DISCORD_TOKEN is not set")
    monkeypatch.setenv("DISCORD_TOKEN", "abc.def")
    assert load_settings().require("discord_token").get_secret_value() == "abc.def"


def test_api_base_loses_its_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_API_BASE", "http://127.0.0.1:8080/api/v10/")
    assert load_settings().discord_api_base == "http://127.0.0.1:8080/api/v10"


def test_explicit_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    assert load_settings(log_level="WARNING").log_level == "WARNING"


def test_bad_nsfw_detector_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSFW_DETECTOR", "guesswork")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value) == "invalid setting NSFW_DETECTOR: must be 'nudenet' or 'none'"
    monkeypatch.setenv("NSFW_DETECTOR", "None")
    assert load_settings().nsfw_detector == "none"
