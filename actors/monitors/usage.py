"""Reading the machine for the resource caps: its size and its usage (psutil, one place).

The decisions over these readings are pure and live in
engine/rules/policies/resources.py; the runtime samples here and passes the
figures in as values.
"""

from __future__ import annotations

import os

from engine.rules.policies.resources import MachineSize, ResourceUsage

__all__ = ["UsageSampler", "machine_size"]


def machine_size(data_dir: str | os.PathLike[str], network_capacity_mbps: float) -> MachineSize:
    """The machine's size as the caps measure it: cpus, memory, the data directory's disk."""
    import psutil

    return MachineSize(
        cpus=float(psutil.cpu_count() or 1),
        memory_mb=psutil.virtual_memory().total / 2**20,
        storage_mb=psutil.disk_usage(os.fspath(data_dir)).total / 2**20,
        network_mbps=network_capacity_mbps,
    )


class UsageSampler:
    """Measures usage; cpu and network are rates over two samples, so it keeps the last
    counters (its own: psutil's `cpu_percent(interval=None)` keeps one baseline per
    thread, and the runtime samples from whichever thread assigns).

    The first `sample` reports 0% cpu and network; sample again after a moment
    (a quarter of a second is plenty) for real figures.
    """

    def __init__(self, data_dir: str | os.PathLike[str], network_capacity_mbps: float) -> None:
        self.data_dir = os.fspath(data_dir)
        self.network_capacity_mbps = network_capacity_mbps
        self._last: tuple[float, int] | None = None  # (now, bytes sent + received)
        self._cpu: tuple[float, float] | None = None  # (busy, total) cpu seconds

    def _cpu_percent(self) -> float:
        import psutil

        times = psutil.cpu_times()
        total = float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        busy: float = total - times.idle - getattr(times, "iowait", 0.0)
        last, self._cpu = self._cpu, (busy, total)
        if last is None or total <= last[1]:
            return 0.0
        return min(max(100.0 * (busy - last[0]) / (total - last[1]), 0.0), 100.0)

    def sample(self, now: float) -> ResourceUsage:
        import psutil

        counters = psutil.net_io_counters()
        sent = int(counters.bytes_sent + counters.bytes_recv) if counters else 0
        network = 0.0
        if self._last is not None and now > self._last[0]:
            mbps = (sent - self._last[1]) * 8 / 1e6 / (now - self._last[0])
            network = max(100.0 * mbps / self.network_capacity_mbps, 0.0)
        self._last = (now, sent)
        return ResourceUsage(
            cpu_percent=self._cpu_percent(),
            memory_percent=float(psutil.virtual_memory().percent),
            storage_percent=float(psutil.disk_usage(self.data_dir).percent),
            network_percent=network,
        )
