"""Profiles: which flowbus server the CLI and the client talk to, as Prefect's PREFECT_API_URL.

``flowbus login URL [--token T]`` saves a profile in ``$FLOWBUS_HOME/profiles.toml`` (mode
0600: it holds tokens) and makes it the current one; ``flowbus profile ls|use|rm`` manage them.
``FLOWBUS_API_URL`` (with ``FLOWBUS_API_TOKEN``) overrides the current profile. With either,
the CLI and ``flowbus.Client()`` go through the server's HTTP API: no store file, no NATS.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from flowbus.engine import settings
from flowbus.engine.errors import UsageError


@dataclass(frozen=True)
class Api:
    """A server's HTTP API: its base URL (``https://flowbus.example.com``) and token."""

    url: str
    token: str | None = None


def profiles_path() -> Path:
    return settings.home() / "profiles.toml"


def _check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"{url!r} is not an http:// or https:// URL of a flowbus server")
    return url.rstrip("/")


def load_profiles(path: Path | None = None) -> tuple[str | None, dict[str, Api]]:
    """(the current profile's name, every profile by name)."""
    path = path or profiles_path()
    if not path.exists():
        return None, {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from exc
    profiles = {
        name: Api(str(entry["url"]), entry.get("token"))
        for name, entry in (data.get("profiles") or {}).items()
        if isinstance(entry, dict) and "url" in entry
    }
    current = data.get("current")
    return (current if current in profiles else None), profiles


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def save_profiles(current: str | None, profiles: dict[str, Api], path: Path | None = None) -> None:
    """Write the profiles (created 0600, written whole then renamed)."""
    path = path or profiles_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"current = {_quoted(current)}"] if current else []
    for name, api in sorted(profiles.items()):
        lines += ["", f"[profiles.{_quoted(name)}]", f"url = {_quoted(api.url)}"]
        if api.token:
            lines.append(f"token = {_quoted(api.token)}")
    staging = path.with_suffix(".tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(staging, path)


def login(url: str, token: str | None, name: str | None = None) -> str:
    """Save a profile for ``url`` and make it current; its name (default: the URL's host)."""
    url = _check_url(url)
    name = name or urlparse(url).netloc
    _, profiles = load_profiles()
    profiles[name] = Api(url, token)
    save_profiles(name, profiles)
    return name


def use(name: str) -> None:
    _, profiles = load_profiles()
    if name not in profiles:
        raise UsageError(f"no profile {name!r}; known: {', '.join(sorted(profiles)) or 'none'}")
    save_profiles(name, profiles)


def remove(name: str) -> None:
    current, profiles = load_profiles()
    if profiles.pop(name, None) is None:
        raise UsageError(f"no profile {name!r}")
    save_profiles(None if current == name else current, profiles)


def tls_verify() -> str | bool:
    """How an HTTPS server is verified: ``$FLOWBUS_API_TLS_CA``, else the system's CAs."""
    return os.environ.get("FLOWBUS_API_TLS_CA") or True


def active_api() -> Api | None:
    """The server to go through: ``FLOWBUS_API_URL`` (and ``FLOWBUS_API_TOKEN``), else the
    current profile; None: work locally (the store, NATS)."""
    url = os.environ.get("FLOWBUS_API_URL")
    if url:
        return Api(_check_url(url), os.environ.get("FLOWBUS_API_TOKEN") or None)
    current, profiles = load_profiles()
    return profiles[current] if current else None
