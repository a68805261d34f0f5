"""The usage sampler against this very machine: plausible figures, rates from two samples."""

from __future__ import annotations

import time
from pathlib import Path

from actors.monitors.usage import UsageSampler, machine_size


def test_the_sampler_reads_plausible_figures_from_this_machine(tmp_path: Path) -> None:
    sampler = UsageSampler(tmp_path, network_capacity_mbps=1000)
    first = sampler.sample(time.time())
    assert first.network_percent == 0.0  # a rate needs two samples
    second = sampler.sample(time.time() + 0.01)
    for value in (second.cpu_percent, second.memory_percent, second.storage_percent):
        assert 0 <= value <= 100
    assert second.network_percent >= 0
    size = machine_size(tmp_path, 1000)
    assert size.cpus >= 1 and size.memory_mb > 0 and size.storage_mb > 0
