"""The FLOWBUS_* settings: validated at a daemon's start with an error naming the variable,
and the README's configuration table made from the same models."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbus.agents.orchestrator import OrchestratorSettings
from flowbus.agents.settings import (
    AgentEnv,
    CommonSettings,
    OrchestratorEnv,
    SettingsError,
    check_environment,
    load,
    markdown_table,
    timing_problems,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_one_the_models_make() -> None:
    assert markdown_table() in README.read_text()


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUS_LEASE_SECONDS", "12.5")
    monkeypatch.setenv("FLOWBUS_SCHEDULER", "off")
    monkeypatch.setenv("FLOWBUS_LATE_AFTER_SECONDS", "3")
    settings = OrchestratorSettings.from_env()
    assert (settings.lease_seconds, settings.scheduler, settings.late_after) == (12.5, False, 3.0)
    assert load(AgentEnv, agent_grace_seconds=2).agent_grace_seconds == 2


@pytest.mark.parametrize(
    ("variable", "value", "model"),
    [
        ("FLOWBUS_LEASE_SECONDS", "soon", OrchestratorEnv),
        ("FLOWBUS_HEARTBEAT_SECONDS", "-1", AgentEnv),
        ("FLOWBUS_SQLITE_SYNCHRONOUS", "sometimes", CommonSettings),
        ("FLOWBUS_SCHEDULER", "perhaps", OrchestratorEnv),
        ("FLOWBUS_EVENTS_MAX_AGE_HOURS", "0", CommonSettings),
        ("FLOWBUS_EVENTS_MAX_BYTES", "1000", CommonSettings),  # below a MiB: surely a mistake
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, model: type
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        check_environment(model)


def test_timers_that_break_the_lease_contract_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUS_LEASE_SECONDS", "4")
    monkeypatch.setenv("FLOWBUS_HEARTBEAT_SECONDS", "3")
    with pytest.raises(SettingsError) as refused:
        OrchestratorSettings.from_env()
    message = str(refused.value)
    assert "FLOWBUS_LEASE_SECONDS=4 must be at least twice FLOWBUS_HEARTBEAT_SECONDS=3" in message
    assert timing_problems(30, 5, 1) == []
    assert timing_problems(2, 0.3, 0.2) == []  # the tests' fast timers
    assert "FLOWBUS_JANITOR_INTERVAL=5" in timing_problems(5, 1, 5)[0]
