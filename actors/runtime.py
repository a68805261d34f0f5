"""Runtime: the live engine inside one process, wired together.

It owns the agent pool (allocation, agent health, resource caps), the agent
actors and their step actors, the timer service, the shared step cache and the
scheduler, and gives workflow actors what they need to act (step actors,
agent refs, attempt requests). It is not an actor: its methods are called from
the facade's thread and from actor and timer threads, and only read immutable
wiring (the pool, the step actors and the cache lock themselves).

On start it reconciles the "agents" stream with the configuration (an
`AgentRegistered` or `AgentCapacityChanged` for each agent that is new or
changed), rebuilds every agent's circuit breaker from its `AgentHealthChanged`
events, and, for the `predictive` strategy only (no other reads them), the
duration estimates from every run in the log.

Agents with `backend: dask` (see actors/cluster): at start `require_dask` for
each (a missing extra is one clear error before any actor starts), then one
`ClusterConnection` each, closed at stop. An agent whose config leaves
`capacity` at its default takes the cluster's worker threads when the
scheduler answers at start (this may wait up to the connection's timeout
when it does not; the agent then keeps the default). Step `resources` whose
names the agent declares (case-insensitively: a step's `gpu` is an agent's
`GPU`) are noted per attempt in `attempt_request` and taken by the agent when
the attempt starts.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pykka

from actors.admission import RESOURCES_STREAM, ResourceGate
from actors.agent_load import AttemptKey
from actors.agents import AgentActor, StepActors
from actors.cache import CACHE_STREAM, SharedCache
from actors.clock import SYSTEM_CLOCK, Clock
from actors.cluster import ClusterConnection, dask_resources, require_dask
from actors.execution import AttemptRequest
from actors.execution.process_group import attempt_processes, end_leftover_group, end_processes
from actors.messages import AdmitChild, AdmitRun, DeliverCommand, StopRuns
from actors.monitors.usage import UsageSampler, machine_size
from actors.pool import AgentPool
from actors.rate_limiter import RateLimiter
from actors.scheduler import SchedulerActor
from actors.timers import TimerService
from engine.input.datadir import attempt_dir
from engine.rules import decide as rules
from engine.rules import events as ev
from engine.rules.config import (
    AgentBackend,
    AgentConfig,
    AllocationStrategy,
    EngineConfig,
    Isolation,
)
from engine.rules.policies.caching import CacheIndex
from engine.rules.policies.children import child_lost, child_submission, ended_report
from engine.rules.policies.conditions import resolve_run_argv
from engine.rules.policies.estimates import DurationEstimates
from engine.rules.policies.health import HealthPolicy, fold_health
from engine.rules.state import RunState, StepStatus, fold, spec_of
from engine.run_index import pruned_into
from eventstore import ConcurrencyError

if TYPE_CHECKING:
    from eventstore import EventLog
from engine.rules.errors import WorkflowAutomatorError
from engine.rules.policies.concurrency import Candidate, concurrency_key

log = logging.getLogger(__name__)

Listener = Callable[[str, RunState, list[Any]], None]
UsageReport = Callable[[str, float], None]

AGENTS_STREAM = "agents"

_DEFAULT_CAPACITY = AgentConfig(name="default").capacity


def configured_agents(config: EngineConfig) -> tuple[AgentConfig, ...]:
    """The `agents:` of the config, or `agent_pool_size` generic agents."""
    if config.agents is not None:
        return config.agents
    return tuple(
        AgentConfig(name=f"agent-{n}", capabilities=("default",))
        for n in range(1, config.resources.agent_pool_size + 1)
    )


def agent_changes(
    agents: Iterable[AgentConfig], recorded: Iterable[ev.Event], now: float
) -> list[ev.Event]:
    """Registration events for configured agents that the "agents" stream does not know
    as they are now: new ones (or with other capabilities) and changed capacities."""
    known: dict[str, tuple[tuple[str, ...], int]] = {}
    for event in recorded:
        match event:
            case ev.AgentRegistered(name=name, capabilities=caps, capacity=capacity):
                known[name] = (tuple(caps), capacity)
            case ev.AgentCapacityChanged(name=name, capacity=capacity) if name in known:
                known[name] = (known[name][0], capacity)
            case _:
                pass
    changes: list[ev.Event] = []
    for agent in agents:
        before = known.get(agent.name)
        if before is None or before[0] != tuple(agent.capabilities):
            changes.append(
                ev.AgentRegistered(
                    at=now,
                    name=agent.name,
                    capabilities=agent.capabilities,
                    capacity=agent.capacity,
                )
            )
        elif before[1] != agent.capacity:
            changes.append(
                ev.AgentCapacityChanged(at=now, name=agent.name, capacity=agent.capacity)
            )
    return changes


class _PoolWaker:
    """A timer recipient that re-runs the pool's assignment on the timer thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def tell(self, message: Any) -> None:
        self.runtime.pool.reassign()


class Runtime:
    def __init__(
        self,
        store: EventLog[ev.Event],
        config: EngineConfig,
        data_dir: Path,
        listener: Listener | None = None,
        *,
        usage_report: UsageReport | None = None,
        health_policy: HealthPolicy | None = None,
        after_crash: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.clock = clock
        """Every timer and every recorded time (actors/clock.py); wall-clock by default."""
        self._tracked: weakref.WeakSet[Any] = weakref.WeakSet()
        self._tracked_lock = threading.Lock()
        self.after_crash = after_crash
        """The engine before this one died without closing (see EngineLock)."""
        self.config = config
        self._scan_lock = threading.Lock()
        self._scanned: dict[tuple[str, str, str], list[Any]] | None = None
        self.data_dir = data_dir
        self._listener = listener
        self.agents = {a.name: a for a in configured_agents(config)}
        self.clusters = self._connect_clusters()
        self._cluster_resources: dict[AttemptKey, dict[str, float]] = {}
        self.timers = TimerService(clock)
        self._waker = _PoolWaker(self)
        now = clock.now()
        recorded = self._register_agents(now)
        self.pool = self._agent_pool(recorded, health_policy or HealthPolicy(), usage_report, now)
        self.cache = SharedCache(
            CacheIndex.from_events(r.event for r in store.read_stream(CACHE_STREAM))
        )
        self.step_actors = {a.name: self._step_actors_of(a) for a in self.agents.values()}
        self._agent_refs = {name: AgentActor.start(s) for name, s in self.step_actors.items()}
        self.scheduler: pykka.ActorRef[Any] = SchedulerActor.start(
            self, config.execution.max_concurrent_workflows
        )

    def _register_agents(self, now: float) -> list[ev.Event]:
        """Reconcile the "agents" stream with the configuration; the stream's events."""
        recorded = [r.event for r in self.store.read_stream(AGENTS_STREAM)]
        changes = agent_changes(self.agents.values(), recorded, now)
        if changes:
            self.store.append(AGENTS_STREAM, changes)
        return recorded

    def _agent_pool(
        self,
        recorded: list[ev.Event],
        policy: HealthPolicy,
        usage_report: UsageReport | None,
        now: float,
    ) -> AgentPool:
        """The pool over the agents, their breakers rebuilt from `recorded`, behind the caps."""
        caps = self.config.resources
        gate = ResourceGate(
            caps,
            machine_size(self.data_dir, caps.network_capacity_mbps),
            UsageSampler(self.data_dir, caps.network_capacity_mbps),
            record=self._recorder(RESOURCES_STREAM),
            report=usage_report,
            now=now,
        )
        predictive = caps.allocation_strategy is AllocationStrategy.PREDICTIVE
        return AgentPool(
            tuple(self.agents.values()),
            caps.allocation_strategy,
            health=fold_health(recorded, policy, self.agents),
            policy=policy,
            estimates=self._estimates() if predictive else None,
            gate=gate,
            record=self._recorder(AGENTS_STREAM),
            wake_at=self._wake_pool,
            clock=self.clock.now,
            limiter=RateLimiter.recorded_in(self.store),
        )

    def _step_actors_of(self, agent: AgentConfig) -> StepActors:
        cluster = self.clusters.get(agent.name)
        take = self._take_cluster_resources if cluster is not None else None
        return StepActors(agent.name, agent.capacity, self.pool, cluster, take)

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
        for conn in self.clusters.values():
            conn.close()
        self.timers.stop()

    def quiet(self) -> bool:
        """Nothing can move but a timer: no attempt holds a slot and no actor has work.

        Read by a fake clock's auto-skip (engine.testing) from its own thread.
        """
        if self.pool.in_flight():
            return False
        with self._tracked_lock:
            actors = list(self._tracked)
        return all(actor.quiet() for actor in actors)

    def track(self, actor: Any) -> None:
        """The scheduler or a workflow actor exists (called as it is built): `quiet`
        looks at it until it is gone."""
        with self._tracked_lock:
            self._tracked.add(actor)

    def _connect_clusters(self) -> dict[str, ClusterConnection]:
        """A connection per `backend: dask` agent; a default capacity becomes the cluster's."""
        dask_agents = [a for a in self.agents.values() if a.backend is AgentBackend.DASK]
        for agent in dask_agents:
            require_dask(agent.name)
        clusters: dict[str, ClusterConnection] = {}
        for agent in dask_agents:
            conn = ClusterConnection(agent.address or "", agent_name=agent.name)
            clusters[agent.name] = conn
            if agent.capacity == _DEFAULT_CAPACITY:
                threads = conn.capacity()  # blocks up to the connect timeout, once, at start
                if threads > 0:
                    self.agents[agent.name] = msgspec.structs.replace(agent, capacity=threads)
                else:
                    log.warning(
                        "agent %s: the Dask scheduler at %s did not answer at start; "
                        "capacity stays %d (set `capacity` to the cluster's threads)",
                        agent.name,
                        agent.address,
                        agent.capacity,
                    )
        return clusters

    def _take_cluster_resources(self, key: AttemptKey) -> dict[str, float]:
        """The Dask resources noted for an attempt (called once, by its dask agent)."""
        return self._cluster_resources.pop(key, {})

    def _estimates(self) -> DurationEstimates:
        """Durations of every successful attempt in the log (predictive allocation)."""
        prefix = ev.RUN_STREAM_PREFIX
        return DurationEstimates.from_events(
            (r.stream[len(prefix) :], r.event)
            for r in self.store.read_all()
            if r.stream.startswith(prefix)
        )

    def _recorder(self, stream: str) -> Callable[[list[ev.Event]], None]:
        def record(events: list[ev.Event]) -> None:
            try:
                self.store.append(stream, events)
            except Exception:  # an observation lost must not stop an agent or a timer
                log.exception("cannot record %d event(s) in stream %s", len(events), stream)

        return record

    def admission_candidate(self, run_id: str) -> Candidate:
        """The run's concurrency key (from its `RunSubmitted`) and whether it had started
        (any event after `RunSubmitted`: its actor ran), for the scheduler."""
        stream = ev.run_stream(run_id)
        first = next(iter(self.store.read_stream(stream)), None)
        if first is None or not isinstance(first.event, ev.RunSubmitted):
            return Candidate(run_id)
        try:
            key = concurrency_key(first.event.spec, first.event.inputs)
        except WorkflowAutomatorError:  # validated at submission; an old spec may not render
            key = None
        return Candidate(run_id, key, self.store.stream_version(stream) > 1)

    def give_up(self, run_id: str, crashes: int, error: str) -> None:
        """Pause a run whose actor crashed on each of `crashes` restarts (the scheduler's)."""
        stream = ev.run_stream(run_id)
        try:
            records = list(self.store.read_stream(stream))
            reason = (
                f"the engine stopped driving the run: it crashed {crashes} times ({error}); "
                "this is a bug in wfa, please report it. `wfa resume` tries again"
            )
            trigger = rules.GiveUp(reason=reason)
            events = rules.decide(fold(r.event for r in records), trigger, self.clock.now())
            if events:
                self.store.append(stream, events, expected_version=records[-1].version)
        except Exception:  # the log refuses (damage, disk): the run waits for the next engine
            log.exception("run %s: cannot log that the engine gave up on it", run_id)

    def _wake_pool(self, key: Hashable, at: float) -> None:
        self.timers.schedule(key, at, self._waker, None)

    # -- called by workflow actors -------------------------------------------

    def store_in_cache(self, entry: ev.CacheEntryStored) -> None:
        """Append a cache entry (after its run's batch is durable) and index it."""
        self._recorder(CACHE_STREAM)([entry])
        self.cache.apply(entry)

    def agent_ref(self, name: str) -> pykka.ActorRef[Any]:
        return self._agent_refs[name]

    def attempt_dir(self, run_id: str, step_id: str, attempt: int) -> Path:
        """Where an attempt's stdout, stderr, outputs and process record live."""
        return attempt_dir(self.data_dir, run_id, step_id, attempt)

    def end_leftovers(self, state: RunState) -> None:
        """Before a run is recovered: end the processes its in-flight attempts left running.

        A SIGKILLed engine leaves its steps' process groups alive; the recovered
        step must not run beside its own earlier attempt. Runs on the workflow
        actor's thread and may block for the kill grace, but only when something
        was actually left running.
        """
        for sid, step in state.steps.items():
            if step.status is StepStatus.RUNNING and step.attempts:
                end_leftover_group(str(self.attempt_dir(state.run_id, sid, step.attempts)))
                # An engine killed between spawning a step and recording it left no
                # record: such processes are found by the attempt in their environment.
                key = (state.run_id, sid, str(step.attempts))
                end_processes(self._processes_before_start().get(key, []))

    def ran_in_engine(self, state: RunState) -> frozenset[str]:
        """The running steps whose attempt ran inside this process: a `call` on a thread.

        Only such an attempt can have taken the engine down with it (os._exit, a
        fatal signal, a crash in native code); `decide` counts those crashes.
        """
        found = set()
        for sid, step in state.steps.items():
            agent = self.agents.get(step.agent or "")
            if (
                step.status is StepStatus.RUNNING
                and spec_of(state, sid).call is not None
                and agent is not None
                and agent.isolation is Isolation.THREAD
                and agent.backend is AgentBackend.LOCAL
            ):
                found.add(sid)
        return frozenset(found)

    def _processes_before_start(self) -> dict[tuple[str, str, str], list[Any]]:
        """The attempts' processes found when this engine began recovering (scanned once)."""
        with self._scan_lock:
            if self._scanned is None:
                self._scanned = attempt_processes()
            return self._scanned

    def attempt_request(
        self,
        state: RunState,
        started: ev.AttemptStarted,
        steps: dict[str, Any],
        calls: dict[str, str] | None = None,
    ) -> AttemptRequest:
        """What an agent needs to run an attempt; `steps` is the run's `ctx.steps` view,
        `calls` the `call` of each of its call steps (for their typed outputs)."""
        step = spec_of(state, started.step_id)
        agent = self.agents.get(started.agent)
        argv = resolve_run_argv(state, started.step_id)
        timeout = started.timeout_at - started.at if started.timeout_at else None
        step_env = self.config.execution.step_env
        if agent is not None and agent.backend is AgentBackend.DASK and agent.resources:
            self._note_cluster_resources(agent, step.resources, state.run_id, started)
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
            step_calls=calls or {},
            item=state.steps[started.step_id].item,
            env=step.env,
            timeout=timeout,
            isolation=agent.isolation.value if agent else "thread",
            output_dir=str(self.attempt_dir(state.run_id, started.step_id, started.attempt)),
            env_pass=None if step_env.inherit else step_env.pass_,
            code_dir=state.settings.workflow_dir,
            max_log_bytes=self.config.execution.max_log_bytes or None,
        )

    def _note_cluster_resources(
        self, agent: AgentConfig, wanted: Any, run_id: str, started: ev.AttemptStarted
    ) -> None:
        if wanted is None:
            return
        by_name = {
            name.lower(): float(value)
            for name, value in msgspec.structs.asdict(wanted).items()
            if value
        }
        named = {n: by_name[n.lower()] for n in agent.resources if n.lower() in by_name}
        needed = dask_resources(named, agent.resources)
        if needed:
            self._cluster_resources[(run_id, started.step_id, started.attempt)] = needed

    def published(self, run_id: str, state: RunState, batch: list[Any]) -> None:
        if self._listener is not None:
            try:
                self._listener(run_id, state, batch)
            except Exception:  # a listener's bug must not stop a run
                log.exception("run %s: listener failed", run_id)

    # -- child workflows; called by workflow actors ----------------

    def submit_child(self, parent: RunState, step_id: str) -> None:
        """Submit the child run `step_id` waits for and admit it at once; if it exists
        already (recovery), submit nothing: admit it, or report its end if it ended."""
        child_id = parent.steps[step_id].child_run_id
        assert child_id is not None, f"step {step_id} waits for no child run"
        records = list(self.store.read_stream(ev.run_stream(child_id)))
        if records:
            report = ended_report(fold(r.event for r in records))
            if report is not None:
                self.deliver(parent.run_id, report)
                return
        elif pruned_into(self.store, child_id) is not None:  # ended, its end no longer known
            why = "it was pruned from the log before its parent took its end"
            self.deliver(parent.run_id, child_lost(parent, step_id, why))
            return
        else:
            try:
                submitted = child_submission(parent, step_id, self.clock.now())
                self.store.append(ev.run_stream(child_id), [submitted], expected_version=0)
            except ConcurrencyError:  # submitted meanwhile: it is that run
                pass
        self.scheduler.tell(AdmitChild(child_id))

    def child_ended(self, child: RunState) -> None:
        """An ended child run's report to its parent (after the end is durable)."""
        report = ended_report(child)
        if report is not None and child.child_of is not None:
            self.deliver(child.child_of.run_id, report)
