"""Deployments as the orchestrator reads them: from the store at most once a second (a
``flowbus deploy`` takes effect within a second), with the parameter model each version's
submissions are validated against."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from pydantic import BaseModel

from flowbus.agents.ledger import RunLedger
from flowbus.engine.deployments import NOT_ENFORCED, deployment_id
from flowbus.engine.events import DeploymentSaved
from flowbus.engine.schema_model import model_from_schema
from flowbus.engine.store import DeploymentView, EventStore

#: How long a deployment read from the store is used before it is read again.
CACHE_SECONDS = 1.0


class Deployments:
    """The deployments the orchestrator decides with (a cache over the store)."""

    def __init__(self, store: EventStore, ledger: RunLedger) -> None:
        self.store = store
        self.ledger = ledger
        self._read: dict[str, tuple[float, DeploymentView]] = {}
        #: Reads under way, by name: the submissions of one burst share one.
        self._reading: dict[str, asyncio.Future[DeploymentView | None]] = {}
        self._models: dict[tuple[str, int], type[BaseModel]] = {}
        self._blocks: dict[tuple[str, int], list[str] | None] = {}

    async def get(self, name: str) -> DeploymentView | None:
        """A deployment, read at most once a second (a burst of submissions finding it due
        waits for one read, not one each)."""
        now = time.monotonic()
        cached = self._read.get(name)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        reading = self._reading.get(name)
        if reading is None:
            reading = self._reading[name] = asyncio.ensure_future(self._fetch(name, now))
            reading.add_done_callback(lambda _: self._reading.pop(name, None))
        return await asyncio.shield(reading)  # one caller cancelled stops no other's read

    async def _fetch(self, name: str, now: float) -> DeploymentView | None:
        deployment = await self.store.get_deployment(name)
        if deployment is not None:
            self._read[name] = (now, deployment)
        return deployment

    async def blocks_of(self, name: str) -> list[str] | None:
        """The blocks a deployment's runs may load (``<type>/<name>`` patterns; None: any),
        from its latest definition."""
        deployment = await self.get(name)
        if deployment is None:
            return []  # a deployment removed since: nothing
        key = (name, deployment.version)
        if key not in self._blocks:
            events = await self.store.read_stream(deployment_id(name))
            saved = events[-1].typed() if events else None
            self._blocks[key] = saved.blocks if isinstance(saved, DeploymentSaved) else None
        return self._blocks[key]

    def cached(self, name: str) -> DeploymentView | None:
        """The deployment as last read, without reading it (None if never read)."""
        found = self._read.get(name)
        return found[1] if found is not None else None

    async def names(self) -> list[str]:
        return sorted(d.name for d in await self.store.list_deployments())

    def validate(self, deployment: DeploymentView, given: dict[str, Any]) -> dict[str, Any]:
        """A submission's parameters, validated and coerced by the deployment's schema (its
        defaults filled in), as JSON; raises pydantic's ``ValidationError``, or orjson's
        ``JSONEncodeError`` for a value an event cannot hold (a 65-bit integer)."""
        if deployment.parameter_schema.get(NOT_ENFORCED) is False:
            # Not checked here (Prefect's enforce_parameter_schema: false): the flow checks
            # its parameters when it runs. They must still be JSON an event can hold.
            parameters = {**deployment.parameters, **given}
            orjson.dumps(parameters)
            return parameters
        key = (deployment.name, deployment.version)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = model_from_schema(deployment.parameter_schema)
            self.ledger.crash_budgets.forget(deployment.name)  # a redeploy may change retries
        validated = model.model_validate({**deployment.parameters, **given})
        parameters = validated.model_dump(mode="json")
        orjson.dumps(parameters)
        return parameters


__all__ = ["Deployments"]
