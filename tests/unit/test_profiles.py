"""Profiles: saved 0600, one current, FLOWBUS_API_URL first; bad input is a clear error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flowbus.engine.errors import UsageError
from flowbus.remote import profiles


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWBUS_HOME", str(tmp_path))
    monkeypatch.delenv("FLOWBUS_API_URL", raising=False)
    monkeypatch.delenv("FLOWBUS_API_TOKEN", raising=False)
    return tmp_path


def test_login_saves_a_private_profile_and_makes_it_current(home: Path) -> None:
    assert profiles.active_api() is None
    assert profiles.login("https://flowbus.example.com/", 'to"ken') == "flowbus.example.com"
    profiles.login("http://10.0.0.5:4200", None, name="lab")
    assert stat.S_IMODE(profiles.profiles_path().stat().st_mode) == 0o600
    current, saved = profiles.load_profiles()
    assert current == "lab"
    assert saved["flowbus.example.com"] == profiles.Api("https://flowbus.example.com", 'to"ken')
    profiles.use("flowbus.example.com")
    assert profiles.active_api() == profiles.Api("https://flowbus.example.com", 'to"ken')
    profiles.remove("flowbus.example.com")
    assert profiles.active_api() is None  # the current one gone: local again
    with pytest.raises(UsageError, match="no profile"):
        profiles.use("nope")


def test_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    profiles.login("https://a.example.com", "t1")
    monkeypatch.setenv("FLOWBUS_API_URL", "https://b.example.com")
    monkeypatch.setenv("FLOWBUS_API_TOKEN", "t2")
    assert profiles.active_api() == profiles.Api("https://b.example.com", "t2")
    monkeypatch.setenv("FLOWBUS_API_URL", "b.example.com")
    with pytest.raises(UsageError, match="not an http"):
        profiles.active_api()


def test_a_broken_profiles_file_is_a_clear_error(home: Path) -> None:
    profiles.profiles_path().write_text("current = [")
    with pytest.raises(UsageError, match="not valid TOML"):
        profiles.load_profiles()
