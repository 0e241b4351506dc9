"""A claimed run executed in a child process (``--isolation process``): for code that blocks,
leaks or crashes. The child (``agents/child.py``) runs it as an agent's own process would and
publishes the run's events itself; its exit code tells the agent how the run ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from multiprocessing.process import BaseProcess

import structlog

from flowbus.agents.decisions.agent import Outcome
from flowbus.agents.execution import InProcessRun
from flowbus.broker.protocol import ClaimGrant

log = structlog.get_logger("flowbus.agent")

#: How long a child process asked to cancel its run (SIGTERM) has before it is killed: its
#: flow may be blocked in a call that no exception interrupts (``time.sleep``, a socket read).
CANCEL_GRACE_SECONDS = 1.0

#: Exit codes of a child process running one flow run.
EXIT_FINISHED = 0
EXIT_HANDED_BACK = 75
#: The child gave its run up, blocked past its cancel deadline (the agent records Cancelled).
EXIT_CANCELLED = 76


class ChildProcessRun:
    """A claimed run executed in a child process (``--isolation process``).

    For code that blocks, leaks or crashes: the child publishes the run's events itself; the
    agent keeps the lease, and signals the child to cancel (SIGTERM), hand back (SIGUSR1) or
    stop at once (SIGKILL, when the run is lost). A cancel always ends: a child that has not
    ended ``cancel_grace`` seconds after its SIGTERM is killed with its whole process group,
    and the run is ``cancelled`` (the agent has the orchestrator record it).
    """

    def __init__(
        self,
        grant: ClaimGrant,
        nats_url: str,
        agent: str,
        cancel_grace: float = CANCEL_GRACE_SECONDS,
    ) -> None:
        self.grant = grant
        self.nats_url = nats_url
        self.agent = agent
        self.cancel_grace = cancel_grace
        self.process: BaseProcess | None = None
        self._handed_back = False
        self._lost = False
        self._cancelled = False
        self._kill_timer: asyncio.TimerHandle | None = None

    async def run(self) -> Outcome:
        from flowbus.agents import warm_processes
        from flowbus.agents.child import warm_start

        spec = {"grant": self.grant.model_dump(mode="json"), "nats_url": self.nats_url,
                "agent": self.agent}  # fmt: skip
        # Forked from the warm server; a session of its own (Ctrl-C in the agent's terminal is
        # the agent's business, and a cancel can kill the run's whole process group).
        self.process = warm_processes.start(
            warm_start, (json.dumps(spec),), f"flowbus-run-{self.grant.run_id[:8]}"
        )
        code = await warm_processes.wait(self.process)
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._lost:
            return "lost"
        if code == EXIT_FINISHED:
            return "finished"
        if self._cancelled:
            log.info("flow run process stopped to cancel its run", run_id=self.grant.run_id,
                     exit_code=code)  # fmt: skip
            return "cancelled"
        if code == EXIT_HANDED_BACK:
            return "handed_back"
        if code == EXIT_CANCELLED:
            return "cancelled"
        log.warning("flow run process died", run_id=self.grant.run_id, exit_code=code)
        return "crashed"

    def _running_pid(self) -> int | None:
        process = self.process
        if process is None or process.pid is None or process.exitcode is not None:
            return None
        return process.pid

    def _signal(self, sig: int) -> None:
        pid = self._running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def cancel(self) -> None:
        self._cancelled = True
        self._signal(signal.SIGTERM)
        if self._kill_timer is None and self.process is not None:
            loop = asyncio.get_running_loop()
            self._kill_timer = loop.call_later(self.cancel_grace, self._kill_group)

    def _kill_group(self) -> None:
        """The child did not end in its grace: kill it and whatever it started."""
        pid = self._running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # it leads a session of its own

    def hand_back(self, agent: str) -> None:
        self._handed_back = True
        self._signal(signal.SIGUSR1)

    def drop(self) -> None:
        self._lost = True
        self._signal(signal.SIGKILL)


#: How an agent executes a run it holds: in its own process, or in a child process.
RunExecution = InProcessRun | ChildProcessRun


__all__ = [
    "CANCEL_GRACE_SECONDS",
    "EXIT_CANCELLED",
    "EXIT_FINISHED",
    "EXIT_HANDED_BACK",
    "ChildProcessRun",
    "RunExecution",
]
