"""prefect.variables and prefect.blocks.system / core."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from flowbus import flow
from flowbus.blocks.core import Block
from flowbus.blocks.system import JSON, DateTime, Secret, String
from flowbus.variables import Variable


def test_variable_set_get_unset() -> None:
    assert Variable.get("region") is None
    assert Variable.get("region", default="us-east-1") == "us-east-1"
    Variable.set("region", "eu-west-1")
    assert Variable.get("region") == "eu-west-1"
    with pytest.raises(ValueError, match="already exists"):
        Variable.set("region", "ap-south-1")
    Variable.set("region", {"primary": "ap-south-1"}, overwrite=True)
    assert Variable.get("region") == {"primary": "ap-south-1"}
    assert Variable.unset("region") is True
    assert Variable.unset("region") is False


def test_a_variables_tags_are_stored(flowbus_home: object) -> None:
    import json
    import subprocess
    import sys

    made = Variable.set("team", "data", tags=["prod", "eu"])
    assert (made.name, made.value, made.tags) == ("team", "data", ["prod", "eu"])
    Variable.set("team", "platform", overwrite=True)  # no tags given: they stay
    listed = subprocess.run([sys.executable, "-m", "flowbus", "variable", "ls", "--json"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    [team] = json.loads(listed)["variables"]
    assert team["value"] == "platform" and team["tags"] == ["eu", "prod"]
    assert Variable.unset("team") is True


def test_variables_are_awaited_in_async_flows_and_called_in_sync_ones() -> None:
    @flow
    async def async_pipeline() -> object:
        await Variable.set("batch", 150, overwrite=True)
        return await Variable.get("batch")

    @flow
    def sync_pipeline() -> object:
        return Variable.get("batch")

    assert asyncio.run(async_pipeline()) == 150
    assert sync_pipeline() == 150


def test_secret_blocks_save_load_and_overwrite() -> None:
    Secret(value="sk-live-1").save("api-key")
    assert Secret.load("api-key").get() == "sk-live-1"
    with pytest.raises(ValueError, match="already exists"):
        Secret(value="sk-live-2").save("api-key")
    Secret(value="sk-live-2").save("api-key", overwrite=True)
    assert Secret.load("api-key").get() == "sk-live-2"
    Secret(value={"user": "etl", "password": "p"}).save("db-creds")
    assert Secret.load("db-creds").get() == {"user": "etl", "password": "p"}
    assert "sk-live-2" not in repr(Secret.load("api-key"))
    with pytest.raises(ValueError):
        Secret.load("missing")


def test_json_string_and_datetime_blocks() -> None:
    JSON(value={"a": [1, 2]}).save("settings")
    String(value="hello").save("greeting")
    DateTime(value="2026-11-30T06:00:00+00:00").save("cutoff")
    assert JSON.load("settings").value == {"a": [1, 2]}
    assert String.load("greeting").value == "hello"
    assert DateTime.load("cutoff").value == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert issubclass(Secret, Block)
