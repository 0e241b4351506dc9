"""Every ``FLOWBUS_*`` variable a daemon reads, as validated settings models (pydantic-settings):
one model per daemon, read once at its start, where a bad value is an error naming the variable.

The README's configuration table is made from these models (``python -c "from
flowbus.agents.settings import markdown_table; print(markdown_table())"``), and
``tests/unit/test_settings.py`` checks that the two agree.

The engine's own readers (``engine/settings.py``: the home, the store, result storage) stay free
of pydantic so that ``import flowbus`` stays light; ``CommonSettings`` validates the same
variables when a daemon starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowbus.engine import settings as engine_settings
from flowbus.engine.errors import FlowbusError

S = TypeVar("S", bound=BaseSettings)
_CONFIG = SettingsConfigDict(env_prefix="FLOWBUS_", extra="ignore", frozen=True)
Seconds = float


class SettingsError(FlowbusError, ValueError):
    """A ``FLOWBUS_*`` variable has a value its daemon cannot use."""


def setting(default: Any, doc: str, **constraints: Any) -> Any:
    """A field with its README description."""
    return Field(default, description=doc, **constraints)


HEARTBEAT = "how often agents renew their leases (a restarted orchestrator grants no slot for two)"


class CommonSettings(BaseSettings):
    """Read by every process: where things are and how to reach them."""

    model_config = _CONFIG

    home: Path = setting(
        engine_settings.DEFAULT_HOME,
        "holds `flowbus.db` (the store), `results/`, `nats/` (the embedded server's JetStream)",
    )
    store_url: str | None = setting(
        None,
        "the event store (unset: `sqlite:///$FLOWBUS_HOME/flowbus.db`); "
        "`postgresql://user@host:5432/db?schema=flowbus` for PostgreSQL "
        "(`pip install 'flowbus[postgres]'`)",
    )
    nats_url: str | None = setting(
        None,
        "NATS for every daemon and client (comma-separated for a cluster); unset: a running "
        "`flowbus up`, else `nats://127.0.0.1:4222`",
    )
    nats_replicas: int | None = setting(
        None,
        "replicas of flowbus's JetStream streams and buckets (unset: 3 when the NATS system "
        "has at least 3 servers, else 1); an existing stream is updated in place",
        ge=1, le=5,
    )  # fmt: skip
    events_max_age_hours: float = setting(
        168.0,
        "how long the events stream keeps events: subscribers catching up, and a restore's "
        "catch-up from its backup's time (keep it longer than the time between backups); an "
        "existing stream is updated in place",
        gt=0,
    )  # fmt: skip
    events_max_bytes: int | None = setting(
        None,
        "a cap on the events stream's size, oldest events dropped first (unset: none); nats-server "
        "also keeps some 370 bytes of memory per run subject the stream holds. Leave room for "
        "what agents publish while no leader records",
        ge=1024 * 1024,
    )  # fmt: skip
    nats_user: str | None = setting(None, "NATS user (with `FLOWBUS_NATS_PASSWORD`)")
    nats_password: str | None = setting(None, "NATS password")
    nats_token: str | None = setting(None, "NATS token")
    nats_creds: Path | None = setting(None, "a NATS credentials file")
    nats_tls_ca: Path | None = setting(None, "the CA to verify the NATS server with")
    nats_tls_cert: Path | None = setting(None, "the client certificate for NATS")
    nats_tls_key: Path | None = setting(None, "the client key for NATS")
    nats_server: Path | None = setting(
        None, "the nats-server binary `flowbus up` starts (unset: the one installed with flowbus)"
    )
    results_path: Path | None = setting(
        None,
        "persisted and cached task results and committed transactions "
        "(unset: `$FLOWBUS_HOME/results`)",
    )
    result_storage: str | None = setting(
        None,
        "an fsspec URL or path for the results of deployed runs that are not small JSON "
        "(unset: `$FLOWBUS_HOME/results/runs`); agents on several hosts need a shared one "
        "(`s3://...`, with its fsspec driver installed)",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA", "OFF"] = setting(
        engine_settings.DEFAULT_SQLITE_SYNCHRONOUS,
        "`FULL` fsyncs each group commit; `NORMAL` survives crashes, not power loss",
    )
    logging_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = setting(
        engine_settings.DEFAULT_LOGGING_LEVEL, "the lowest run-log level shown and recorded"
    )
    secret_key: str | None = setting(
        None,
        "the Fernet key secret block fields are encrypted with (unset: "
        "`$FLOWBUS_HOME/secret.key`, created 0600; `flowbus block key` makes one); the same "
        "everywhere",
    )
    api_token: str | None = setting(
        None,
        "the bearer token every HTTP API request must carry; without it the API binds "
        "127.0.0.1 only",
    )
    api_tls_cert: Path | None = setting(
        None, "a certificate (PEM, its chain after it): the API serves HTTPS (with the key)"
    )
    api_tls_key: Path | None = setting(None, "the certificate's private key (PEM)")
    api_tls_ca: Path | None = setting(
        None, "the CA the CLI and the client verify an HTTPS server with (unset: the system's)"
    )
    api_url: str | None = setting(
        None,
        "a team server's URL: the CLI and `flowbus.Client` go through its HTTP API "
        "(overrides the profile `flowbus login` saved)",
    )


class OrchestratorEnv(BaseSettings):
    """Read by ``flowbus server start`` (and ``flowbus up``)."""

    model_config = _CONFIG

    lease_seconds: Seconds = setting(
        30.0, "an agent silent this long loses its runs (Crashed, queued again if retries "
        "are left)", gt=0,
    )  # fmt: skip
    heartbeat_seconds: Seconds = setting(5.0, HEARTBEAT, gt=0)
    janitor_interval: Seconds = setting(
        1.0, "how often the orchestrator looks for expired leases, unpublished and late runs",
        gt=0,
    )  # fmt: skip
    late_after_seconds: Seconds = setting(
        15.0, "a queued run not started this long after it was queued is marked Late", gt=0
    )
    run_ack_wait: Seconds = setting(
        30.0, "JetStream redelivers a run request its agent neither acked nor kept alive "
        "after this", gt=0,
    )  # fmt: skip
    queue_audit_interval: Seconds = setting(
        10.0, "how often the leader checks that every queued run's request is still in its "
        "queue (one stream query per queue; a missing one is published again) and that it "
        "follows every unfinished run the store holds (one index scan of recent runs)", gt=0,
    )  # fmt: skip
    scheduler: bool = setting(
        True, "run the scheduler in the orchestrator's process (`off`: leave it to "
        "`flowbus scheduler start`)",
    )  # fmt: skip
    automations: bool = setting(True, "run the automation engine in the orchestrator's process")
    leader_lease_seconds: Seconds = setting(
        5.0, "with several orchestrators, how long the leader's lease lasts unrenewed: a dead "
        "leader's work (recorder, janitor, scheduler, automations, slots) moves to another "
        "after this", ge=1,
    )  # fmt: skip

    @model_validator(mode="after")
    def _timing_contract(self) -> OrchestratorEnv:
        """Timers that only work together: refused at start rather than losing runs later."""
        problems = timing_problems(self.lease_seconds, self.heartbeat_seconds,
                                   self.janitor_interval)  # fmt: skip
        if problems:
            raise ValueError("; ".join(problems))
        return self


def timing_problems(lease: float, heartbeat: float, janitor: float) -> list[str]:
    """What breaks the contract between a lease, the heartbeats that renew it and the sweep
    that expires it (a pure function, tested on its own)."""
    problems = []
    if lease < 2 * heartbeat:
        problems.append(
            f"FLOWBUS_LEASE_SECONDS={lease:g} must be at least twice FLOWBUS_HEARTBEAT_SECONDS="
            f"{heartbeat:g}: one late heartbeat would crash healthy runs"
        )
    if janitor >= lease:
        problems.append(
            f"FLOWBUS_JANITOR_INTERVAL={janitor:g} must be below FLOWBUS_LEASE_SECONDS="
            f"{lease:g}: expired leases would wait a whole sweep"
        )
    return problems


class AgentEnv(BaseSettings):
    """Read by ``flowbus agent start`` (and the agent of ``flowbus up``)."""

    model_config = _CONFIG

    heartbeat_seconds: Seconds = setting(5.0, HEARTBEAT, gt=0)
    agent_grace_seconds: Seconds = setting(
        30.0, "after SIGTERM, how long an agent lets its runs finish before handing them back",
        ge=0,
    )  # fmt: skip
    cancel_deadline_seconds: Seconds = setting(
        5.0, "a cancelled run still blocked in a call this long after the cancel is recorded "
        "Cancelled; its thread is abandoned (and counted against the agent's concurrency "
        "until it returns)", gt=0,
    )  # fmt: skip
    slot_recheck_seconds: Seconds = setting(
        30.0, "a task run waiting for a concurrency slot asks again after this", gt=0
    )
    agent_tick_seconds: Seconds = setting(
        1.0, "how often an agent looks for run requests that rang no bell (redeliveries, a "
        "freed queue limit)", gt=0,
    )  # fmt: skip


class SchedulerEnv(BaseSettings):
    """Read by the scheduler (in the orchestrator, or ``flowbus scheduler start``)."""

    model_config = _CONFIG

    scheduler_lookahead: Seconds = setting(
        300.0, "how far ahead (seconds) scheduled runs are made", gt=0
    )
    scheduler_interval: Seconds = setting(
        5.0, "how often the scheduler reads deployments again for new or changed schedules",
        gt=0,
    )  # fmt: skip


MODELS: tuple[type[BaseSettings], ...] = (CommonSettings, OrchestratorEnv, AgentEnv, SchedulerEnv)


def default_of(model: type[BaseSettings], name: str) -> Any:
    """The default of one of ``model``'s variables: the settings dataclasses of the daemons
    take their defaults from here, so each is written once."""
    return model.model_fields[name].default


def load(model: type[S], **given: Any) -> S:
    """Read ``model`` from the environment (``given`` values first); a bad value raises
    ``SettingsError`` naming the variable and why."""
    try:
        return model(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            if not error["loc"]:  # a rule across several variables: its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            problems.append(f"FLOWBUS_{field.upper()}={error.get('input')!r}: {error['msg']}")
        raise SettingsError("bad setting: " + "; ".join(problems)) from exc


def check_environment(*models: type[BaseSettings]) -> None:
    """Validate the common settings and ``models`` at a daemon's start."""
    for model in (CommonSettings, *models):
        load(cast(type[BaseSettings], model))


def markdown_table() -> str:
    """The README's configuration table: every variable once, with its default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    seen: set[str] = set()
    for model in MODELS:
        for name, field in model.model_fields.items():
            if name in seen:
                continue
            seen.add(name)
            default = field.default
            if isinstance(default, bool):
                shown = "on" if default else "off"
            elif default is None:
                shown = "unset"
            elif isinstance(default, Path):
                shown = "~/.flowbus"
            else:
                shown = f"{default:g}" if isinstance(default, float) else str(default)
            shown = shown if shown == "unset" else f"`{shown}`"
            rows.append(f"| `FLOWBUS_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)
