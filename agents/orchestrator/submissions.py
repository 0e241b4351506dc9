"""``flowbus.api.submit``: a submission is validated, recorded as a Scheduled run, and then its
run request is published to the queue (or left to the leader: see ``decisions.releases``).
Killed between the write and the publish, the run is published by the leader's janitor (the
store is the outbox); a copy never runs twice.

A leader with an idle agent in its own process (``flowbus up``) hands a new run straight to
it: the run is made and claimed in the same commit, and the grant goes to the agent in
memory, without the queue's round trips (``decide_submit_handed``)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import orjson
from pydantic import ValidationError

from flowbus.agents.decisions.claims import grant
from flowbus.agents.decisions.model import Decision, Facts, HandOver, NewRun
from flowbus.agents.decisions.releases import (
    SubmitAnswer,
    after_submit,
    decide_submit,
    decide_submit_handed,
    may_hand_over,
    new_run,
)
from flowbus.agents.ledger import Decide, RunLedger, now
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.agents.orchestrator.executor import Executor
from flowbus.broker import protocol as p
from flowbus.broker.fencing import FenceChecker
from flowbus.engine.deployments import NAMESPACE
from flowbus.engine.faults import crash_point
from flowbus.engine.ids import new_id
from flowbus.engine.names import generate_run_name
from flowbus.engine.store import DeploymentView


class LocalAgent(Protocol):
    """An agent in the orchestrator's own process, to which new runs may be handed over."""

    @property
    def name(self) -> str: ...
    def reserve(self, queue: str) -> bool: ...
    def unreserve(self) -> None: ...
    def start_granted(self, grant: p.ClaimGrant) -> None: ...


class Submissions:
    """Takes submissions."""

    def __init__(
        self,
        executor: Executor,
        ledger: RunLedger,
        deployments: Deployments,
        leading: Callable[[], bool],
        counts: Counter[str],
        fences: FenceChecker,
        lease_seconds: float,
    ) -> None:
        self.executor = executor
        self.ledger = ledger
        self.deployments = deployments
        self.leading = leading
        self.counts = counts
        #: Grants a handed-over run's attempt key.
        self.fences = fences
        self.lease_seconds = lease_seconds
        #: The agent of this process, if any (``flowbus up``).
        self.local_agent: LocalAgent | None = None

    async def submit(self, request: p.SubmitRequest) -> SubmitAnswer:
        deployment = await self.deployments.get(request.deployment)
        if deployment is None:
            known = await self.deployments.names()
            return p.error("unknown_deployment", f"no deployment named {request.deployment!r}",
                           {"known": known[:50]})  # fmt: skip
        try:
            parameters = self.deployments.validate(deployment, request.parameters)
        except orjson.JSONEncodeError as exc:
            message = f"invalid parameters for deployment {deployment.name!r}: {exc}"
            return p.error("invalid_parameters", message)
        except ValidationError as exc:
            message = f"invalid parameters for deployment {deployment.name!r}:\n{exc}"
            return p.error("invalid_parameters", message, p.validation_details(exc.errors()))
        if request.idempotency_key is not None:
            run_id = str(uuid.uuid5(NAMESPACE, f"{deployment.name}\x00{request.idempotency_key}"))
        else:
            run_id = new_id()
        await self.ledger.crash_budgets.of(deployment.name)  # the new run's budget, read now
        run = new_run(run_id, generate_run_name(), request, deployment, parameters, now())
        local = self._idle_agent(run, deployment)
        handed: HandOver | None = None
        entry = None
        try:
            verdict, entry = await self.executor.decide(
                run_id,
                self._decision(request, run, local),
                Facts(deployment=deployment),
                new=request.idempotency_key is None,
            )
            handed = next((e for e in verdict.effects if isinstance(e, HandOver)), None)
        finally:
            if local is not None and (handed is None or entry is None):
                local.unreserve()
        if local is not None and handed is not None and entry is not None:
            granted = grant(entry, handed.attempt, handed.seq, deployment, self.lease_seconds)
            local.start_granted(self.fences.keyed(granted))
            self.counts["handed_over"] += 1
        elif entry is not None and not entry.published and entry.seq == 1:
            crash_point("after-schedule-write")  # recorded, not published: the outbox test
            effects = after_submit(entry, deployment, self.leading(), now())
            await self.executor.carry_out(Decision(None, effects=effects), entry)
        self.counts["submitted"] += 1
        return verdict.reply

    def _idle_agent(self, run: NewRun, deployment: DeploymentView) -> LocalAgent | None:
        """This process's agent, with a slot kept for ``run``, if the run may be handed to it."""
        local = self.local_agent if self.leading() else None
        if local is None or not may_hand_over(run, deployment, time.time()):
            return None
        return local if local.reserve(deployment.queue) else None

    @staticmethod
    def _decision(
        request: p.SubmitRequest, run: NewRun, local: LocalAgent | None
    ) -> Decide[SubmitAnswer]:
        if local is None:
            return lambda entry, facts, at: decide_submit(entry, request, run, facts, at)
        agent = local.name
        return lambda entry, facts, at: decide_submit_handed(entry, request, run, facts, at, agent)


__all__ = ["Submissions"]
