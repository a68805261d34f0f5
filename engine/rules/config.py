"""The engine configuration (docs/configuration.md) as frozen msgspec Structs; every key optional.

Loaded from `wfa.yaml` (or JSON/TOML) strictly like a workflow file. Loading
and environment overrides live in engine/input/loading.py; these are the types and
their defaults.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from engine.rules.spec import MAX_AMOUNT, RateLimitSpec, Seconds, StepId

Percent = Annotated[float, Meta(ge=0, le=100)]
Positive = Annotated[int, Meta(ge=1, le=1_000_000)]
Count = Annotated[int, Meta(ge=1, le=10_000)]
Amount = Annotated[float, Meta(gt=0, le=MAX_AMOUNT)]
ModulePrefix = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="a dotted module name, e.g. mysteps or mycompany.steps",
    ),
]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class StepEnvConfig(_Section, frozen=True, kw_only=True):
    """What a step's process inherits from the engine's environment.

    `inherit: false`: only `WFA_*`, the step's `env:` and the names in `pass`.
    """

    inherit: bool = True
    pass_: tuple[str, ...] = msgspec.field(default=("PATH", "HOME", "LANG"), name="pass")


class ExecutionConfig(_Section, frozen=True, kw_only=True):
    max_concurrent_workflows: Count = 10
    max_steps_per_workflow: Count = 50
    default_timeout: Seconds = 300.0
    default_retry_count: Annotated[int, Meta(ge=0, le=99)] = 3  # retries after the first attempt
    enable_parallel_execution: bool = True
    enable_conditional_execution: bool = True
    step_env: StepEnvConfig = msgspec.field(default_factory=StepEnvConfig)
    # None: `call:` may name any module; else only these modules and their submodules
    call_modules: tuple[ModulePrefix, ...] | None = None
    # engine crashes in a row, during attempts that ran inside the engine, before a step fails
    max_interrupted_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    # bytes per attempt and stream (stdout.log, stderr.log): first and last half kept; 0/None: all
    max_log_bytes: Annotated[int, Meta(ge=0)] | None = 10 << 20


class AllocationStrategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    PRIORITY = "priority"
    LOAD_BALANCED = "load_balanced"
    PREDICTIVE = "predictive"


class ResourcesConfig(_Section, frozen=True, kw_only=True):
    # Machine-wide caps, percent: no step that declares `resources` starts above one.
    # None (the default): no cap; wfa.example.yaml shows typical values.
    max_cpu_usage: Percent | None = None
    max_memory_usage: Percent | None = None
    max_storage_usage: Percent | None = None
    max_network_usage: Percent | None = None
    network_capacity_mbps: Amount = 1000.0
    agent_pool_size: Count = 20
    allocation_strategy: AllocationStrategy = AllocationStrategy.LOAD_BALANCED


class Isolation(StrEnum):
    THREAD = "thread"
    PROCESS = "process"


class AgentBackend(StrEnum):
    LOCAL = "local"
    DASK = "dask"


class AgentConfig(_Section, frozen=True, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]
    capabilities: tuple[str, ...] = ("default",)
    capacity: Count = 1  # concurrent attempts
    isolation: Isolation = Isolation.THREAD
    backend: AgentBackend = AgentBackend.LOCAL
    address: str | None = None  # dask scheduler, tcp://host:port
    resources: dict[str, Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]] = msgspec.field(
        default_factory=dict
    )


class MonitoringConfig(_Section, frozen=True, kw_only=True):
    check_interval: Annotated[float, Meta(ge=0.1, le=86_400)] = 30.0
    alert_threshold: Positive = 5
    performance_threshold: Annotated[float, Meta(ge=0, le=1_000_000)] = 90.0
    error_rate_threshold: Percent = 10.0
    alert_command: tuple[str, ...] | None = None


class Durability(StrEnum):
    SYNC = "sync"  # acknowledged = on disk
    RELAXED = "relaxed"  # flushed every 100 ms


class RetentionConfig(_Section, frozen=True, kw_only=True):
    ended_runs_days: Annotated[float, Meta(gt=0)] | None = None
    """`wfa serve` prunes runs that ended more than this many days ago (hourly)."""


class StorageConfig(_Section, frozen=True, kw_only=True):
    path: str = ".wfa"
    durability: Durability = Durability.SYNC
    retention: RetentionConfig = RetentionConfig()


class TraceExport(StrEnum):
    NONE = "none"
    CONSOLE = "console"
    OTLP = "otlp"


class TelemetryConfig(_Section, frozen=True, kw_only=True):
    traces: TraceExport = TraceExport.NONE
    otlp_endpoint: str = "http://127.0.0.1:4318"
    service_name: str = "workflow-automator"
    prometheus_port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    jaeger_ui_url: str | None = None  # e.g. http://127.0.0.1:16686: `wfa ui` links runs' traces


class EngineConfig(_Section, frozen=True, kw_only=True):
    execution: ExecutionConfig = msgspec.field(default_factory=ExecutionConfig)
    resources: ResourcesConfig = msgspec.field(default_factory=ResourcesConfig)
    agents: tuple[AgentConfig, ...] | None = None  # None: agent_pool_size generic agents
    monitoring: MonitoringConfig = msgspec.field(default_factory=MonitoringConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    # capability -> {max, per}: attempts of steps needing it, across all runs
    rate_limits: dict[StepId, RateLimitSpec] = msgspec.field(default_factory=dict)
