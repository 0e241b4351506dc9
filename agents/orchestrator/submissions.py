"""``flowbus.api.submit``: a submission is validated, recorded as a Scheduled run, and then its
run request is published to the queue (or left to the leader: see ``decisions.releases``).
Killed between the write and the publish, the run is published by the leader's janitor (the
store is the outbox); a copy never runs twice."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable

import orjson
from pydantic import ValidationError

from flowbus.agents.decisions.model import Decision, Facts
from flowbus.agents.decisions.releases import SubmitAnswer, after_submit, decide_submit, new_run
from flowbus.agents.ledger import RunLedger, now
from flowbus.agents.orchestrator.deployments import Deployments
from flowbus.agents.orchestrator.executor import Executor
from flowbus.broker import protocol as p
from flowbus.engine.deployments import NAMESPACE
from flowbus.engine.faults import crash_point
from flowbus.engine.ids import new_id
from flowbus.engine.names import generate_run_name


class Submissions:
    """Takes submissions."""

    def __init__(
        self,
        executor: Executor,
        ledger: RunLedger,
        deployments: Deployments,
        leading: Callable[[], bool],
        counts: Counter[str],
    ) -> None:
        self.executor = executor
        self.ledger = ledger
        self.deployments = deployments
        self.leading = leading
        self.counts = counts

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
        await self.ledger.crash_retries_of(deployment.name)  # the new run's budget, read now
        run = new_run(run_id, generate_run_name(), request, deployment, parameters, now())
        verdict, entry = await self.executor.decide(
            run_id,
            lambda entry, facts, at: decide_submit(entry, request, run, facts, at),
            Facts(deployment=deployment),
            new=request.idempotency_key is None,
        )
        if entry is not None and not entry.published and entry.seq == 1:
            crash_point("after-schedule-write")  # recorded, not published: the outbox test
            effects = after_submit(entry, deployment, self.leading(), now())
            await self.executor.carry_out(Decision(None, effects=effects), entry)
        self.counts["submitted"] += 1
        return verdict.reply


__all__ = ["Submissions"]
