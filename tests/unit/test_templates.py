"""Templates (Jinja, sandboxed) and event patterns, as automations, deployment triggers and
webhooks use them."""

from __future__ import annotations

import pytest

from flowbus.engine.automations import EventPattern, EventTrigger
from flowbus.engine.templates import TemplateError, event_context, render, render_text

EVENT = {
    "id": "e1",
    "type": "order.complete",
    "resource": "user.1",
    "labels": {"team": "finance", "prefect.resource.name": "Ada"},
    "payload": {"amount": 7, "items": ["a", "b"]},
    "related": [{"prefect.resource.id": "user.boss", "prefect.resource.role": "approver"}],
}


def context() -> dict[str, object]:
    return {"event": event_context(EVENT)}


def test_a_whole_expression_keeps_its_type_and_text_is_text() -> None:
    assert render("{{ event.payload.amount }}", context()) == 7
    assert render("{{ event.payload.items }}", context()) == ["a", "b"]
    assert render("n={{ event.payload.amount }}", context()) == "n=7"
    assert render({"x": ["{{ event.payload.amount * 2 }}"]}, context()) == {"x": [14]}
    assert render("{{ event.payload.missing.deeper }}", context()) is None
    assert render("[{{ event.payload.missing }}]", context()) == "[]"
    assert render("no template", context()) == "no template"
    assert render(5, context()) == 5


def test_prefect_and_flowbus_spellings_of_an_event() -> None:
    assert render("{{ event.resource }}", context()) == "user.1"  # flowbus's
    assert render("{{ event.resource.id }}", context()) == "user.1"  # Prefect's
    assert render("{{ event.resource['prefect.resource.id'] }}", context()) == "user.1"
    assert render("{{ event.resource['team'] }}", context()) == "finance"
    assert render("{{ event.resource.name }}", context()) == "Ada"
    assert render("{{ event.event }}", context()) == "order.complete"
    assert render("{{ event.type }}", context()) == "order.complete"
    whole = render("{{ event }}", context())
    assert whole["resource"] == "user.1" and type(whole["resource"]) is str
    assert render("{% if event.payload.amount > 5 %}big{% else %}small{% endif %}", context()) == (
        "big"
    )


def test_the_sandbox_keeps_pythons_internals_out_of_reach() -> None:
    with pytest.raises(TemplateError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", context())
    with pytest.raises(TemplateError):
        render_text("{{ body.missing }}", {"body": {}}, strict=True)


def test_patterns_take_lists_and_related_resources() -> None:
    assert EventPattern(type=["order.created", "order.complete"]).matches(EVENT)
    assert not EventPattern(type=["order.created"]).matches(EVENT)
    assert EventPattern(type="order.*", labels={"team": ["ops", "fin*"]}).matches(EVENT)
    assert EventPattern(resource=["user.*"]).matches(EVENT)
    approver = {"prefect.resource.role": "approver", "prefect.resource.id": "user.b*"}
    assert EventPattern(related=[approver]).matches(EVENT)
    assert not EventPattern(related=[{"prefect.resource.role": "owner"}]).matches(EVENT)
    assert not EventPattern(related=[approver]).matches({**EVENT, "related": []})


def test_for_each_groups_by_resource_or_label() -> None:
    trigger = EventTrigger(match=EventPattern(), for_each=["prefect.resource.id", "team"])
    assert trigger.group_of(EVENT) == ("user.1", "finance")
    assert EventTrigger(match=EventPattern()).group_of(EVENT) == ()
