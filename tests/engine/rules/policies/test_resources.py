"""Admission against resource caps: the arithmetic, the reasons, and cap crossings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.rules.config import ResourcesConfig
from engine.rules.events import ResourceCapExceeded, ResourceCapRecovered
from engine.rules.policies.resources import (
    MachineSize,
    ResourceUsage,
    admit,
    cap_changes,
    never_fits,
    over_caps,
    with_demand,
)
from engine.rules.spec import ResourcesSpec

MACHINE = MachineSize(cpus=2, memory_mb=4096, storage_mb=100_000, network_mbps=1000)
CAPS = ResourcesConfig(  # the example caps of wfa.example.yaml
    max_cpu_usage=80, max_memory_usage=70, max_storage_usage=85, max_network_usage=60
)
percents = st.floats(0, 100)


def test_a_step_starts_when_usage_plus_its_declaration_stays_within_every_cap() -> None:
    usage = ResourceUsage(cpu_percent=20, memory_percent=50, storage_percent=10)
    assert admit(usage, ResourcesSpec(cpu=1, memory_mb=512), CAPS, MACHINE) is None
    assert admit(usage, None, CAPS, MACHINE) is None


def test_the_reason_names_the_resource_the_arithmetic_and_the_cap() -> None:
    reason = admit(ResourceUsage(cpu_percent=85), ResourcesSpec(cpu=1), CAPS, MACHINE)
    assert reason == "cpu 85% + 1 core(s) of 2 (50%) would exceed max_cpu_usage 80%"


def test_every_broken_cap_is_named() -> None:
    usage = ResourceUsage(cpu_percent=50, memory_percent=69, network_percent=61)
    reason = admit(usage, ResourcesSpec(cpu=1, memory_mb=512), CAPS, MACHINE)
    assert reason is not None
    assert reason.startswith("cpu 50% + 1 core(s) of 2 (50%) would exceed max_cpu_usage 80%; ")
    assert "memory 69% + 512 MB of memory of 4096 (12.5%) would exceed" in reason
    assert reason.endswith("network 61% would exceed max_network_usage 60%")


def test_usage_exactly_at_a_cap_is_allowed_above_it_is_not() -> None:
    assert admit(ResourceUsage(cpu_percent=30), ResourcesSpec(cpu=1), CAPS, MACHINE) is None
    assert admit(ResourceUsage(cpu_percent=30.5), ResourcesSpec(cpu=1), CAPS, MACHINE)


@given(percents, percents, percents, percents, st.floats(0, 2), st.floats(0, 4096))
def test_admit_agrees_with_usage_plus_demand_against_each_cap(
    cpu: float, mem: float, disk: float, net: float, cores: float, mb: float
) -> None:
    usage = ResourceUsage(
        cpu_percent=cpu, memory_percent=mem, storage_percent=disk, network_percent=net
    )
    demand = ResourcesSpec(cpu=cores, memory_mb=mb)
    total = with_demand(usage, demand, MACHINE)
    fits = (
        total.cpu_percent <= 80
        and total.memory_percent <= 70
        and total.storage_percent <= 85
        and total.network_percent <= 60
    )
    assert (admit(usage, demand, CAPS, MACHINE) is None) == fits


def test_a_step_declaring_more_than_the_machine_could_never_start() -> None:
    reason = never_fits(ResourcesSpec(cpu=4, memory_mb=1024), MACHINE)
    assert (
        reason == "the step could never start: declares 4 core(s), more than the 2 the machine has"
    )
    assert never_fits(ResourcesSpec(cpu=2), MACHINE) is None
    assert never_fits(None, MACHINE) is None


def test_with_caps_a_declaration_above_a_cap_on_an_idle_machine_never_fits() -> None:
    reason = never_fits(ResourcesSpec(memory_mb=3000), MACHINE, CAPS)
    assert reason is not None and "above max_memory_usage 70%" in reason
    assert never_fits(ResourcesSpec(cpu=1.6), MACHINE, CAPS) is None  # exactly 80%


def test_cap_crossings_give_one_event_each_way() -> None:
    over, events = cap_changes((), ResourceUsage(cpu_percent=90, memory_percent=10), CAPS, 1.0)
    assert over == {"cpu"}
    assert events == [ResourceCapExceeded(at=1.0, resource="cpu", usage=90, cap=80)]
    over, events = cap_changes(over, ResourceUsage(cpu_percent=95), CAPS, 2.0)
    assert over == {"cpu"} and events == []
    over, events = cap_changes(over, ResourceUsage(cpu_percent=80), CAPS, 3.0)
    assert over == frozenset()
    assert events == [ResourceCapRecovered(at=3.0, resource="cpu", usage=80, cap=80)]


def test_without_caps_any_usage_admits_a_step_and_no_cap_is_ever_crossed() -> None:
    busy = ResourceUsage(
        cpu_percent=100, memory_percent=99, storage_percent=99, network_percent=500
    )
    assert admit(busy, ResourcesSpec(cpu=2, memory_mb=4096), ResourcesConfig(), MACHINE) is None
    assert cap_changes((), busy, ResourcesConfig(), 1.0) == (frozenset(), [])
    assert over_caps(busy, ResourcesConfig()) == {}


def test_without_caps_a_step_still_never_fits_a_machine_smaller_than_it_declares() -> None:
    assert never_fits(ResourcesSpec(cpu=2, memory_mb=4096), MACHINE, ResourcesConfig()) is None
    reason = never_fits(ResourcesSpec(cpu=3), MACHINE, ResourcesConfig())
    assert reason is not None and "more than the 2 the machine has" in reason


def test_one_cap_alone_holds_back_only_on_its_own_resource() -> None:
    caps = ResourcesConfig(max_memory_usage=50)
    assert admit(ResourceUsage(cpu_percent=100), ResourcesSpec(cpu=1), caps, MACHINE) is None
    reason = admit(ResourceUsage(memory_percent=60), ResourcesSpec(cpu=1), caps, MACHINE)
    assert reason == "memory 60% would exceed max_memory_usage 50%"
