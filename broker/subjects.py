"""Stream and subject names: the wire layout other services rely on (see docs/protocol.md)."""

from __future__ import annotations

#: Every event: ``flowbus.event.<stream_id>.<event type>`` (the type has dots of its own, e.g.
#: ``flowbus.event.<run_id>.task_run.state``: a flow run's stream id is the run id); a run's
#: events are ``flowbus.event.<run_id>.>``.
EVENTS_STREAM = "FLOWBUS_EVENTS"
EVENTS_SUBJECTS = "flowbus.event.>"

#: Messages a daemon could not process, kept for inspection: ``flowbus.dead.<source>``.
DEAD_LETTER_STREAM = "FLOWBUS_DEAD"
DEAD_LETTER_SUBJECTS = "flowbus.dead.>"

#: The durable consumer through which the recorder writes events into the store.
RECORDER_CONSUMER = "recorder"

#: Run requests: ``flowbus.run.<queue>`` in a work-queue stream; one durable consumer per queue
#: (``queue-<queue>``), shared by every agent that serves the queue.
RUNS_STREAM = "FLOWBUS_RUNS"
#: Events other services publish (``flowbus events emit``, ``Client.emit``) on
#: ``flowbus.custom.<type>``.
CUSTOM_STREAM = "FLOWBUS_CUSTOM"
CUSTOM_SUBJECTS = "flowbus.custom.>"
#: Per automation, when its absence trigger last saw a matching event.
AUTOMATIONS_BUCKET = "flowbus_automations"


def custom_subject(event_type: str) -> str:
    return f"flowbus.custom.{event_type}"


RUNS_SUBJECTS = "flowbus.run.>"

#: Requests to the orchestrator (core NATS request/reply, JSON in and out).
SUBMIT = "flowbus.api.submit"
CANCEL = "flowbus.api.cancel"
QUEUES = "flowbus.api.queues"
QUEUE_UPDATE = "flowbus.api.queue.update"
AGENTS = "flowbus.api.agents"
#: Every deployment with its parameters' JSON schema (deployments are saved into the store).
DEPLOYMENTS = "flowbus.api.deployments"
#: Requests from agents to the orchestrator.
CLAIM = "flowbus.agent.claim"
#: A claim of a run of ``<queue>``: ``flowbus.agent.claim.<queue>``. Run requests are taken from
#: a queue, and a claim names the queue it took its request from; an agent's credential may
#: claim on its own queues only (``flowbus auth``), and the orchestrator refuses a run of
#: another queue. ``CLAIM`` alone (no queue) is for credentials without per-queue rights.
CLAIMS_BY_QUEUE = "flowbus.agent.claim.*"


def claim_subject(queue: str) -> str:
    return f"{CLAIM}.{queue}"


HEARTBEAT = "flowbus.agent.heartbeat"
RELEASE = "flowbus.agent.release"
#: The completed task runs of a run's earlier attempts, which its new attempt replays.
REPLAY = "flowbus.agent.replay"
#: Blocks, variables and artifacts a run on an agent reads (or writes) through the
#: orchestrator, signed with its attempt key (``broker/run_documents.py``).
DOCUMENTS = "flowbus.agent.documents"
#: Names an agent may not take: its private subjects (``flowbus.agent.<name>.>``) would be
#: the orchestrator's requests.
RESERVED_AGENT_NAMES = frozenset({"claim", "heartbeat", "release", "replay", "documents"})
#: Tag concurrency slots: a task run asks for them, gives them back; the live counts.
SLOT_ACQUIRE = "flowbus.slot.acquire"
SLOT_RELEASE = "flowbus.slot.release"
#: A process holding slots by hand (a run by hand, through a server's API) is still alive.
SLOT_RENEW = "flowbus.slot.renew"
LIMITS = "flowbus.api.limits"
RESUME = "flowbus.api.resume"
#: Queue a Failed, Crashed, Cancelled or TimedOut run again, as a new attempt of the same run.
RETRY = "flowbus.api.retry"
#: Answered once the store holds a run's events up to a sequence number (``Client.wait``).
RECORDED = "flowbus.api.recorded"
#: Wait for a run to end: answered once the store holds its final state.
WAIT = "flowbus.api.wait"
#: Automations were saved or removed: the engine reads them again before it answers.
AUTOMATIONS_CHANGED = "flowbus.api.automations.changed"
#: The queue group every orchestrator subscribes in, so each request is answered once.
ORCHESTRATOR_GROUP = "flowbus-orchestrator"

#: Work-queue settings (priority, concurrency limit, paused): a KV bucket agents watch.
QUEUES_BUCKET = "flowbus_queues"
#: Per deployment schedule, up to when its slots were handled (the scheduler's cursors).
SCHEDULES_BUCKET = "flowbus_schedules"

#: Headers on events an agent publishes for a run it holds: the (root) flow run and the claim's
#: attempt. The orchestrator records the event only while that attempt holds the run.
RUN_HEADER = "Flowbus-Run"
ATTEMPT_HEADER = "Flowbus-Attempt"
#: On events the orchestrator wrote to the store itself and publishes for subscribers only.
RECORDED_HEADER = "Flowbus-Recorded"


def event_subject(stream_id: str, event_type: str) -> str:
    return f"flowbus.event.{stream_id}.{event_type}"


def run_subject(queue: str) -> str:
    return f"flowbus.run.{queue}"


def queue_consumer(queue: str) -> str:
    return f"queue-{queue}"


def agent_cancel_subject(agent: str) -> str:
    """Where the agent named ``agent`` takes cancel requests for the runs it holds."""
    return f"flowbus.agent.{agent}.cancel"


def dead_letter_subject(source: str) -> str:
    return f"flowbus.dead.{source}"
