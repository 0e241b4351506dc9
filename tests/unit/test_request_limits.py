"""What requests may make the server do: an automation's publish, a block type's class."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flowbus.engine.automations import PublishNats
from flowbus.engine.blocks import BLOCK_TYPE, save_block_data
from flowbus.engine.documents import save_document
from flowbus.engine.store.memory import MemoryEventStore


@pytest.mark.parametrize(
    "subject",
    [
        "flowbus.agent.agent-1.cancel",  # would ask an agent to act
        "flowbus.event.0192.flow_run.state",  # would put a run's event on the stream
        "$JS.API.STREAM.DELETE.FLOWBUS_EVENTS",
        "flowbus.custom.>",
        "flowbus.custom.*",
        "flowbus.custom",
        "alerts.failed",
    ],
)
def test_publish_is_refused_outside_custom_event_subjects(subject: str) -> None:
    with pytest.raises(ValidationError):
        PublishNats(subject=subject)


def test_publish_to_a_custom_event_subject_is_allowed() -> None:
    assert PublishNats(subject="flowbus.custom.etl.started").subject == "flowbus.custom.etl.started"


async def test_a_block_types_class_is_never_imported_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block type document is data anyone with the API may write: its "class" names a
    module, and importing that module would run it. Only classes already defined are used."""
    (tmp_path / "planted_module.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
        "from flowbus.engine.blocks import Block\n"
        "class Planted(Block):\n    value: str\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    store = MemoryEventStore()
    schema = {"type": "object", "properties": {"value": {"type": "string"}}}
    await save_document(store, BLOCK_TYPE, "planted", {
        "schema": schema, "secret_fields": [], "class": "planted_module:Planted"})  # fmt: skip
    saved = await save_block_data(store, "planted", "one", {"value": "x"})
    assert saved.body["data"] == {"value": "x"}  # checked against the schema instead
    assert not (tmp_path / "imported").exists()
