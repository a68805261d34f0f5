"""Runtime: the live engine inside one process, wired together.

It owns the agent pool, the agent actors, the timer service and the
scheduler, and gives workflow actors what they need to act (agent refs,
attempt requests). It is not an actor: its methods are called from the
facade's thread and from actor threads, and only read immutable wiring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka

from actors.agents import AgentActor, AgentPool
from actors.execution import AttemptRequest
from actors.messages import AdmitRun, DeliverCommand, StopRuns
from actors.scheduler import SchedulerActor
from actors.timers import TimerService
from engine import events as ev
from engine.config import AgentConfig, EngineConfig
from engine.policies.conditions import resolve_run_argv
from engine.state import RunState, spec_of

log = logging.getLogger(__name__)

Listener = Callable[[str, RunState, list[Any]], None]


def configured_agents(config: EngineConfig) -> tuple[AgentConfig, ...]:
    """The `agents:` of the config, or `agent_pool_size` generic agents."""
    if config.agents is not None:
        return config.agents
    return tuple(
        AgentConfig(name=f"agent-{n}", capabilities=("default",))
        for n in range(1, config.resources.agent_pool_size + 1)
    )


class Runtime:
    def __init__(
        self,
        store: Any,
        config: EngineConfig,
        data_dir: Path,
        listener: Listener | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.data_dir = data_dir
        self._listener = listener
        self.agents = {a.name: a for a in configured_agents(config)}
        self.pool = AgentPool(tuple(self.agents.values()))
        self.timers = TimerService()
        self._agent_refs = {
            a.name: AgentActor.start(a.name, a.capacity, self.pool) for a in self.agents.values()
        }
        self.scheduler: pykka.ActorRef[Any] = SchedulerActor.start(
            self, config.execution.max_concurrent_workflows
        )

    # -- called by the facade ------------------------------------------------

    def admit(self, run_id: str, priority: int = 0, commands: tuple[Any, ...] = ()) -> None:
        self.scheduler.tell(AdmitRun(run_id, priority, commands))

    def deliver(self, run_id: str, trigger: Any) -> None:
        self.scheduler.tell(DeliverCommand(run_id, trigger))

    def stop(self) -> None:
        """Stop driving runs (they stay resumable from the log), then every actor."""
        self.scheduler.ask(StopRuns())
        self.scheduler.stop()
        for ref in self._agent_refs.values():
            ref.stop()
        self.timers.stop()

    # -- called by workflow actors -------------------------------------------

    def agent_ref(self, name: str) -> pykka.ActorRef[Any]:
        return self._agent_refs[name]

    def attempt_request(
        self, state: RunState, started: ev.AttemptStarted, steps: dict[str, Any]
    ) -> AttemptRequest:
        """What an agent needs to run an attempt; `steps` is the run's `ctx.steps` view."""
        step = spec_of(state, started.step_id)
        agent = self.agents.get(started.agent)
        argv = resolve_run_argv(state, started.step_id)
        timeout = started.timeout_at - started.at if started.timeout_at else None
        return AttemptRequest(
            run_id=state.run_id,
            step_id=started.step_id,
            attempt=started.attempt,
            agent=started.agent,
            idempotency_key=started.idempotency_key,
            argv=tuple(argv) if argv is not None else None,
            call=step.call,
            params=step.params,
            inputs=state.inputs,
            steps=steps,
            item=state.steps[started.step_id].item,
            env=step.env,
            timeout=timeout,
            isolation=agent.isolation.value if agent else "thread",
            output_dir=str(
                self.data_dir / "attempts" / state.run_id / f"{started.step_id}.{started.attempt}"
            ),
        )

    def published(self, run_id: str, state: RunState, batch: list[Any]) -> None:
        if self._listener is not None:
            try:
                self._listener(run_id, state, batch)
            except Exception:  # a listener's bug must not stop a run
                log.exception("run %s: listener failed", run_id)
