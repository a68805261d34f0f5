"""Resource caps: may a step start now, given the machine's usage and what it declares?

`admit`, `never_fits`, `with_demand` and `cap_changes` are pure arithmetic
over plain data. Reading the machine is kept apart, in `UsageSampler` and
`machine_size` (actors/monitors/usage.py, psutil in one place), so that every
decision can be tested with made-up numbers.

The rule: no new attempt starts while measured usage plus the step's
declared `resources` would exceed a cap, each as a percent of the machine
(network: of `network_capacity_mbps`). A step whose declaration alone exceeds
a cap, or the machine, could never start: `never_fits` says so, and the step
fails with kind `resource` rather than wait forever. `gpu` is not measured and
not capped.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from engine.rules.config import ResourcesConfig
from engine.rules.events import ResourceCapExceeded, ResourceCapRecovered
from engine.rules.spec import ResourcesSpec

__all__ = [
    "RESOURCES",
    "MachineSize",
    "ResourceUsage",
    "admit",
    "cap_changes",
    "never_fits",
    "over_caps",
    "with_demand",
]

RESOURCES = ("cpu", "memory", "storage", "network")


class ResourceUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Measured usage, each in percent of the machine (network: of the configured capacity)."""

    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    storage_percent: float = 0.0  # of the data directory's file system
    network_percent: float = 0.0


class MachineSize(msgspec.Struct, frozen=True, kw_only=True):
    cpus: float
    memory_mb: float
    storage_mb: float  # the data directory's file system
    network_mbps: float  # resources.network_capacity_mbps


def _measured(usage: ResourceUsage, caps: ResourcesConfig) -> dict[str, tuple[float, float]]:
    """Per capped resource: (usage %, cap %); a resource without a cap is not in it."""
    measured = {
        "cpu": (usage.cpu_percent, caps.max_cpu_usage),
        "memory": (usage.memory_percent, caps.max_memory_usage),
        "storage": (usage.storage_percent, caps.max_storage_usage),
        "network": (usage.network_percent, caps.max_network_usage),
    }
    return {name: (used, cap) for name, (used, cap) in measured.items() if cap is not None}


def _declared(demand: ResourcesSpec, machine: MachineSize) -> dict[str, tuple[float, str, str]]:
    """Per resource: (percent of the machine the step declares, the amount, the machine's)."""
    amounts = {
        "cpu": (demand.cpu, machine.cpus, "core(s)"),
        "memory": (demand.memory_mb, machine.memory_mb, "MB of memory"),
        "storage": (demand.storage_mb, machine.storage_mb, "MB of storage"),
        "network": (demand.network_mbps, machine.network_mbps, "Mbps"),
    }
    return {
        name: (_pct(amount, total), f"{amount:g} {unit}", f"{total:g}")
        for name, (amount, total, unit) in amounts.items()
    }


def admit(
    usage: ResourceUsage,
    demand: ResourcesSpec | None,
    caps: ResourcesConfig,
    machine: MachineSize,
) -> str | None:
    """None if the step may start now; else why not, naming every cap it would break.

    e.g. "cpu 85% + 1 core(s) of 2 (50%) would exceed max_cpu_usage 80%".
    Usage exactly at a cap is allowed; only going above it is not.
    """
    reasons = []
    declared = _declared(demand or ResourcesSpec(), machine)
    for name, (used, cap) in _measured(usage, caps).items():
        needed, amount, total = declared[name]
        if used + needed > cap:
            extra = f" + {amount} of {total} ({needed:.3g}%)" if needed else ""
            reasons.append(f"{name} {used:.3g}%{extra} would exceed max_{name}_usage {cap:g}%")
    return "; ".join(reasons) or None


def never_fits(
    demand: ResourcesSpec | None, machine: MachineSize, caps: ResourcesConfig | None = None
) -> str | None:
    """Why a step could never start, or None: it declares more than the machine has,
    or (given `caps`) more than a cap allows even on an idle machine."""
    if demand is None:
        return None
    reasons = []
    capped = _measured(ResourceUsage(), caps or ResourcesConfig())
    for name, (needed, amount, total) in _declared(demand, machine).items():
        cap = capped.get(name, (0.0, 100.0))[1]
        if needed > 100:
            reasons.append(f"declares {amount}, more than the {total} the machine has")
        elif needed > cap:
            reasons.append(
                f"declares {amount} of {total} ({needed:.3g}%), above max_{name}_usage {cap:g}%"
            )
    if not reasons:
        return None
    return "the step could never start: " + "; ".join(reasons)


def with_demand(usage: ResourceUsage, demand: ResourcesSpec, machine: MachineSize) -> ResourceUsage:
    """Usage plus a declaration, e.g. to count steps started since the last sample."""
    return ResourceUsage(
        cpu_percent=usage.cpu_percent + _pct(demand.cpu, machine.cpus),
        memory_percent=usage.memory_percent + _pct(demand.memory_mb, machine.memory_mb),
        storage_percent=usage.storage_percent + _pct(demand.storage_mb, machine.storage_mb),
        network_percent=usage.network_percent + _pct(demand.network_mbps, machine.network_mbps),
    )


def over_caps(usage: ResourceUsage, caps: ResourcesConfig) -> dict[str, tuple[float, float]]:
    """The resources measured above their cap: name -> (usage %, cap %)."""
    return {name: uc for name, uc in _measured(usage, caps).items() if uc[0] > uc[1]}


def cap_changes(
    previously_over: Iterable[str], usage: ResourceUsage, caps: ResourcesConfig, now: float
) -> tuple[frozenset[str], list[ResourceCapExceeded | ResourceCapRecovered]]:
    """The resources over their cap now, and an event for each that crossed since last time.

    The runtime keeps the returned set for the next sample; start with ``()``.
    """
    before = frozenset(previously_over)
    events: list[ResourceCapExceeded | ResourceCapRecovered] = []
    over = []
    for name, (used, cap) in _measured(usage, caps).items():
        if used > cap:
            over.append(name)
            if name not in before:
                events.append(ResourceCapExceeded(at=now, resource=name, usage=used, cap=cap))
        elif name in before:
            events.append(ResourceCapRecovered(at=now, resource=name, usage=used, cap=cap))
    return frozenset(over), events


def _pct(amount: float, total: float) -> float:
    if amount <= 0:
        return 0.0
    return 100.0 * amount / total if total > 0 else float("inf")
