"""ResourceGate: the machine's measured usage, sampled in one place, and admission by caps.

The one impure neighbour of engine/rules/policies/resources.py: it samples usage (psutil)
at most once per `interval`, lazily, when the pool is about to assign, and
answers `admit` from the last sample plus the declarations of steps started
since that sample's window began (their load may not show yet, and two steps
granted in the same moment must not both squeeze under a cap). Each sample
that crosses a cap appends `ResourceCapExceeded`/`ResourceCapRecovered` to the
"resources" stream (the alert monitor reads them) and reports the figures to
the observer's gauges.

Thread use: `refresh` runs on whichever thread calls the pool (outside the
pool's lock: sampling and appending may take a moment); `admit`, `started`
and `next_sample_at` are called under the pool's lock and never block on I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from actors.monitors.usage import UsageSampler
from engine.rules.config import ResourcesConfig
from engine.rules.events import Event
from engine.rules.policies.resources import (
    RESOURCES,
    MachineSize,
    ResourceUsage,
    admit,
    cap_changes,
    never_fits,
    with_demand,
)
from engine.rules.spec import ResourcesSpec

RESOURCES_STREAM = "resources"
WARM_UP = 0.25  # seconds: psutil measures cpu since the previous sample; the first is empty


class ResourceGate:
    def __init__(
        self,
        caps: ResourcesConfig,
        machine: MachineSize,
        sampler: UsageSampler,
        *,
        record: Callable[[list[Event]], None] | None = None,
        report: Callable[[str, float], None] | None = None,
        interval: float = 1.0,
        now: float = 0.0,
    ) -> None:
        self.caps, self.machine, self.interval = caps, machine, interval
        self._sampler = sampler
        self._record, self._report = record, report
        self._lock = threading.Lock()
        self._sampling = threading.Lock()  # one sampler at a time, others go on
        self._usage: ResourceUsage | None = None  # None until a sample means something
        self._over: frozenset[str] = frozenset()
        self._sampler.sample(now)  # primes psutil's cpu counter
        self._sampled_at = now - interval + WARM_UP
        self._started: list[tuple[float, ResourcesSpec]] = []

    def next_sample_at(self) -> float:
        with self._lock:
            return self._sampled_at + self.interval

    def refresh(self, now: float) -> None:
        """Sample if the last sample is `interval` old; record crossings of a cap."""
        if now < self._sampled_at + self.interval or not self._sampling.acquire(blocking=False):
            return
        try:
            usage = self._sampler.sample(now)
            with self._lock:
                self._over, events = cap_changes(self._over, usage, self.caps, now)
                self._usage, self._sampled_at = usage, now
                window = now - self.interval  # the period this sample measured
                self._started = [(at, r) for at, r in self._started if at >= window]
        finally:
            self._sampling.release()
        if self._report is not None:
            for name in RESOURCES:
                self._report(name, getattr(usage, f"{name}_percent"))
        if events and self._record is not None:
            recorded: list[Event] = [*events]
            self._record(recorded)

    def admit(self, demand: ResourcesSpec, now: float) -> tuple[str, str] | None:
        """None: may start. Else (the caps in the way, e.g. "cpu,memory"; why, for people:
        "held back by the cpu cap: cpu 85% + ..."); ("", "") while no sample means anything."""
        with self._lock:
            if self._usage is None:
                return "", ""
            usage = self._usage
            for _, started in self._started:
                usage = with_demand(usage, started, self.machine)
            reason = admit(usage, demand, self.caps, self.machine)
        if reason is None:
            return None
        names = [part.split(" ", 1)[0] for part in reason.split("; ")]
        which = " and ".join(names) + (" caps" if len(names) > 1 else " cap")
        return ",".join(names), f"held back by the {which}: {reason}"

    def never_fits(self, demand: ResourcesSpec) -> str | None:
        """Why the step could never start on this machine under these caps, or None."""
        return never_fits(demand, self.machine, self.caps)

    def started(self, demand: ResourcesSpec, now: float) -> None:
        with self._lock:
            self._started.append((now, demand))
